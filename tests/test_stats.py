"""The report's statistics against scipy and numpy on fixed numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from mnist_study.report import stats

BASELINE = [0.9791, 0.9802, 0.9785, 0.9810, 0.9797]
VARIANT = [0.9821, 0.9830, 0.9815, 0.9842, 0.9826]
NOISY = [0.9781, 0.9833, 0.9790, 0.9801]


def test_summary_matches_numpy_and_scipy() -> None:
    summary = stats.summarize(BASELINE)
    assert summary.n == 5
    assert summary.mean == pytest.approx(np.mean(BASELINE), abs=1e-15)
    assert summary.std == pytest.approx(np.std(BASELINE, ddof=1), rel=1e-12)
    low, high = scipy_stats.t.interval(0.95, 4, loc=np.mean(BASELINE), scale=scipy_stats.sem(BASELINE))
    assert (summary.ci_low, summary.ci_high) == pytest.approx((low, high), rel=1e-12)


def test_one_value_has_no_spread() -> None:
    summary = stats.summarize([0.98])
    assert summary.mean == 0.98 and math.isnan(summary.std) and math.isnan(summary.ci_low)
    with pytest.raises(ValueError):
        stats.summarize([])


@pytest.mark.parametrize(("a", "b"), [(VARIANT, BASELINE), (NOISY, BASELINE), (BASELINE, NOISY)])
def test_welch_matches_scipy(a: list[float], b: list[float]) -> None:
    comparison = stats.welch(a, b)
    expected = scipy_stats.ttest_ind(a, b, equal_var=False)
    assert comparison.t == pytest.approx(expected.statistic, rel=1e-10)
    assert comparison.p_value == pytest.approx(expected.pvalue, rel=1e-10)
    assert comparison.df == pytest.approx(expected.df, rel=1e-10)
    low, high = expected.confidence_interval(0.95)
    assert (comparison.ci_low, comparison.ci_high) == pytest.approx((low, high), rel=1e-9)
    assert comparison.difference == pytest.approx(np.mean(a) - np.mean(b), abs=1e-15)


def test_welch_without_variance_still_gives_a_verdict() -> None:
    assert stats.welch([0.98, 0.98], [0.98, 0.98]).p_value == 1.0
    assert stats.welch([0.99, 0.99], [0.98, 0.98]).p_value == 0.0
    with pytest.raises(ValueError):
        stats.welch([0.98], [0.97, 0.98])


def test_error_count_is_exact_for_test_set_accuracies() -> None:
    # float32 accuracies as Keras reports them: 9751/10000 is not exactly representable.
    assert stats.error_count(float(np.float32(0.9751))) == 249
    assert stats.error_count(1.0) == 0
    assert [stats.error_count(float(np.float32(k / 10000))) for k in range(9700, 9900)] == list(
        range(300, 100, -1)
    )
