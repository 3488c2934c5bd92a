"""The network definition: input → [quantize → dequantize] → convolution (+ relu) → output.

Small builders in the manner of Polygraphy's ``backend/trt/loader.py`` (``CreateNetwork``):
each takes the tensorrt module and returns what it made; nothing here holds state.

Strongly typed networks (TensorRT 10.x with STRONGLY_TYPED, 11.x, TensorRT-RTX) take the
tensor types as the precision. Weakly typed ones (TensorRT 8.x, 10.x) are fp32 networks whose
layers the builder may run lower under BuilderFlag FP16/BF16/INT8/FP8 (``config.py``).

int8/fp8 use explicit quantization (NVIDIA's "Explicit Quantization" in the TensorRT developer
guide): the input is quantized with one scalar scale and dequantized; the weights are a
constant, quantized per output channel (axis 0) and dequantized into the convolution's kernel
input (``IConvolutionLayer.set_input(1, ...)``). TensorRT fuses the DQ → conv ← DQ pattern into
an int8/fp8 convolution.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from bench.backends.base import ConvData
from bench.backends.tensorrt.flavour import (
    Flavour,
    has_pointer_weights,
    has_strong_typing,
    major_version,
)
from bench.errors import BuildFailed
from bench.precision import PRECISIONS, encode
from bench.spec import ConvSpec

#: Bump when the network built for a spec changes, so cached plans of older code are not used.
NETWORK_VERSION = 1
INPUT, OUTPUT = "input", "output"
CONV_LAYER, ACT_LAYER = "conv", "relu"


def trt_dtype(trt: ModuleType, precision: str) -> Any:
    return getattr(trt.DataType, PRECISIONS[precision].tensorrt)


def weights(trt: ModuleType, flavour: Flavour, host: np.ndarray, precision: str,
            keep: list[np.ndarray]) -> Any:
    """TensorRT Weights of ``precision`` over a host copy that ``keep`` holds alive: TensorRT
    reads the pointer only when the engine is built (bf16 goes in as its 16-bit patterns).

    ``Weights(type, ptr, count)`` exists from TensorRT 10.0 (v10.0.1
    python/src/infer/pyFoundationalTypes.cpp l. 215) and in TensorRT-RTX; 8.x has only
    ``Weights(type)`` and ``Weights(numpy array)`` (release/8.6, same file, l. 204-207), which
    takes the dtype from the array (float32, float16 — 8.x has no bf16)."""
    raw = np.ascontiguousarray(encode(host, precision))
    keep.append(raw)
    if not has_pointer_weights(trt, flavour):
        return trt.Weights(raw)
    return trt.Weights(trt_dtype(trt, precision), raw.ctypes.data, raw.size)


def network_flags(trt: ModuleType, flavour: Flavour, spec: ConvSpec) -> int:
    """Creation flags: TensorRT 8.x needs EXPLICIT_BATCH (implicit batch is its default);
    10.x needs STRONGLY_TYPED for a strongly typed network; 11.x and TensorRT-RTX networks
    are always strongly typed (11.x deprecates the flag)."""
    if flavour.rtx:
        return 0
    major = major_version(trt)
    if major < 10:
        return 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    if major == 10 and spec.typing == "strong":
        return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    return 0


def define_network(trt: ModuleType, flavour: Flavour, network: Any, spec: ConvSpec,
                   data: ConvData, keep: list[np.ndarray]) -> Any:
    """Fill ``network`` for ``spec`` with the weights of ``data``. Returns the output tensor."""
    io = spec.io_precision
    x = network.add_input(INPUT, trt_dtype(trt, io), spec.input_shape)
    bias = (weights(trt, flavour, data.b, io, keep) if data.b is not None
            else trt.Weights(trt_dtype(trt, io)))
    if spec.quantized:
        x, kernel = _quantized_operands(trt, flavour, network, spec, data, x, keep)
        conv = network.add_convolution_nd(x, spec.out_channels, spec.kernel,
                                          trt.Weights(trt_dtype(trt, io)), bias)
        if conv is not None:
            conv.set_input(1, kernel)
    else:
        conv = network.add_convolution_nd(x, spec.out_channels, spec.kernel,
                                          weights(trt, flavour, data.w, io, keep), bias)
    if conv is None:
        raise BuildFailed(f"add_convolution_nd refused {spec.short_name()}")
    conv.stride_nd = spec.stride
    if spec.padding_end is None:
        conv.padding_nd = spec.padding
    else:  # four-sided padding (an exported model's pads): TensorRT's pre/post padding
        conv.pre_padding = spec.padding
        conv.post_padding = spec.padding_end
    conv.dilation_nd = spec.dilation
    conv.num_groups = spec.groups
    conv.name = CONV_LAYER
    out = conv.get_output(0)
    if spec.activation == "relu":
        out.name = "conv_out"
        act = network.add_activation(out, trt.ActivationType.RELU)
        act.name = ACT_LAYER
        out = act.get_output(0)
    out.name = OUTPUT
    network.mark_output(out)
    return out


def _quantized_operands(trt: ModuleType, flavour: Flavour, network: Any, spec: ConvSpec,
                        data: ConvData, x: Any, keep: list[np.ndarray]) -> tuple[Any, Any]:
    """(dequantized input, dequantized kernel) of an int8/fp8 case."""
    if data.scales is None:
        raise BuildFailed(f"{spec.precision} case without quantization scales "
                          "(make the data with bench.reference.make_data)")
    io = spec.io_precision
    sx = _constant(trt, flavour, network, np.float32(data.scales.input).reshape(()), io, keep,
                   "input_scale")
    sw = _constant(trt, flavour, network, np.asarray(data.scales.weights, np.float32), io,
                   keep, "weight_scales")
    w = _constant(trt, flavour, network, data.w, io, keep, "weights")
    typed = has_strong_typing(trt, flavour)
    return (_qdq(trt, network, spec, x, sx, "input", None, typed),
            _qdq(trt, network, spec, w, sw, "weights", 0, typed))


def _constant(trt: ModuleType, flavour: Flavour, network: Any, host: np.ndarray,
              precision: str, keep: list[np.ndarray], name: str) -> Any:
    layer = network.add_constant(tuple(host.shape), weights(trt, flavour, host, precision, keep))
    layer.name = name
    return layer.get_output(0)


def _qdq(trt: ModuleType, network: Any, spec: ConvSpec, t: Any, scale: Any, what: str,
         axis: int | None, typed: bool) -> Any:
    """quantize(t, scale) → dequantize(·, scale); per-tensor, or per-channel along ``axis``.

    TensorRT 10.0 added the ``output_type`` overloads (v10.0.1 python/src/infer/pyGraph.cpp
    l. 910-917; TensorRT-RTX has them too); 8.x has only ``add_quantize(input, scale)``,
    which yields int8."""
    if typed:
        q = network.add_quantize(t, scale, trt_dtype(trt, spec.precision))
        dq = network.add_dequantize(q.get_output(0), scale, trt_dtype(trt, spec.io_precision))
    else:
        q = network.add_quantize(t, scale)
        dq = network.add_dequantize(q.get_output(0), scale)
    if q is None or dq is None:
        raise BuildFailed(f"quantize/dequantize of the {what} refused for {spec.short_name()}")
    if axis is not None:
        q.axis = axis
        dq.axis = axis
    q.name, dq.name = f"quantize_{what}", f"dequantize_{what}"
    return dq.get_output(0)


def network_layers(network: Any) -> list[dict[str, Any]]:
    """Layers of the network definition (before TensorRT fuses them), for BuildInfo.layers
    when no engine can be inspected here."""
    out = []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        t = layer.get_output(0)
        out.append({"name": layer.name, "type": layer.type.name, "precision": t.dtype.name,
                    "output_shape": list(t.shape), "source": "network"})
    return out
