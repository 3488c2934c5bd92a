"""``ConvSpec``: one convolution case, its geometry, precision and build options.

Everything derived (output size, FLOPs, bytes, key) is computed, never stored twice.
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import cached_property
from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

Precision = Literal["fp32", "fp16", "bf16"]
Activation = Literal["none", "relu"]
#: how a library picks its kernel at build time: ``autotune`` times candidates and keeps the
#: fastest (cuDNN's ``benchmark`` mode, the cuDNN frontend's plan search), ``heuristic`` takes
#: the library's first heuristic choice (the same in every process)
Algo = Literal["autotune", "heuristic"]
#: TensorRT: ``reuse`` reads and writes the persistent timing cache (and the engine cache);
#: ``fresh`` reads neither, so every build times its tactics again
TimingCache = Literal["reuse", "fresh"]

BYTES_PER_ELEMENT = {"fp32": 4, "fp16": 2, "bf16": 2}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
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
            return int(float(m.group(1)) * _UNITS[(m.group(2) or "B").upper()])
    raise ValueError(f"expected bytes as an integer or a string like '256MiB', got {value!r}")


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
        return data

    @model_validator(mode="after")
    def _check_geometry(self) -> ConvSpec:
        for name in ("batch", "in_channels", "out_channels", "height", "width", "groups"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("kernel", "stride", "dilation"):
            if min(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be positive, got {list(getattr(self, name))}")
        if min(self.padding) < 0:
            raise ValueError(f"padding must not be negative, got {list(self.padding)}")
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(
                f"in_channels ({self.in_channels}) and out_channels ({self.out_channels}) "
                f"must be divisible by groups ({self.groups})"
            )
        for axis, size, k, p, d in (("height", self.height, self.kernel[0], self.padding[0],
                                     self.dilation[0]),
                                    ("width", self.width, self.kernel[1], self.padding[1],
                                     self.dilation[1])):
            eff = d * (k - 1) + 1
            if eff > size + 2 * p:
                raise ValueError(
                    f"kernel (effective {eff} with dilation {d}) is larger than the padded "
                    f"{axis} ({size} + 2*{p})"
                )
        if self.workspace is not None and self.workspace < 0:
            raise ValueError(f"workspace must not be negative, got {self.workspace}")
        if self.opt_level is not None and not 0 <= self.opt_level <= 5:
            raise ValueError(f"opt_level must be between 0 and 5, got {self.opt_level}")
        return self

    # --- derived -----------------------------------------------------------------------------
    @property
    def out_height(self) -> int:
        return (self.height + 2 * self.padding[0] - self.dilation[0] * (self.kernel[0] - 1)
                - 1) // self.stride[0] + 1

    @property
    def out_width(self) -> int:
        return (self.width + 2 * self.padding[1] - self.dilation[1] * (self.kernel[1] - 1)
                - 1) // self.stride[1] + 1

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
        """Input, weights, bias and output each moved once, at the case's precision."""
        elems = (_prod(self.input_shape) + _prod(self.weight_shape)
                 + (self.out_channels if self.bias else 0) + _prod(self.output_shape))
        return elems * BYTES_PER_ELEMENT[self.precision]

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
                 f"p{self.padding[0]}" if self.padding[0] == self.padding[1]
                 else f"p{self.padding[0]}x{self.padding[1]}"]
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
        return "-".join(parts)


#: fields added after results were first stored: left out of ``key`` while at their default,
#: so a case's key (resume, compare, caches) is the same as in older runs
KEY_OPTIONAL = ("algo", "timing_cache")


def _prod(shape: tuple[int, ...]) -> int:
    out = 1
    for v in shape:
        out *= v
    return out
