"""Case data and the float64 reference convolution used to check every engine."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from bench.backends.base import ConvData, QuantScales
from bench.errors import UnsupportedCase
from bench.precision import fake_quantize, round_to, scale_for
from bench.spec import ConvSpec

#: the reference checks at most this many multiply-adds (a prefix of the batch), so a check
#: of a large layer costs well under a second on a laptop.
REFERENCE_MACS = 2e8
#: and uses at most this much memory; a case above it is ``unsupported`` with the reason
REFERENCE_MAX_BYTES = 2 * 2**30


def make_data(spec: ConvSpec, seed: int | None = None) -> ConvData:
    """Random input, weights and bias, rounded to the case's precision. Never zeros.

    Weights are scaled by 1/sqrt(fan-in) so outputs stay O(1) in every precision. For int8 and
    fp8 the input and weights are put on the quantization grid with max-abs scales (one for the
    input, one per output channel for the weights), the values a Q → DQ pair yields; the bias
    is rounded to ``io_precision``.
    """
    rng = np.random.default_rng(int(spec.key, 16) if seed is None else seed)
    fan_in = (spec.in_channels // spec.groups) * spec.kernel[0] * spec.kernel[1]
    x = rng.standard_normal(spec.input_shape, dtype=np.float32)
    w = rng.standard_normal(spec.weight_shape, dtype=np.float32) / np.float32(np.sqrt(fan_in))
    b = rng.standard_normal(spec.out_channels, dtype=np.float32) if spec.bias else None
    p = spec.precision
    if spec.quantized:
        sx, sw = scale_for(x, p), scale_for(w, p, axis=0)
        io = spec.io_precision
        return ConvData(x=fake_quantize(x, sx, p), w=fake_quantize(w, sw, p, axis=0),
                        b=None if b is None else round_to(b, io),
                        scales=QuantScales(input=float(sx), weights=sw))
    return ConvData(x=round_to(x, p), w=round_to(w, p), b=None if b is None else round_to(b, p))


def check_batch(spec: ConvSpec) -> int:
    """How many images of the batch the reference computes. Raises ``UnsupportedCase`` (the
    case's status becomes ``unsupported``, with the reason) when even one image's float64
    reference would need more than ``REFERENCE_MAX_BYTES``: called before anything is
    allocated, that refusal costs nothing, where a MemoryError would come after the build."""
    per_image = spec.flops / 2 / spec.batch
    n = int(max(1, min(spec.batch, REFERENCE_MACS // max(per_image, 1))))
    need = reference_bytes(spec, n)
    if need > REFERENCE_MAX_BYTES:
        raise UnsupportedCase(f"the float64 reference check of {n} image(s) needs "
                              f"{need / 2**30:.1f} GiB, more than its budget of "
                              f"{REFERENCE_MAX_BYTES / 2**30:g} GiB")
    return n


def reference_bytes(spec: ConvSpec, n: int) -> int:
    """Peak bytes ``reference(spec, data, n)`` allocates: the float64 input and its padded
    copy, the weights, the window copies einsum makes of one group (the sliding-window view
    is strided, so the contraction copies it, n·(C/g)·P·Q·R·S, counted twice for its
    intermediates), the per-group outputs and their concatenation. Conservative: tracemalloc
    peaks were 0.5-0.9x of this on ResNet-like, grouped and depthwise cases."""
    _, c, h, w = spec.input_shape
    k, cg, r, s = spec.weight_shape
    _, _, p, q = spec.output_shape
    ph, pw = spec.padding
    elems = (n * c * h * w + n * c * (h + 2 * ph) * (w + 2 * pw) + k * cg * r * s
             + 2 * n * cg * p * q * r * s + 2 * n * k * p * q)
    return 8 * elems


def reference(spec: ConvSpec, data: ConvData, batch: int | None = None) -> np.ndarray:
    """float64 convolution (+bias, +activation) of the first ``batch`` images; computed once
    per case data (kept in ``data.refs``)."""
    n = check_batch(spec) if batch is None else batch
    cached = data.refs.get((spec.key, n))
    if cached is None:
        cached = data.refs[(spec.key, n)] = _reference(spec, data, n)
    return cached


def _reference(spec: ConvSpec, data: ConvData, n: int) -> np.ndarray:
    x = data.x[:n].astype(np.float64)
    w = data.w.astype(np.float64)
    (ph, pw), (sh, sw), (dh, dw) = spec.padding, spec.stride, spec.dilation
    eh, ew = spec.pad_end  # post padding (bottom, right): four-sided when asymmetric
    r, s = spec.kernel
    x = np.pad(x, ((0, 0), (0, 0), (ph, eh), (pw, ew)))
    # windows of the dilated kernel extent, then keep every dilation-th tap
    win = sliding_window_view(x, ((r - 1) * dh + 1, (s - 1) * dw + 1), axis=(2, 3))
    win = win[:, :, ::sh, ::sw, ::dh, ::dw][:, :, :spec.out_height, :spec.out_width]
    g = spec.groups
    cg, kg = spec.in_channels // g, spec.out_channels // g
    outs = []
    for gi in range(g):
        xg = win[:, gi * cg:(gi + 1) * cg]  # n, cg, P, Q, r, s
        wg = w[gi * kg:(gi + 1) * kg]  # kg, cg, r, s
        outs.append(np.einsum("ncpqrs,kcrs->nkpq", xg, wg, optimize=True))
    y = np.concatenate(outs, axis=1)
    if data.b is not None:
        y += data.b.astype(np.float64)[None, :, None, None]
    if spec.activation == "relu":
        y = np.maximum(y, 0.0)
    return y


def rel_l2_error(out: np.ndarray, ref: np.ndarray) -> float:
    """‖out − ref‖₂ / ‖ref‖₂ over the images the reference covers."""
    out = np.asarray(out, dtype=np.float64)[: ref.shape[0]]
    if out.shape != ref.shape:
        raise ValueError(f"output shape {out.shape} != expected {ref.shape}")
    if not np.all(np.isfinite(out)):
        return float("inf")
    denom = float(np.linalg.norm(ref)) or 1.0
    return float(np.linalg.norm(out - ref)) / denom
