"""ANOVA for the reproducibility benchmarks: is a heuristic case's shift fixed per process,
an offset per build, or placement scatter?

Placement k draws its buffer layout from ``k`` (``TorchEngine._relocate_impl`` seeds its spacers
with the placement index), so placement k is the same draw in every process and build: the
placement index is a crossed factor, not a replicate. Both designs here keep it as a factor;
each effect is tested against the interaction that holds its own scatter.
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


def f_test(ss_num: float, df_num: int, ss_den: float, df_den: int,
           scale: float) -> tuple[float, float]:
    """F = (ss_num / df_num) / (ss_den / df_den) and its upper-tail p. ``scale``: the data's
    total sum of squares, against which a sum of squares counts as zero (rounding). No effect
    over no scatter (both zero) is nan, not significant; an effect over no scatter is inf."""
    from scipy.stats import f as f_dist

    if df_num < 1 or df_den < 1:
        return math.nan, math.nan
    eps = 1e-12 * scale
    if ss_den <= eps:
        return (math.nan, math.nan) if ss_num <= eps else (math.inf, 0.0)
    f = (ss_num / df_num) / (ss_den / df_den)
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
    scale = float(((a - g) ** 2).sum())
    out: dict[str, float] = {}
    out["F_process"], out["p_process"] = f_test(ss_p, p - 1, ss_r, df_r, scale)
    out["F_placement"], out["p_placement"] = f_test(ss_k, k - 1, ss_r, df_r, scale)
    return out


def process_build_placement(x: Sequence[Sequence[Sequence[float]]]) -> dict[str, float]:
    """``x[process][build][placement]``, one median per cell: a three-way layout without
    replication. Every effect is tested against the interaction that holds its own scatter,
    and no interactions are pooled (the first build's placements can follow another pattern
    than the later builds', so build × placement is not a residual). Returned, each with p:

    - ``F_process``: process against process × placement (is the shift the same at every
      placement?);
    - ``F_build``: build order against process × build (each build's own offset is random);
    - ``F_interaction``: process × build against process × build × placement (an offset per
      build, which a rebuild in the same process samples);
    - ``F_process_over_builds``: the process effect when builds and placements are both
      random draws (Satterthwaite's quasi-F, (MS_P + MS_PBK) / (MS_PB + MS_PK)): a shift fixed
      per process beyond the builds' own offsets and the placements' process-specific
      scatter, which no rebuild in that process samples;
    - ``F_placement``: placement index against process × placement (does draw k read alike
      in every process?).

    Needs a rectangular array of at least 2 × 2 × 2."""
    a = _array(x, 3, "process_build_placement needs a P x B x K array")
    p, b, k = a.shape
    g = a.mean()
    mp, mb, mk = a.mean(axis=(1, 2)), a.mean(axis=(0, 2)), a.mean(axis=(0, 1))
    mpb, mpk = a.mean(axis=2), a.mean(axis=1)
    ss_p = b * k * float(((mp - g) ** 2).sum())
    ss_b = p * k * float(((mb - g) ** 2).sum())
    ss_k = p * b * float(((mk - g) ** 2).sum())
    ss_pb = k * float(((mpb - mp[:, None] - mb[None, :] + g) ** 2).sum())
    ss_pk = b * float(((mpk - mp[:, None] - mk[None, :] + g) ** 2).sum())
    mbk = a.mean(axis=0)
    ss_bk = p * float(((mbk - mb[:, None] - mk[None, :] + g) ** 2).sum())
    scale = float(((a - g) ** 2).sum())
    ss_pbk = scale - ss_p - ss_b - ss_k - ss_pb - ss_pk - ss_bk
    df_p, df_b, df_k = p - 1, b - 1, k - 1
    df_pb, df_pk, df_pbk = df_p * df_b, df_p * df_k, df_p * df_b * df_k
    out: dict[str, float] = {}
    out["F_process"], out["p_process"] = f_test(ss_p, df_p, ss_pk, df_pk, scale)
    out["F_build"], out["p_build"] = f_test(ss_b, df_b, ss_pb, df_pb, scale)
    out["F_interaction"], out["p_interaction"] = f_test(ss_pb, df_pb, max(ss_pbk, 0.0),
                                                        df_pbk, scale)
    out["F_process_over_builds"], out["p_process_over_builds"] = quasi_f(
        (ss_p / df_p, df_p), (max(ss_pbk, 0.0) / df_pbk, df_pbk),
        (ss_pb / df_pb, df_pb), (ss_pk / df_pk, df_pk), scale / (p * b * k))
    out["F_placement"], out["p_placement"] = f_test(ss_k, df_k, ss_pk, df_pk, scale)
    return out


def quasi_f(a: tuple[float, int], d: tuple[float, int], b: tuple[float, int],
            c: tuple[float, int], scale: float) -> tuple[float, float]:
    """Satterthwaite's quasi-F (MS_a + MS_d) / (MS_b + MS_c), each ``(mean square, df)``, with
    its approximate degrees of freedom: the process effect when builds and placements are
    both random draws, F' = (MS_P + MS_PBK) / (MS_PB + MS_PK)."""
    from scipy.stats import f as f_dist

    num, den = a[0] + d[0], b[0] + c[0]
    eps = 1e-12 * scale
    if den <= eps:
        return (math.nan, math.nan) if num - d[0] <= eps else (math.inf, 0.0)

    def dof(x: tuple[float, int], y: tuple[float, int]) -> float:
        top = (x[0] + y[0]) ** 2
        bottom = x[0] ** 2 / x[1] + y[0] ** 2 / y[1]
        return top / bottom if bottom > 0 else math.inf

    f = num / den
    return f, float(f_dist.sf(f, dof(a, d), dof(b, c)))


def cell(res: dict[str, float], name: str) -> str:
    """``F (p)`` for a table cell; ``n/a`` where the test has no answer."""
    f, pv = res.get(f"F_{name}", math.nan), res.get(f"p_{name}", math.nan)
    if math.isnan(f):
        return "n/a"
    return "inf (0)" if math.isinf(f) else f"{f:.1f} ({pv:.0e})"
