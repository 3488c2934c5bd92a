"""``convbench export RUN_DIR``: results as CSV or Parquet tables, and per case the JSON files
trtexec writes with ``--exportTimes``, ``--exportProfile`` and ``--exportLayerInfo``, computed as
trtexec computes them (TensorRT v11.0 samples/common/sampleReporting.cpp: ``exportJSONTrace``,
``Profiler::exportJSONProfile``, ``printLayerInfo``), so NVIDIA's ``samples/trtexec/profiler.py``
and ``tracer.py`` and TREx (trt-engine-explorer) read convbench results as trtexec's.

Tables: missing values are empty cells in CSV; pairs (kernel, stride, padding, dilation) are
lists in Parquet and ``"3x3"``-free JSON lists (``[3, 3]``) in CSV.
"""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.errors import BenchError

if TYPE_CHECKING:  # pandas is imported where used: command modules load with every CLI call
    import pandas as pd

FORMATS = ("csv", "parquet")


def _frames(run_dir: Path, fmt: str) -> dict[str, pd.DataFrame]:
    """The run's three tables ready for ``fmt``: pairs stay lists in Parquet (a list<int64>
    column) and become JSON lists (``[3, 3]``) in CSV; dicts (a layer's ``extra``) become JSON
    text in both; missing values stay missing (empty CSV cells, Parquet nulls)."""
    from bench.report.tables import load

    run = load(run_dir)
    frames = {"records": run.records.copy(), "layers": run.layers.copy(),
              "samples": run.samples.copy()}
    for df in frames.values():
        for c in df.columns:
            if df[c].dtype != object:
                continue
            seq = df[c].map(lambda v: isinstance(v, (tuple, list)))
            if df[c].map(lambda v: isinstance(v, dict)).any():
                df[c] = df[c].map(lambda v: json.dumps(v) if isinstance(v, dict) else v
                                  ).astype("string")
            elif seq.any():
                df[c] = df[c].map(lambda v: (list(v) if fmt == "parquet" else json.dumps(list(v)))
                                  if isinstance(v, (tuple, list)) else None)
    return frames


def export_tables(run_dir: str | Path, out_dir: str | Path, fmt: str = "csv") -> list[Path]:
    """Write ``records.<fmt>``, ``layers.<fmt>`` (when profiled) and ``samples.<fmt>`` (long
    format, when any samples) under ``out_dir``."""
    if fmt not in FORMATS:
        raise BenchError(f"--format {fmt}: expected one of {', '.join(FORMATS)}")
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise BenchError("Parquet export needs pyarrow: pip install pyarrow") from None
    frames = _frames(Path(run_dir), fmt)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    import contextlib
    import os

    from bench.paths import PARTIAL, _sibling

    # every table is written under a hidden name first and renamed only when all are complete:
    # an interrupted export leaves neither a truncated table nor a lone one
    staged: list[tuple[Path, Path]] = []
    try:
        for name, df in frames.items():
            if df.empty and name != "records":
                continue
            path = out / f"{name}.{fmt}"
            tmp = _sibling(path, PARTIAL)
            staged.append((tmp, path))
            if fmt == "csv":
                df.to_csv(tmp, index=False)  # pd.NA → an empty cell
            else:
                df.to_parquet(tmp, index=False)
        for tmp, path in staged:
            os.replace(tmp, path)
            written.append(path)
    except BaseException as e:
        for tmp, _ in staged:
            with contextlib.suppress(OSError):
                tmp.unlink()
        if isinstance(e, OSError):
            raise BenchError(f"{getattr(e, 'filename', None) or out}: cannot write the export "
                             f"({e.strerror or e}); nothing was replaced") from None
        raise
    return written


#: samples/common/sampleReporting.cpp at TensorRT's v11.0 tag (771d8efdf7f9d7b1eeb0864eb05d4dd8a77
#: 55bb5), where the trtexec files below are written
_SRC = "TensorRT v11.0 samples/common/sampleReporting.cpp"


