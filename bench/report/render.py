"""``report.md`` and a self-contained ``report.html`` (PNGs embedded) for a run directory.

The report is built once as a list of blocks (heading, paragraph, list, table, image) and
rendered twice, so the Markdown and the HTML always say the same thing.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from bench.report import model as model_rollup
from bench.report import plots, tactics
from bench.report.findings import findings, precision_pairs
from bench.report.tables import Run, load

TIMING_DEFINITION = {
    "graph": "per-inference time in steady state: back-to-back enqueues captured in one CUDA "
             "graph, one CUDA event pair per replay, no host transfers (trtexec 11's default)",
    "events": "per-inference time with one CUDA event pair around each enqueue: includes launch "
              "overhead",
    "host": "per-inference time from the host clock (time.perf_counter) around synchronous "
            "runs on the CPU",
}
TOP_N = 10  # rows in the slowest / least efficient tables


# --- tables -------------------------------------------------------------------------------------
def summary_table(df: pd.DataFrame) -> pd.DataFrame:
    cols = {"case_index": "#", "name": "case", "backend": "backend", "status": "status",
            "io_precision": "I/O", "layer_precision": "layers",
            "median_ms": "median ms", "interval_low_ms": "interval low",
            "interval_high_ms": "interval high", "interval_covers": "interval covers",
            "rse_frac": "noise", "tflops": "TFLOP/s", "gbps": "GB/s",
            "bound_pct": "% of bound", "rel_err": "rel err", "checked": "checked",
            "build_s": "build s", "flag_names": "flags"}
    df = df.assign(checked=_checked(df))
    t = df[[c for c in cols if c in df]].rename(columns=cols).sort_values(["#", "backend"])
    if "flags" in t and not t["flags"].fillna("").astype(bool).any():
        t = t.drop(columns="flags")
    # I/O and layer precision only say something when they differ from the precision
    if {"I/O", "layers"} <= set(t) and "precision" in df and (
            (df["io_precision"] == df["precision"]) & (df["layer_precision"] == df["precision"])
    ).all():
        t = t.drop(columns=["I/O", "layers"])
    if "noise" in t:
        t["noise"] = t["noise"].map(lambda v: f"{v * 100:.2f}%" if pd.notna(v) else "")
    if "% of bound" in t and t["% of bound"].isna().all():
        t = t.drop(columns="% of bound")
    return t


def _checked(df: pd.DataFrame) -> pd.Series:
    """The check's coverage per row: ``"1/32"`` (images of the batch compared with the
    float64 reference), empty where nothing was checked."""
    if "check_images" not in df:
        return pd.Series([""] * len(df), index=df.index, dtype="string")
    batch = df["check_batch"] if "check_batch" in df else df["batch"]
    return pd.Series([f"{i}/{b}" if pd.notna(i) and pd.notna(b) else ""
                      for i, b in zip(df["check_images"], batch)], index=df.index,
                     dtype="string")


def slowest_table(df: pd.DataFrame, n: int = TOP_N) -> pd.DataFrame:
    ok = plots.ok_rows(df)
    cols = ["name", "backend", "median_ms", "tflops", "gbps"]
    return ok.sort_values("median_ms", ascending=False)[cols].head(n).rename(
        columns={"name": "case", "median_ms": "median ms", "tflops": "TFLOP/s", "gbps": "GB/s"})


def least_efficient_table(df: pd.DataFrame, n: int = TOP_N) -> pd.DataFrame:
    """Lowest % of the roofline bound; without ceilings (CPU run), lowest achieved TFLOP/s."""
    ok = plots.ok_rows(df)
    if "bound_pct" in ok and ok["bound_pct"].notna().any():
        ok = ok[ok["bound_pct"].notna()]
        cols = ["name", "backend", "median_ms", "bound_ms", "bound_by", "bound_pct",
                "tflops", "intensity"]
        t = ok.sort_values("bound_pct")[cols].head(n)
    else:
        cols = ["name", "backend", "median_ms", "tflops", "intensity"]
        t = ok.sort_values("tflops")[cols].head(n)
    return t.rename(columns={"name": "case", "median_ms": "median ms", "bound_ms": "bound ms",
                             "bound_by": "bound by", "bound_pct": "% of bound",
                             "tflops": "TFLOP/s", "intensity": "FLOP/B"})


# --- blocks -------------------------------------------------------------------------------------
@dataclass
class Block:
    kind: str  # h1 | h2 | p | ul | table | img
    content: Any
    alt: str = ""


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return "" if pd.isna(v) else f"{v:.4g}"
    if v is None or v is pd.NA:
        return ""
    return str(v)


def _md_table(df: pd.DataFrame) -> str:
    head = "| " + " | ".join(map(str, df.columns)) + " |"
    sep = "|" + "|".join("---" for _ in df.columns) + "|"
    rows = ["| " + " | ".join(_fmt(v).replace("|", "\\|") for v in row) + " |"
            for row in df.itertuples(index=False)]
    return "\n".join([head, sep, *rows])


def _inline_html(text: str) -> str:
    """Escape, then turn Markdown `code` spans into <code>."""
    text = re.sub(r"`([^`]*)`", r"<code>\1</code>", html.escape(text, quote=False))
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)


def _html_table(df: pd.DataFrame, css_id: str = "") -> str:
    ident = f' id="{css_id}"' if css_id else ""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>"
                   for row in df.itertuples(index=False))
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def to_markdown(blocks: list[Block]) -> str:
    out: list[str] = []
    for b in blocks:
        if b.kind == "h1":
            out += [f"# {b.content}", ""]
        elif b.kind == "h2":
            out += [f"## {b.content}", ""]
        elif b.kind == "p":
            out += [b.content, ""]
        elif b.kind == "ul":
            out += [f"- {item}" for item in b.content] + [""]
        elif b.kind == "table":
            out += [_md_table(b.content), ""]
        elif b.kind == "img":
            out += [f"![{b.alt}]({Path(b.content).name})", ""]
    return "\n".join(out)


_CSS = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;
color:#222}table{border-collapse:collapse;font-size:12px;margin:1em 0}td,th{border:1px solid #ccc;
padding:2px 6px;text-align:right}th{background:#f0f0f0}td:nth-child(2),td:nth-child(3){
text-align:left}img{max-width:100%;border:1px solid #eee;margin:0.5em 0}code{background:#f4f4f4;
padding:0 3px}"""


