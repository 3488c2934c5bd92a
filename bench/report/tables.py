"""Results → pandas DataFrames."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from bench.record import LayerRow, Record
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


def _flatten(r: Record) -> dict[str, Any]:
    spec = r.spec.model_dump(mode="json")
    row: dict[str, Any] = {
        "case_index": r.case_index, "case_key": r.case_key, "name": r.name,
        "label": r.label, "backend": r.backend, "device": r.device,
        "status": r.status, "error": r.error,
    }
    for c in SPEC_COLUMNS:
        v = spec.get(c)
        row[c] = tuple(v) if isinstance(v, list) else v
    d = r.derived
    row.update(flops=d.flops, bytes_min=d.bytes_min, intensity=d.intensity)
    st = r.stats.model_dump() if r.stats else {}
    for c in STAT_COLUMNS:
        row[f"{c}_ms" if c not in ("cov", "rse", "n") else c] = st.get(c)
    # the headline median: between passes when the case was repeated
    med = r.median_ms
    row["median_ms"] = med
    iv = r.interval
    row["interval_low_ms"], row["interval_high_ms"], row["interval_covers"] = (
        iv if iv else (None, None, None))
    a = r.aggregate
    row.update(passes=a.passes if a else 1, pass_spread_pct=a.spread_pct if a else None,
               kernel_sets=len(a.kernel_sets) if a else None)
    row["tflops"] = d.flops / med / 1e9 if med else None
    row["gbps"] = d.bytes_min / med / 1e6 if med else None
    b = r.build
    row.update(build_s=b.build_s if b else None, plan_bytes=b.plan_bytes if b else None,
               cache_hit=b.cache_hit if b else None)
    row["algo"] = r.spec.algo
    row["typing"] = r.spec.typing
    # what crosses the network's boundary vs what the layers compute in (TensorRT may pick
    # another layer precision under weak typing; int8/fp8 cases have fp32/fp16/bf16 I/O)
    row["io_precision"] = r.spec.io_precision
    row["layer_precision"] = layer_precision(r)
    chk = r.check
    row.update(rel_err=chk.rel_err if chk else None, check_passed=chk.passed if chk else None,
               check_images=chk.images if chk else None)
    t = r.timing
    row.update(mode=t.mode if t else None, l2=t.l2 if t else None,
               iters_per_sample=t.iters_per_sample if t else None,
               converged=t.converged if t else None, wall_s=r.wall_s,
               throttled=bool(r.throttled))
    row["flags"] = ", ".join(sorted(set(r.flag_names)))
    row["flag_reasons"] = "; ".join(f"{f.name}: {f.reason}" for f in r.flags)
    gpu = r.gpu or {}
    row.update(gpu_name=gpu.get("name"), gpu_uuid=gpu.get("uuid"))
    after = (r.clocks.after if r.clocks else None) or {}
    row["sm_clock_mhz"] = after.get("sm_mhz", after.get("sm_clock_mhz"))
    return row


def layer_precision(r: Record) -> str:
    """The precisions the engine's (non-reformat) layers run in, as TensorRT's inspector
    reported them; without an inspector, the case's precision (strong typing) or what weak
    typing allowed."""
    seen: list[str] = []
    for la in (r.build.layers if r.build is not None else []):
        if la.get("reformat"):
            continue
        for p in la.get("precisions") or []:
            if isinstance(p, str) and p not in seen:
                seen.append(p)
    if seen:
        return "/".join(seen)
    if r.spec.typing == "weak":
        return f"{r.spec.precision} allowed (weak typing)"
    return r.spec.precision


def records_frame(records: list[Record]) -> pd.DataFrame:
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


def layers_frame(rows: list[LayerRow]) -> pd.DataFrame:
    flat = [{"case_key": row.case_key, "backend": row.backend, **layer.model_dump()}
            for row in rows for layer in row.layers]
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
    return {(r.case_key, r.backend): list(r.samples_ms) for r in load_records(Path(run_dir))}
