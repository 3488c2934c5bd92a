"""``ConvSpec``: one convolution case, its geometry, precision and build options.

Everything derived (output size, FLOPs, bytes, key) is computed, never stored twice.
"""

from __future__ import annotations

import hashlib
import json
import re
from decimal import Decimal
from functools import cached_property
from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from bench.precision import PRECISIONS

#: every name in ``bench.precision.PRECISIONS`` (tests/test_spec.py checks they agree)
Precision = Literal["fp32", "fp16", "bf16", "int8", "fp8"]
#: precision of the tensors entering and leaving a network (``bench.precision.IO_PRECISIONS``)
IoPrecision = Literal["fp32", "fp16", "bf16"]
#: TensorRT network typing: ``strong`` (the tensor types are the precision: TensorRT 10's
#: STRONGLY_TYPED, the only kind 11.x and TensorRT-RTX build) or ``weak`` (an fp32 network
#: whose layers TensorRT may run in ``precision`` under BuilderFlag FP16/BF16/INT8/FP8, as
#: ``trtexec --fp16`` on TensorRT 8.x and 10.x)
Typing = Literal["strong", "weak"]
Activation = Literal["none", "relu"]
#: how a library picks its kernel at build time: ``autotune`` times candidates and keeps the
#: fastest (cuDNN's ``benchmark`` mode, the cuDNN frontend's plan search), ``heuristic`` takes
#: the library's first heuristic choice (the same in every process)
Algo = Literal["autotune", "heuristic"]
#: TensorRT: ``reuse`` reads and writes the persistent timing cache (and the engine cache);
#: ``fresh`` reads neither, so every build times its tactics again
TimingCache = Literal["reuse", "fresh"]

#: sane limits, far above any GPU of 2026 and far below where arithmetic on them overflows a
#: float (FLOPs, intensity) or a C int64 (TensorRT dims, numpy shapes)
MAX_BYTES = 1 << 50  # workspace: 1 PiB
MAX_DIM = 1 << 31  # batch, channels, height, width, kernel, stride, padding, dilation, groups
MAX_ELEMENTS = 1 << 40  # of any one tensor (input, weights, output)
# ASCII digits only ([0-9], not \d: "٤GB" is not 4 GB), at most 30 of them before the unit
_SIZE_RE = re.compile(r"^[ \t]*([0-9]{1,30}(?:\.[0-9]{1,30})?)[ \t]*([KMGT]i?B|B)?[ \t]*$",
                      re.IGNORECASE | re.ASCII)