def to_html(blocks: list[Block], title: str) -> str:
    parts = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
             f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"]
    for b in blocks:
        if b.kind in ("h1", "h2"):
            ident = re.sub(r"[^a-z0-9]+", "-", str(b.content).lower()).strip("-")
            parts.append(f"<{b.kind} id=\"{ident}\">{_inline_html(b.content)}</{b.kind}>")
        elif b.kind == "p":
            parts.append(f"<p>{_inline_html(b.content)}</p>")
        elif b.kind == "ul":
            parts.append("<ul>" + "".join(f"<li>{_inline_html(i)}</li>" for i in b.content)
                         + "</ul>")
        elif b.kind == "table":
            parts.append(_html_table(b.content, b.alt))
        elif b.kind == "img":
            data = base64.b64encode(Path(b.content).read_bytes()).decode()
            parts.append(f"<figure><img class=\"plot\" alt=\"{html.escape(b.alt)}\" "
                         f"src=\"data:image/png;base64,{data}\"></figure>")
    parts.append("</body></html>")
    return "\n".join(parts)


# --- sections -----------------------------------------------------------------------------------
def _env_lines(run: Run) -> list[str]:
    info = run.info
    host = info.get("host", {})
    lines = [f"suite: `{info.get('suite')}` — command: `{info.get('command')}`",
             f"created: {info.get('created')} on {host.get('host')} "
             f"({host.get('cpu')}, {host.get('cpu_count')} CPUs, Python {host.get('python')})"]
    if info.get("synthetic"):
        lines.append("**synthetic data**: made by a generator for tests, not measured")
    gpu = info.get("gpu")
    if gpu:
        lines.append(f"GPU: {gpu.get('name')} (CC {_cc(gpu.get('cc'))}, {gpu.get('sm_count')} "
                     f"SMs, L2 {int(gpu.get('l2_bytes') or 0) >> 20} MiB, {gpu.get('uuid')})")
        for k in ("driver", "cuda_driver", "cuda_runtime"):
            if gpu.get(k):
                lines.append(f"{k.replace('_', ' ')}: {gpu[k]}")
        clocks = info.get("gpu_clocks_at_start")
        if clocks:
            lines.append("clocks at start: " + ", ".join(f"{k} {v}" for k, v in clocks.items()))
    else:
        lines.append("GPU: none (CPU run)")
    for name, b in (info.get("backends") or {}).items():
        vers = ", ".join(f"{k} {v}" for k, v in (b.get("versions") or {}).items())
        lines.append(f"backend `{name}` on {b.get('device')}: {vers}")
    for name, reason in (info.get("unavailable_backends") or {}).items():
        lines.append(f"backend `{name}` not run: {reason}")
    if run.peak is not None:
        p = run.peak
        roofs = ", ".join(f"{k} {v:g}" for k, v in p.tflops.items())
        lines.append(f"roofline ceilings ({'measured' if p.measured else 'datasheet'} "
                     f"{p.name}): {roofs} TFLOP/s, {p.bandwidth_gbps:g} GB/s — {p.source}")
    return lines


