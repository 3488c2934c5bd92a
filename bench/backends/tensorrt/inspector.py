"""TensorRT engine-inspector JSON and per-layer profiler reports → convbench's layer records.

Pure functions, no tensorrt import: they are tested on committed JSON samples.

Inspector layouts (``IEngineInspector.get_engine_information(LayerInformationFormat.JSON)``):

* TensorRT 10.x: ``{"Layers": [...], "Bindings": ["input", "output"]}``
* TensorRT 11.x: ``{"Layers": [...], "I/O Tensors": [{"Name", "IOMode", "DataType",
  "Dimensions", "Location", "IsShapeInferenceIO", "ProfileInfo": [{"Format", ...}]}]}``
  (NVIDIA, "Migrating IEngineInspector Usage from TensorRT 10.x to 11.x").

With ``ProfilingVerbosity.DETAILED`` each layer is an object (``Name``, ``LayerType``,
``Inputs``/``Outputs`` with ``Format/Datatype``, ``TacticName`` or ``TacticValue``...); with
``LAYER_NAMES_ONLY`` it is just the name.
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.backends.base import LayerTime

#: words of a ``Format/Datatype`` or ``DataType`` string → convbench precision names
_PRECISIONS = (
    (re.compile(r"\bBF16\b|\bBFloat16\b", re.IGNORECASE), "bf16"),
    (re.compile(r"\bFP16\b|\bHalf\b", re.IGNORECASE), "fp16"),
    (re.compile(r"\bFP32\b|\bFloat\b", re.IGNORECASE), "fp32"),
    (re.compile(r"\bFP8\b", re.IGNORECASE), "fp8"),
    (re.compile(r"\bInt8\b", re.IGNORECASE), "int8"),
    (re.compile(r"\bInt32\b", re.IGNORECASE), "int32"),
    (re.compile(r"\bInt64\b", re.IGNORECASE), "int64"),
    (re.compile(r"\bBool\b", re.IGNORECASE), "bool"),
)


def precision_of(text: str | None) -> str | None:
    """``"Channel major FP16 format where channel % 8 == 0"`` → ``"fp16"``; None if unknown."""
    if not text:
        return None
    for rx, name in _PRECISIONS:
        if rx.search(text):
            return name
    return None


@dataclass(frozen=True)
class TensorInfo:
    name: str
    format: str | None = None  # TensorRT's format/datatype description
    precision: str | None = None
    dims: list[int] | None = None
    mode: str | None = None  # "input" / "output" for engine I/O tensors


@dataclass
class InspectedLayer:
    name: str
    type: str | None = None  # TensorRT's LayerType string ("CaskConvolution", "Reformat"...)
    tactic: str | None = None  # TacticName, else TacticValue
    reformat: bool = False
    inputs: list[TensorInfo] = field(default_factory=list)
    outputs: list[TensorInfo] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # Kernel, Stride, Groups, ...

    @property
    def precisions(self) -> list[str]:
        """Distinct precisions of the layer's inputs and outputs, in order."""
        seen: list[str] = []
        for t in (*self.inputs, *self.outputs):
            if t.precision and t.precision not in seen:
                seen.append(t.precision)
        return seen

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["precisions"] = self.precisions
        return d


@dataclass
class EngineLayout:
    """What the inspector says about an engine."""

    schema: str  # "10.x" (Bindings), "11.x" (I/O Tensors) or "unknown"
    layers: list[InspectedLayer]
    io: list[TensorInfo]
    raw_json: str | None = None  # the inspector's text, exactly as TensorRT wrote it

    @property
    def reformat_layers(self) -> list[InspectedLayer]:
        return [layer for layer in self.layers if layer.reformat]

    def tactics(self) -> list[dict[str, Any]]:
        """The tactic chosen per engine layer, in execution order, as BuildInfo records them:
        ``{"layer", "type", "tactic"}`` (tactic None when the engine was built without
        ``ProfilingVerbosity.DETAILED``)."""
        return [{"layer": layer.name, "type": layer.type, "tactic": layer.tactic}
                for layer in self.layers]


_LAYER_KEYS = {"Name", "LayerType", "TacticName", "TacticValue", "Inputs", "Outputs"}


def _tensor(d: Mapping[str, Any]) -> TensorInfo:
    fmt = d.get("Format/Datatype")
    return TensorInfo(name=str(d.get("Name", "")), format=fmt, precision=precision_of(fmt),
                      dims=list(d["Dimensions"]) if isinstance(d.get("Dimensions"), list)
                      else None)


def _is_reformat(d: Mapping[str, Any]) -> bool:
    # TensorRT labels inserted format conversions three ways depending on version and fusion
    return (d.get("LayerType") == "Reformat" or d.get("Origin") == "REFORMAT"
            or str(d.get("Name", "")).startswith("Reformatting CopyNode"))


def _layer(item: Any) -> InspectedLayer:
    if isinstance(item, str):  # LAYER_NAMES_ONLY
        return InspectedLayer(name=item, reformat=item.startswith("Reformatting CopyNode"))
    if not isinstance(item, Mapping):
        raise ValueError(f"inspector layer is neither an object nor a name: {item!r}")
    tactic = item.get("TacticName") or item.get("TacticValue")
    return InspectedLayer(
        name=str(item.get("Name", "")), type=item.get("LayerType"),
        tactic=str(tactic) if tactic is not None else None, reformat=_is_reformat(item),
        inputs=[_tensor(t) for t in item.get("Inputs", []) if isinstance(t, Mapping)],
        outputs=[_tensor(t) for t in item.get("Outputs", []) if isinstance(t, Mapping)],
        extra={k: v for k, v in item.items() if k not in _LAYER_KEYS})


