"""The report's statistics: summaries with t-based confidence intervals and Welch's t-test.

Which comparisons count as verdicts, and at what level, is `sequential`'s part.

Written out from their formulas (tests check them against scipy on fixed numbers); scipy supplies only the t
distribution. This module imports neither TensorFlow nor MLflow.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats as scipy_stats

CONFIDENCE = 0.95
TEST_IMAGES = 10000


@dataclass(frozen=True)
class Summary:
    """Mean, sample standard deviation (ddof=1) and the t-based confidence interval of the mean."""

    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class Comparison:
    """Welch's t-test of `mean(a) - mean(b)`: the difference, its confidence interval, df and two-sided p."""

    difference: float
    ci_low: float
    ci_high: float
    df: float
    t: float
    p_value: float


def summarize(values: Sequence[float], confidence: float = CONFIDENCE) -> Summary:
    """Summarise one configuration's per-seed values; a single value has no spread (std and CI are NaN)."""
    n = len(values)
    if n == 0:
        raise ValueError("cannot summarise an empty sample")
    mean = math.fsum(values) / n
    if n == 1:
        return Summary(1, mean, math.nan, math.nan, math.nan)
    std = math.sqrt(math.fsum((value - mean) ** 2 for value in values) / (n - 1))
    half = scipy_stats.t.ppf(0.5 + confidence / 2, n - 1) * std / math.sqrt(n)
    return Summary(n, mean, std, mean - half, mean + half)


def welch(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> Comparison:
    """Welch's unequal-variance t-test of mean(a) - mean(b), with the Welch-Satterthwaite degrees of freedom.

    When both samples have zero variance there is no noise to test against: equal means give p = 1 and
    different means p = 0 (scipy answers NaN there; a report needs a verdict).
    """
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"Welch's t-test needs at least two values per sample, got {len(a)} and {len(b)}")
    sa, sb = summarize(a), summarize(b)
    va, vb = sa.std**2 / sa.n, sb.std**2 / sb.n
    difference = sa.mean - sb.mean
    se = math.sqrt(va + vb)
    if se == 0:
        p_value = 1.0 if difference == 0 else 0.0
        return Comparison(
            difference, difference, difference, math.inf, math.copysign(math.inf, difference), p_value
        )
    df = (va + vb) ** 2 / (va**2 / (sa.n - 1) + vb**2 / (sb.n - 1))
    t = difference / se
    p_value = float(2 * scipy_stats.t.sf(abs(t), df))
    half = scipy_stats.t.ppf(0.5 + confidence / 2, df) * se
    return Comparison(difference, difference - half, difference + half, df, t, p_value)


def error_count(accuracy: float, images: int = TEST_IMAGES) -> int:
    """How many test images an accuracy misclassifies (accuracy is a count over `images`, so this is exact)."""
    return round((1 - accuracy) * images)
