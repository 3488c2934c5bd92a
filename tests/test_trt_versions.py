"""Which TensorRT API the backend picks per version, on fake tensorrt modules.

No TensorRT 8.x or 10.x can be installed here, so these fakes (plain namespaces with the
version, enums and the few methods a path calls) prove only the *dispatch*: that a TensorRT 8.6
module gets the explicit-batch flag, ``max_workspace_size`` where memory pools are absent, numpy
``Weights``, weak-typing flags and a bindings list for ``execute_async_v2``; that 10.x gets
STRONGLY_TYPED for strong and no flag for weak; that 11.x and TensorRT-RTX refuse weak typing.
Whether the real modules accept those calls is checked by the names tests
(tests/test_trt_api_names.py, against the 8.6/10.x/11.x binding sources) and the lean-runtime
test; nothing here is a TensorRT result.
"""

from __future__ import annotations

import enum
from types import SimpleNamespace

import numpy as np
import pytest

from bench.backends.tensorrt.config import configure, unsupported_reason
from bench.backends.tensorrt.flavour import TENSORRT, TENSORRT_RTX
from bench.backends.tensorrt.network import network_flags, weights
from bench.spec import ConvSpec

SMALL = dict(in_channels=8, out_channels=8, height=8, width=8)


class _Flags(enum.IntEnum):
    EXPLICIT_BATCH = 0
    STRONGLY_TYPED = 5


def fake_trt(version: str, builder_flags: tuple[str, ...] = ("FP16", "INT8", "FP8", "TF32"),
             dtypes: tuple[str, ...] = ("FLOAT", "HALF", "INT8", "FP8")) -> SimpleNamespace:
    calls: list[tuple] = []

    class Weights:
        def __init__(self, *args: object) -> None:
            calls.append(("Weights", tuple(type(a).__name__ for a in args)))

    return SimpleNamespace(
        __version__=version, calls=calls, Weights=Weights,
        NetworkDefinitionCreationFlag=_Flags,
        BuilderFlag=enum.Enum("BuilderFlag", list(builder_flags)),
        DataType=enum.Enum("DataType", list(dtypes)),
        MemoryPoolType=SimpleNamespace(WORKSPACE="WORKSPACE"),
        ProfilingVerbosity=SimpleNamespace(DETAILED="DETAILED"))


class _Config8:
    """An 8.x-era builder config without memory pools (pre-8.4 attribute)."""

    def __init__(self) -> None:
        self.flags: set[str] = set()
        self.max_workspace_size = 0

    def set_flag(self, f: object) -> None:
        self.flags.add(f.name)  # type: ignore[attr-defined]

    def clear_flag(self, f: object) -> None:
        self.flags.discard(f.name)  # type: ignore[attr-defined]

    def get_flag(self, f: object) -> bool:
        return f.name in self.flags  # type: ignore[attr-defined]


def test_network_flags_per_version() -> None:
    strong, weak = ConvSpec(**SMALL, precision="fp16"), ConvSpec(**SMALL, typing="weak")
    assert network_flags(fake_trt("8.6.1"), TENSORRT, weak) == 1 << 0  # EXPLICIT_BATCH
    assert network_flags(fake_trt("10.16.1"), TENSORRT, strong) == 1 << 5  # STRONGLY_TYPED
    assert network_flags(fake_trt("10.16.1"), TENSORRT, weak) == 0
    assert network_flags(fake_trt("11.1.0"), TENSORRT, strong) == 0
    assert network_flags(fake_trt("1.7.1"), TENSORRT_RTX, strong) == 0


def test_weights_use_numpy_on_8x_and_pointers_from_10() -> None:
    host = np.ones(4, np.float32)
    for version, flavour, want in (("8.6.1", TENSORRT, ("ndarray",)),
                                   ("10.0.1", TENSORRT, ("DataType", "int", "int")),
                                   ("1.7.1", TENSORRT_RTX, ("DataType", "int", "int"))):
        trt = fake_trt(version)
        weights(trt, flavour, host, "fp32", [])
        assert trt.calls == [("Weights", want)], version