def trtexec_times(samples_ms: list[float], iters_per_sample: int = 1) -> list[dict[str, float]]:
    """trtexec ``--exportTimes`` entries, one per inference (``exportJSONTrace``, TensorRT
    v11.0 samples/common/sampleReporting.cpp lines 356-378: ``startEnqMs`` ... ``latencyMs``,
    latency = h2d + compute + d2h as in ``InferenceTime::latency``, sampleReporting.h lines
    59-62).

    A convbench sample is one timed replay (graph mode) or loop (host mode) of
    ``iters_per_sample`` = K back-to-back inferences, stored as its per-inference mean: each
    sample becomes K entries of that duration, one after another from the replay's start.
    convbench stores no timestamps, so replays are placed back to back on a time line from 0;
    there are no host transfers in convbench's timing, so the H2D/D2H fields are zero-length and
    the enqueue fields mark the replay's start (one launch per replay).
    """
    k = max(1, int(iters_per_sample))
    out, t = [], 0.0
    for ms in samples_ms:
        replay = t
        for _ in range(k):
            start, end = t, t + ms
            out.append({"startEnqMs": replay, "endEnqMs": replay, "startH2dMs": start,
                        "endH2dMs": start, "startComputeMs": start, "endComputeMs": end,
                        "startD2hMs": end, "endD2hMs": end, "h2dMs": 0.0, "computeMs": ms,
                        "d2hMs": 0.0, "latencyMs": ms})
            t = end
    return out


def _layer_get(la: Any, key: str, default: Any = None) -> Any:
    if isinstance(la, dict):
        return la.get(key, default)
    return getattr(la, key, default)


def profile_count(layers: list[Any], fallback: int) -> int:
    """trtexec's ``count``: the inferences the profiler measured (``mUpdatesCount``,
    sampleReporting.cpp lines 382-386: one per pass over the layers). Profiles stored before
    convbench kept ``iterations`` fall back to the configured profile iterations."""
    its = [int(v) for la in layers if (v := _layer_get(la, "iterations")) is not None]
    return max(its) if its else max(1, int(fallback))


def trtexec_profile(layers: list[Any], count: int) -> list[dict[str, Any]]:
    """trtexec ``--exportProfile`` content, field for field as ``Profiler::exportJSONProfile``
    (TensorRT v11.0 samples/common/sampleReporting.cpp lines 446-464) computes it from what
    was measured (sampleReporting.h lines 211-267): ``count`` = profiled inferences; per layer
    ``timeMs`` = the layer's total over them (``getTotalTime(l)``), ``averageMs`` = total /
    number of its times (``getAvgTime``), ``medianMs`` = median of its per-inference times
    (``getMedianTime(l)``), ``percentage`` = its total / the sum of every layer's total × 100.

    ``layers``: convbench's layer rows (dicts or models). Rows stored before convbench kept
    ``times_ms``/``total_ms`` have only a median: their total is median × ``count`` and their
    average the median (:func:`profile_note` says so).
    """
    rows = []
    for la in layers:
        times = [float(v) for v in (_layer_get(la, "times_ms") or [])]
        total = _layer_get(la, "total_ms")
        med = float(_layer_get(la, "median_ms"))
        if times:
            total = sum(times) if total is None else float(total)
            avg, median = total / len(times), statistics.median(times)
        elif total is not None:  # a kernel launched unevenly: total and count, no split
            n = _layer_get(la, "iterations") or count
            total, avg = float(total), float(total) / n
            median = med * int(_layer_get(la, "calls") or 1)
        else:
            total, avg, median = med * count, med, med
        rows.append((str(_layer_get(la, "name")), total, avg, median))
    grand = sum(r[1] for r in rows)
    out: list[dict[str, Any]] = [{"count": count}]
    for name, total, avg, median in rows:
        out.append({"name": name, "timeMs": total, "averageMs": avg, "medianMs": median,
                    "percentage": total / grand * 100 if grand else 0.0})
    return out