def _cc(cc: Any) -> str:
    if isinstance(cc, (list, tuple)):
        return ".".join(map(str, cc))
    return str(cc)


def _plots(run: Run, out: Path) -> list[tuple[Path, str]]:
    """(png, alt text) of every plot the data supports, written as PNG + SVG under ``out``."""
    df, made = run.records, []

    def add(fig: Any, stem: str, alt: str) -> None:
        if fig is not None:
            made.append((plots.save(fig, out / stem), alt))

    for axis in plots.plot_axes(df):
        add(plots.latency_axis_figure(df, axis), f"latency_vs_{axis}",
            f"median latency vs {axis}")
    add(plots.latency_case_figure(df), "latency_per_case", "median latency per case")
    for slow, fast in precision_pairs():
        add(plots.speedup_figure(df, "precision", slow, fast, f"Speedup of {fast} over {slow}"),
            f"speedup_{fast}_{slow}", f"speedup heatmap {fast} over {slow}")
    backends = sorted(df["backend"].dropna().unique()) if not df.empty else []
    if "tensorrt" in backends and "torch" in backends:
        add(plots.speedup_figure(df, "backend", "torch", "tensorrt",
                                 "Speedup of TensorRT over torch (cuDNN)"),
            "speedup_tensorrt_torch", "speedup heatmap TensorRT over torch")
    add(plots.roofline_figure(df, run.peak), "roofline", "roofline chart")
    add(plots.layers_figure(df, run.layers), "layers", "per-layer time by kind")
    add(plots.build_figure(df), "build", "build time and engine size per case")
    target = (run.info.get("timing") or {}).get("target_rse")
    add(plots.noise_figure(df, target), "noise", "noise (CoV) per case")
    return made


def _flag_lines(df: pd.DataFrame) -> list[str]:
    """Every flagged record with each reason (contention, low clocks, throttling, not
    converged, profile mismatch, selection-unstable)."""
    out = []
    col = df["flag_reasons"] if "flag_reasons" in df else pd.Series([""] * len(df))
    for r, reasons in zip(df.itertuples(), col):
        why = [reasons] if isinstance(reasons, str) and reasons else []
        if why and r.throttled and pd.notna(r.sm_clock_mhz) and "MHz" not in why[0]:
            why.append(f"SM clock {r.sm_clock_mhz:g} MHz")  # the flag's reason may not say
        if not why and r.throttled:
            clk = f" (SM clock {r.sm_clock_mhz:g} MHz)" if pd.notna(r.sm_clock_mhz) else ""
            why.append(f"GPU clocks were throttled{clk}")
        if not why and pd.notna(r.converged) and not r.converged:
            why.append(f"noise target not met (RSE {r.rse_frac * 100:.2f}%)")
        if why:
            out.append(f"`{r.backend}` {r.name}: {'; '.join(why)}")
    return out


