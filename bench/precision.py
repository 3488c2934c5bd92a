"""Precisions: one registry of the facts every module needs, and host-side handling of the data.

``PRECISIONS`` holds, per precision name, the element bytes, the check tolerance, the host
storage dtype (numpy has no bfloat16 or fp8: their bit patterns are stored as unsigned ints),
the torch and TensorRT dtype names, the smallest compute capability that runs it, and which
backends support it. ``bench.spec`` (bytes moved, the ``precision`` field), the backends
(dtype maps, support) and the reports (which precisions to compare) read it from here.

int8 and fp8 (E4M3) are *quantized* precisions: the network quantizes a higher-precision input
(``io_precision``: fp32, fp16 or bf16) with a scale, so their data are generated on the
quantization grid (``quantize_data``) and the float64 reference is computed on the dequantized
values — the numbers the engine really convolves.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PrecisionInfo:
    """What convbench knows about one precision."""

    name: str
    #: bytes per element of the values the convolution computes on (its weights)
    bytes: int
    #: relative L2 error a case may have against the float64 reference
    tolerance: float
    #: numpy dtype of host storage (bf16 and fp8 as their bit patterns)
    storage: str
    #: ``torch.<name>``; None where convbench's torch backend cannot run it
    torch: str | None
    #: ``tensorrt.DataType.<name>``
    tensorrt: str
    #: smallest CUDA compute capability with kernels for it
    min_cc: tuple[int, int] | None = None
    #: quantized (int8, fp8): the network quantizes an ``io_precision`` input with a scale
    quantized: bool = False
    #: largest magnitude of the quantized type (int8: 127; fp8 E4M3: 448)
    qmax: float | None = None
    #: why the torch backend does not run it (None: it does)
    torch_unsupported: str | None = None


_QDQ_TORCH = ("torch backend: {p} needs explicit quantization (Q/DQ) that torch's eager "
              "convolution does not run on cuDNN; use the tensorrt backends")

#: every precision convbench runs, in the order reports list them (widest first)
PRECISIONS: dict[str, PrecisionInfo] = {p.name: p for p in (
    # fp32 may run as TF32 (10-bit mantissa) on Ampere and later, so it gets TF32's budget
    PrecisionInfo("fp32", 4, 5e-3, "float32", "float32", "FLOAT"),
    PrecisionInfo("fp16", 2, 5e-3, "float16", "float16", "HALF"),
    PrecisionInfo("bf16", 2, 3e-2, "uint16", "bfloat16", "BF16", min_cc=(8, 0)),
    # quantized: inputs and weights are exact on the grid and the reference uses the
    # dequantized values, so what remains is accumulation order, the scale arithmetic and
    # the output rounded to io_precision (bf16 output: ~2^-9 per element)
    PrecisionInfo("int8", 1, 3e-2, "int8", None, "INT8", min_cc=(6, 1), quantized=True,
                  qmax=127.0, torch_unsupported=_QDQ_TORCH.format(p="int8")),
    PrecisionInfo("fp8", 1, 3e-2, "uint8", None, "FP8", min_cc=(8, 9), quantized=True,
                  qmax=448.0, torch_unsupported=_QDQ_TORCH.format(p="fp8")),
)}
#: precisions a tensor entering or leaving a network can have (``io_precision``)
IO_PRECISIONS = ("fp32", "fp16", "bf16")
#: tolerance per precision (kept as a dict: the runner and tests read it this way)
TOLERANCE = {name: p.tolerance for name, p in PRECISIONS.items()}


def info(precision: str) -> PrecisionInfo:
    try:
        return PRECISIONS[precision]
    except KeyError:
        raise ValueError(f"unknown precision {precision!r} "
                         f"(known: {', '.join(PRECISIONS)})") from None


def needs_cc(precision: str, cc: tuple[int, int] | None) -> str | None:
    """Why ``precision`` cannot run on compute capability ``cc`` (None: it can, or cc unknown)."""
    need = info(precision).min_cc
    if cc is None or need is None or tuple(cc) >= need:
        return None
    return (f"{precision} needs compute capability {need[0]}.{need[1]} or newer "
            f"(this target is {cc[0]}.{cc[1]})")


# --- host data ----------------------------------------------------------------------------------
def round_to(x: np.ndarray, precision: str) -> np.ndarray:
    """Round float32 values to the nearest value representable in ``precision`` (as float32).

    Quantized precisions are not rounded here (they need a scale): see :func:`quantize`."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if precision == "fp32" or info(precision).quantized:
        return x
    if precision == "fp16":
        return x.astype(np.float16).astype(np.float32)
    if precision == "bf16":
        return decode(encode(x, "bf16"), "bf16")
    raise ValueError(f"unknown precision {precision!r}")


