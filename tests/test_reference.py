"""The float64 reference conv agrees with torch's float64 conv on awkward geometries."""

from __future__ import annotations

import numpy as np
import pytest

from bench.precision import decode, encode, round_to
from bench.reference import check_batch, make_data, reference, rel_l2_error
from bench.spec import ConvSpec

torch = pytest.importorskip("torch")

GEOMETRIES = [
    dict(in_channels=8, out_channels=16, height=11, width=9, kernel=[3, 2], stride=[2, 1],
         padding=[1, 0], dilation=[2, 1], groups=2),
    dict(in_channels=16, out_channels=16, height=14, width=14, padding=1, groups=16,
         activation="relu"),
    dict(in_channels=3, out_channels=8, height=9, width=9, kernel=7, stride=2, padding=3,
         bias=False),
    dict(in_channels=4, out_channels=6, height=5, width=5, kernel=1),
]


@pytest.mark.parametrize("fields", GEOMETRIES)
def test_reference_matches_torch_float64(fields: dict) -> None:
    s = ConvSpec(batch=2, **fields)
    d = make_data(s)
    ref = reference(s, d, batch=2)
    t = torch.nn.functional.conv2d(
        torch.from_numpy(d.x).double(), torch.from_numpy(d.w).double(),
        None if d.b is None else torch.from_numpy(d.b).double(),
        stride=s.stride, padding=s.padding, dilation=s.dilation, groups=s.groups)
    if s.activation == "relu":
        t = t.relu()
    assert ref.shape == s.output_shape
    assert rel_l2_error(t.numpy(), ref) < 1e-13


def test_data_is_random_rounded_and_never_zero() -> None:
    s = ConvSpec(in_channels=8, out_channels=8, height=8, width=8, precision="bf16")
    d = make_data(s)
    assert np.count_nonzero(d.x) > 0.99 * d.x.size
    assert np.array_equal(d.x, round_to(d.x, "bf16"))
    assert np.array_equal(make_data(s).x, d.x)  # deterministic per case


def test_bf16_encoding_rounds_to_nearest_even() -> None:
    x = np.array([1.0, 1.00390625, 1.01171875, -2.5, 3.0e38], dtype=np.float32)
    back = decode(encode(x, "bf16"), "bf16")
    # 1 + 2^-8 is a tie between 1 and 1 + 2^-7: rounds to even (1.0)
    assert back.tolist()[:4] == [1.0, 1.0, 1.015625, -2.5]
    assert torch.tensor(x).bfloat16().float().numpy().tolist() == back.tolist()


def test_check_batch_caps_reference_work() -> None:
    big = ConvSpec(batch=64, in_channels=256, out_channels=256, height=56, width=56, padding=1)
    assert check_batch(big) == 1
    small = ConvSpec(batch=8, in_channels=8, out_channels=8, height=8, width=8)
    assert check_batch(small) == 8


def test_nan_output_fails_the_check() -> None:
    ref = np.ones((1, 2, 2, 2))
    out = ref.copy()
    out[0, 0, 0, 0] = np.nan
    assert rel_l2_error(out, ref) == float("inf")


@pytest.mark.parametrize("fields", [
    # the stem of a TF-style "same" stride-2 conv exported to ONNX: pads [0, 0, 1, 1]
    dict(in_channels=3, out_channels=8, height=10, width=10, kernel=3, stride=2, padding=0,
         padding_end=[1, 1]),
    dict(in_channels=4, out_channels=4, height=7, width=6, kernel=[2, 3], padding=[1, 0],
         padding_end=[0, 2], groups=2, activation="relu"),
])
def test_four_sided_padding_matches_an_explicit_pad(fields: dict) -> None:
    """Reference and torch backend both pad (top, left) before and (bottom, right) after."""
    from bench.backends.base import BuildContext
    from bench.backends.torch import TorchBackend

    s = ConvSpec(batch=2, **fields)
    d = make_data(s)
    ref = reference(s, d, batch=2)
    (top, left), (bottom, right) = s.padding, s.pad_end
    x = torch.nn.functional.pad(torch.from_numpy(d.x).double(), (left, right, top, bottom))
    t = torch.nn.functional.conv2d(
        x, torch.from_numpy(d.w).double(),
        None if d.b is None else torch.from_numpy(d.b).double(),
        stride=s.stride, dilation=s.dilation, groups=s.groups)
    if s.activation == "relu":
        t = t.relu()
    assert ref.shape == s.output_shape == tuple(t.shape)
    assert rel_l2_error(t.numpy(), ref) < 1e-13
    with TorchBackend().build(s, d, BuildContext(0, None)) as engine:
        engine.set_input(d.x)
        engine.enqueue(None)
        assert rel_l2_error(engine.output(None), ref) < 1e-5
