"""From a model to a suite: every 2-D ``Conv`` node of an ONNX model as a convbench case.

Shapes come from ONNX shape inference (after ``--batch`` / ``--input-shape`` fixed the graph
inputs); attributes follow the ONNX ``Conv`` operator (onnx/docs/Operators.md#Conv: ``pads`` =
[x1_begin, x2_begin, x1_end, x2_end], ``auto_pad`` SAME_UPPER/SAME_LOWER/VALID, ``group``,
``dilations``, ``strides``, ``kernel_shape`` or the weight's shape). Identical layers become one
case with their occurrence ``count`` and node names, so a report can roll the layers up into the
model's total convolution time. ``onnx`` is imported lazily (the ``onnx`` extra).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import BenchError

INSTALL_HINT = "pip install 'trt-convbench[onnx]'"
#: ONNX TensorProto element types a case can be measured in
_PRECISIONS = {1: "fp32", 10: "fp16", 16: "bf16"}  # FLOAT, FLOAT16, BFLOAT16
_SHAPE_RE = re.compile(r"^\d+(x\d+)*$")
#: convolution-like ops this reader does not turn into cases: counted and named in the suite
OTHER_CONVS = ("ConvTranspose", "QLinearConv", "ConvInteger")


@dataclass(frozen=True)
class ConvLayer:
    """One Conv node: its name and the ConvSpec fields it stands for."""

    node: str
    fields: dict[str, Any]


@dataclass
class UniqueLayer:
    """Identical Conv nodes, in the order the model first uses them."""

    fields: dict[str, Any]
    nodes: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.nodes)


@dataclass(frozen=True)
class ModelConvs:
    path: Path
    sha256: str
    inputs: dict[str, list[int]]  # graph input shapes used for inference
    layers: list[ConvLayer]
    skipped: dict[str, int] = field(default_factory=dict)  # OTHER_CONVS op type → nodes

    def unique(self) -> list[UniqueLayer]:
        out: dict[tuple[Any, ...], UniqueLayer] = {}
        for layer in self.layers:
            k = tuple(sorted((n, tuple(v) if isinstance(v, list) else v)
                             for n, v in layer.fields.items()))
            out.setdefault(k, UniqueLayer(dict(layer.fields))).nodes.append(layer.node)
        return list(out.values())


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise BenchError(f"reading ONNX models needs the onnx package: {INSTALL_HINT}") from None
    return onnx


def parse_input_shape(text: str) -> tuple[str, list[int]]:
    """``"input:1x3x224x224"`` → ("input", [1, 3, 224, 224]); the name may contain ':'."""
    name, sep, dims = text.rpartition(":")
    if not sep or not name or not _SHAPE_RE.match(dims.strip()):
        raise BenchError(f"--input-shape {text!r}: expected NAME:DxDx..., e.g. "
                         "input:1x3x224x224")
    shape = [int(d) for d in dims.strip().split("x")]
    if 0 in shape:
        raise BenchError(f"--input-shape {text!r}: dimensions must be positive")
    return name, shape


def _load(path: Path) -> Any:
    onnx = _onnx()
    try:
        # weights are not needed, only their shapes: external data stays on disk
        model = onnx.load(str(path), load_external_data=False)
    except FileNotFoundError:
        raise BenchError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise BenchError(f"{path}: is a directory, not an ONNX model") from None
    except Exception as e:  # noqa: BLE001 - protobuf raises DecodeError, RuntimeError...
        raise BenchError(f"{path}: not an ONNX model ({type(e).__name__}: "
                         f"{_one_line(e) or 'cannot parse'})") from None
    if not model.graph.node or not model.opset_import:
        raise BenchError(f"{path}: not an ONNX model (no graph nodes or opset after parsing)")
    return model


def _dims(type_proto: Any) -> list[int | str] | None:
    """Static dims as ints, symbolic or unknown ones as their name (or '?'); None if no shape."""
    t = type_proto.tensor_type
    if not t.HasField("shape"):
        return None
    out: list[int | str] = []
    for d in t.shape.dim:
        if d.HasField("dim_value"):
            out.append(int(d.dim_value))
        else:
            out.append(d.dim_param or "?")
    return out


def _fix_inputs(model: Any, path: Path, batch: int | None,
                shapes: dict[str, list[int]]) -> dict[str, list[int | str]]:
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    names = {i.name for i in inputs}
    for name in shapes:
        if name not in names:
            raise BenchError(f"--input-shape {name}: {path} has no input {name!r} "
                             f"(inputs: {', '.join(sorted(names)) or 'none'})")
    out: dict[str, list[int | str]] = {}
    for inp in inputs:
        t = inp.type.tensor_type
        if inp.name in shapes:
            want = shapes[inp.name]
            have = _dims(inp.type)
            if have is not None and len(have) != len(want):
                raise BenchError(f"--input-shape {inp.name}: {len(want)} dimensions, but "
                                 f"{path} input {inp.name!r} has {len(have)} ({_show(have)})")
            t.shape.ClearField("dim")
            for v in want:
                t.shape.dim.add().dim_value = v
        elif batch is not None and t.HasField("shape") and len(t.shape.dim) >= 1:
            t.shape.dim[0].dim_value = batch
        dims = _dims(inp.type)
        out[inp.name] = dims if dims is not None else []
    return out


def _show(dims: list[int | str] | None) -> str:
    """``[batch, 3, 224, 224]``: symbolic dimensions by their name, unknown ones as '?'."""
    return "[" + ", ".join(str(d) for d in dims) + "]" if dims else "unknown"


def _shapes(model: Any) -> tuple[dict[str, list[int | str]], dict[str, int]]:
    g = model.graph
    shapes: dict[str, list[int | str]] = {}
    types: dict[str, int] = {}
    for vi in [*g.input, *g.value_info, *g.output]:
        dims = _dims(vi.type)
        if dims is not None:
            shapes[vi.name] = dims
        if vi.type.tensor_type.elem_type:
            types[vi.name] = vi.type.tensor_type.elem_type
    for init in g.initializer:
        shapes[init.name] = [int(d) for d in init.dims]
        types[init.name] = init.data_type
    return shapes, types


def _attrs(node: Any) -> dict[str, Any]:
    onnx = _onnx()
    out = {}
    for a in node.attribute:
        v = onnx.helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


def read_convs(path: str | Path, batch: int | None = None,
               input_shapes: dict[str, list[int]] | None = None) -> ModelConvs:
    """Every 2-D Conv node of the model at ``path``, with shapes from ONNX shape inference."""
    onnx = _onnx()
    path = Path(path)
    if batch is not None and batch < 1:
        raise BenchError(f"--batch {batch}: must be positive")
    model = _load(path)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    inputs = _fix_inputs(model, path, batch, dict(input_shapes or {}))
    try:
        model = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception as e:  # noqa: BLE001 - onnx raises InferenceError / ValidationError
        raise BenchError(f"{path}: ONNX shape inference failed: {_one_line(e)}") from None
    shapes, types = _shapes(model)
    consumers: dict[str, list[Any]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in model.graph.output}
    dynamic = {n: d for n, d in inputs.items() if not d or any(isinstance(v, str) for v in d)}
    layers, skipped = [], {}
    for i, node in enumerate(model.graph.node):
        if node.op_type in OTHER_CONVS:
            skipped[node.op_type] = skipped.get(node.op_type, 0) + 1
        if node.op_type != "Conv" or node.domain not in ("", "ai.onnx"):
            continue
        name = node.name or f"Conv_{i}"
        fields = _conv_fields(node, name, path, shapes, types, dynamic)
        fields["activation"], folded_bn = _activation(node, consumers, outputs)
        if folded_bn:
            fields["bias"] = True  # a BatchNormalization after the conv folds into its bias
        _validate(fields, name, path)
        layers.append(ConvLayer(name, fields))
    if not layers:
        other = ", ".join(f"{n} {op}" for op, n in skipped.items())
        raise BenchError(f"{path}: no 2-D Conv node in the model"
                         + (f" (only {other}, which convbench does not read)" if other else ""))
    static = {n: [int(v) for v in d] for n, d in inputs.items() if n not in dynamic}
    return ModelConvs(path=path, sha256=sha, inputs=static, layers=layers, skipped=skipped)


def _conv_fields(node: Any, name: str, path: Path, shapes: dict[str, list[int | str]],
                 types: dict[str, int], dynamic: dict[str, list[int | str]]) -> dict[str, Any]:
    at = f"{path}: node {name!r}"
    x_name, w_name = node.input[0], node.input[1]
    w = shapes.get(w_name)
    x = shapes.get(x_name)
    rank = len(w) if w is not None else len(x) if x is not None else None
    if rank is not None and rank != 4:
        spatial = rank - 2
        raise BenchError(f"{at}: a {spatial}-D convolution (weight {w_name!r} "
                         f"{_show(w)}); convbench benchmarks 2-D convolutions only")
    if x is None or any(isinstance(v, str) for v in x) or w is None or \
            any(isinstance(v, str) for v in w):
        hint = ""
        if dynamic:
            hint = "; the model has dynamic inputs " + ", ".join(
                f"{n} {_show(d)}" for n, d in dynamic.items()) + ": give --input-shape " \
                f"{next(iter(dynamic))}:1x3x224x224 (your shape) or --batch N"
        raise BenchError(f"{at}: input shape {_show(x)} is not static after shape "
                         f"inference{hint}")
    a = _attrs(node)
    n, c, h, wd = (int(v) for v in x)
    k, cg, r, s = (int(v) for v in w)
    kernel = list(a.get("kernel_shape", [r, s]))
    groups = int(a.get("group", 1))
    if cg * groups != c:
        raise BenchError(f"{at}: weight {w_name!r} {_show(w)} with group {groups} does not "
                         f"match the {c} input channels")
    stride = list(a.get("strides", [1, 1]))
    dil = list(a.get("dilations", [1, 1]))
    pads = list(a.get("pads", [0, 0, 0, 0]))
    auto = a.get("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        # onnx docs/Operators.md#Conv, auto_pad: output = ceil(in / stride), total pad =
        # (out - 1) * stride + effective kernel - in (the formula of #MaxPool), the odd pixel
        # at the end for SAME_UPPER and at the beginning for SAME_LOWER
        pads = [0, 0, 0, 0]
        for ax, size in enumerate((h, wd)):
            eff = dil[ax] * (kernel[ax] - 1) + 1
            total = max(0, (-(-size // stride[ax]) - 1) * stride[ax] + eff - size)
            small, big = total // 2, total - total // 2
            pads[ax], pads[ax + 2] = (small, big) if auto == "SAME_UPPER" else (big, small)
    elif auto == "VALID":
        pads = [0, 0, 0, 0]
    elif auto != "NOTSET":
        raise BenchError(f"{at}: unknown auto_pad {auto!r}")
    precision = _PRECISIONS.get(types.get(x_name, 1))
    if precision is None:
        raise BenchError(f"{at}: input element type {types.get(x_name)} (ONNX TensorProto); "
                         "convbench measures float32, float16 and bfloat16 convolutions")
    fields: dict[str, Any] = {
        "batch": n, "in_channels": c, "out_channels": k, "height": h, "width": wd,
        "kernel": kernel, "stride": stride, "padding": pads[:2],
        "dilation": dil, "groups": groups,
        "bias": len(node.input) > 2 and bool(node.input[2]), "precision": precision,
    }
    if pads[2:] != pads[:2]:
        fields["padding_end"] = pads[2:]
    return fields


def _activation(conv: Any, consumers: dict[str, list[Any]],
                outputs: set[str]) -> tuple[str, bool]:
    """("relu", bn) when the conv's only consumer is a Relu, possibly behind one
    BatchNormalization (folded into the conv at inference, as TensorRT does)."""
    y, bn = conv.output[0], False
    users = consumers.get(y, [])
    if y in outputs or len(users) != 1:
        return "none", False
    nxt = users[0]
    if nxt.op_type == "BatchNormalization" and len([o for o in nxt.output if o]) == 1:
        y, bn = nxt.output[0], True
        users = consumers.get(y, [])
        if y in outputs or len(users) != 1:
            return "none", bn
        nxt = users[0]
    return ("relu" if nxt.op_type == "Relu" else "none"), bn


def _validate(fields: dict[str, Any], name: str, path: Path) -> None:
    from pydantic import ValidationError

    from bench.spec import ConvSpec

    try:
        ConvSpec.model_validate(fields)
    except ValidationError as e:
        msg = str(e.errors()[0]["msg"]).removeprefix("Value error, ")
        raise BenchError(f"{path}: node {name!r}: {_one_line(msg)}") from None


# --- the suite text -------------------------------------------------------------------------------
def suite_name(path: Path) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.stem).strip("_.") or "model"
    return name[:80]


def short_label(node: str) -> str:
    """``/layer1/layer1.0/conv1/Conv`` → ``layer1/layer1.0/conv1`` (torch's exporter names)."""
    label = re.sub(r"/Conv(_\d+)?$", "", node).lstrip("/")
    return label or node


def suite_from_onnx(path: str | Path, *, name: str | None = None, batch: int | None = None,
                    input_shapes: dict[str, list[int]] | None = None,
                    precisions: list[str] | None = None, backends: list[str] | None = None,
                    command: str = "") -> str:
    """The suite TOML text for the model at ``path``: one ``[[cases]]`` per unique layer, with
    ``count`` and ``nodes``; ``precisions`` (more than the model's own) become a [sweep] axis."""
    from bench import suite_text
    from bench.suite import parse_suite

    convs = read_convs(path, batch, input_shapes)
    unique = convs.unique()
    precisions = list(dict.fromkeys(precisions or []))
    for p in precisions:
        if p not in ("fp32", "fp16", "bf16"):
            raise BenchError(f"--precision {p}: expected fp32, fp16 or bf16")
    doc: dict[str, Any] = {
        "name": name or suite_name(convs.path),
        "description": (f"The {len(convs.layers)} 2-D convolutions of {convs.path.name}: "
                        f"{len(unique)} unique layer(s), each with its occurrence count"
                        + "".join(f"; not included: {n} {op}" for op, n in
                                  convs.skipped.items())),
        "backends": list(backends or ["tensorrt", "torch"]),
        "model": {"file": convs.path.name, "sha256": convs.sha256, "inputs": convs.inputs,
                  "conv_nodes": len(convs.layers)},
    }
    if precisions:
        doc["sweep"] = {"precision": precisions}
    cases, labels = [], set()
    for u in unique:
        fields = dict(u.fields)
        if precisions or fields["precision"] == "fp32":
            fields.pop("precision")  # swept, or the default
        label = short_label(u.nodes[0])
        label = label if label not in labels else u.nodes[0]  # node names are unique
        labels.add(label)
        cases.append({"label": label, "count": u.count, "nodes": u.nodes, **fields})
    doc["cases"] = cases
    header = f"made by: {command}" if command else ""
    text = suite_text.dump(doc, header=header + ("\n" if header else "") +
                           "one case per unique Conv layer; count = occurrences in the model")
    parse_suite(text, source=f"suite from {convs.path}")  # the text must read back as written
    return text


def _one_line(e: object) -> str:
    return " ".join(str(e).split())[:500]
