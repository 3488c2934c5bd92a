"""int8/fp8 through Q/DQ and weak typing: data on the quantization grid, the torch backend's
refusal, and real TensorRT-RTX builds of each new network (no GPU needed to build).

No engine runs here (TensorRT-RTX does not run on this project's GPUs, and there is no GPU
here): the builds prove that TensorRT-RTX accepts the networks and what it refuses.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench.backends.base import BuildContext
from bench.errors import UnsupportedCase
from bench.precision import PRECISIONS, TOLERANCE, fake_quantize, round_fp8_e4m3, scale_for
from bench.reference import make_data, reference, rel_l2_error
from bench.spec import ConvSpec

SMALL = dict(in_channels=16, out_channels=16, height=12, width=12)


# --- data -----------------------------------------------------------------------------------
@pytest.mark.parametrize("precision", ["int8", "fp8"])
def test_quantized_data_lies_on_the_grid_with_max_abs_scales(precision: str) -> None:
    spec = ConvSpec(**SMALL, precision=precision)
    d = make_data(spec)
    qmax = PRECISIONS[precision].qmax
    sx, sw = d.scales.input, np.asarray(d.scales.weights)
    assert sw.shape == (spec.out_channels,)
    qx, qw = d.x / sx, d.w / sw[:, None, None, None]
    if precision == "int8":
        assert np.array_equal(qx, np.round(qx)) and np.array_equal(qw, np.round(qw))
    else:
        assert np.array_equal(round_fp8_e4m3(qx), qx) and np.array_equal(round_fp8_e4m3(qw), qw)
    # the largest magnitude maps onto (about) qmax: max-abs scales, rounded to bf16
    assert 0.99 * qmax <= np.abs(qx).max() <= qmax
    assert np.all(np.abs(qw).reshape(spec.out_channels, -1).max(axis=1) >= 0.99 * qmax)
    # scales are exact in bf16, hence in every io precision
    from bench.precision import round_to
    assert np.array_equal(round_to(sw, "bf16"), sw) and round_to(np.float32(sx), "bf16") == sx


def test_fp8_rounding_matches_ml_dtypes_e4m3fn() -> None:
    ml_dtypes = pytest.importorskip("ml_dtypes")
    v = np.random.default_rng(1).standard_normal(50_000).astype(np.float32) * 60
    v = np.concatenate([v, np.float32([448, 464, 2.0**-9, 2.0**-10, 3 * 2.0**-10, 0, 240, 248])])
    want = np.clip(v, -448, 448).astype(ml_dtypes.float8_e4m3fn).astype(np.float32)
    assert np.array_equal(round_fp8_e4m3(v), want)


@pytest.mark.parametrize("precision", ["int8", "fp8"])
def test_reference_uses_the_dequantized_values(precision: str) -> None:
    """The quantization error itself (percent-level) is not what a check measures: the
    reference is computed on the values the engine convolves."""
    spec = ConvSpec(**SMALL, precision=precision)
    d = make_data(spec)
    rng = np.random.default_rng(int(spec.key, 16))
    x = rng.standard_normal(spec.input_shape, dtype=np.float32)
    assert np.array_equal(fake_quantize(x, scale_for(x, precision), precision), d.x)
    exact = reference(spec, d)
    unquantized = reference(spec, type(d)(x=x, w=d.w, b=d.b))
    err = rel_l2_error(exact, unquantized)
    assert err > 1e-3  # quantizing moved the numbers ...
    assert TOLERANCE[precision] >= 1e-2  # ... and the check's tolerance is stated per precision


def test_torch_backend_refuses_quantized_and_weak_cases_with_the_reason() -> None:
    pytest.importorskip("torch")
    from bench.backends.torch import TorchBackend

    for kw, needle in ((dict(precision="int8"), "int8 needs explicit quantization"),
                       (dict(precision="fp8"), "fp8 needs explicit quantization"),
                       (dict(precision="fp16", typing="weak"), "TensorRT builder mode")):
        spec = ConvSpec(**SMALL, **kw)
        with pytest.raises(UnsupportedCase, match=needle):
            TorchBackend().build(spec, make_data(spec), BuildContext())


# --- TensorRT-RTX builds --------------------------------------------------------------------
def _rtx(target: tuple[int, int] | None = None):  # noqa: ANN202
    pytest.importorskip("tensorrt_rtx", reason="tensorrt_rtx not installed: "
                        "pip install 'trt-convbench[tensorrt-rtx]'")
    from bench.backends.tensorrt import TensorRTRTXBackend

    return TensorRTRTXBackend(rtx_target=target)


def _build(spec: ConvSpec, target: tuple[int, int] | None = None):  # noqa: ANN202
    """BuildInfo of a real TensorRT-RTX build (NoSupportedGpu carries it without a GPU it
    runs on); the engine, when one opens, is closed."""
    from bench.backends.tensorrt import NoSupportedGpu

    try:
        engine = _rtx(target).build(spec, make_data(spec), BuildContext())
    except NoSupportedGpu as e:
        return e.build_info
    engine.close()
    return engine.info


QDQ = ["CONSTANT", "CONSTANT", "CONSTANT", "QUANTIZE", "DEQUANTIZE", "QUANTIZE", "DEQUANTIZE",
       "CONVOLUTION"]


@pytest.mark.tensorrt
@pytest.mark.parametrize("kw,target", [
    (dict(precision="int8"), None),
    (dict(precision="int8", out_precision="fp16", activation="relu"), None),
    (dict(precision="int8", out_precision="bf16", groups=4, stride=2, padding=1), (8, 9)),
    (dict(precision="fp8"), (8, 9)),
    (dict(precision="fp8", out_precision="fp16", bias=False), (12, 0)),
], ids=lambda v: "-".join(f"{k}={x}" for k, x in v.items()) if isinstance(v, dict) else str(v))
def test_rtx_builds_qdq_networks(kw: dict, target: tuple[int, int] | None) -> None:
    spec = ConvSpec(**SMALL, **kw)
    info = _build(spec, target)
    assert info.plan_bytes > 1000 and not info.cache_hit
    if info.layers and info.layers[0].get("source") == "network":  # not inspected: no GPU
        types = [layer["type"] for layer in info.layers]
        assert types == QDQ + (["ACTIVATION"] if spec.activation == "relu" else [])
        q = {"int8": "INT8", "fp8": "FP8"}[spec.precision]
        io = {"fp32": "FLOAT", "fp16": "HALF", "bf16": "BF16"}[spec.io_precision]
        assert [layer["precision"] for layer in info.layers if layer["type"] == "QUANTIZE"] \
            == [q, q]
        assert info.layers[types.index("CONVOLUTION")]["precision"] == io
        assert info.layers[types.index("CONVOLUTION")]["output_shape"] == list(spec.output_shape)
    quant = info.extra["quantization"]
    d = make_data(spec)
    assert quant["precision"] == spec.precision and quant["io_precision"] == spec.io_precision
    assert quant["input_scale"] == d.scales.input and quant["weight_axis"] == 0
    assert quant["weight_scales"] == [float(v) for v in d.scales.weights]
    assert info.extra["target"] == (f"sm{target[0]}{target[1]}" if target else "portable")


@pytest.mark.tensorrt
def test_rtx_plan_of_a_quantized_layer_is_smaller() -> None:
    """TensorRT-RTX folds the weight Q/DQ at build time: an int8 layer's plan holds its weights
    in fewer bytes than the fp16 layer's (measured: 1 byte per weight less)."""
    big = dict(in_channels=256, out_channels=256, height=8, width=8)
    fp16 = _build(ConvSpec(**big, precision="fp16"))
    int8 = _build(ConvSpec(**big, precision="int8", out_precision="fp16"))
    weights = 256 * 256 * 9
    assert fp16.plan_bytes - int8.plan_bytes == pytest.approx(weights, rel=0.2)


@pytest.mark.tensorrt
@pytest.mark.parametrize("kw,target,needle", [
    (dict(precision="fp16", typing="weak"), None, "typing = 'weak' needs BuilderFlag"),
    (dict(precision="int8", typing="weak"), (8, 9), "typing = 'weak' needs BuilderFlag"),
    (dict(precision="fp8"), None, "fp8 needs an sm_89 or newer build target"),
    (dict(precision="fp8"), (8, 6), "fp8 needs compute capability 8.9 or newer"),
])
def test_rtx_refusals_are_one_line_unsupported(kw: dict, target: tuple[int, int] | None,
                                               needle: str) -> None:
    spec = ConvSpec(**SMALL, **kw)
    with pytest.raises(UnsupportedCase, match=needle) as err:
        _rtx(target).build(spec, make_data(spec), BuildContext())
    assert "\n" not in str(err.value)
    assert not hasattr(err.value, "build_info")  # refused before building
