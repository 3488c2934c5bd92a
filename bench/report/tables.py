"""Results → pandas DataFrames.

``Run.records`` (one row per case × backend), ``Run.layers`` (one row per profiled layer or
kernel) and ``Run.samples`` (long format: one row per sample of every pass) are tidy frames:
no column is named after a DataFrame method or attribute (``cov_frac``, ``timer_mode``,
``flag_names``, ``n_samples``), units end names (``_ms``, ``_s``, ``_pct``, ``_frac``), and
columns have pandas' nullable dtypes (``Int64``, ``Float64``, ``boolean``, ``string``), so a
missing value is ``pd.NA`` whatever the column. Pairs (kernel, stride, padding, dilation) are
tuples.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bench.record import LayerRow, Record
from bench.roofline import Peak, bound_ms, ceilings, math_precision
from bench.store import load_layers, load_records, read_run_info

SPEC_COLUMNS = ["batch", "in_channels", "out_channels", "height", "width", "kernel", "stride",
                "padding", "dilation", "groups", "bias", "activation", "precision", "workspace",
                "opt_level", "tf32"]
#: Stats field → column (ms fields get ``_ms``; fractions ``_frac``; the count ``n_samples``)
STAT_COLUMNS = {"min": "min_ms", "median": "pass_median_ms", "mean": "mean_ms", "p90": "p90_ms",
                "p95": "p95_ms", "p99": "p99_ms", "max": "max_ms", "std": "std_ms",
                "cov": "cov_frac", "rse": "rse_frac", "median_ci_low": "median_ci_low_ms",
                "median_ci_high": "median_ci_high_ms", "n": "n_samples"}
PAIR_COLUMNS = ("kernel", "stride", "padding", "dilation")
#: nullable dtype by column; columns not named here are inferred (``convert_dtypes``)
DTYPES = {
    **{c: "Int64" for c in ("case_index", "batch", "in_channels", "out_channels", "height",
                            "width", "groups", "workspace", "opt_level", "flops", "bias_flops",
                            "activation_flops", "bytes_min", "n_samples", "passes",
                            "kernel_sets", "probes", "placements", "plan_bytes",
                            "check_images", "check_batch", "iters_per_sample",
                            "sm_clock_mhz", "calls", "iterations",
                            "pass_index", "sample_index")},
    **{c: "Float64" for c in ("intensity", "min_ms", "median_ms", "pass_median_ms", "mean_ms",
                              "p90_ms", "p95_ms", "p99_ms", "max_ms", "std_ms", "cov_frac",
                              "rse_frac", "median_ci_low_ms", "median_ci_high_ms",
                              "interval_low_ms", "interval_high_ms", "pass_spread_pct",
                              "placement_spread_pct",
                              "tflops", "gbps", "build_s", "rel_err", "check_coverage_frac",
                              "wall_s", "peak_tflops", "bandwidth_gbps", "bound_ms",
                              "bound_pct", "share_frac", "total_ms", "ms")},
    **{c: "boolean" for c in ("bias", "tf32", "cache_hit", "check_passed", "converged",
                              "throttled")},
}


@dataclass
class Run:
    """A loaded run: ``info`` (run.json) and three DataFrames: ``records`` (one row per case ×
    backend), ``layers`` (per-layer profile rows) and ``samples`` (long format)."""

    dir: Path
    info: dict[str, Any]
    records: pd.DataFrame
    layers: pd.DataFrame
    peak: Peak | None = None  # roofline ceilings used for ``bound_pct`` (None: unknown)
    samples: pd.DataFrame = field(default_factory=lambda: samples_frame([]))


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
    # FLOPs from the spec (derived, never stored twice): records written before the count
    # became conventional stored bias adds in ``derived.flops``
    sp = r.spec
    row.update(flops=sp.flops, bias_flops=sp.bias_flops, activation_flops=sp.activation_flops,
               bytes_min=sp.bytes_min, intensity=sp.intensity)
    st = r.stats.model_dump() if r.stats else {}
    for key, col in STAT_COLUMNS.items():
        row[col] = st.get(key)
    # the headline median: between passes when the case was repeated, else the pass median
    med = r.median_ms
    row["median_ms"] = med
    iv = r.interval
    row["interval_low_ms"], row["interval_high_ms"], row["interval_covers"] = (
        iv if iv else (None, None, None))
    a = r.aggregate
    row.update(passes=a.passes if a else 1, pass_spread_pct=a.spread_pct if a else None,
               kernel_sets=len(a.kernel_sets) if a else None,
               probes=a.probes if a else sum(1 for p in r.probes if p.status == "ok"))
    t = r.timing
    row.update(placements=len(t.placements) or 1 if t else None,
               placement_spread_pct=t.placement_spread_pct if t else None)
    row["tflops"] = sp.flops / med / 1e9 if med else None
    row["gbps"] = sp.bytes_min / med / 1e6 if med else None
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
    batch = (chk.batch if chk and chk.batch is not None else r.spec.batch) if chk else None
    row.update(rel_err=chk.rel_err if chk else None, check_passed=chk.passed if chk else None,
               check_images=chk.images if chk else None, check_batch=batch,
               check_coverage_frac=chk.images / batch if chk and batch else None)
    t = r.timing
    # the CPU timer has no L2 setting: stored as "n/a", shown as missing
    row.update(timer_mode=t.mode if t else None,
               l2=t.l2 if t and t.l2 not in ("n/a", "") else None,
               iters_per_sample=t.iters_per_sample if t else None,
               converged=t.converged if t else None, wall_s=r.wall_s,
               throttled=bool(r.throttled))
    row["flag_names"] = ", ".join(sorted(set(r.flag_names)))
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


def typed(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with pandas' nullable dtypes (:data:`DTYPES`; others inferred, object columns of
    text become ``string``); tuples and dicts stay objects."""
    df = df.copy()
    for c in df.columns:
        want = DTYPES.get(c)
        if want is not None:
            col = df[c]
            if want == "Int64":
                col = pd.to_numeric(col.astype("object").where(col.notna(), None))
            elif want == "Float64":
                col = pd.to_numeric(col.astype("object").where(col.notna(), None),
                                    errors="coerce")
            df[c] = col.astype(want)
        elif df[c].map(lambda v: isinstance(v, (tuple, list, dict))).any():
            continue
        else:
            df[c] = df[c].astype("object").where(df[c].notna(), None).astype("string")
    return df


