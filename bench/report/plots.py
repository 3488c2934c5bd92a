"""matplotlib plots of a run (Agg backend: no display needed).

Every ``*_figure`` function takes DataFrames from ``bench.report.tables`` and returns a
matplotlib Figure, or None when the data has nothing to show; tests inspect the returned
figure's artists to check that it was drawn from the right data. ``save`` writes PNG + SVG.
Each plot carries its own title, axis labels with units and a legend, so it reads on its own.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from bench.report.tables import SPEC_COLUMNS

# spec columns that can be swept (precision is drawn as separate lines instead)
AXES = [c for c in SPEC_COLUMNS if c != "precision"]
AXIS_LABEL = {"batch": "batch N", "in_channels": "input channels C",
              "out_channels": "output channels K", "height": "input height H",
              "width": "input width W", "kernel": "kernel R×S", "stride": "stride",
              "padding": "padding", "dilation": "dilation", "groups": "groups",
              "bias": "bias", "activation": "activation", "workspace": "workspace (MiB)",
              "opt_level": "builder optimization level", "tf32": "TF32 allowed"}
KIND_COLOR = {"convolution": "#1f77b4", "reformat": "#d62728", "activation": "#2ca02c",
              "other": "#7f7f7f"}
VERDICT_COLOR = {"FAST": "#2ca02c", "SLOW": "#d62728", "SAME": "#7f7f7f",
                 "AMBIGUOUS": "#ff7f0e", "FAILED": "#9467bd"}


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


#: every string drawn as plain text: no mathtext ($...$), no external TeX
PLAIN_TEXT = {"text.parse_math": False, "text.usetex": False}
F = TypeVar("F", bound=Callable[..., Any])


def plain_text(fn: F) -> F:
    """Run a ``*_figure`` function with mathtext off: every Text it makes (titles, tick labels,
    legends) keeps ``parse_math=False``, and its ``tight_layout`` measures plain text."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import matplotlib

        args = tuple(_printable(a) for a in args)
        kwargs = {k: _printable(v) for k, v in kwargs.items()}
        with matplotlib.rc_context(PLAIN_TEXT):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


#: the text columns a figure draws as labels
LABEL_COLUMNS = ("name", "label", "backend")


def _printable(v: Any) -> Any:
    """A DataFrame with control characters in its label columns shown as escapes (a stored
    ``\x1b[2J`` is drawn as those characters, not as a missing glyph and a raw-ESC warning)."""
    if not isinstance(v, pd.DataFrame):
        return v
    from bench.text import escape_controls

    cols = [c for c in LABEL_COLUMNS if c in v]
    if not cols:
        return v
    return v.assign(**{c: v[c].map(lambda x: escape_controls(x) if isinstance(x, str) else x)
                       for c in cols})


def _numpy_frames(fn: Any) -> Any:
    """Plots work on numpy dtypes: DataFrame arguments go through ``numpy_frame``."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from bench.report.tables import numpy_frame

        args = tuple(numpy_frame(a) if isinstance(a, pd.DataFrame) else a for a in args)
        return fn(*args, **kwargs)

    return wrapper


def save(fig: Any, stem: Path) -> Path:
    """Write ``stem.png`` and ``stem.svg``, close the figure, return the PNG path."""
    plt = _plt()
    png = stem.with_suffix(".png")
    import matplotlib
    from matplotlib.text import Text

    # labels are data: "$x_$" is a case name, not TeX. A Text reads text.parse_math when it is
    # made (matplotlib/text.py, Text._reset_visual_defaults: parse_math=None -> rcParams), so
    # the texts made so far are switched off one by one, and the tick labels that drawing makes
    # are made under rc_context (no global setting changes for the caller's own plots)
    try:
        with matplotlib.rc_context(PLAIN_TEXT):
            for text in fig.findobj(Text):
                text.set_parse_math(False)
            fig.savefig(png, dpi=110)
            fig.savefig(stem.with_suffix(".svg"), metadata={"Date": None})
    finally:
        plt.close(fig)
    return png


@_numpy_frames
def ok_rows(df: pd.DataFrame) -> pd.DataFrame:
    if df.empty or "median_ms" not in df:
        return df.iloc[0:0]
    return df[(df["status"] == "ok") & df["median_ms"].notna()]


def axis_value(v: Any) -> Any:
    """A plottable value of a spec column: pairs like (3, 3) → "3×3" (or 3 when square ints
    are not needed), workspace bytes → MiB, None → "default"."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "default"
    if isinstance(v, tuple):
        return "×".join(str(x) for x in v)
    return v


