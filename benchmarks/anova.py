"""ANOVA for the reproducibility benchmarks: is a heuristic case's shift fixed per process,
an offset per build, or placement scatter?

Placement k draws its buffer layout from ``k`` (``TorchEngine._relocate_impl`` seeds its spacers
with the placement index), so placement k is the same draw in every process and build: the
placement index is a crossed factor (a block), not a replicate. Both designs here take it out
of the error term before testing anything else.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def _array(x: object, ndim: int, what: str) -> np.ndarray:
    try:
        a = np.asarray(x, dtype=float)
    except ValueError:  # ragged: processes, builds or placements of different lengths
        a = np.empty((0,))
    if a.ndim != ndim or min(a.shape) < 2:
        raise ValueError(f"{what}, each at least 2, rectangular; got {np.shape(a)}")
    return a


def f_test(ss_num: float, df_num: int, ss_den: float, df_den: int) -> tuple[float, float]:
    """F = (ss_num / df_num) / (ss_den / df_den) and its upper-tail p. No effect over no
    scatter (both zero) is nan, not significant; an effect over no scatter is inf, p = 0."""
    from scipy.stats import f as f_dist

    if df_num < 1 or df_den < 1:
        return math.nan, math.nan
    eps = 1e-12 * max(abs(ss_num), abs(ss_den), 1.0)
    num, den = ss_num / df_num, ss_den / df_den
    if den <= eps:
        return (math.nan, math.nan) if num <= eps else (math.inf, 0.0)
    f = num / den
    return f, float(f_dist.sf(f, df_num, df_den))


def process_by_placement(x: Sequence[Sequence[float]]) -> dict[str, float]:
    """``x[process][placement]``, one median per cell: two-way ANOVA without replication.
    ``F_process``: do the processes differ beyond the process × placement residual? Also
    ``F_placement`` (does placement k read alike in every process?). Needs a rectangular
    array of at least 2 × 2."""
    a = _array(x, 2, "process_by_placement needs a P x K array")
    p, k = a.shape
    g = a.mean()
    mp, mk = a.mean(axis=1), a.mean(axis=0)
    ss_p = k * float(((mp - g) ** 2).sum())
    ss_k = p * float(((mk - g) ** 2).sum())
    ss_r = float(((a - mp[:, None] - mk[None, :] + g) ** 2).sum())
    df_r = (p - 1) * (k - 1)
    out: dict[str, float] = {}
    out["F_process"], out["p_process"] = f_test(ss_p, p - 1, ss_r, df_r)
    out["F_placement"], out["p_placement"] = f_test(ss_k, k - 1, ss_r, df_r)
    return out


def process_build_placement(x: Sequence[Sequence[Sequence[float]]]) -> dict[str, float]:
    """``x[process][build][placement]``, one median per cell. The placement index is an
    additive block; the residual (the error) is what is left after process, build order,
    process × build and placement. Returned, each with its p:

    - ``F_process`` and ``F_interaction`` (process × build) against the error;
    - ``F_build``: the build order (the same build index in every process) against process ×
      build, since each build's own offset is random;
    - ``F_process_over_builds``: the process effect against process × build — a shift fixed
      per process beyond the builds' own offsets, which no rebuild in that process samples;
    - ``F_placement`` against the error.

    Needs a rectangular array of at least 2 × 2 × 2."""
    a = _array(x, 3, "process_build_placement needs a P x B x K array")
    p, b, k = a.shape
    g = a.mean()
    mp, mb, mk = a.mean(axis=(1, 2)), a.mean(axis=(0, 2)), a.mean(axis=(0, 1))
    mpb = a.mean(axis=2)
    ss_p = b * k * float(((mp - g) ** 2).sum())
    ss_b = p * k * float(((mb - g) ** 2).sum())
    ss_pb = k * float(((mpb - mp[:, None] - mb[None, :] + g) ** 2).sum())
    ss_k = p * b * float(((mk - g) ** 2).sum())
    ss_e = float(((a - mpb[:, :, None]) ** 2).sum()) - ss_k
    df_p, df_b, df_pb, df_k = p - 1, b - 1, (p - 1) * (b - 1), k - 1
    df_e = p * b * (k - 1) - df_k
    out: dict[str, float] = {}
    out["F_process"], out["p_process"] = f_test(ss_p, df_p, ss_e, df_e)
    out["F_build"], out["p_build"] = f_test(ss_b, df_b, ss_pb, df_pb)
    out["F_interaction"], out["p_interaction"] = f_test(ss_pb, df_pb, ss_e, df_e)
    out["F_process_over_builds"], out["p_process_over_builds"] = f_test(ss_p, df_p, ss_pb,
                                                                       df_pb)
    out["F_placement"], out["p_placement"] = f_test(ss_k, df_k, ss_e, df_e)
    return out


def cell(res: dict[str, float], name: str) -> str:
    """``F (p)`` for a table cell; ``n/a`` where the test has no answer."""
    f, pv = res.get(f"F_{name}", math.nan), res.get(f"p_{name}", math.nan)
    if math.isnan(f):
        return "n/a"
    return "inf (0)" if math.isinf(f) else f"{f:.1f} ({pv:.0e})"
