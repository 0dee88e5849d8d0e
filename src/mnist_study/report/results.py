"""From refits to the results table: per configuration, the test accuracy's summary and its comparison with the
baseline (Welch's t-test), with the verdict the report's procedure reached (`report/sequential.py`); with a second
reference, each variant's comparison with it too."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mnist_study.report import stats
from mnist_study.report.refit import RefitResult
from mnist_study.report.selection import Candidate
from mnist_study.report.sequential import BETTER, NOT_DISTINGUISHABLE, WORSE, Design, Outcome


@dataclass(frozen=True)
class Row:
    """One configuration's line in the results table."""

    candidate: Candidate
    refits: tuple[RefitResult, ...]
    accuracy: stats.Summary
    errors: stats.Summary
    # The comparison with the baseline that decided the verdict (a variant's at the look that settled it).
    comparison: stats.Comparison | None
    # How many seeds of each that comparison used.
    compared_seeds: int | None
    verdict: str
    better_than_baseline: bool = False

    @property
    def accuracies(self) -> list[float]:
        return [refit.test_accuracy for refit in self.refits]


def rows(
    candidates: Sequence[Candidate],
    refits: Sequence[RefitResult],
    outcomes: Mapping[str, Outcome],
    design: Design,
) -> list[Row]:
    """Summarise every configuration and compare it with the baseline.

    Only the variants form the family the procedure covers: they are the study's claims to beat the baseline. The
    replica is compared on every seed it has, unadjusted; its protocol (fit on test) disqualifies it anyway. So is
    a second reference: it is the yardstick of other claims (`versus`), not one of the study's.
    """
    by_label = {c.label: [r for r in refits if r.refit.candidate.label == c.label] for c in candidates}
    baseline = next(c for c in candidates if c.role == "baseline")
    base = [r.test_accuracy for r in by_label[baseline.label]]
    table = []
    for candidate in candidates:
        results = tuple(by_label[candidate.label])
        accuracies = [r.test_accuracy for r in results]
        outcome = outcomes.get(candidate.label)
        seeds = seeds_compared(candidate.role, len(accuracies), len(base), outcome, design)
        comparison = stats.welch(accuracies[:seeds], base[:seeds]) if seeds else None
        table.append(
            Row(
                candidate,
                results,
                stats.summarize(accuracies),
                stats.summarize([float(stats.error_count(a)) for a in accuracies]),
                comparison,
                seeds,
                verdict_text(candidate.role, comparison, outcome, design),
                outcome is not None and outcome.verdict == BETTER,
            )
        )
    return table


@dataclass(frozen=True)
class Versus:
    """A variant against the second reference: the comparison that decided the verdict, and on how many seeds."""

    candidate: Candidate
    comparison: stats.Comparison | None
    compared_seeds: int | None
    verdict: str
    better: bool


def versus(
    candidates: Sequence[Candidate],
    refits: Sequence[RefitResult],
    outcomes: Mapping[str, Outcome],
    design: Design,
    name: str,
) -> list[Versus]:
    """Each variant against the second reference `name` (the candidate of role `reference`), as the procedure
    decided: `outcomes` are the hypotheses against it, by variant label. Empty without a reference."""
    reference = next((c for c in candidates if c.role == "reference"), None)
    if reference is None:
        return []
    by_label = {
        c.label: [r.test_accuracy for r in refits if r.refit.candidate.label == c.label] for c in candidates
    }
    yardstick = by_label[reference.label]
    compared = []
    for candidate in (c for c in candidates if c.role == "variant"):
        accuracies = by_label[candidate.label]
        outcome = outcomes.get(candidate.label)
        seeds = seeds_compared(candidate.role, len(accuracies), len(yardstick), outcome, design)
        comparison = stats.welch(accuracies[:seeds], yardstick[:seeds]) if seeds else None
        verdict = verdict_text(candidate.role, comparison, outcome, design, name)
        better = outcome is not None and outcome.verdict == BETTER
        compared.append(Versus(candidate, comparison, seeds, verdict, better))
    return compared


def seeds_compared(
    role: str, seeds: int, baseline_seeds: int, outcome: Outcome | None, design: Design
) -> int | None:
    """How many seeds the row's comparison uses: the deciding look's for a variant, all shared ones otherwise."""
    if role == "baseline":
        return None
    if outcome is not None and outcome.evidence is not None:
        return design.looks[outcome.evidence]
    shared = min(seeds, baseline_seeds)
    return shared if shared >= 2 else None


def verdict_text(
    role: str,
    comparison: stats.Comparison | None,
    outcome: Outcome | None,
    design: Design,
    against: str = "the baseline",
) -> str:
    """A plain-language verdict against the baseline (or the reference named `against`) at the design's level."""
    confidence = f"{1 - design.level:.0%}"
    if role == "baseline":
        return "the reference"
    if comparison is None:
        return "not tested (needs at least two seeds)"
    if role in ("replica", "reference"):
        p = comparison.p_value
        found = BETTER if p <= design.level and comparison.difference > 0 else NOT_DISTINGUISHABLE
        found = WORSE if p <= design.level and comparison.difference < 0 else found
        if role == "replica":
            return f"{phrase(found, confidence)} (but it fits on the test set: not an honest estimate)"
        return f"{phrase(found, confidence)} (unadjusted: the second reference, not one of the study's claims)"
    if outcome is None or outcome.verdict is None:
        return "not tested"
    text = phrase(outcome.verdict, confidence, against)
    if outcome.stopped_for_futility:
        return f"{text} (refits stopped after {design.looks[outcome.evidence]} seeds: no sign of a difference)"
    if outcome.evidence is not None and outcome.evidence < len(design.looks) - 1:
        return f"{text} (settled after {design.looks[outcome.evidence]} seeds)"
    return text


def phrase(verdict: str, confidence: str, against: str = "the baseline") -> str:
    if verdict == BETTER:
        return f"better than {against} at {confidence}"
    if verdict == WORSE:
        return f"worse than {against} at {confidence}"
    return f"not distinguishable from {against}"


def pct(value: float, digits: int = 2) -> str:
    """0.97912 -> `97.91 %`; NaN -> `n/a`."""
    return "n/a" if math.isnan(value) else f"{100 * value:.{digits}f} %"


def signed_pp(value: float, digits: int = 2) -> str:
    """A difference of accuracies in percentage points: `+0.12 pp`."""
    return "n/a" if math.isnan(value) else f"{100 * value:+.{digits}f} pp"


def p_text(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:.2g}" if value >= 0.001 else f"{value:.1e}"
