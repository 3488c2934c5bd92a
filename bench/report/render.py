"""``report.md`` for a run directory."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.report.plots import latency_plot
from bench.report.tables import Run, load

TIMING_DEFINITION = {
    "graph": "per-inference time in steady state: back-to-back enqueues captured in one CUDA "
             "graph, one CUDA event pair per replay, no host transfers (trtexec 11's default)",
    "events": "per-inference time with one CUDA event pair around each enqueue: includes launch "
              "overhead",
    "host": "per-inference time from the host clock (time.perf_counter) around synchronous "
            "runs on the CPU",
}


def summary_table(df: pd.DataFrame) -> pd.DataFrame:
    cols = {"case_index": "#", "name": "case", "backend": "backend", "status": "status",
            "median_ms": "median ms", "median_ci_low_ms": "CI low", "median_ci_high_ms":
            "CI high", "rse": "noise", "tflops": "TFLOP/s", "gbps": "GB/s", "rel_err": "rel err",
            "build_s": "build s"}
    t = df[[c for c in cols if c in df]].rename(columns=cols).sort_values(["#", "backend"])
    if "noise" in t:
        t["noise"] = t["noise"].map(lambda v: f"{v * 100:.2f}%" if pd.notna(v) else "")
    return t


def _md_table(df: pd.DataFrame) -> str:
    def fmt(v: object) -> str:
        if isinstance(v, float):
            return "" if pd.isna(v) else f"{v:.4g}"
        return "" if v is None else str(v).replace("|", "\\|")

    head = "| " + " | ".join(df.columns) + " |"
    sep = "|" + "|".join("---" for _ in df.columns) + "|"
    rows = ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, sep, *rows])


def _env_lines(run: Run) -> list[str]:
    info = run.info
    host = info.get("host", {})
    lines = [f"- suite: `{info.get('suite')}` — command: `{info.get('command')}`",
             f"- created: {info.get('created')} on {host.get('host')} "
             f"({host.get('cpu')}, {host.get('cpu_count')} CPUs, Python {host.get('python')})"]
    gpu = info.get("gpu")
    if gpu:
        lines.append(f"- GPU: {gpu.get('name')} (CC {gpu.get('cc')}, {gpu.get('sm_count')} SMs, "
                     f"L2 {int(gpu.get('l2_bytes', 0)) >> 20} MiB, {gpu.get('uuid')})")
    else:
        lines.append("- GPU: none (CPU run)")
    for name, b in (info.get("backends") or {}).items():
        vers = ", ".join(f"{k} {v}" for k, v in (b.get("versions") or {}).items())
        lines.append(f"- backend `{name}` on {b.get('device')}: {vers}")
    for name, reason in (info.get("unavailable_backends") or {}).items():
        lines.append(f"- backend `{name}` not run: {reason}")
    return lines


def write_report(run_dir: str | Path, out_root: str | Path = "reports") -> Path:
    """Write ``<out_root>/<suite>/<run-id>/report.md`` and its plots; returns the path."""
    run = load(run_dir)
    out = Path(out_root) / str(run.info.get("suite")) / Path(run_dir).name
    out.mkdir(parents=True, exist_ok=True)
    df = run.records
    md = [f"# convbench report: {run.info.get('suite')} / {Path(run_dir).name}", "",
          *_env_lines(run), ""]
    if df.empty:
        md.append("No records in this run.")
    else:
        modes = sorted(m for m in df["mode"].dropna().unique())
        md.append("## What the numbers mean")
        md.extend(f"- `{m}`: {TIMING_DEFINITION.get(m, m)}; L2 "
                  f"{', '.join(sorted(df.loc[df['mode'] == m, 'l2'].dropna().unique()))}."
                  for m in modes)
        md += ["", "## Summary", "", _md_table(summary_table(df)), ""]
        png = latency_plot(df, out / "latency.png")
        if png:
            md += ["## Latency", "", f"![latency per case]({png.name})", ""]
        bad = df[df["status"] != "ok"]
        if not bad.empty:
            md += ["## Cases that did not pass", ""]
            md += [f"- {r.status}: `{r.backend}` {r.name}: {r.error}" for r in bad.itertuples()]
            md.append("")
        flagged = df[(df["throttled"]) | (df["converged"] == False)]  # noqa: E712
        if not flagged.empty:
            md += ["## Flagged results", ""]
            for r in flagged.itertuples():
                why = []
                if r.throttled:
                    why.append("GPU clocks were throttled")
                if r.converged is False:
                    why.append(f"noise target not met ({r.rse * 100:.2f}%)")
                md.append(f"- `{r.backend}` {r.name}: {'; '.join(why)}")
            md.append("")
    path = out / "report.md"
    path.write_text("\n".join(md) + "\n")
    return path