def _io_11(d: Mapping[str, Any]) -> TensorInfo:
    profiles = d.get("ProfileInfo") or []
    fmt = profiles[0].get("Format") if profiles and isinstance(profiles[0], Mapping) else None
    mode = str(d.get("IOMode", "")).lower() or None
    return TensorInfo(name=str(d.get("Name", "")), format=fmt,
                      precision=precision_of(str(d.get("DataType", ""))) or precision_of(fmt),
                      dims=list(d["Dimensions"]) if isinstance(d.get("Dimensions"), list)
                      else None, mode=mode)


def parse_engine_info(doc: str | Mapping[str, Any]) -> EngineLayout:
    """Parse inspector JSON of either layout. Raises ValueError on anything else."""
    if isinstance(doc, str):
        try:
            doc = json.loads(doc)
        except json.JSONDecodeError as e:
            raise ValueError(f"inspector output is not JSON: {e}") from None
    if not isinstance(doc, Mapping) or not isinstance(doc.get("Layers"), list):
        raise ValueError("inspector JSON has no 'Layers' list")
    layers = [_layer(item) for item in doc["Layers"]]
    if isinstance(doc.get("I/O Tensors"), list):
        io = [_io_11(t) for t in doc["I/O Tensors"] if isinstance(t, Mapping)]
        schema = "11.x"
    elif isinstance(doc.get("Bindings"), list):
        io = [TensorInfo(name=str(n)) for n in doc["Bindings"]]
        schema = "10.x"
    else:
        io, schema = [], "unknown"
    _fill_io_from_layers(io, layers)
    return EngineLayout(schema=schema, layers=layers, io=io)


def _fill_io_from_layers(io: list[TensorInfo], layers: list[InspectedLayer]) -> None:
    """10.x names its I/O tensors only: take their formats and directions from the layers."""
    produced = {t.name: t for layer in layers for t in layer.outputs}
    consumed = {t.name: t for layer in layers for t in layer.inputs}
    for i, t in enumerate(io):
        if t.mode and t.format:
            continue
        src = consumed.get(t.name) or produced.get(t.name)
        mode = t.mode or ("input" if t.name in consumed else
                          "output" if t.name in produced else None)
        io[i] = TensorInfo(name=t.name, format=t.format or (src.format if src else None),
                           precision=t.precision or (src.precision if src else None),
                           dims=t.dims or (src.dims if src else None), mode=mode)


# --- per-layer profile --------------------------------------------------------------------------
def layer_times(reports: Sequence[Sequence[tuple[str, float]]],
                layout: EngineLayout | None = None) -> list[LayerTime]:
    """IProfiler reports → per-layer medians.

    ``reports`` holds one list per inference of ``(layer_name, ms)`` pairs, in the order
    ``IProfiler.report_layer_time`` received them. A layer reported twice in one inference is
    summed. Layers keep the engine's execution order; reformat layers are kept and labelled
    ``type="Reformat"`` with ``extra["reformat"] = True``. ``share`` is the layer's median over
    the sum of all medians.
    """
    order: list[str] = []
    per_iter: list[dict[str, float]] = []
    calls: dict[str, int] = {}
    for it in reports:
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        for name, ms in it:
            if name not in sums and name not in order:
                order.append(name)
            sums[name] = sums.get(name, 0.0) + float(ms)
            counts[name] = counts.get(name, 0) + 1
        per_iter.append(sums)
        for n, c in counts.items():
            calls[n] = max(calls.get(n, 0), c)
    if not order:
        return []
    times = {n: [it.get(n, 0.0) for it in per_iter] for n in order}
    medians = {n: statistics.median(v) for n, v in times.items()}
    return _with_shares(medians, order, calls, layout, times)


def parse_trtexec_profile(doc: str | Sequence[Any],
                          layout: EngineLayout | None = None) -> list[LayerTime]:
    """``trtexec --exportProfile`` JSON (``[{"count": N}, {"name", "medianMs"|"averageMs",
    ...}, ...]``) → per-layer times, for comparing convbench's profile with trtexec's."""
    if isinstance(doc, str):
        doc = json.loads(doc)
    if not isinstance(doc, Sequence):
        raise ValueError("trtexec profile is not a JSON list")
    medians: dict[str, float] = {}
    order: list[str] = []
    for item in doc:
        if not isinstance(item, Mapping) or "name" not in item:
            continue  # the leading {"count": N}
        ms = item.get("medianMs", item.get("averageMs"))
        if ms is None:
            raise ValueError(f"trtexec profile entry without medianMs/averageMs: {item!r}")
        name = str(item["name"])
        order.append(name)
        medians[name] = float(ms)
    return _with_shares(medians, order, {}, layout)


def _with_shares(medians: Mapping[str, float], order: Iterable[str], calls: Mapping[str, int],
                 layout: EngineLayout | None,
                 times: Mapping[str, list[float]] | None = None) -> list[LayerTime]:
    info = {layer.name: layer for layer in layout.layers} if layout else {}
    total = sum(medians.values()) or 1.0
    out = []
    for n in order:
        layer = info.get(n)
        reformat = layer.reformat if layer else n.startswith("Reformatting CopyNode")
        ltype = "Reformat" if reformat else (layer.type if layer else None)
        extra: dict[str, Any] = {"reformat": reformat}
        if layer is not None:
            extra.update(tactic=layer.tactic, precisions=layer.precisions)
        t = list(times[n]) if times else []
        out.append(LayerTime(name=n, median_ms=medians[n], share=medians[n] / total,
                             calls=calls.get(n, 1), type=ltype, extra=extra,
                             total_ms=sum(t) if t else None,
                             iterations=len(t) if t else None, times_ms=t))
    return out