def _interval_lines(df: pd.DataFrame) -> list[str]:
    """What the interval beside each median covers, and how kernels were selected."""
    lines = []
    covers = sorted(df["interval_covers"].dropna().unique()) if "interval_covers" in df else []
    if "within pass" in covers:
        lines.append("`interval` (within pass): the 95 % confidence interval of the median of "
                     "one process's samples. It says nothing about another process or build, "
                     "which may select other kernels.")
    placed = [c for c in covers if c.startswith("within pass, over")]
    if placed:
        lines.append("`interval` (within pass, over K placements): the case was timed at K "
                     "places in device memory (`[timing] placements`), the median is that of "
                     "all their samples, and the interval is widened to at least ± t · s / √K "
                     "(s: the placements' medians' standard deviation). It covers where the "
                     "buffers land in this process, not a shift of a whole process. "
                     "`placement_spread_pct` is how far the placements' medians lay apart.")
    if "between passes" in covers:
        n = int(df["passes"].max()) if "passes" in df else 0
        lines.append(f"`interval` (between passes): where another pass's median is expected — "
                     f"the 95 % prediction interval from {n} independent passes (each a fresh "
                     "process and build), widened to cover each pass's own 95 % CI; the "
                     "median is the median of the pass medians.")
    if "probes" in df and df["probes"].fillna(0).max() > 0:
        lines.append("`probes`: selection probes — the case built again where the backend's "
                     "selection starts afresh (torch autotune: a new thread, whose cuDNN "
                     "benchmark cache is empty), timed briefly and its kernels named. They "
                     "count in `kernel_sets`, widen a between-pass interval to cover their "
                     "medians and flag `selection-unstable` cases; the median is the passes' "
                     "alone.")
    if "algo" in df:
        algos = sorted(df["algo"].dropna().unique())
        lines.append("Kernel selection (`algo`): " + ", ".join(f"`{a}`" for a in algos) +
                     " — autotune: cuDNN times its algorithms in each process and keeps the "
                     "fastest (may differ between processes); heuristic: cuDNN's first "
                     "heuristic choice (repeatable, not always the fastest).")
    return lines


def incomplete_note(info: dict[str, Any], recorded: int, run_dir: str | Path) -> str | None:
    """The line saying a run holds fewer results than it planned (None when complete or the
    plan is unknown): an interrupted sweep must not read as a finished one."""
    from bench.plan import planned_results
    from bench.text import escape_controls

    planned = planned_results(info)
    if planned is None or recorded >= planned:
        return None
    return (f"**Incomplete run**: {recorded} of {planned} results (case × backend) recorded; "
            "the sweep was interrupted or is still running (`convbench run SUITE --resume "
            f"{escape_controls(str(run_dir))}` continues it)")


def build_blocks(run: Run, out: Path) -> list[Block]:
    df = run.records
    note = incomplete_note(run.info, len(df), run.dir)
    title = (f"convbench report: {run.info.get('suite')} / {Path(run.dir).name}"
             + (" (incomplete)" if note else ""))
    blocks = [Block("h1", title), *([Block("p", note)] if note else []),
              Block("ul", _env_lines(run))]
    if df.empty:
        return blocks + [Block("p", "No records in this run.")]
    modes = sorted(m for m in df["timer_mode"].dropna().unique())
    blocks.append(Block("h2", "What the numbers mean"))
    blocks.append(Block("ul", [
        f"`{m}`: {TIMING_DEFINITION.get(m, m)}; L2 "
        f"{', '.join(sorted(df.loc[df['timer_mode'] == m, 'l2'].dropna().unique()))}."
        for m in modes
    ] + _interval_lines(df) + [
        "`% of bound`: the roofline bound max(FLOPs / peak FLOP/s, minimum bytes / bandwidth) "
        "divided by the measured median; 100 % is the hardware limit. FLOPs are the "
        "convolution's 2·N·K·(C/g)·R·S·P·Q; bias adds and the activation are not in them.",
        "`checked`: images of the batch compared with the float64 reference (e.g. 1/32: the "
        "first image only); the rest of the batch ran but was not checked."]))
    plans = tactics.load_plans(run.dir)
    tactic_table = tactics.tactic_table(plans, df)
    found = findings(df, run.layers, tactic_table)
    rollup = model_rollup.rollup(run)  # None unless the suite came from a model
    texts = (model_rollup.rollup_findings(rollup) if rollup else []) + [f.text for f in found]
    blocks.append(Block("h2", "Findings"))
    blocks.append(Block("ul", texts) if texts else
                  Block("p", "No finding passed the evidence rules (differences larger than "
                        "the noise and than 10 %)."))
    if rollup is not None:
        blocks += [Block(kind, content, alt) for kind, content, alt in
                   model_rollup.blocks(rollup)]
    blocks += [Block("h2", "Summary"), Block("table", summary_table(df), "summary")]
    for png, alt in _plots(run, out):
        blocks.append(Block("img", png, alt))
    blocks += _tactic_blocks(df, run.layers, plans, tactic_table, out)
    ok = plots.ok_rows(df)
    if not ok.empty:
        blocks += [Block("h2", "Slowest cases"), Block("table", slowest_table(df), "slowest"),
                   Block("h2", "Least efficient cases"),
                   Block("table", least_efficient_table(df), "least-efficient")]
    bad = df[df["status"] != "ok"]
    if not bad.empty:
        blocks += [Block("h2", "Cases that did not pass"), Block("ul", [
            f"{r.status}: `{r.backend}` {r.name}: {r.error}" for r in bad.itertuples()])]
    flags = _flag_lines(df)
    if flags:
        blocks += [Block("h2", "Flagged results"), Block("ul", flags)]
    return blocks


