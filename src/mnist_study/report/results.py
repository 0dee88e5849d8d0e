"""From refits to the results table: per configuration, the test accuracy's summary and its comparison with the
baseline (Welch's t-test; Holm's correction across the study's variants)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from mnist_study.report import stats
from mnist_study.report.refit import RefitResult
from mnist_study.report.selection import Candidate


@dataclass(frozen=True)
class Row:
    """One configuration's line in the results table."""

    candidate: Candidate
    refits: tuple[RefitResult, ...]
    accuracy: stats.Summary
    errors: stats.Summary
    comparison: stats.Comparison | None
    adjusted_p: float | None
    verdict: str

    @property
    def accuracies(self) -> list[float]:
        return [refit.test_accuracy for refit in self.refits]

    @property
    def better_than_baseline(self) -> bool:
        """Whether the comparison (Holm-adjusted for the variants) finds this configuration better at 95 %."""
        comparison, p = self.comparison, self.adjusted_p
        return comparison is not None and p is not None and stats.is_better(comparison, p)


def rows(candidates: Sequence[Candidate], refits: Sequence[RefitResult]) -> list[Row]:
    """Summarise and compare every configuration with the baseline.

    Only the variants form the family that Holm's correction covers: they are the study's claims to beat the
    baseline. The replica's p-value is shown unadjusted; its protocol (fit on test) disqualifies it anyway.
    """
    by_label = {c.label: [r for r in refits if r.refit.candidate.label == c.label] for c in candidates}
    baseline = next(c for c in candidates if c.role == "baseline")
    base = [r.test_accuracy for r in by_label[baseline.label]]
    comparisons = {
        c.label: stats.welch([r.test_accuracy for r in by_label[c.label]], base)
        for c in candidates
        if c.role != "baseline" and len(base) >= 2 and len(by_label[c.label]) >= 2
    }
    variants = [c.label for c in candidates if c.role == "variant" and c.label in comparisons]
    adjusted = dict(zip(variants, stats.holm([comparisons[v].p_value for v in variants]), strict=True))
    table = []
    for candidate in candidates:
        results = tuple(by_label[candidate.label])
        accuracies = [r.test_accuracy for r in results]
        comparison = comparisons.get(candidate.label)
        p = adjusted.get(candidate.label, comparison.p_value if comparison else None)
        if candidate.role == "baseline":
            verdict = "the reference"
        elif comparison is None or p is None:
            verdict = "not tested (needs at least two seeds)"
        else:
            verdict = stats.verdict(comparison, p)
            if candidate.role == "replica":
                verdict += " (but it fits on the test set: not an honest estimate)"
        table.append(
            Row(
                candidate,
                results,
                stats.summarize(accuracies),
                stats.summarize([float(stats.error_count(a)) for a in accuracies]),
                comparison,
                p,
                verdict,
            )
        )
    return table


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