@_numpy_frames
def varying_axes(df: pd.DataFrame) -> list[str]:
    """Spec columns (other than precision) that take more than one value among ok results."""
    ok = ok_rows(df)
    out = []
    for c in AXES:
        if c in ok and ok[c].map(axis_value).nunique(dropna=False) > 1:
            out.append(c)
    return out


def _determines(df: pd.DataFrame, a: str, b: str) -> bool:
    """Every value of axis ``a`` comes with one value of ``b`` (e.g. a [[zip]] of in and out
    channels): then ``b`` moves with ``a`` and must not be held fixed."""
    ka, kb = df[a].map(lambda v: str(axis_value(v))), df[b].map(lambda v: str(axis_value(v)))
    return bool(pd.DataFrame({"a": ka, "b": kb}).groupby("a")["b"].nunique().max() <= 1)


@_numpy_frames
def plot_axes(df: pd.DataFrame) -> list[str]:
    """Varying axes, minus those that only move in lockstep with an earlier one."""
    ok = ok_rows(df)
    out: list[str] = []
    for a in varying_axes(df):
        if not any(_determines(ok, b, a) and _determines(ok, a, b) for b in out):
            out.append(a)
    return out


@_numpy_frames
def twins(df: pd.DataFrame, axis: str) -> list[str]:
    """Axes that move in lockstep with ``axis``."""
    ok = ok_rows(df)
    return [b for b in varying_axes(df) if b != axis and _determines(ok, axis, b)
            and _determines(ok, b, axis)]


def _slice_for(df: pd.DataFrame, axes: list[str], vary: list[str]) -> tuple[pd.DataFrame,
                                                                           dict[str, Any]]:
    """Rows where every varying axis not in ``vary`` is held at one value: the combination
    that leaves the most distinct points along ``vary`` (ties: the most rows). Returns the rows
    and the held values (for the title)."""
    others = [a for a in axes if a not in vary
              and not any(_determines(df, v, a) for v in vary)]
    if not others:
        return df, {}
    keyed = df.assign(**{f"_k_{a}": df[a].map(axis_value).astype(str) for a in others})
    kcols = [f"_k_{a}" for a in others]
    best, best_score = None, (-1, -1)
    for key, g in keyed.groupby(kcols, sort=True):
        npts = len(g[vary].map(axis_value).astype(str).drop_duplicates())
        score = (npts, len(g))
        if score > best_score:
            best, best_score = key, score
    assert best is not None
    key = best if isinstance(best, tuple) else (best,)
    mask = np.ones(len(keyed), dtype=bool)
    for c, v in zip(kcols, key):
        mask &= (keyed[c] == v).to_numpy()
    held = {a: df[mask][a].iloc[0] for a in others}
    return df[mask], held


SHORT = {"batch": "N", "in_channels": "C", "out_channels": "K", "height": "H", "width": "W",
         "kernel": "RxS", "stride": "stride", "padding": "pad", "dilation": "dil",
         "groups": "groups", "activation": "act", "workspace": "ws", "opt_level": "opt"}


def _held_text(held: dict[str, Any]) -> str:
    """"others held at C=32, K=32, ...", wrapped so it fits above a plot."""
    if not held:
        return ""
    import textwrap

    parts = [f"{SHORT.get(a, a)}={axis_value(v)}" for a, v in held.items()]
    return "\n".join(textwrap.wrap("others held at " + ", ".join(parts), 90))