def numpy_frame(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with numpy dtypes, for code that wants them (matplotlib, numpy arithmetic):
    ``Float64`` → float64 with NaN; ``Int64`` → int64 (float64 with NaN when a value is
    missing); ``boolean`` and ``string`` → objects holding Python bools and strs, a missing
    value as None."""
    out = df.copy()
    for c in out.columns:
        dt = out[c].dtype
        if isinstance(dt, pd.Float64Dtype):
            out[c] = out[c].to_numpy(dtype="float64", na_value=float("nan"))
        elif isinstance(dt, pd.Int64Dtype):
            # numbers stay numbers (plot positions): int64, or float64 with NaN when missing
            out[c] = (out[c].to_numpy(dtype="int64") if not out[c].isna().any()
                      else out[c].to_numpy(dtype="float64", na_value=float("nan")))
        elif isinstance(dt, (pd.BooleanDtype, pd.StringDtype)):
            out[c] = pd.Series([None if v is pd.NA else (v.item() if hasattr(v, "item") else v)
                                for v in out[c]], index=out.index, dtype=object)
    return out


def records_frame(records: list[Record]) -> pd.DataFrame:
    return typed(pd.DataFrame([_flatten(r) for r in records]))


def samples_frame(records: list[Record]) -> pd.DataFrame:
    """Long format: one row per sample (per-inference ms) of every pass of every record,
    columns ``case_key``, ``name``, ``backend``, ``pass_index`` (0-based; 0 for an unrepeated
    case), ``sample_index`` (0-based, in the order taken) and ``ms`` (per inference)."""
    rows = []
    for r in records:
        passes = ([(p.index, p.samples_ms) for p in r.passes] if r.passes
                  else [(0, r.samples_ms)])
        for idx, ms in passes:
            rows += [(r.case_key, r.name, r.backend, idx, i, v) for i, v in enumerate(ms)]
    df = pd.DataFrame(rows, columns=["case_key", "name", "backend", "pass_index",
                                     "sample_index", "ms"])
    return typed(df)


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


#: layers.jsonl field → column (``share`` is a fraction of the summed medians)
LAYER_COLUMNS = {"name": "name", "median_ms": "median_ms", "share": "share_frac",
                 "type": "type", "calls": "calls", "total_ms": "total_ms",
                 "iterations": "iterations", "extra": "extra"}


def layers_frame(rows: list[LayerRow]) -> pd.DataFrame:
    """One row per layer (TensorRT) or kernel (torch) of each profile; the per-inference
    times themselves (``times_ms``) stay in layers.jsonl and the trtexec export."""
    flat = []
    for row in rows:
        for layer in row.layers:
            d = layer.model_dump()
            flat.append({"case_key": row.case_key, "backend": row.backend,
                         "pass_index": row.pass_index,
                         **{col: d.get(f) for f, col in LAYER_COLUMNS.items()}})
    df = pd.DataFrame(flat, columns=["case_key", "backend", "pass_index",
                                     *LAYER_COLUMNS.values()])
    df["kind"] = [layer_kind(str(n), t if isinstance(t, str) else None)
                  for n, t in zip(df["name"], df["type"])]
    return typed(df)


def add_roofline(df: pd.DataFrame, peak: Peak | None, gpu: dict[str, Any] | None) -> pd.DataFrame:
    """Columns ``ceiling`` (which precision's peak), ``peak_tflops``, ``bandwidth_gbps``,
    ``bound_ms``, ``bound_by`` (compute/memory) and ``bound_pct`` (100 = at the hardware
    limit). All None for a CPU run or a GPU without known ceilings."""
    df = df.copy()
    cols = {c: [None] * len(df) for c in ("ceiling", "peak_tflops", "bandwidth_gbps",
                                           "bound_ms", "bound_by", "bound_pct")}
    if peak is not None and not df.empty:
        for i, r in enumerate(df.itertuples(index=False)):
            if r.device != "cuda" or pd.isna(r.flops):
                continue
            prec = math_precision(str(r.precision), bool(pd.notna(r.tf32) and r.tf32), gpu)
            tf = peak.tflops.get(prec)
            if not tf:
                continue
            b, side = bound_ms(float(r.flops), float(r.bytes_min), tf, peak.bandwidth_gbps)
            cols["ceiling"][i], cols["peak_tflops"][i] = prec, tf
            cols["bandwidth_gbps"][i], cols["bound_ms"][i], cols["bound_by"][i] = \
                peak.bandwidth_gbps, b, side
            med = r.median_ms
            if med is not None and pd.notna(med) and med > 0:
                cols["bound_pct"][i] = 100.0 * b / float(med)
    for c, v in cols.items():
        df[c] = pd.Series(v, index=df.index, dtype="string" if c in ("ceiling", "bound_by")
                          else "Float64")
    return df


def load(run_dir: str | Path) -> Run:
    """Load ``run_dir`` (run.json + records.jsonl + layers.jsonl) into DataFrames."""
    run_dir = Path(run_dir)
    info = read_run_info(run_dir)
    gpu = info.get("gpu")
    peak = ceilings(run_dir, gpu) if gpu else None
    recs = load_records(run_dir)
    records = add_roofline(records_frame(recs), peak, gpu)
    return Run(dir=run_dir, info=info, records=records, layers=layers_frame(load_layers(run_dir)),
               peak=peak, samples=samples_frame(recs))


def samples(run_dir: str | Path) -> dict[tuple[str, str], list[float]]:
    """Raw per-sample milliseconds by (case key, backend), for rank tests and trace exports."""
    return {(r.case_key, r.backend): list(r.samples_ms) for r in load_records(Path(run_dir))}
