"""ConvSpec geometry and cost model against hand-computed values."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bench.spec import ConvSpec, parse_bytes

# (description, spec fields, output (P, Q), FLOPs computed by hand: 2·N·K·(C/g)·R·S·P·Q; bias
# adds are counted apart, see test_bias_and_activation_are_counted_apart)
CASES = [
    ("resnet stem 7x7/2", dict(in_channels=3, out_channels=64, height=224, width=224, kernel=7,
                                stride=2, padding=3, bias=False), (112, 112), 236_027_904),
    ("pointwise 1x1", dict(in_channels=64, out_channels=256, height=56, width=56, kernel=1,
                           bias=False), (56, 56), 102_760_448),
    ("3x3 same + bias, batch 2", dict(batch=2, in_channels=16, out_channels=32, height=8,
                                      width=8, padding="same"), (8, 8), 1_179_648),
    ("depthwise 3x3", dict(in_channels=32, out_channels=32, groups=32, height=14, width=14,
                           padding=1, bias=False), (14, 14), 112_896),
    ("dilated 3x3 d2", dict(in_channels=8, out_channels=8, height=16, width=16, dilation=2,
                            bias=False), (12, 12), 165_888),
    ("strided 3x3/2", dict(in_channels=64, out_channels=128, height=56, width=56, stride=2,
                           padding=1, bias=False), (28, 28), 115_605_504),
    ("grouped g4", dict(in_channels=16, out_channels=16, groups=4, height=10, width=10,
                        bias=False), (8, 8), 73_728),
    ("asymmetric 1x7", dict(in_channels=8, out_channels=8, height=17, width=17, kernel=[1, 7],
                            padding=[0, 3], bias=False), (17, 17), 258_944),
    ("mixed stride/kernel/pad", dict(batch=2, in_channels=8, out_channels=16, groups=2,
                                     height=11, width=9, kernel=[3, 2], stride=[2, 1],
                                     padding=[1, 0], bias=False), (6, 8), 73_728),
    ("1x1 on 1x1 (fc), batch 32", dict(batch=32, in_channels=2048, out_channels=1000,
                                       height=1, width=1, kernel=1), (1, 1),
     131_072_000),
    ("same 5x5 d2", dict(in_channels=4, out_channels=4, height=20, width=20, kernel=5,
                         dilation=2, padding="same", bias=False), (20, 20), 320_000),
]


@pytest.mark.parametrize("desc,fields,pq,flops", CASES, ids=[c[0] for c in CASES])
def test_output_shape_and_flops(desc: str, fields: dict, pq: tuple[int, int], flops: int) -> None:
    s = ConvSpec(**fields)
    assert (s.out_height, s.out_width) == pq
    assert s.flops == flops


def test_bias_and_activation_are_counted_apart() -> None:
    s = ConvSpec(batch=2, in_channels=16, out_channels=32, height=8, width=8, padding="same",
                 activation="relu")
    assert s.flops == 2 * 2 * 32 * 16 * 3 * 3 * 8 * 8  # the convolution only
    assert s.bias_flops == 2 * 32 * 8 * 8  # one add per output element
    assert s.activation_flops == 2 * 32 * 8 * 8
    plain = ConvSpec(in_channels=32, out_channels=32, groups=32, height=14, width=14, bias=False)
    assert plain.bias_flops == 0 and plain.activation_flops == 0


def test_bytes_and_intensity_follow_precision() -> None:
    fields = dict(in_channels=64, out_channels=256, height=56, width=56, kernel=1, bias=False)
    fp32 = ConvSpec(**fields)
    # input 64·3136 + weights 256·64 + output 256·3136 elements
    assert fp32.bytes_min == (200_704 + 16_384 + 802_816) * 4
    fp16 = ConvSpec(**fields, precision="fp16")
    assert fp16.bytes_min == fp32.bytes_min // 2
    assert fp16.intensity == pytest.approx(2 * fp32.intensity)


def test_key_is_stable_and_sensitive() -> None:
    a = ConvSpec(in_channels=8, out_channels=8, height=8, width=8)
    # the key is a hash of the canonical fields: pinned so it stays stable across versions
    assert a.key == ConvSpec(in_channels=8, out_channels=8, height=8, width=8, kernel=[3, 3]).key
    assert a.key == "3bb1f81715722010"
    assert a.key != ConvSpec(in_channels=8, out_channels=8, height=8, width=8, groups=2).key
    assert ConvSpec(in_channels=8, out_channels=8, height=8, width=8, padding="same").key == \
        ConvSpec(in_channels=8, out_channels=8, height=8, width=8, padding=1).key


def test_workspace_strings() -> None:
    assert parse_bytes("256MiB") == 256 * 2**20
    assert parse_bytes("1GiB") == 2**30
    assert parse_bytes("16 MB") == 16_000_000
    assert ConvSpec(in_channels=8, out_channels=8, height=8, width=8,
                    workspace="64MiB").workspace == 64 * 2**20
    with pytest.raises(ValueError):
        parse_bytes("lots")


@pytest.mark.parametrize("fields,needle", [
    (dict(in_channels=6, out_channels=8, groups=4), "divisible by groups"),
    (dict(kernel=11), "larger than the padded height"),
    (dict(kernel=[1, 11]), "larger than the padded width"),
    (dict(in_channels=0), "in_channels must be positive"),
    (dict(stride=0), "stride must be positive"),
    (dict(padding=-1), "padding must not be negative"),
    (dict(padding_end=[0, -1]), "padding_end must not be negative"),
    (dict(padding_end=[1, 2, 3]), "padding_end must be an integer or a pair"),
    (dict(kernel=11, padding=1, padding_end=[1, 0]), "larger than the padded height"),
    (dict(kernel=2, padding="same"), "odd effective kernel"),
    (dict(opt_level=7), "opt_level"),
    (dict(precision="fp4"), "precision"),
    (dict(precision="fp16", out_precision="bf16"), "out_precision applies to strongly typed"),
    (dict(precision="int8", typing="weak", out_precision="fp16"), "out_precision applies"),
    (dict(typing="loose"), "typing"),
    (dict(kernal=3), "kernal"),
])
def test_impossible_convs_are_rejected(fields: dict, needle: str) -> None:
    base = dict(in_channels=8, out_channels=8, height=8, width=8)
    with pytest.raises(ValidationError, match=needle):
        ConvSpec(**{**base, **fields})


def test_short_name() -> None:
    s = ConvSpec(batch=8, in_channels=64, out_channels=64, height=56, width=56, padding=1,
                 precision="fp16")
    assert s.short_name() == "fp16-n8-c64-k64-56x56-r3-s1-p1"


def test_precision_names_agree_with_the_registry() -> None:
    from typing import get_args

    from bench.precision import IO_PRECISIONS, PRECISIONS
    from bench.spec import IoPrecision, Precision

    assert get_args(Precision) == tuple(PRECISIONS)
    assert get_args(IoPrecision) == IO_PRECISIONS


def test_quantized_and_weak_cases_move_io_bytes_at_io_precision() -> None:
    fields = dict(in_channels=64, out_channels=256, height=56, width=56, kernel=1, bias=False)
    io_elems, w_elems = 200_704 + 802_816, 16_384
    int8 = ConvSpec(**fields, precision="int8")
    assert int8.quantized and int8.io_precision == "fp32"
    assert int8.bytes_min == io_elems * 4 + w_elems * 1
    int8_h = ConvSpec(**fields, precision="int8", out_precision="fp16")
    assert int8_h.io_precision == "fp16" and int8_h.bytes_min == io_elems * 2 + w_elems
    weak = ConvSpec(**fields, precision="fp16", typing="weak")
    assert weak.io_precision == "fp32" and weak.bytes_min == io_elems * 4 + w_elems * 2
    assert ConvSpec(**fields, precision="fp16").io_precision == "fp16"


def test_new_fields_stay_out_of_the_key_at_their_defaults() -> None:
    base = dict(in_channels=8, out_channels=8, height=8, width=8)
    a = ConvSpec(**base, typing="strong", out_precision=None)
    assert a.key == "3bb1f81715722010"  # as before the fields existed
    keys = {ConvSpec(**base, **kw).key for kw in (
        {}, dict(typing="weak"), dict(precision="int8"), dict(precision="int8",
                                                              out_precision="fp16"))}
    assert len(keys) == 4
    assert ConvSpec(**base, precision="int8", out_precision="bf16").short_name() == \
        "int8-n1-c8-k8-8x8-r3-s1-p0-out-bf16"
    assert ConvSpec(**base, precision="fp16", typing="weak").short_name().endswith("-weak")
    # a floating-point precision's out_precision is itself: the same case
    assert ConvSpec(**base, precision="fp16", out_precision="fp16") == \
        ConvSpec(**base, precision="fp16")


def test_four_sided_padding() -> None:
    """ONNX pads [top, left, bottom, right] = [0, 0, 1, 1] on a stride-2 3x3 conv."""
    base = dict(batch=1, in_channels=8, out_channels=8, height=9, width=9, stride=2)
    s = ConvSpec(**base, padding=0, padding_end=[1, 1])
    assert s.pad_end == (1, 1) and s.output_shape == (1, 8, 4, 4)
    assert s.short_name() == "fp32-n1-c8-k8-9x9-r3-s2-pt0l0b1r1"
    sym = ConvSpec(**base, padding=1)
    # symmetric written out is the plain case: same key as before the field existed
    assert ConvSpec(**base, padding=1, padding_end=1).key == sym.key
    assert ConvSpec(**base, padding=1, padding_end=1).padding_end is None
    assert "padding_end" not in sym.short_name() and s.key != sym.key
    assert ConvSpec(**base, padding=1, padding_end=[2, 1]).out_height == 5
