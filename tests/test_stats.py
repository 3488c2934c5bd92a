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


def test_running_stats_of_one_to_ten_exact() -> None:
    from bench.stats import RunningStats

    s = RunningStats(float(v) for v in range(1, 11))
    # every intermediate of Welford's update is a multiple of 1/2 here: exact in binary
    assert (s.n, s.mean, s.m2) == (10, 5.5, 82.5)
    assert s.variance() == 82.5 / 9 and s.variance(ddof=0) == 8.25
    assert s.std == math.sqrt(82.5 / 9)
    assert s.relstd == math.sqrt(82.5 / 9) / 5.5
    assert s.rse == math.sqrt(82.5 / 9) / math.sqrt(10) / 5.5
    assert s.rse == pytest.approx(rse([float(v) for v in range(1, 11)]), rel=1e-15)


def test_running_stats_edge_cases() -> None:
    from bench.stats import RunningStats

    empty, one = RunningStats(), RunningStats([4.0])
    assert empty.n == 0 and math.isnan(empty.variance()) and empty.rse == math.inf
    assert (one.n, one.mean) == (1, 4.0) and math.isnan(one.std)
    assert one.variance(ddof=0) == 0.0
    assert (one.rse, one.relstd) == (math.inf, math.inf)
    const = RunningStats([2.0, 2.0, 2.0])
    assert (const.std, const.rse, const.relstd) == (0.0, 0.0, 0.0)
    zero_mean = RunningStats([-1.0, 1.0])
    assert (zero_mean.rse, zero_mean.relstd) == (math.inf, math.inf)


def test_running_stats_matches_two_pass_and_survives_a_large_offset() -> None:
    import numpy as np

    from bench.stats import RunningStats

    x = np.random.default_rng(7).normal(1.0, 0.01, 20_000)
    s = RunningStats(x.tolist())
    assert s.mean == pytest.approx(float(x.mean()), rel=1e-14)
    assert s.std == pytest.approx(float(x.std(ddof=1)), rel=1e-10)
    # the naive sum-of-squares formula loses every digit here; Welford keeps them
    big = RunningStats((x + 1e9).tolist())
    assert big.std == pytest.approx(float(x.std(ddof=1)), rel=1e-5)


def test_median_ci_ranks_are_scipys_binomial_quantiles() -> None:
    """The exact integer quantile gives scipy.stats.binom's rank (every n up to 300, and larger
    ones up to the 10 000 where median_ci switches to scipy)."""
    import numpy as np
    from scipy import stats as sps

    from bench.stats import _binom_half_ppf

    n = np.array([*range(1, 301), 997, 1000, 2048, 4999, 9999, 10_000])
    j = sps.binom.ppf(0.025, n, 0.5).astype(int)
    j -= (j >= 1) & (sps.binom.cdf(j - 1, n, 0.5) > 0.025)  # the float guard of scipy's path
    assert [_binom_half_ppf(0.025, int(k)) for k in n] == list(j)
    assert median_ci([float(v) for v in range(1, 10_002)]) == (4902.0, 5100.0)  # scipy's path