def profile_note(layers: list[Any]) -> str:
    """What the exported profile rests on, for the companion note."""
    if all(_layer_get(la, "times_ms") for la in layers):
        return ("profile: every layer's per-inference times were stored; timeMs, averageMs, "
                "medianMs and percentage are trtexec's arithmetic on them.")
    if all(_layer_get(la, "total_ms") is not None for la in layers):
        return ("profile: totals and counts were stored; a kernel launched a different number "
                "of times per inference has medianMs = its per-call median x calls.")
    return ("profile: stored before convbench kept per-inference layer times: timeMs = median "
            "x count, averageMs = medianMs = the stored median; count = the configured "
            "profile iterations.")


# --- --exportLayerInfo -------------------------------------------------------------------------
#: convbench precision → TensorRT's inspector strings (``Format/Datatype`` of a linear NCHW
#: tensor, ``Weights.Type``); the Format strings are keys of TREx's ``_regionFormatDict``
#: (trt-engine-explorer/trex/activations.py, v11.0, lines 29-98)
_TRT_FORMAT = {"fp32": "Row major linear FP32", "fp16": "Row major linear FP16 format",
               "bf16": "Row major linear BFloat16 format"}
_TRT_TYPE = {"fp32": "Float", "fp16": "Half", "bf16": "BF16"}
_TRT_DATATYPE = {"fp32": "FP32", "fp16": "FP16", "bf16": "BF16"}


def _tensor(name: str, dims: list[int], precision: str) -> dict[str, Any]:
    return {"Name": name, "Location": "Device", "Dimensions": list(dims),
            "Format/Datatype": _TRT_FORMAT.get(precision, "Unknown format")}


def layer_info_from_kernels(rec: Any, layers: list[Any]) -> dict[str, Any]:
    """An ``--exportLayerInfo``-style document (the engine inspector's JSON layout,
    ``LayerInformationFormat::kJSON``) for a backend that is not TensorRT: one layer per kernel
    (or CPU op) of its profile, in launch order, named as in its profile so TREx joins them.

    The convolution kernel carries TensorRT's convolution fields (``ParameterType``
    "Convolution", ``Kernel``, ``Stride``, ``Dilation``, ``Groups``, ``OutMaps``,
    ``PrePadding``/``PostPadding``, ``Weights``/``Bias`` with ``Type`` and ``Count``, ``HasBias``,
    ``HasReLU``); the others (layout transforms, bias or activation kernels) are
    ``LayerType`` "kernel". Tensors between kernels are not known to convbench: the chain
    input → kernel → ... → output follows launch order and is labelled as such.
    ``Bindings`` (10.x) and ``I/O Tensors`` (11.x) both name the engine's input and output:
    TREx v11.0 reads ``Bindings`` (trex/parser.py line 44).
    """
    from bench.report.tables import layer_kind

    spec = rec.spec
    prec = spec.precision
    ordered = _launch_order(layers)
    names = [str(_layer_get(la, "name")) for la in ordered]
    kinds = [layer_kind(n, _layer_get(la, "type")) for n, la in zip(names, ordered)]
    conv_at = kinds.index("convolution") if "convolution" in kinds else 0
    out_doc = []
    current = _tensor("input", list(spec.input_shape), prec)
    for i, name in enumerate(names):
        last = i == len(names) - 1
        dims = list(spec.input_shape) if i < conv_at else list(spec.output_shape)
        nxt = (_tensor("output", list(spec.output_shape), prec) if last
               else _tensor(f"{name} output (launch order)", dims, prec))
        layer: dict[str, Any] = {"Name": name, "LayerType": "kernel", "Inputs": [current],
                                 "Outputs": [nxt], "TacticName": name}
        if i == conv_at:
            c_per_g = spec.in_channels // spec.groups
            layer.update({
                "LayerType": "kernel", "ParameterType": "Convolution",
                "Kernel": list(spec.kernel), "PaddingMode": "kEXPLICIT_ROUND_DOWN",
                "PrePadding": list(spec.padding), "PostPadding": list(spec.padding),
                "Stride": list(spec.stride), "Dilation": list(spec.dilation),
                "OutMaps": spec.out_channels, "Groups": spec.groups,
                "Weights": {"Type": _TRT_TYPE[prec], "Count": spec.out_channels * c_per_g
                            * spec.kernel[0] * spec.kernel[1]},
                "Bias": {"Type": _TRT_TYPE[prec], "Count": spec.out_channels if spec.bias else 0},
                "HasBias": int(bool(spec.bias)), "HasReLU": int(spec.activation == "relu"),
                "Activation": "RELU" if spec.activation == "relu" else "NONE"})
        out_doc.append(layer)
        current = nxt
    io = [{"Name": n, "IOMode": mode, "DataType": _TRT_DATATYPE[prec], "Dimensions": list(d),
           "Location": "Device", "IsShapeInferenceIO": False,
           "ProfileInfo": [{"MinShape": list(d), "OptShape": list(d), "MaxShape": list(d),
                            "Format": _TRT_FORMAT[prec]}]}
          for n, mode, d in (("input", "Input", spec.input_shape),
                             ("output", "Output", spec.output_shape))]
    return {"Layers": out_doc, "Bindings": ["input", "output"], "I/O Tensors": io}


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def _write_profile(path: Path, profile: list[dict[str, Any]]) -> None:
    # one object per line, as exportJSONProfile writes it (sampleReporting.cpp lines 448-463)
    path.write_text("[\n" + "\n, ".join(json.dumps(d) for d in profile) + "\n]\n")