_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_bytes(value: int | str) -> int:
    """``"256MiB"`` → 268435456; ints pass through. Raises ValueError on anything else."""
    if isinstance(value, bool):
        raise ValueError("expected a byte count, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        m = _SIZE_RE.match(value)
        if m:
            # exact decimal arithmetic: float() of a 30-digit count loses bytes
            n = int(Decimal(m.group(1)) * _UNITS[(m.group(2) or "B").upper()])
            if n > MAX_BYTES:
                raise ValueError(f"{value!r} is more than {MAX_BYTES >> 40} TiB")
            return n
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
    raise ValueError(f"expected bytes as an integer or a string like '256MiB', got {shown}")


def _pair(value: object, name: str) -> tuple[int, int]:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer or a pair of integers, got {value!r}")
    if isinstance(value, int):
        return (value, value)
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        return (int(value[0]), int(value[1]))
    raise ValueError(f"{name} must be an integer or a pair of integers, got {value!r}")


class ConvSpec(BaseModel):
    """A 2-D convolution in NCHW layout: input (N, C, H, W), weights (K, C/g, R, S)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    batch: int = 1
    in_channels: int
    out_channels: int
    height: int
    width: int
    kernel: tuple[int, int] = (3, 3)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    #: post padding (bottom, right) when it differs from ``padding`` (top, left): the
    #: asymmetric "four-sided" pads of exported models (ONNX ``pads`` = [top, left, bottom,
    #: right]); None = the same as ``padding``
    padding_end: tuple[int, int] | None = None
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    bias: bool = True
    activation: Activation = "none"
    precision: Precision = "fp32"
    workspace: int | None = None
    opt_level: int | None = None
    tf32: bool = True
    algo: Algo = "autotune"
    timing_cache: TimingCache = "reuse"
    #: int8/fp8: precision of the input and output tensors (None: fp32); a floating-point
    #: precision takes only itself here (and drops it: the same case)
    out_precision: IoPrecision | None = None
    typing: Typing = "strong"

    @field_validator("kernel", "stride", "dilation", mode="before")
    @classmethod
    def _pairs(cls, v: object, info) -> tuple[int, int]:  # type: ignore[no-untyped-def]
        return _pair(v, info.field_name)

    @model_validator(mode="before")
    @classmethod
    def _resolve(cls, data: object) -> object:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if isinstance(data.get("workspace"), str):
            data["workspace"] = parse_bytes(data["workspace"])
        prec = data.get("precision", "fp32")
        if data.get("out_precision") is not None and data["out_precision"] == prec and \
                data.get("typing", "strong") == "strong":
            # fp16 with out_precision fp16 is plain fp16 (suites zip precision with
            # out_precision; TOML has no null): same case, same key
            data.pop("out_precision")
        pad = data.get("padding", 0)
        if pad == "same":
            kr, ks = _pair(data.get("kernel", (3, 3)), "kernel")
            dr, ds = _pair(data.get("dilation", (1, 1)), "dilation")
            er, es = dr * (kr - 1), ds * (ks - 1)
            if er % 2 or es % 2:
                raise ValueError("padding='same' needs an odd effective kernel size")
            data["padding"] = (er // 2, es // 2)
        else:
            data["padding"] = _pair(pad, "padding")
        end = data.get("padding_end")
        if end is not None:
            end = _pair(end, "padding_end")
            # symmetric written out is the plain case: one spelling, one key
            data["padding_end"] = None if end == data["padding"] else end
        return data

    @model_validator(mode="after")
    def _check_geometry(self) -> ConvSpec:
        for name in ("batch", "in_channels", "out_channels", "height", "width", "groups"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("batch", "in_channels", "out_channels", "height", "width", "groups",
                     "kernel", "stride", "padding", "dilation"):
            v = getattr(self, name)
            if max(v if isinstance(v, tuple) else (v,)) > MAX_DIM:
                raise ValueError(f"{name} is larger than {MAX_DIM}")
        for name in ("kernel", "stride", "dilation"):
            if min(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be positive, got {list(getattr(self, name))}")
        if min(self.padding) < 0:
            raise ValueError(f"padding must not be negative, got {list(self.padding)}")
        if min(self.pad_end) < 0:
            raise ValueError(f"padding_end must not be negative, got {list(self.pad_end)}")
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(
                f"in_channels ({self.in_channels}) and out_channels ({self.out_channels}) "
                f"must be divisible by groups ({self.groups})"
            )
        for axis, size, k, p, q, d in (("height", self.height, self.kernel[0], self.padding[0],
                                        self.pad_end[0], self.dilation[0]),
                                       ("width", self.width, self.kernel[1], self.padding[1],
                                        self.pad_end[1], self.dilation[1])):
            eff = d * (k - 1) + 1
            if eff > size + p + q:
                pads = f"2*{p}" if p == q else f"{p} + {q}"
                raise ValueError(
                    f"kernel (effective {eff} with dilation {d}) is larger than the padded "
                    f"{axis} ({size} + {pads})"
                )
        if self.workspace is not None and self.workspace < 0:
            raise ValueError(f"workspace must not be negative, got {self.workspace}")
        if self.workspace is not None and self.workspace > MAX_BYTES:
            raise ValueError(f"workspace is more than {MAX_BYTES >> 40} TiB")
        for what, shape in (("input", self.input_shape), ("weights", self.weight_shape),
                            ("output", self.output_shape)):
            if _prod(shape) > MAX_ELEMENTS:
                raise ValueError(f"the {what} tensor {'x'.join(map(str, shape))} has more than "
                                 f"2**40 elements")
        if self.opt_level is not None and not 0 <= self.opt_level <= 5:
            raise ValueError(f"opt_level must be between 0 and 5, got {self.opt_level}")
        if self.out_precision is not None and (not self.quantized or self.typing == "weak"):
            raise ValueError("out_precision applies to strongly typed int8 and fp8 cases only "
                             f"(this case: precision {self.precision!r}, typing "
                             f"{self.typing!r}); their input and output are fp32 otherwise")
        return self

    # --- derived -----------------------------------------------------------------------------
    @property
    def quantized(self) -> bool:
        """int8 or fp8: the network quantizes its input and weights (Q/DQ)."""
        return PRECISIONS[self.precision].quantized

    @property
    def io_precision(self) -> str:
        """Precision of the network's input and output tensors: ``precision`` itself for a
        strongly typed fp32/fp16/bf16 case, ``out_precision`` (default fp32) for int8/fp8, and
        fp32 for weakly typed networks (TensorRT picks the layer precision)."""
        if self.typing == "weak":
            return "fp32"
        if self.quantized:
            return self.out_precision or "fp32"
        return self.precision

    @property
    def pad_end(self) -> tuple[int, int]:
        """Post padding (bottom, right): ``padding_end``, or ``padding`` when symmetric."""
        return self.padding if self.padding_end is None else self.padding_end

    @property
    def asymmetric(self) -> bool:
        return self.padding_end is not None

    @property
    def out_height(self) -> int:
        return (self.height + self.padding[0] + self.pad_end[0]
                - self.dilation[0] * (self.kernel[0] - 1) - 1) // self.stride[0] + 1

    @property
    def out_width(self) -> int:
        return (self.width + self.padding[1] + self.pad_end[1]
                - self.dilation[1] * (self.kernel[1] - 1) - 1) // self.stride[1] + 1

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.in_channels, self.height, self.width)

    @property
    def weight_shape(self) -> tuple[int, int, int, int]:
        return (self.out_channels, self.in_channels // self.groups, *self.kernel)

    @property
    def output_shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.out_channels, self.out_height, self.out_width)

    @property
    def flops(self) -> int:
        """The convolution's conventional count, 2·N·K·(C/g)·R·S·P·Q (a multiply and an add
        per weight tap per output); bias and activation are counted apart
        (:attr:`bias_flops`, :attr:`activation_flops`)."""
        n, k, p, q = self.output_shape
        return 2 * n * k * (self.in_channels // self.groups) * self.kernel[0] * self.kernel[1] \
            * p * q

    @property
    def bias_flops(self) -> int:
        """One add per output element, N·K·P·Q, when there is a bias; else 0."""
        return _prod(self.output_shape) if self.bias else 0

    @property
    def activation_flops(self) -> int:
        """One operation per output element (ReLU's max), N·K·P·Q, when there is an
        activation; else 0."""
        return _prod(self.output_shape) if self.activation != "none" else 0

    @property
    def bytes_min(self) -> int:
        """Input, weights, bias and output each moved once: weights at the case's precision,
        the rest at ``io_precision`` (they are the same except for int8/fp8 and weak typing)."""
        io = (_prod(self.input_shape) + (self.out_channels if self.bias else 0)
              + _prod(self.output_shape))
        return (io * PRECISIONS[self.io_precision].bytes
                + _prod(self.weight_shape) * PRECISIONS[self.precision].bytes)

    @property
    def intensity(self) -> float:
        """Arithmetic intensity in FLOP per byte (``flops / bytes_min``)."""
        return self.flops / self.bytes_min

    @cached_property
    def key(self) -> str:
        """Stable 16-hex-digit id: same spec → same key across runs and Python versions."""
        fields = self.model_dump(mode="json")
        for name in KEY_OPTIONAL:  # added later: at their default, the key of older runs holds
            if fields.get(name) == ConvSpec.model_fields[name].default:
                fields.pop(name, None)
        text = json.dumps(fields, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def short_name(self) -> str:
        """Readable id, e.g. ``fp16-n8-c64-k64-56x56-r3s1p1``."""
        r, s = self.kernel
        parts = [self.precision, f"n{self.batch}", f"c{self.in_channels}", f"k{self.out_channels}",
                 f"{self.height}x{self.width}", f"r{r}" if r == s else f"r{r}x{s}",
                 f"s{self.stride[0]}" if self.stride[0] == self.stride[1]
                 else f"s{self.stride[0]}x{self.stride[1]}",
                 _pad_name(self.padding, self.padding_end)]
        if self.dilation != (1, 1):
            parts.append(f"d{self.dilation[0]}")
        if self.groups != 1:
            parts.append(f"g{self.groups}")
        if self.activation != "none":
            parts.append(self.activation)
        if self.workspace is not None:
            parts.append(f"ws{self.workspace >> 20}M")
        if self.opt_level is not None:
            parts.append(f"O{self.opt_level}")
        if self.algo != "autotune":
            parts.append(self.algo)
        if self.timing_cache != "reuse":
            parts.append(f"tc-{self.timing_cache}")
        if self.out_precision is not None:
            parts.append(f"out-{self.out_precision}")
        if self.typing != "strong":
            parts.append(self.typing)
        return "-".join(parts)


#: fields added after results were first stored: left out of ``key`` while at their default,
#: so a case's key (resume, compare, caches) is the same as in older runs
KEY_OPTIONAL = ("algo", "timing_cache", "out_precision", "typing", "padding_end")


def _pad_name(pre: tuple[int, int], end: tuple[int, int] | None) -> str:
    """``p1``, ``p1x0``, or four-sided ``pt0l0b1r1`` (top, left, bottom, right)."""
    if end is not None:
        return f"pt{pre[0]}l{pre[1]}b{end[0]}r{end[1]}"
    return f"p{pre[0]}" if pre[0] == pre[1] else f"p{pre[0]}x{pre[1]}"


def _prod(shape: tuple[int, ...]) -> int:
    out = 1
    for v in shape:
        out *= v
    return out