def _log_y(ax: Any) -> None:
    """Log y axis with plain tick labels (0.2, 0.5, 1) instead of 2×10⁻¹."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _x_values(s: pd.Series, axis: str) -> tuple[np.ndarray, list[str] | None]:
    """Numeric x positions and, for categorical axes, tick labels."""
    vals = s.map(axis_value)
    if axis == "workspace":
        num = s.map(lambda v: v / 2**20 if isinstance(v, (int, float)) and not
                    (isinstance(v, float) and math.isnan(v)) else None)
        if num.notna().all():
            return num.to_numpy(dtype=float, na_value=np.nan), None
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
        return vals.to_numpy(dtype=float, na_value=np.nan), None
    cats = sorted(set(map(str, vals)), key=_natural)
    return np.array([cats.index(str(v)) for v in vals], dtype=float), cats


def _natural(text: str) -> tuple[Any, ...]:
    import re

    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text))


# --- latency vs axis ----------------------------------------------------------------------------
@plain_text
@_numpy_frames
def latency_axis_figure(df: pd.DataFrame, axis: str) -> Any | None:
    """Median latency vs ``axis``, one line per (backend, precision), 95 % CI of the median as
    a band; other varying axes held at one value (named in the title)."""
    ok = ok_rows(df)
    axes = varying_axes(df)
    if axis not in axes:
        return None
    sl, held = _slice_for(ok, axes, [axis])
    if sl[axis].map(axis_value).astype(str).nunique() < 2:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    cats: list[str] | None = None
    for (backend, prec), g in sl.groupby(["backend", "precision"], sort=True):
        x, cats_g = _x_values(g[axis], axis)
        cats = cats_g or cats
        order = np.argsort(x, kind="stable")
        x = x[order]
        g = g.iloc[order]
        line, = ax.plot(x, g["median_ms"].to_numpy(dtype=float, na_value=np.nan), marker="o", ms=4,
                        label=f"{backend} {prec}")
        ax.fill_between(x, g["interval_low_ms"].to_numpy(dtype=float, na_value=np.nan),
                        g["interval_high_ms"].to_numpy(dtype=float, na_value=np.nan),
                        alpha=0.25,
                        color=line.get_color(), linewidth=0)
    if cats:
        ax.set_xticks(range(len(cats)), cats)
    else:
        xs = _x_values(sl[axis], axis)[0]
        if xs.min() > 0 and xs.max() / xs.min() >= 8:
            ax.set_xscale("log", base=2)
            ax.set_xticks(sorted(set(xs)), [f"{v:g}" for v in sorted(set(xs))])
    _log_y(ax)
    label = AXIS_LABEL.get(axis, axis) + "".join(f" = {SHORT.get(t, t)}"
                                                  for t in twins(df, axis))
    ax.set_xlabel(label)
    ax.set_ylabel("median latency per inference (ms)")
    title = f"Latency vs {label} (band: 95 % CI of the median)"
    held_text = _held_text(held)
    ax.set_title(title + ("\n" + held_text if held_text else ""), fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, title="backend precision", title_fontsize=8)
    fig.tight_layout()
    return fig


@plain_text
@_numpy_frames
def latency_case_figure(df: pd.DataFrame) -> Any | None:
    """Median latency per case (log scale) with interval whiskers (the 95 % CI within a pass,
    or the between-pass interval of a replicated case): the overview for runs whose
    cases are a list rather than a sweep."""
    ok = ok_rows(df)
    if ok.empty:
        return None
    plt = _plt()
    names = ok.sort_values("case_index").drop_duplicates("case_index")
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(names) + 3), 4.8))
    for (backend, prec), g in ok.groupby(["backend", "precision"], sort=True):
        g = g.sort_values("case_index")
        err = [g["median_ms"] - g["interval_low_ms"], g["interval_high_ms"] - g["median_ms"]]
        ax.errorbar(g["case_index"], g["median_ms"], yerr=err, marker="o", ms=4, capsize=2,
                    linestyle="none", label=f"{backend} {prec}")
    ax.set_xticks(names["case_index"], names["name"], rotation=60, ha="right", fontsize=7)
    _log_y(ax)
    ax.set_xlabel("case")
    ax.set_ylabel("median latency per inference (ms)")
    ax.set_title("Latency per case (whiskers: the median's interval, within pass or between "
                 "passes)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, title="backend precision", title_fontsize=8)
    fig.tight_layout()
    return fig


# --- speedup heatmaps ---------------------------------------------------------------------------
@_numpy_frames
def speedup_table(df: pd.DataFrame, column: str, slow: str, fast: str) -> pd.DataFrame:
    """Pairs of ok results that differ only in ``column`` (``slow`` vs ``fast`` value):
    one row per pair with the spec columns and ``speedup`` = time(slow) / time(fast)."""
    ok = ok_rows(df)
    if column not in ok or ok.empty:
        return pd.DataFrame()
    keys = [c for c in ["backend", *SPEC_COLUMNS] if c != column]
    if column == "precision":
        keys = [k for k in keys if k != "tf32"]
    if column == "backend":
        keys = [k for k in keys if k not in ("workspace", "opt_level")]
    k = ok.assign(**{f"_k_{c}": ok[c].map(lambda v: str(axis_value(v))) for c in keys})
    kc = [f"_k_{c}" for c in keys]
    a = k[k[column] == slow].drop_duplicates(kc)
    b = k[k[column] == fast].drop_duplicates(kc)
    if a.empty or b.empty:
        return pd.DataFrame()
    m = a.merge(b[[*kc, "median_ms", "interval_low_ms", "interval_high_ms", "case_key", "name"]],
                on=kc, suffixes=("_slow", "_fast"))
    if m.empty:
        return m
    m["speedup"] = m["median_ms_slow"] / m["median_ms_fast"]
    # significant only when the two 95 % CIs of the median do not overlap
    m["distinct"] = (m["interval_low_ms_slow"] > m["interval_high_ms_fast"]) | (
        m["interval_high_ms_slow"] < m["interval_low_ms_fast"])
    return m.drop(columns=kc)


@plain_text
@_numpy_frames
def speedup_figure(df: pd.DataFrame, column: str, slow: str, fast: str,
                   title: str) -> Any | None:
    """Heatmap of time(slow)/time(fast) over the two axes with most values (one row when only
    one axis varies); one panel per backend (or precision, for a backend ratio)."""
    pairs = speedup_table(df, column, slow, fast)
    if pairs.empty:
        return None
    axes = [a for a in plot_axes(df) if a != column]
    axes = sorted(axes, key=lambda a: -pairs[a].map(axis_value).astype(str).nunique())
    axes = [a for a in axes if pairs[a].map(axis_value).astype(str).nunique() > 1][:2]
    if not axes:
        return None
    facet = "precision" if column == "backend" else "backend"
    plt = _plt()
    from matplotlib.colors import LogNorm

    facets = sorted(pairs[facet].unique())
    vmax = max(2.0, float(pairs["speedup"].max()), 1 / float(pairs["speedup"].min()))
    norm = LogNorm(vmin=1 / vmax, vmax=vmax)
    fig, axs = plt.subplots(1, len(facets), figsize=(5.2 * len(facets) + 1, 4.6), squeeze=False)
    image = None
    for ax, f in zip(axs[0], facets):
        p = pairs[pairs[facet] == f]
        p, held = _slice_for(p, [a for a in varying_axes(df) if a != column], axes)
        xa = axes[0]
        ya = axes[1] if len(axes) > 1 else None
        xs = sorted(set(p[xa].map(axis_value).astype(str)), key=_natural)
        ys = sorted(set(p[ya].map(axis_value).astype(str)), key=_natural) if ya else [""]
        grid = np.full((len(ys), len(xs)), np.nan)
        for r in p.itertuples(index=False):
            xi = xs.index(str(axis_value(getattr(r, xa))))
            yi = ys.index(str(axis_value(getattr(r, ya)))) if ya else 0
            grid[yi, xi] = r.speedup
        image = ax.imshow(grid, cmap="RdBu", norm=norm, aspect="auto", origin="lower")
        for (yi, xi), v in np.ndenumerate(grid):
            if not np.isnan(v):
                ax.text(xi, yi, f"{v:.2f}×", ha="center", va="center", fontsize=7)
        ax.set_xticks(range(len(xs)), xs)
        ax.set_yticks(range(len(ys)), ys)
        ax.set_xlabel(AXIS_LABEL.get(xa, xa))
        ax.set_ylabel(AXIS_LABEL.get(ya, ya) if ya else "")
        held_text = _held_text(held)
        ax.set_title(f"{facet} {f}" + ("\n" + held_text if held_text else ""), fontsize=8)
    fig.suptitle(title, fontsize=10)
    cb = fig.colorbar(image, ax=axs[0].tolist())
    cb.set_label(f"time({slow}) / time({fast}); > 1: {fast} faster (blue)")
    from matplotlib.ticker import FuncFormatter

    cb.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}×"))
    cb.ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    return fig


# --- roofline -----------------------------------------------------------------------------------
@plain_text
@_numpy_frames
def roofline_figure(df: pd.DataFrame, peak: Any | None) -> Any | None:
    """Achieved TFLOP/s vs arithmetic intensity (log-log) under the device's roofs: one roof
    per precision ceiling present, the bandwidth slope shared."""
    ok = ok_rows(df)
    ok = ok[ok["tflops"].notna() & ok["intensity"].notna()]
    if ok.empty:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 5.0))
    markers = ["o", "s", "^", "D", "v"]
    backends = sorted(ok["backend"].unique())
    colors: dict[str, str] = {}
    for prec, g in ok.groupby("precision", sort=True):
        for bi, backend in enumerate(backends):
            gb = g[g["backend"] == backend]
            if gb.empty:
                continue
            sc = ax.scatter(gb["intensity"], gb["tflops"], marker=markers[bi % len(markers)],
                            s=28, alpha=0.85, label=f"{backend} {prec}",
                            color=colors.get(str(prec)))
            colors.setdefault(str(prec), sc.get_facecolor()[0])
    xs = np.geomspace(max(ok["intensity"].min() / 2, 1e-2), ok["intensity"].max() * 2, 200)
    if peak is not None and "ceiling" in ok and ok["ceiling"].notna().any():
        for ceiling in sorted(ok["ceiling"].dropna().unique()):
            tf = peak.tflops.get(ceiling)
            if not tf:
                continue
            roof = np.minimum(tf, peak.bandwidth_gbps * xs / 1e3)
            ax.plot(xs, roof, "--", color="black", linewidth=1)
            ax.text(xs[-1], tf, f" {ceiling} {tf:g} TFLOP/s", va="bottom", ha="right",
                    fontsize=7)
        src = "measured" if peak.measured else "datasheet"
        ax.text(0.01, 0.99, f"roofs: {peak.name}, {peak.bandwidth_gbps:g} GB/s ({src})",
                transform=ax.transAxes, va="top", fontsize=8)
    else:
        ax.text(0.01, 0.99, "no roofs: no ceilings known for this device (CPU run, or a GPU "
                "missing from the datasheet table: run `convbench calibrate`)",
                transform=ax.transAxes, va="top", fontsize=8)
    ax.set_xscale("log")
    _log_y(ax)
    ax.set_xlabel("arithmetic intensity (FLOP / byte, minimum traffic)")
    ax.set_ylabel("achieved TFLOP/s")
    ax.set_title("Roofline: achieved throughput vs arithmetic intensity")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right", title="backend precision", title_fontsize=8)
    fig.tight_layout()
    return fig


# --- per-layer ----------------------------------------------------------------------------------
@_numpy_frames
def layer_kind_table(records: pd.DataFrame, layers: pd.DataFrame) -> pd.DataFrame:
    """Milliseconds per (case, backend, layer kind), with the case name: the stacked bars."""
    if layers.empty:
        return pd.DataFrame()
    t = layers.groupby(["case_key", "backend", "kind"], as_index=False)["median_ms"].sum()
    names = records[["case_key", "backend", "name", "case_index"]].drop_duplicates()
    return t.merge(names, on=["case_key", "backend"], how="left")


@plain_text
@_numpy_frames
def layers_figure(records: pd.DataFrame, layers: pd.DataFrame, limit: int = 40) -> Any | None:
    """Stacked bars per case × backend: time in convolution, reformat (red, hatched),
    activation and other layers, from the separate per-layer profiling run."""
    t = layer_kind_table(records, layers)
    if t.empty:
        return None
    wide = t.pivot_table(index=["case_index", "name", "backend"], columns="kind",
                         values="median_ms", aggfunc="sum", fill_value=0.0)
    wide = wide.sort_index().iloc[:limit]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(wide) + 3), 4.8))
    x = np.arange(len(wide))
    bottom = np.zeros(len(wide))
    for kind in ["convolution", "reformat", "activation", "other"]:
        if kind not in wide:
            continue
        v = wide[kind].to_numpy(dtype=float, na_value=np.nan)
        ax.bar(x, v, bottom=bottom, color=KIND_COLOR[kind], label=kind,
               hatch="//" if kind == "reformat" else None, edgecolor="white", linewidth=0.5)
        bottom += v
    labels = [f"{n} ({b})" for _, n, b in wide.index]
    ax.set_xticks(x, labels, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("median time per inference (ms)")
    ax.set_title("Per-layer time by kind (separate profiling run)")
    ax.legend(fontsize=8, title="layer kind", title_fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


# --- build cost ---------------------------------------------------------------------------------
@plain_text
@_numpy_frames
def build_figure(df: pd.DataFrame) -> Any | None:
    """Build time per case and, when engines were serialized, plan (engine) size."""
    d = df[df["build_s"].notna()] if "build_s" in df else df.iloc[0:0]
    if d.empty:
        return None
    has_plan = d["plan_bytes"].notna().any()
    plt = _plt()
    fig, axs = plt.subplots(2 if has_plan else 1, 1, squeeze=False, sharex=True,
                            figsize=(max(6.0, 0.3 * d["case_index"].nunique() + 3),
                                     6.4 if has_plan else 3.8))
    backends = sorted(d["backend"].unique())
    width = 0.8 / len(backends)
    cases = sorted(d["case_index"].unique())
    pos = {c: i for i, c in enumerate(cases)}
    for bi, b in enumerate(backends):
        g = d[d["backend"] == b]
        x = np.array([pos[c] for c in g["case_index"]]) + (bi - (len(backends) - 1) / 2) * width
        axs[0][0].bar(x, g["build_s"], width=width, label=b)
        if has_plan:
            axs[1][0].bar(x, g["plan_bytes"].astype(float) / 2**20, width=width, label=b)
    axs[0][0].set_ylabel("build time (s)")
    axs[0][0].set_title("Build cost per case" + (" and engine size" if has_plan else ""))
    axs[0][0].legend(fontsize=8, title="backend", title_fontsize=8)
    if has_plan:
        axs[1][0].set_ylabel("serialized engine (MiB)")
    names = d.drop_duplicates("case_index").set_index("case_index")["name"]
    axs[-1][0].set_xticks(range(len(cases)), [names[c] for c in cases], rotation=60,
                          ha="right", fontsize=7)
    axs[-1][0].set_xlabel("case")
    for row in axs:
        row[0].grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


# --- noise --------------------------------------------------------------------------------------
@plain_text
@_numpy_frames
def noise_figure(df: pd.DataFrame, target_rse: float | None = None) -> Any | None:
    """Coefficient of variation of the samples per case and backend; results that did not
    reach the noise target (or ran throttled) are outlined in red."""
    ok = ok_rows(df)
    ok = ok[ok["cov_frac"].notna()]
    if ok.empty:
        return None
    plt = _plt()
    ok = ok.sort_values(["case_index", "backend"])
    fig, ax = plt.subplots(figsize=(max(6.0, 0.3 * len(ok) + 3), 4.2))
    x = np.arange(len(ok))
    flagged = (ok["converged"] == False) | ok["throttled"].astype(bool)  # noqa: E712
    colors = [VERDICT_COLOR["SLOW"] if f else "#1f77b4" for f in flagged]
    ax.bar(x, ok["cov_frac"].to_numpy(dtype=float, na_value=np.nan) * 100, color=colors)
    ax.set_xticks(x, [f"{n} ({b})" for n, b in zip(ok["name"], ok["backend"])], rotation=60,
                  ha="right", fontsize=7)
    ax.set_ylabel("coefficient of variation of samples (%)")
    ax.set_title("Noise per case (red: noise target missed or clocks throttled)")
    ax.grid(True, axis="y", alpha=0.3)
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color="#1f77b4", label="ok"),
                       Patch(color=VERDICT_COLOR["SLOW"], label="flagged")], fontsize=8)
    fig.tight_layout()
    return fig


# --- compare ------------------------------------------------------------------------------------
@plain_text
@_numpy_frames
def compare_figure(table: pd.DataFrame, threshold: float) -> Any | None:
    """Ratio new/base of the median per case, whiskers from the two medians' 95 % CIs, bars
    coloured by verdict; the ±threshold band is shaded."""
    t = table[table["ratio"].notna()]
    if t.empty:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, max(3.0, 0.28 * len(t) + 1.5)))
    y = np.arange(len(t))
    err = [t["ratio"] - t["ratio_low"], t["ratio_high"] - t["ratio"]]
    colors = [VERDICT_COLOR.get(v, "black") for v in t["verdict"]]
    ax.barh(y, t["ratio"] - 1, left=1, color=colors, xerr=err, ecolor="black", capsize=2)
    ax.axvspan(1 - threshold, 1 + threshold, color="#cccccc", alpha=0.5, zorder=0)
    ax.axvline(1, color="black", linewidth=0.8)
    ax.set_yticks(y, [f"{n} ({b})" for n, b in zip(t["name"], t["backend"])], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("median time new / base (< 1: new is faster)")
    ax.set_title(f"Run comparison (grey band: ±{threshold * 100:g} % threshold)")
    from matplotlib.patches import Patch

    present = [v for v in VERDICT_COLOR if v in set(t["verdict"])]
    ax.legend(handles=[Patch(color=VERDICT_COLOR[v], label=v) for v in present], fontsize=8,
              title="verdict", title_fontsize=8)
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


# kept for callers of the minimal version
@_numpy_frames
def latency_plot(df: pd.DataFrame, path: Path) -> Path | None:
    fig = latency_case_figure(df)
    return None if fig is None else save(fig, path.with_suffix(""))