def _write_times(path: Path, times: list[dict[str, float]]) -> None:
    # one object per line, as exportJSONTrace writes it (sampleReporting.cpp lines 358-377)
    with path.open("w") as f:
        f.write("[\n")
        for i, d in enumerate(times):
            f.write(("  " if i == 0 else ", ") + json.dumps(d) + "\n")
        f.write("]\n")


def export_trtexec(run_dir: str | Path, out_dir: str | Path) -> list[Path]:
    """Per ok case × backend, the files ``trtexec --exportTimes/--exportProfile/
    --exportLayerInfo`` write, named as TREx's ``utils/process_engine.py`` names them (lines
    143-157): ``<index>-<name>-<backend>.times.json``, ``.profile.json`` (when profiled),
    ``.graph.json`` (layer information), and ``.note.txt`` saying how each was made.

    TensorRT engines: ``.graph.json`` is the engine inspector's JSON exactly as TensorRT wrote
    it; TREx v11.0 reads only the 10.x ``Bindings`` key (trex/parser.py lines 41-50) and refuses
    a graph without bindings (lines 144-149), so when TensorRT wrote 11.x's ``I/O Tensors``
    instead, ``.graph.trex.json`` is the same document with ``Bindings`` added.
    Other backends: :func:`layer_info_from_kernels`.
    """
    from bench.paths import staged_dir
    from bench.store import load_layers, load_records, read_run_info

    run_dir, final = Path(run_dir), Path(out_dir)
    info = read_run_info(run_dir)
    configured = int((info.get("timing") or {}).get("profile_iters") or 1)
    layers: dict[tuple[str, str], Any] = {}
    for row in load_layers(run_dir):
        layers.setdefault((row.case_key, row.backend), row)
    # written into a hidden sibling and renamed when complete: an interrupted export never
    # leaves a folder that looks finished (bench.paths.staged_dir)
    try:
        with staged_dir(final) as out:
            written = _write_trtexec(run_dir, out, layers, configured, load_records)
    except OSError as e:
        raise BenchError(f"{getattr(e, 'filename', None) or final}: cannot write the export "
                         f"({e.strerror or e}); nothing was replaced") from None
    return [final / p.relative_to(out) for p in written]