def test_configure_on_8x_sets_max_workspace_size_and_weak_flags() -> None:
    trt = fake_trt("8.6.1")
    builder = SimpleNamespace(create_builder_config=_Config8)
    spec = ConvSpec(**SMALL, precision="fp16", typing="weak", workspace="64MiB", opt_level=3)
    config, applied = configure(trt, builder, spec, TENSORRT, None)
    assert config.max_workspace_size == 64 << 20 and applied["workspace"] == 64 << 20
    assert applied["opt_level"] is None  # no builder_optimization_level on this config
    assert config.flags == {"FP16", "TF32"} and applied["builder_flags"] == ["FP16"]
    assert applied["tf32"] is True and applied["typing"] == "weak"


@pytest.mark.parametrize("version,flavour,kw,needle", [
    ("8.6.1", TENSORRT, dict(precision="fp16"), "no strongly typed networks"),
    ("8.6.1", TENSORRT, dict(precision="int8"), "use typing = 'weak' for int8"),
    ("8.6.1", TENSORRT, dict(precision="bf16", typing="weak"), "no BuilderFlag.BF16"),
    ("8.6.1", TENSORRT, dict(precision="fp8", typing="weak"), "need TensorRT 10.0 or newer"),
    ("11.1.0", TENSORRT, dict(precision="fp16", typing="weak"), "typing = 'weak' needs"),
    ("1.7.1", TENSORRT_RTX, dict(precision="int8", typing="weak"), "typing = 'weak' needs"),
    ("10.16.1", TENSORRT, dict(precision="fp8"), "compute capability 8.9 or newer"),
    ("10.16.1", TENSORRT, dict(precision="bf16"), "compute capability 8.0 or newer"),
])
def test_what_a_version_cannot_build_is_one_line(version: str, flavour, kw: dict,
                                                 needle: str) -> None:
    # 8.6's BuilderFlag has FP16/INT8/FP8/TF32 and DataType FLOAT/HALF/INT8/FP8, no BF16
    # (bench/backends/trt_api/tensorrt-8.6.txt)
    trt = fake_trt(version)
    if version.startswith(("10.", "11.", "1.")):
        trt = fake_trt(version, dtypes=("FLOAT", "HALF", "BF16", "INT8", "FP8"))
    why = unsupported_reason(trt, flavour, ConvSpec(**SMALL, **kw), cc=(7, 5), portable=False)
    assert why is not None and needle in why and "\n" not in why


@pytest.mark.parametrize("version,flavour,kw", [
    ("8.6.1", TENSORRT, dict(precision="fp32")),
    ("8.6.1", TENSORRT, dict(precision="int8", typing="weak")),
    ("8.6.1", TENSORRT, dict(precision="fp16", typing="weak")),
    ("10.16.1", TENSORRT, dict(precision="fp8", out_precision="fp16")),
    ("10.16.1", TENSORRT, dict(precision="bf16", typing="weak")),
    ("11.1.0", TENSORRT, dict(precision="int8", out_precision="bf16")),
])
def test_what_a_version_builds(version: str, flavour, kw: dict) -> None:
    bf16 = ("BF16",) if int(version.split(".")[0]) >= 10 else ()
    flags = ("FP16", "INT8", "FP8", "TF32") + bf16
    dtypes = ("FLOAT", "HALF", "INT8", "FP8") + bf16
    trt = fake_trt(version, builder_flags=flags, dtypes=dtypes)
    assert unsupported_reason(trt, flavour, ConvSpec(**SMALL, **kw), cc=(9, 0),
                              portable=False) is None


def test_bindings_era_execution_uses_a_bindings_list() -> None:
    """engine.TensorRTEngine binds through set_tensor_address where it exists, else through a
    bindings list for execute_async_v2 (the context below has only the 8.x-era methods)."""
    from bench.backends.tensorrt.engine import TensorRTEngine

    launched: list[tuple] = []
    context = SimpleNamespace(
        execute_async_v2=lambda bindings, stream: launched.append((list(bindings), stream))
        or True)
    engine_obj = SimpleNamespace(num_bindings=2,
                                 get_binding_index=lambda n: {"input": 0, "output": 1}[n])
    e = TensorRTEngine.__new__(TensorRTEngine)
    e._context, e._engine, e._bindings, e._closed = context, engine_obj, None, False
    e._bind({"input": 0x1000, "output": 0x2000})
    e._enqueue_impl(SimpleNamespace(handle=7))
    assert launched == [([0x1000, 0x2000], 7)]
