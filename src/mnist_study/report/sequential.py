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

**With a second reference** (`reference=<experiment>`), the family is every variant against the baseline and
against that reference: `2 x m` hypotheses (a `Hypothesis` each), one Holm procedure over all of them, each
starting at `level / 2m`. The family-wise error rate over every verdict the report states, against either
reference, stays at most `level`; so the verdict on whichever variant becomes the champion (chosen against the
baseline, on the test set) is covered too, which a single extra test of the champion alone would not be. The
price is power: every comparison starts at half the level it has without a reference. A variant is refitted
until both of its hypotheses are settled; the reference, like the baseline, at every look.

This module is pure: the report supplies the comparisons through a callback (refitting as it goes), a finished
report's numbers go through `decide`, and a test supplies simulated ones. The procedure runs over any hashable
keys: variant labels (`decide`, the simulations) or `Hypothesis` keys (the report's refit loop).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from mnist_study.report import stats

BETTER, WORSE, NOT_DISTINGUISHABLE = "better", "worse", "not distinguishable"
NAME = (
    "Holm over the variants against each reference, Welch's t-test at interim looks with error spending "
    "(group-sequential)"
)


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
    """One comparison (a variant with a reference) at one look."""

    p_value: float
    difference: float


@dataclass
class Outcome:
    """A verdict, the look that settled it (and whose comparison decided), and the comparisons so far."""

    verdict: str | None = None
    settled_at: int | None = None
    evidence: int | None = None
    stopped_for_futility: bool = False
    looks: list[Look] = field(default_factory=list)

    @property
    def open(self) -> bool:
        return self.verdict is None


@dataclass(frozen=True)
class Hypothesis:
    """One claim in the family: `variant` differs from `reference` (the baseline's label, or the second one's)."""

    variant: str
    reference: str


def family(variants: Sequence[str], references: Sequence[str]) -> list[Hypothesis]:
    """Every variant against every reference, reference by reference (the baseline first)."""
    return [Hypothesis(variant, reference) for reference in references for variant in variants]


def against(outcomes: Mapping[Hypothesis, Outcome], reference: str) -> dict[str, Outcome]:
    """The outcomes of the hypotheses against `reference`, by variant label."""
    return {claim.variant: outcome for claim, outcome in outcomes.items() if claim.reference == reference}


def look(variant: Sequence[float], reference: Sequence[float]) -> Look:
    """A variant's test accuracies against a reference's at one look: Welch's two-sided t-test."""
    comparison = stats.welch(variant, reference)
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


# What the procedure decides over: variant labels (the baseline the only reference) or `Hypothesis` keys.
Key = TypeVar("Key", bound=Hashable)
# The report's callback: refit the references and the variants of the open hypotheses to `seeds` seeds, then make
# each of those comparisons: one for every key it was given.
Compare = Callable[[int, Sequence[Key]], Mapping[Key, Look]]


def run(design: Design, hypotheses: Sequence[Key], compare: Compare[Key]) -> dict[Key, Outcome]:
    """Look after each number of seeds in turn, comparing only where the verdict is still open."""
    outcomes = {hypothesis: Outcome() for hypothesis in hypotheses}
    for look, seeds in enumerate(design.looks):
        still_open = [hypothesis for hypothesis in hypotheses if outcomes[hypothesis].open]
        if not still_open:
            break
        for hypothesis, comparison in compare(seeds, still_open).items():
            outcomes[hypothesis].looks.append(comparison)
        settle(design, outcomes, look)
    return outcomes


def settle(design: Design, outcomes: Mapping[Key, Outcome], look: int) -> None:
    """Holm's step-down over every look so far, then futility and the last look's verdicts."""
    rejected = {key for key, outcome in outcomes.items() if outcome.verdict in (BETTER, WORSE)}
    while True:
        remaining = [key for key in outcomes if key not in rejected]
        if not remaining:
            break
        level = design.level / len(remaining)
        newly = [key for key in remaining if reject(design, outcomes[key], level, look)]
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
    """Whether any of the hypothesis's looks so far passes its share of `level`; records the verdict if so."""
    if outcome.verdict in (BETTER, WORSE):
        return False
    # A hypothesis stopped for futility stays in the family: a level passed on later tests its looks again.
    for index, comparison in enumerate(outcome.looks):
        if comparison.p_value <= level * design.spent(index) and comparison.difference != 0:
            outcome.verdict = BETTER if comparison.difference > 0 else WORSE
            outcome.settled_at, outcome.evidence = look, index
            outcome.stopped_for_futility = False
            return True
    return False