def _table_section(title: str, table: pd.DataFrame, alt: str, text: str) -> list[Block]:
    return [Block("h2", title), Block("p", text), Block("table", table, alt)]


def _tactic_blocks(df: pd.DataFrame, layers: pd.DataFrame, plans: pd.DataFrame,
                   tactic_table: pd.DataFrame, out: Path) -> list[Block]:
    """Backends side by side (with kernel counts), and the cudnn tactic spread + its plot."""
    blocks = []
    side = tactics.backend_table(df, layers)
    if not side.empty:
        blocks += _table_section(
            "Backends side by side", side, "backends",
            "Median ms per case (a status where the case did not pass) and kernels per "
            "inference from each backend's per-layer profile (TensorRT: layers). An empty "
            "count: that record has no per-layer profile (`profile_iters = 0`, or the profile "
            "failed).")
    if not tactic_table.empty:
        blocks += _table_section(
            "cuDNN plans (tactics)", tactic_table, "tactics",
            "Every plan cuDNN's heuristics (modes A, FALLBACK) proposed was built, checked and "
            "timed with a short budget; `heuristic` is cuDNN's first usable plan, `chosen` the "
            "one measured (fastest for algo = autotune). Times in ms.")
        fig = tactics.tactic_figure(plans)
        if fig is not None:
            blocks.append(Block("img", plots.save(fig, out / "tactics"),
                                "cuDNN plan times per case"))
    return blocks


def write_report(run_dir: str | Path, out_root: str | Path = "reports") -> Path:
    """Write ``<out_root>/<suite>/<run-id>/report.md``, ``report.html`` (self-contained) and the
    plots (PNG + SVG); returns the path of report.md."""
    from bench.errors import BenchError
    from bench.paths import check_name, contained, staged_dir

    run = load(run_dir)
    from bench.text import escape_controls

    for col in ("name", "label", "error"):  # report.md is read in terminals too
        if col in run.records:
            run.records[col] = run.records[col].map(
                lambda x: escape_controls(x) if isinstance(x, str) else x)
    suite = check_name(run.info.get("suite"), f"{Path(run_dir) / 'run.json'}: suite")
    src = Path(run_dir).resolve()
    final = contained(out_root, suite, src.name)
    if final == src or src.is_relative_to(final) or (final / "run.json").exists():
        raise BenchError(f"{final}: is a run directory; choose a --out for reports that is "
                         "not the results folder")
    # plots and both reports go into a hidden sibling, which replaces the old report only when
    # all of it is written: an interrupted report never leaves new plots beside an old report.md
    try:
        with staged_dir(final) as out:
            blocks = build_blocks(run, out)
            (out / "report.md").write_text(to_markdown(blocks))
            (out / "report.html").write_text(to_html(blocks, str(blocks[0].content)))
    except OSError as e:
        raise BenchError(f"{final}: cannot write the report ({e.strerror or e}); an earlier "
                         "report there is unchanged") from None
    return final / "report.md"
