"""Results → pandas DataFrames."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from bench.roofline import Peak, bound_ms, ceilings, math_precision
from bench.store import load_layers, load_records, read_run_info

SPEC_COLUMNS = ["batch", "in_channels", "out_channels", "height", "width", "kernel", "stride",
                "padding", "dilation", "groups", "bias", "activation", "precision", "workspace",
                "opt_level", "tf32"]
STAT_COLUMNS = ["min", "median", "mean", "p90", "p95", "p99", "max", "std", "cov", "rse",
                "median_ci_low", "median_ci_high", "n"]


@dataclass
class Run:
    """A loaded run: ``info`` (run.json), ``records`` (one row per case × backend), ``layers``."""

    dir: Path
    info: dict[str, Any]
    records: pd.DataFrame
    layers: pd.DataFrame
    peak: Peak | None = None  # roofline ceilings used for ``pct_of_bound`` (None: unknown)


def _flatten(r: dict[str, Any]) -> dict[str, Any]:
    spec = r.get("spec", {})
    row: dict[str, Any] = {
        "case_index": r.get("case_index"), "case_key": r.get("case_key"), "name": r.get("name"),
        "label": r.get("label", ""), "backend": r.get("backend"), "device": r.get("device"),
        "status": r.get("status"), "error": r.get("error"),
    }
    for c in SPEC_COLUMNS:
        v = spec.get(c)
        row[c] = tuple(v) if isinstance(v, list) else v
    d = r.get("derived", {})
    row.update(flops=d.get("flops"), bytes_min=d.get("bytes_min"), intensity=d.get("intensity"))
    st = r.get("stats") or {}
    for c in STAT_COLUMNS:
        row[f"{c}_ms" if c not in ("cov", "rse", "n") else c] = st.get(c)
    med = st.get("median")
    row["tflops"] = d.get("flops", 0) / med / 1e9 if med else None
    row["gbps"] = d.get("bytes_min", 0) / med / 1e6 if med else None
    b = r.get("build") or {}
    row.update(build_s=b.get("build_s"), plan_bytes=b.get("plan_bytes"),
               cache_hit=b.get("cache_hit"))
    chk = r.get("check") or {}
    row.update(rel_err=chk.get("rel_err"), check_passed=chk.get("passed"))
    t = r.get("timing") or {}
    row.update(mode=t.get("mode"), l2=t.get("l2"), iters_per_sample=t.get("iters_per_sample"),
               converged=t.get("converged"), wall_s=r.get("wall_s"),
               throttled=bool(r.get("throttled")))
    gpu = r.get("gpu") or {}
    row.update(gpu_name=gpu.get("name"), gpu_uuid=gpu.get("uuid"))
    clocks = r.get("clocks") or {}
    after = clocks.get("after") or {}
    row["sm_clock_mhz"] = after.get("sm_mhz", after.get("sm_clock_mhz"))
    return row


def records_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame([_flatten(r) for r in records])


def layer_kind(name: str, type_: str | None) -> str:
    """reformat / convolution / activation / other: what a per-layer bar is coloured by.

    TensorRT names its inserted format conversions "Reformatting CopyNode for ..." (type
    "Reformat"); torch reports aten ops and cuDNN/CUTLASS kernels."""
    text = f"{name} {type_ or ''}".lower()
    if "reformat" in text or "copynode" in text or "nchwtonhwc" in text or "nhwctonchw" in text:
        return "reformat"
    if "conv" in text or "cudnn" in text or "implicit_gemm" in text or "sm80_xmma" in text \
            or "sm90_xmma" in text or "gemm" in text or "fprop" in text:
        return "convolution"
    if "relu" in text or "activation" in text or "pointwise" in text:
        return "activation"
    return "other"


def layers_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    flat = [{"case_key": row["case_key"], "backend": row["backend"], **layer}
            for row in rows for layer in row.get("layers", [])]
    df = pd.DataFrame(flat)
    if not df.empty:
        df["kind"] = [layer_kind(str(n), t if isinstance(t, str) else None)
                      for n, t in zip(df["name"], df.get("type", [None] * len(df)))]
    return df


def add_roofline(df: pd.DataFrame, peak: Peak | None, gpu: dict[str, Any] | None) -> pd.DataFrame:
    """Columns ``ceiling`` (which precision's peak), ``peak_tflops``, ``bandwidth_gbps``,
    ``bound_ms``, ``bound_by`` (compute/memory) and ``pct_of_bound`` (100 = at the hardware
    limit). All None for a CPU run or a GPU without known ceilings."""
    df = df.copy()
    cols = {c: [None] * len(df) for c in ("ceiling", "peak_tflops", "bandwidth_gbps",
                                           "bound_ms", "bound_by", "pct_of_bound")}
    if peak is not None and not df.empty:
        for i, r in enumerate(df.itertuples(index=False)):
            if r.device != "cuda" or r.flops is None:
                continue
            prec = math_precision(str(r.precision), bool(r.tf32), gpu)
            tf = peak.tflops.get(prec)
            if not tf:
                continue
            b, side = bound_ms(float(r.flops), float(r.bytes_min), tf, peak.bandwidth_gbps)
            cols["ceiling"][i], cols["peak_tflops"][i] = prec, tf
            cols["bandwidth_gbps"][i], cols["bound_ms"][i], cols["bound_by"][i] = \
                peak.bandwidth_gbps, b, side
            med = r.median_ms
            if med is not None and pd.notna(med) and med > 0:
                cols["pct_of_bound"][i] = 100.0 * b / float(med)
    for c, v in cols.items():
        df[c] = pd.Series(v, index=df.index, dtype="object" if c in ("ceiling", "bound_by")
                          else "float64")
    return df


def load(run_dir: str | Path) -> Run:
    """Load ``run_dir`` (run.json + records.jsonl + layers.jsonl) into DataFrames."""
    run_dir = Path(run_dir)
    info = read_run_info(run_dir)
    gpu = info.get("gpu")
    peak = ceilings(run_dir, gpu) if gpu else None
    records = add_roofline(records_frame(load_records(run_dir)), peak, gpu)
    return Run(dir=run_dir, info=info, records=records, layers=layers_frame(load_layers(run_dir)),
               peak=peak)


def samples(run_dir: str | Path) -> dict[tuple[str, str], list[float]]:
    """Raw per-sample milliseconds by (case key, backend), for rank tests and trace exports."""
    return {(r["case_key"], r["backend"]): list(r.get("samples_ms") or [])
            for r in load_records(Path(run_dir))}
