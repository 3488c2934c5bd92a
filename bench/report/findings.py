"""Findings in plain words, generated from a run's tables.

Each rule states something only when the data supports it: differences must be larger than the
noise (95 % CIs of the medians do not overlap, or a rank test on groups is significant) and
larger than a practical threshold; otherwise the rule stays silent. Every finding cites the
numbers it rests on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from bench.precision import PRECISIONS
from bench.report.plots import axis_value, ok_rows, speedup_table

MIN_EFFECT = 1.10  # ignore differences below 10 %
SAME_WITHIN = 0.03  # "changes nothing": all medians within 3 %


@dataclass(frozen=True)
class Finding:
    rule: str
    text: str


def _x(v: float) -> str:
    return f"{v:.2f}×"


def _ms(v: float) -> str:
    return f"{v * 1e3:.1f} µs" if v < 0.1 else f"{v:.3f} ms"


def _case(r: pd.Series | object, axes: list[str]) -> str:
    parts = []
    for a in axes:
        v = getattr(r, a)
        parts.append(f"{_SHORT.get(a, a)}={axis_value(v)}")
    return ", ".join(parts)


_SHORT = {"in_channels": "C", "out_channels": "K", "batch": "N", "height": "H", "width": "W",
          "kernel": "RxS", "workspace": "workspace"}


def _varying(df: pd.DataFrame, exclude: tuple[str, ...] = ()) -> list[str]:
    from bench.report.plots import varying_axes

    return [a for a in varying_axes(df) if a not in exclude]


def precision_findings(df: pd.DataFrame, layers: pd.DataFrame, slow: str = "fp32",
                       fast: str = "fp16") -> list[Finding]:
    """fp16 vs fp32 per backend: overall speedup, and each case where fp16 is slower."""
    pairs = speedup_table(df, "precision", slow, fast)
    if pairs.empty:
        return []
    out = []
    reformat = _reformat_share(layers)
    for backend, g in pairs.groupby("backend", sort=True):
        axes = [a for a in _varying(df, ("precision",))
                if g[a].map(lambda v: str(axis_value(v))).nunique() > 1]
        sig = g[g["distinct"]]
        faster = sig[sig["speedup"] >= MIN_EFFECT]
        slower = sig[sig["speedup"] <= 1 / MIN_EFFECT]
        if len(g) >= 3:
            out.append(Finding("precision", (
                f"`{backend}`: {fast} is faster than {slow} in {len(faster)} of {len(g)} "
                f"matched cases, slower in {len(slower)}"
                f"{_rest(len(g) - len(faster) - len(slower))} (median speedup "
                f"{_x(g['speedup'].median())}, range {_x(g['speedup'].min())}–"
                f"{_x(g['speedup'].max())}).")))
        for r in faster.itertuples(index=False) if len(g) < 3 else ():
            out.append(Finding("precision", (
                f"`{backend}`: {fast} is {_x(r.speedup)} faster than {slow} for "
                f"{_case(r, axes) or r.name_fast}: {_ms(r.median_ms_fast)} vs "
                f"{_ms(r.median_ms_slow)}.")))
        for r in slower.sort_values("speedup").itertuples(index=False):
            text = (f"`{backend}`: {fast} is slower than {slow} for "
                    f"{_case(r, axes) or r.name_fast}: {_ms(r.median_ms_fast)} vs "
                    f"{_ms(r.median_ms_slow)} ({_x(1 / r.speedup)} the time)")
            share = reformat.get((r.case_key_fast, backend))
            if share is not None and share >= 0.2:
                text += f"; reformat layers take {share * 100:.0f} % of its time"
            out.append(Finding("precision", text + "."))
    return out


def precision_pairs() -> list[tuple[str, str]]:
    """(slower, faster) precisions to compare, from the precision registry: every lower
    precision against fp32, and the quantized ones against fp16 too (the question of users
    choosing int8/fp8: is it faster than fp16 for this layer?)."""
    pairs = [("fp32", p) for p in PRECISIONS if p != "fp32"]
    return pairs + [("fp16", p) for p, info in PRECISIONS.items() if info.quantized]


def _reformat_share(layers: pd.DataFrame) -> dict[tuple[str, str], float]:
    if layers.empty or "kind" not in layers:
        return {}
    tot = layers.groupby(["case_key", "backend"])["median_ms"].sum()
    ref = layers[layers["kind"] == "reformat"].groupby(["case_key", "backend"])["median_ms"].sum()
    return {k: float(ref.get(k, 0.0) / v) for k, v in tot.items() if v > 0}


def alignment_findings(df: pd.DataFrame) -> list[Finding]:
    """At fp16/bf16, cases whose C or K is not a multiple of 8 vs those where both are: compare
    efficiency (% of the roofline bound, or TFLOP/s when no ceilings are known)."""
    ok = ok_rows(df)
    out = []
    metric = "bound_pct" if "bound_pct" in ok and ok["bound_pct"].notna().any() \
        else "tflops"
    unit = "%" if metric == "bound_pct" else " TFLOP/s"
    for (backend, prec), g in ok[ok["precision"].isin(["fp16", "bf16"])].groupby(
            ["backend", "precision"], sort=True):
        g = g[g[metric].notna()]
        aligned = (g["in_channels"] % 8 == 0) & (g["out_channels"] % 8 == 0)
        a, u = g.loc[aligned, metric], g.loc[~aligned, metric]
        if len(a) < 3 or len(u) < 3:
            continue
        from scipy.stats import mannwhitneyu

        p = float(mannwhitneyu(a, u, alternative="greater").pvalue)
        ratio = float(a.median() / u.median())
        if p < 0.01 and ratio >= 1.3:
            out.append(Finding("alignment", (
                f"`{backend}` {prec}: channels not a multiple of 8 cost {_x(ratio)}: median "
                f"efficiency {a.median():.1f}{unit} with C and K multiples of 8 (n={len(a)}) vs "
                f"{u.median():.1f}{unit} otherwise (n={len(u)}; Mann-Whitney p={p:.1g}; "
                "efficiency = "
                + ("% of the roofline bound)." if unit == "%" else "achieved TFLOP/s)."))))
    return out


def workspace_findings(df: pd.DataFrame) -> list[Finding]:
    """Where extra builder workspace stops mattering, from groups that differ only in it."""
    ok = ok_rows(df)
    ok = ok[ok["workspace"].notna()] if "workspace" in ok else ok.iloc[0:0]
    if ok["workspace"].nunique() < 2:
        return []
    keys = [c for c in ["backend", "batch", "in_channels", "out_channels", "height", "width",
                        "kernel", "stride", "padding", "dilation", "groups", "precision",
                        "opt_level", "activation", "bias", "tf32"] if c in ok]
    plateau, worst, spread, groups = [], [], [], 0
    kstr = ok.assign(_k=["|".join(map(str, row)) for row in ok[keys].itertuples(index=False)])
    for _, g in kstr.groupby("_k"):
        g = g.sort_values("workspace")
        if len(g) < 2:
            continue
        groups += 1
        t = g["median_ms"].to_numpy(dtype=float, na_value=np.nan)
        w = g["workspace"].to_numpy(dtype=float, na_value=np.nan)
        rel = t / t[-1]
        k = len(t) - 1
        while k > 0 and abs(rel[k - 1] - 1) <= SAME_WITHIN:
            k -= 1
        plateau.append(w[k])
        spread.append(float(np.max(np.abs(rel[k:] - 1))))
        if k > 0:
            worst.append((float(rel[0]), w[0], w[k]))
    if not groups:
        return []
    w_star = max(plateau)
    mib = lambda v: f"{v / 2**20:g} MiB"  # noqa: E731
    lo, hi = ok["workspace"].min(), ok["workspace"].max()
    if w_star <= lo:
        return [Finding("workspace", (
            f"workspace changes nothing between {mib(lo)} and {mib(hi)}: all medians within "
            f"{max(spread) * 100:.1f} % of the largest workspace's ({groups} group(s))."))]
    text = (f"workspace above {mib(w_star)} changes nothing: from {mib(w_star)} to {mib(hi)} "
            f"medians stay within {max(spread) * 100:.1f} % ({groups} group(s))")
    if worst:
        r, w0, _ = max(worst)
        text += f"; at {mib(w0)} cases are up to {_x(r)} slower"
    return [Finding("workspace", text + ".")]


def _rest(n: int) -> str:
    """The cases a win/loss count leaves out: a difference under 10 % or inside the noise."""
    return f", the other {n} within 10 % or inside the noise" if n else ""


def backend_findings(df: pd.DataFrame) -> list[Finding]:
    """Each pair of backends, per precision: who wins how often, by how much."""
    ok = ok_rows(df)
    names = sorted(ok["backend"].unique())
    out = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            # name the pair "tensorrt vs torch" in that order when both are there
            fast, slow = (a, b) if a == "tensorrt" or b != "tensorrt" else (b, a)
            pairs = speedup_table(df, "backend", slow, fast)
            if pairs.empty:
                continue
            for prec, g in pairs.groupby("precision", sort=True):
                sig = g[g["distinct"]]
                wins = int((sig["speedup"] >= MIN_EFFECT).sum())
                losses = int((sig["speedup"] <= 1 / MIN_EFFECT).sum())
                out.append(Finding("backend", (
                    f"{prec}: `{fast}` is faster than `{slow}` in {wins} of {len(g)} cases and "
                    f"slower in {losses}{_rest(len(g) - wins - losses)} (median time ratio "
                    f"{slow}/{fast} "
                    f"{_x(g['speedup'].median())}, range {_x(g['speedup'].min())}–"
                    f"{_x(g['speedup'].max())}).")))
    return out


def efficiency_findings(df: pd.DataFrame) -> list[Finding]:
    ok = ok_rows(df)
    if "bound_pct" not in ok or ok["bound_pct"].notna().sum() < 3:
        return []
    out = []
    for backend, g in ok[ok["bound_pct"].notna()].groupby("backend", sort=True):
        parts = []
        for side in ("memory", "compute"):
            s = g.loc[g["bound_by"] == side, "bound_pct"]
            if len(s):
                parts.append(f"{side}-bound cases reach a median {s.median():.0f} % "
                             f"(n={len(s)}, best {s.max():.0f} %)")
        out.append(Finding("efficiency", f"`{backend}`: " + "; ".join(parts) + " of the "
                           "roofline bound."))
    return out


def correctness_findings(df: pd.DataFrame) -> list[Finding]:
    bad = df[df["status"] == "check_failed"] if not df.empty else df
    if bad.empty:
        return []
    worst = bad.sort_values("rel_err", ascending=False).iloc[0]
    return [Finding("correctness", (
        f"{len(bad)} result(s) failed the correctness check; worst: `{worst['backend']}` "
        f"{worst['name']} with relative L2 error {worst['rel_err']:.2g}."))]


#: name at most this many cases where cuDNN's heuristic choice is far from the fastest plan
TACTIC_CASES = 10


def tactic_findings(table: pd.DataFrame | None) -> list[Finding]:
    """From ``bench.report.tactics.tactic_table``: how often cuDNN's heuristic choice (its first
    usable plan) is the fastest plan, and each case where it is at least 10 % slower."""
    if table is None or table.empty:
        return []
    t = table[table["heuristic / fastest"].notna()]
    if t.empty:
        return []
    ratio = t["heuristic / fastest"].astype(float)
    slow = t[ratio >= MIN_EFFECT].sort_values("heuristic / fastest", ascending=False)
    out = [Finding("tactics", (
        f"`cudnn`: cuDNN's heuristic choice is the fastest plan in "
        f"{int((ratio <= 1.0).sum())} of {len(t)} cases and at least 10 % slower in "
        f"{len(slow)} (median heuristic/fastest {_x(float(ratio.median()))}, worst "
        f"{_x(float(ratio.max()))}; plan times from the short tactic budget)."))]
    for _, r in slow.head(TACTIC_CASES).iterrows():
        out.append(Finding("tactics", (
            f"`{r['backend']}` {r['case']}: the heuristic's plan `{r['heuristic plan']}` takes "
            f"{_ms(float(r['heuristic ms']))}, the fastest `{r['fastest plan']}` "
            f"{_ms(float(r['fastest ms']))} ({_x(float(r['heuristic / fastest']))} the time; "
            f"{r['usable']} usable plans).")))
    if len(slow) > TACTIC_CASES:
        out.append(Finding("tactics", f"… and {len(slow) - TACTIC_CASES} more cases where the "
                           "heuristic's plan is at least 10 % slower (see the tactic table)."))
    return out


def findings(df: pd.DataFrame, layers: pd.DataFrame,
             tactics: pd.DataFrame | None = None) -> list[Finding]:
    """All findings of a run, most important first; ``tactics`` is the cudnn tactic table."""
    from bench.report.tables import numpy_frame

    if df.empty:
        return []
    df, layers = numpy_frame(df), numpy_frame(layers)
    out: list[Finding] = []
    out += correctness_findings(df)
    for slow, fast in precision_pairs():
        out += precision_findings(df, layers, slow, fast)
    out += alignment_findings(df)
    out += workspace_findings(df)
    out += backend_findings(df)
    out += efficiency_findings(df)
    out += tactic_findings(tactics)
    return out