def encode(x: np.ndarray, precision: str) -> np.ndarray:
    """Host array in the storage type of ``precision``: float32, float16 or bf16 bits (uint16)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if precision == "fp32":
        return x
    if precision == "fp16":
        return x.astype(np.float16)
    if precision == "bf16":
        bits = x.view(np.uint32).astype(np.uint64)
        # round to nearest even on the 16 dropped bits
        bits = bits + 0x7FFF + ((bits >> 16) & 1)
        return (bits >> 16).astype(np.uint16)
    raise ValueError(f"no host encoding for {precision!r} (tensors enter networks as "
                     f"{', '.join(IO_PRECISIONS)})")


def decode(raw: np.ndarray, precision: str) -> np.ndarray:
    """Inverse of :func:`encode`: storage array → float32."""
    if precision == "bf16":
        return (np.ascontiguousarray(raw, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
    return np.asarray(raw, dtype=np.float32)


def storage_dtype(precision: str) -> np.dtype:
    return np.dtype(info(precision).storage)


# --- quantization -------------------------------------------------------------------------------
def round_fp8_e4m3(v: np.ndarray) -> np.ndarray:
    """Round to the nearest FP8 E4M3 (``e4m3fn``: bias 7, 3 mantissa bits, no inf, max 448)
    value, ties to even, saturating at ±448 — the grid of TensorRT's ``DataType.FP8``."""
    v = np.asarray(v, dtype=np.float64)
    a = np.minimum(np.abs(v), 448.0)
    # spacing: 2^(e-3) for normals (e >= -6), 2^-9 for subnormals
    e = np.floor(np.log2(np.where(a > 0, a, 1.0)))
    step = np.exp2(np.maximum(e, -6.0) - 3.0)
    return (np.sign(v) * np.minimum(np.round(a / step) * step, 448.0)).astype(np.float32)


def quantize(x: np.ndarray, scale: np.ndarray | float, precision: str) -> np.ndarray:
    """``x / scale`` rounded onto the grid of ``precision`` (int8: integers in [-127, 127],
    round half to even as TensorRT's IQuantizeLayer; fp8: E4M3), as float32."""
    q = np.asarray(x, dtype=np.float64) / np.asarray(scale, dtype=np.float64)
    if precision == "int8":
        return np.clip(np.round(q), -127, 127).astype(np.float32)
    if precision == "fp8":
        return round_fp8_e4m3(q)
    raise ValueError(f"{precision!r} is not a quantized precision")


def scale_for(x: np.ndarray, precision: str, axis: int | None = None) -> np.ndarray:
    """Max-abs scale mapping the largest magnitude onto ``qmax`` (per slice along ``axis``),
    rounded to bf16 so that it is exact in every ``io_precision`` (fp32, fp16 and bf16)."""
    p = info(precision)
    a = np.abs(np.asarray(x, dtype=np.float32))
    amax = a.max() if axis is None else a.reshape(a.shape[axis], -1).max(axis=1)
    s = np.maximum(np.asarray(amax, dtype=np.float32), np.float32(1e-30)) / np.float32(p.qmax)
    return round_to(np.atleast_1d(s), "bf16").reshape(np.shape(amax))


def fake_quantize(x: np.ndarray, scale: np.ndarray | float, precision: str,
                  axis: int | None = None) -> np.ndarray:
    """Quantize then dequantize: the values a Q → DQ pair hands to the next layer."""
    s = np.asarray(scale, dtype=np.float32)
    if axis is not None:
        shape = [1] * np.ndim(x)
        shape[axis] = -1
        s = s.reshape(shape)
    return (quantize(x, s, precision) * s).astype(np.float32)
