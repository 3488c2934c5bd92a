"""Statistics with exact numbers."""

from __future__ import annotations

import math

import pytest

from bench.stats import median_ci, rse, summarize


def test_summary_of_one_to_ten() -> None:
    s = summarize([float(v) for v in range(10, 0, -1)])
    assert s.n == 10
    assert (s.min, s.median, s.mean, s.max) == (1.0, 5.5, 5.5, 10.0)
    assert s.std == pytest.approx(math.sqrt(82.5 / 9), rel=1e-12)
    assert s.cov == pytest.approx(math.sqrt(82.5 / 9) / 5.5, rel=1e-12)
    assert s.rse == pytest.approx(math.sqrt(82.5 / 9) / math.sqrt(10) / 5.5, rel=1e-12)
    assert (s.p90, s.p95, s.p99) == pytest.approx((9.1, 9.55, 9.91))
    # n=10: the 2nd and 9th order statistics give a >= 95 % interval (97.9 %)
    assert (s.median_ci_low, s.median_ci_high) == (2.0, 9.0)


@pytest.mark.parametrize("n,lo,hi", [(6, 1, 6), (20, 6, 15), (100, 40, 61)])
def test_median_ci_order_statistics(n: int, lo: int, hi: int) -> None:
    # values 1..n: the interval is (x_(j), x_(n-j+1)) with binomial j (tables for 95 %)
    assert median_ci([float(v) for v in range(1, n + 1)]) == (float(lo), float(hi))


def test_median_ci_too_few_samples_is_full_range() -> None:
    assert median_ci([3.0, 1.0, 2.0]) == (1.0, 3.0)


def test_rse_edge_cases() -> None:
    assert rse([1.0]) == math.inf
    assert rse([2.0, 2.0, 2.0]) == 0.0
    assert rse([1.0, 3.0]) == pytest.approx(math.sqrt(2) / math.sqrt(2) / 2.0)


def test_single_sample() -> None:
    s = summarize([4.0])
    assert (s.median, s.std, s.median_ci_low, s.median_ci_high) == (4.0, 0.0, 4.0, 4.0)
    with pytest.raises(ValueError):
        summarize([])
