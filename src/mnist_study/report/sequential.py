"""Refit what the decision needs: Holm's procedure over the variants, each tested at interim looks.

Every variant is compared with the baseline (Welch's two-sided t-test on test accuracy), first after a few seeds
(the interim looks), last after all of them. A variant whose verdict is settled at a look is refitted no further:

- **Error spending.** A variant tested at level `a` spends `interim_spending * a`, split equally, over the interim
  looks and the rest at the last look. By the union bound its chance of a false verdict over all looks is at most
  `a`, whatever the correlation between looks (which only makes it smaller).
- **Across variants: Holm**, written as a graph that passes levels on (Bretz et al. 2009; with interim looks,
  Maurer and Bretz 2013): each of the `m` variants starts at `level / m`; when one is shown better or worse, its
  level is shared among the others, and every earlier look of theirs is tested again at the new level. The
  family-wise error rate stays at most `level` (`tests/test_sequential.py` checks it by simulation).
- **Futility** (non-binding: it can only remove verdicts, never add false ones): at an interim look, a variant
  whose p-value exceeds `futility_p` is settled as not distinguishable and refitted no further.

This module is pure: the report supplies the comparisons through a callback (refitting as it goes), a finished
report's numbers go through `decide`, and a test supplies simulated ones.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from mnist_study.report import stats

BETTER, WORSE, NOT_DISTINGUISHABLE = "better", "worse", "not distinguishable"
NAME = "Holm over the variants, Welch's t-test at interim looks with error spending (group-sequential)"


@dataclass(frozen=True)
class Design:
    """When to look and how much of each variant's level to spend before the last look."""

    seeds: int
    interim_seeds: tuple[int, ...] = (3,)
    interim_spending: float = 0.5
    futility_p: float = 0.5
    level: float = 0.05

    def __post_init__(self) -> None:
        looks = (*self.interim_seeds, self.seeds)
        if any(seeds < 2 for seeds in looks) or list(looks) != sorted(set(looks)):
            raise ValueError(
                f"interim_seeds={list(self.interim_seeds)} with seeds={self.seeds}: each look needs at least 2 "
                "seeds, in increasing order, every interim look before the last"
            )
        if not 0 <= self.interim_spending < 1 or not 0 < self.level < 1 or not 0 < self.futility_p <= 1:
            raise ValueError(
                f"interim_spending={self.interim_spending}, level={self.level}, futility_p={self.futility_p}: "
                "need 0 <= interim_spending < 1, 0 < level < 1 and 0 < futility_p <= 1"
            )

    @property
    def looks(self) -> tuple[int, ...]:
        """Seeds per configuration at each look, the last one being all of them."""
        return (*self.interim_seeds, self.seeds)

    def spent(self, look: int) -> float:
        """The share of a variant's level its test at `look` (0-based) may use."""
        if not self.interim_seeds:
            return 1.0
        if look < len(self.interim_seeds):
            return self.interim_spending / len(self.interim_seeds)
        return 1.0 - self.interim_spending


@dataclass(frozen=True)
class Look:
    """One variant's comparison with the baseline at one look."""

    p_value: float
    difference: float


@dataclass
class Outcome:
    """A variant's verdict, the look that settled it (and whose comparison decided), and its comparisons so far."""

    verdict: str | None = None
    settled_at: int | None = None
    evidence: int | None = None
    stopped_for_futility: bool = False
    looks: list[Look] = field(default_factory=list)

    @property
    def open(self) -> bool:
        return self.verdict is None


def look(variant: Sequence[float], baseline: Sequence[float]) -> Look:
    """A variant's test accuracies against the baseline's at one look: Welch's two-sided t-test."""
    comparison = stats.welch(variant, baseline)
    return Look(comparison.p_value, comparison.difference)


def decide(design: Design, accuracies: Mapping[str, Sequence[float]], baseline: str) -> dict[str, Outcome]:
    """The procedure over accuracies already measured (label -> one per seed, in seed order), e.g. a finished
    report's: each look takes the first seeds of each, as the report's refit loop would have."""
    variants = [label for label in accuracies if label != baseline]
    return run(
        design,
        variants,
        lambda seeds, open_variants: {
            label: look(accuracies[label][:seeds], accuracies[baseline][:seeds]) for label in open_variants
        },
    )


# The report's callback: refit the baseline and the named variants to `seeds` seeds, then compare each
# with the baseline: one comparison for every variant it was given.
Compare = Callable[[int, Sequence[str]], Mapping[str, Look]]


def run(design: Design, variants: Sequence[str], compare: Compare) -> dict[str, Outcome]:
    """Look after each number of seeds in turn, refitting only the variants whose verdict is still open."""
    outcomes = {variant: Outcome() for variant in variants}
    for look, seeds in enumerate(design.looks):
        still_open = [variant for variant in variants if outcomes[variant].open]
        if not still_open:
            break
        for variant, comparison in compare(seeds, still_open).items():
            outcomes[variant].looks.append(comparison)
        settle(design, outcomes, look)
    return outcomes


def settle(design: Design, outcomes: Mapping[str, Outcome], look: int) -> None:
    """Holm's step-down over every look so far, then futility and the last look's verdicts."""
    rejected = {variant for variant, outcome in outcomes.items() if outcome.verdict in (BETTER, WORSE)}
    while True:
        remaining = [variant for variant in outcomes if variant not in rejected]
        if not remaining:
            break
        level = design.level / len(remaining)
        newly = [variant for variant in remaining if reject(design, outcomes[variant], level, look)]
        if not newly:
            break
        rejected.update(newly)
    last = look == len(design.looks) - 1
    for outcome in outcomes.values():
        if not outcome.open or len(outcome.looks) <= look:
            continue
        if last or outcome.looks[look].p_value > design.futility_p:
            outcome.verdict, outcome.settled_at, outcome.evidence = NOT_DISTINGUISHABLE, look, look
            outcome.stopped_for_futility = not last


def reject(design: Design, outcome: Outcome, level: float, look: int) -> bool:
    """Whether any of the variant's looks so far passes its share of `level`; records the verdict if so."""
    if outcome.verdict in (BETTER, WORSE):
        return False
    # A variant stopped for futility stays in the family: a level passed on later tests its looks again.
    for index, comparison in enumerate(outcome.looks):
        if comparison.p_value <= level * design.spent(index) and comparison.difference != 0:
            outcome.verdict = BETTER if comparison.difference > 0 else WORSE
            outcome.settled_at, outcome.evidence = look, index
            outcome.stopped_for_futility = False
            return True
    return False
