"""Summary statistics of timing samples. Pure functions: no I/O, no GPU."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Summary:
    """Statistics of per-inference times in milliseconds."""

    n: int
    min: float
    median: float
    mean: float
    p90: float
    p95: float
    p99: float
    max: float
    std: float  # sample standard deviation (ddof=1); 0 for n == 1
    cov: float  # std / mean
    rse: float  # relative standard error of the mean: std / sqrt(n) / mean
    median_ci_low: float  # distribution-free 95 % confidence interval of the median
    median_ci_high: float

    def to_json(self) -> dict[str, float | int]:
        return asdict(self)


class RunningStats:
    """Count, mean and variance of a stream of values, O(1) per value (Welford's algorithm).

    Welford, "Note on a method for calculating corrected sums of squares and products",
    Technometrics 4 (1962); the same running mean/variance nvbench keeps
    (nvbench/detail/statistics.cuh:120 ``online_mean_variance``) instead of recomputing over
    all samples. ``m2`` is the sum of squared deviations from the running mean.
    """

    __slots__ = ("n", "mean", "m2")

    def __init__(self, values: Iterable[float] = ()) -> None:
        self.n = 0
        self.mean = 0.0
        self.m2 = 0.0
        for v in values:
            self.add(v)

    def add(self, x: float) -> None:
        self.n += 1
        delta = x - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (x - self.mean)

    def variance(self, ddof: int = 1) -> float:
        """``m2 / (n - ddof)``: ddof=1 the sample variance, ddof=0 the biased (MLE) one;
        ``nan`` when ``n <= ddof``."""
        return self.m2 / (self.n - ddof) if self.n > ddof else math.nan

    @property
    def std(self) -> float:
        """Sample standard deviation (ddof=1); ``nan`` with fewer than two values."""
        return math.sqrt(self.variance(1)) if self.n > 1 else math.nan

    @property
    def relstd(self) -> float:
        """Relative standard deviation std / mean; ``inf`` with fewer than two values or a
        zero mean."""
        if self.n < 2 or self.mean == 0:
            return math.inf
        return self.std / self.mean

    @property
    def rse(self) -> float:
        """Relative standard error of the mean std / sqrt(n) / mean; ``inf`` with fewer than
        two values or a zero mean (as ``rse()``)."""
        if self.n < 2 or self.mean == 0:
            return math.inf
        return self.std / math.sqrt(self.n) / self.mean


def rse(samples: Sequence[float]) -> float:
    """Relative standard error of the mean; ``inf`` with fewer than two samples."""
    n = len(samples)
    if n < 2:
        return math.inf
    a = np.asarray(samples, dtype=np.float64)
    mean = float(a.mean())
    if mean == 0:
        return math.inf
    return float(a.std(ddof=1)) / math.sqrt(n) / mean


def _binom_half_ppf(q: float, n: int) -> int:
    """``scipy.stats.binom.ppf(q, n, 0.5)``: the smallest j with P(Binom(n, 1/2) <= j) >= q,
    in exact integer arithmetic (sum of C(n, i) against q * 2**n) up to n = 10 000 (under
    20 ms), so that timing a case never imports scipy.stats (about 2 s per process); scipy
    beyond. The same j as scipy (checked for every n up to 3 000; tests/test_stats.py)."""
    if n > 10_000:
        from scipy import stats as _sps  # here, not at import: CLI errors stay fast

        j = int(_sps.binom.ppf(q, n, 0.5))
        return j - 1 if j >= 1 and _sps.binom.cdf(j - 1, n, 0.5) > q else j  # float guard
    num, den = q.as_integer_ratio()  # exact: q is a binary fraction
    goal = num << n  # cdf(j) >= q  <=>  den * sum(C(n, i) for i <= j) >= num * 2**n
    j = 0
    term = total = 1  # C(n, 0)
    while total * den < goal:
        term = term * (n - j) // (j + 1)
        j += 1
        total += term
    return j


def median_ci(samples: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Order-statistic confidence interval of the median (binomial, no normality assumed).

    For n < 6 no interval reaches 95 % and the range (min, max) is returned.
    """
    a = np.sort(np.asarray(samples, dtype=np.float64))
    n = len(a)
    if n == 0:
        raise ValueError("no samples")
    alpha = 1.0 - confidence
    # j - 1 is the largest rank with P(Binom(n, .5) <= j - 1) < alpha/2 (binom.ppf): then
    # [a[j-1], a[n-j]] covers >= conf
    j = _binom_half_ppf(alpha / 2, n)
    if j < 1:
        return float(a[0]), float(a[-1])
    return float(a[j - 1]), float(a[n - j])


def summarize(samples: Sequence[float]) -> Summary:
    """All statistics of ``samples`` (milliseconds)."""
    a = np.asarray(samples, dtype=np.float64)
    if a.size == 0:
        raise ValueError("no samples")
    mean = float(a.mean())
    std = float(a.std(ddof=1)) if a.size > 1 else 0.0
    lo, hi = median_ci(a)
    p90, p95, p99 = (float(v) for v in np.percentile(a, [90, 95, 99]))
    return Summary(
        n=int(a.size), min=float(a.min()), median=float(np.median(a)), mean=mean,
        p90=p90, p95=p95, p99=p99, max=float(a.max()), std=std,
        cov=std / mean if mean else math.inf, rse=rse(a) if a.size > 1 else math.inf,
        median_ci_low=lo, median_ci_high=hi,
    )


#: two-sided 95 % Student t quantiles by degrees of freedom (scipy gives the same; no import)
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
        9: 2.262, 10: 2.228, 15: 2.131, 20: 2.086, 30: 2.042, 40: 2.021, 60: 2.000,
        120: 1.980}


def t95(dof: int) -> float:
    """The two-sided 95 % Student t quantile for ``dof`` ≥ 1 degrees of freedom: the table
    value at the nearest tabulated ``dof`` at or below it, so never smaller than the true
    quantile up to 120 degrees of freedom; 1.96 above (at most 1 % too small)."""
    if dof in _T95:
        return _T95[dof]
    if dof > 120:
        return 1.96
    return _T95[max(k for k in _T95 if k <= dof)]