def _write_trtexec(run_dir: Path, out: Path, layers: dict[tuple[str, str], Any],
                   configured: int, load_records: Any) -> list[Path]:
    written = []
    for r in load_records(run_dir):
        if r.status != "ok" or not r.samples_ms:
            continue
        stem = _slug(f"{r.case_index:04d}-{r.name}-{r.backend}")
        k = r.timing.iters_per_sample if r.timing else 1
        mode = r.timing.mode if r.timing else "?"
        notes = [f"{stem}: convbench {r.backend} results in trtexec's file formats "
                 f"(TensorRT v11.0 samples/common/sampleReporting.cpp).",
                 f"times: {len(r.samples_ms)} samples of K={k} inferences ({mode} mode), each "
                 f"sample split into its K inferences: {len(r.samples_ms) * k} entries, each "
                 "lasting its sample's per-inference mean; no timestamps are stored, so "
                 "samples lie back to back from 0 ms; no host transfers (h2d/d2h = 0)."]
        p = out / f"{stem}.times.json"
        _write_times(p, trtexec_times(r.samples_ms, k))
        written.append(p)
        row = layers.get((r.case_key, r.backend))
        # execution order, as trtexec's profiler lists layers (in the order reported,
        # sampleReporting.cpp lines 380-399); TREx joins profile and graph rows by position
        lay = _launch_order(list(row.layers)) if row is not None else []
        if lay:
            p = out / f"{stem}.profile.json"
            _write_profile(p, trtexec_profile(lay, profile_count(lay, configured)))
            written.append(p)
            notes.append(profile_note(lay) + (f" Profile of pass {row.pass_index + 1}."
                                              if row.pass_index is not None else ""))
        written += _write_graph(out, stem, r, lay, notes)
        p = out / f"{stem}.note.txt"
        p.write_text("\n".join(notes) + "\n")
        written.append(p)
    return written


def _launch_order(layers: list[Any]) -> list[Any]:
    """Layers in execution order: torch's kernels by their recorded launch order (its profile
    lists them by share); TensorRT's are stored in engine order already."""
    return [la for _, la in sorted(enumerate(layers), key=lambda il: (
        (_layer_get(il[1], "extra") or {}).get("launch_order", il[0]), il[0]))]


def _write_graph(out: Path, stem: str, r: Any, lay: list[Any], notes: list[str]) -> list[Path]:
    raw = ((r.build.extra or {}).get("inspector_json") if r.build else None)
    if r.backend.startswith("tensorrt"):
        if not raw:
            notes.append("graph: no inspector JSON was stored with this record (runs before "
                         "convbench kept it): no .graph.json.")
            return []
        p = out / f"{stem}.graph.json"
        p.write_text(raw)
        paths = [p]
        doc = json.loads(raw)
        if isinstance(doc, dict) and "Bindings" not in doc and isinstance(
                doc.get("I/O Tensors"), list):
            doc["Bindings"] = [t.get("Name") for t in doc["I/O Tensors"]]
            p = out / f"{stem}.graph.trex.json"
            p.write_text(json.dumps(doc, indent=2) + "\n")
            paths.append(p)
            notes.append("graph: .graph.json is TensorRT's inspector JSON as written (11.x "
                         "layout, 'I/O Tensors'); .graph.trex.json adds 'Bindings' (their names), "
                         "which TREx v11.0 requires.")
        else:
            notes.append("graph: .graph.json is TensorRT's inspector JSON as written.")
        return paths
    if not lay:
        notes.append("graph: no profile, so no kernels to describe: no .graph.json.")
        return []
    p = out / f"{stem}.graph.json"
    p.write_text(json.dumps(layer_info_from_kernels(r, lay), indent=2) + "\n")
    notes.append("graph: built by convbench in the engine inspector's layout, one layer per "
                 "profiled kernel in launch order; tensors between kernels are not known and "
                 "are named '<kernel> output (launch order)'.")
    return [p]
