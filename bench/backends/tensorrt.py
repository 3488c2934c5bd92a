"""The TensorRT backend: TensorRT 10.x, 11.x and TensorRT-RTX through one code path.

Module selection: ``tensorrt`` if importable, else ``tensorrt_rtx`` (backend ``tensorrt``);
backend ``tensorrt-rtx`` always uses ``tensorrt_rtx``. Both modules expose the same API family;
the few differences are guarded where they are used (see ``tests/test_trt_api_names.py``, which
checks every name used here against TensorRT 10.x and 11.x binding sources and the live
``tensorrt_rtx``).

TensorRT-RTX builds engines ahead of time without a GPU (for a target compute capability, or
portable by default) but its runtime does not support every GPU (not Hopper, CC 9.0). So the
build always runs and yields a ``BuildInfo`` (build seconds, plan bytes, layers); when the plan
cannot run here, :class:`NoSupportedGpu` — an ``UnsupportedCase`` carrying that ``BuildInfo`` as
``build_info`` — is raised from :meth:`TensorRTBackend.require_runtime`, after the build.

Caches under ``cache_dir/tensorrt/``: a persistent timing cache (full TensorRT; TensorRT-RTX's
timing cache is a no-op, it has a runtime cache of JIT-compiled kernels instead, kept per engine
key) and an engine cache of plans with a JSON sidecar holding the plan's sha256 and what it was
built for. An entry that fails either check is logged as a warning and rebuilt, never trusted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import numpy as np

from bench.backends.base import (
    Backend,
    BuildContext,
    BuildInfo,
    ConvData,
    DeviceKind,
    Engine,
    LayerTime,
    StreamLike,
)
from bench.backends.trt_inspect import EngineLayout, layer_times, parse_engine_info
from bench.errors import BuildFailed, UnsupportedCase
from bench.precision import decode, encode, storage_dtype
from bench.spec import ConvSpec

log = logging.getLogger(__name__)

#: Bump when the network built for a spec changes, so cached plans of older code are not used.
NETWORK_VERSION = 1
INPUT, OUTPUT = "input", "output"
CONV_LAYER, ACT_LAYER = "conv", "relu"


class NoSupportedGpu(UnsupportedCase):
    """The engine was built, but this machine has no GPU its runtime supports.

    ``build_info`` holds the build's record (build seconds, plan bytes, layers), so a run still
    stores what the build cost and chose.
    """

    def __init__(self, reason: str, build_info: BuildInfo) -> None:
        super().__init__(reason)
        self.build_info = build_info


# --- flavours -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Flavour:
    module: str  # python module name
    label: str  # what users read
    extra: str  # pip extra of trt-convbench that installs it
    rtx: bool


TENSORRT = Flavour("tensorrt", "TensorRT", "tensorrt", rtx=False)
TENSORRT_RTX = Flavour("tensorrt_rtx", "TensorRT-RTX", "tensorrt-rtx", rtx=True)

_imported: dict[str, ModuleType | str] = {}  # module name → module, or why it failed


def import_flavour(flavour: Flavour) -> ModuleType | str:
    """The imported module, or a one-line reason it cannot be imported (cached)."""
    if flavour.module not in _imported:
        try:
            import importlib

            _imported[flavour.module] = importlib.import_module(flavour.module)
        except ImportError as e:
            _imported[flavour.module] = (
                f"not installed — pip install 'trt-convbench[{flavour.extra}]'"
                if getattr(e, "name", None) == flavour.module
                else f"{flavour.module} is installed but does not import: {e}")
        except OSError as e:  # a missing shared library of the wheel
            _imported[flavour.module] = f"{flavour.module} does not load: {e}"
    return _imported[flavour.module]


def major_version(trt: ModuleType) -> int:
    return int(str(trt.__version__).split(".")[0])


# --- the GPU of this machine ----------------------------------------------------------------------
@dataclass(frozen=True)
class GpuId:
    name: str
    uuid: str
    cc: tuple[int, int]

    @property
    def sm(self) -> str:
        return f"sm{self.cc[0]}{self.cc[1]}"


_gpu_cache: list[GpuId | None] = []


def current_gpu() -> GpuId | None:
    """Name, UUID and compute capability of CUDA device 0 (as bench.gpu.cuda reports them),
    or None without a usable GPU."""
    if not _gpu_cache:
        _gpu_cache.append(_query_gpu())
    return _gpu_cache[0]


def _query_gpu() -> GpuId | None:
    try:
        from bench.gpu import cuda

        if cuda.unavailable_reason():
            return None
        info = cuda.Device(0).info
        return GpuId(name=info.name, uuid=info.uuid, cc=tuple(info.cc))  # type: ignore[arg-type]
    except Exception:  # noqa: BLE001 - no driver, no device: both mean "no GPU" here
        return None


def rtx_targets(trt: ModuleType) -> dict[tuple[int, int], Any]:
    """Compute capabilities TensorRT-RTX builds for and runs on → its ComputeCapability value."""
    out = {}
    for name, value in trt.ComputeCapability.__members__.items():
        if name.startswith("SM") and name[2:].isdigit():
            digits = name[2:]
            out[(int(digits[:-1]), int(digits[-1]))] = value
    return out


# --- logging ------------------------------------------------------------------------------------
def _make_logger(trt: ModuleType) -> Any:
    """An ILogger keeping warnings and errors, so a failed build says why."""

    class _Logger(trt.ILogger):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.messages: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            if int(severity) <= int(trt.ILogger.Severity.WARNING):
                self.messages.append(f"[{severity.name}] {msg}")
                log.debug("%s: %s", severity.name, msg)

        def errors(self) -> str:
            errs = [m for m in self.messages if not m.startswith("[WARNING]")]
            return " | ".join(errs or self.messages) or "no message from the TensorRT logger"

    return _Logger()


# --- network and builder config -------------------------------------------------------------------
_TRT_DTYPES = {"fp32": "FLOAT", "fp16": "HALF", "bf16": "BF16"}


def trt_dtype(trt: ModuleType, precision: str) -> Any:
    return getattr(trt.DataType, _TRT_DTYPES[precision])


def _weights(trt: ModuleType, host: np.ndarray, precision: str, keep: list[np.ndarray]) -> Any:
    """TensorRT Weights of ``precision`` over a host copy that ``keep`` holds alive: TensorRT
    reads the pointer only when the engine is built (bf16 goes in as its 16-bit patterns)."""
    raw = np.ascontiguousarray(encode(host, precision))
    keep.append(raw)
    return trt.Weights(trt_dtype(trt, precision), raw.ctypes.data, raw.size)


def network_flags(trt: ModuleType, flavour: Flavour) -> int:
    # TensorRT 10.x needs STRONGLY_TYPED (no BuilderFlag.FP16: 11.x removed it); 11.x and
    # TensorRT-RTX networks are always strongly typed and 11.x deprecates the flag.
    if flavour.rtx or major_version(trt) >= 11:
        return 0
    return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)


def define_network(trt: ModuleType, network: Any, spec: ConvSpec, data: ConvData,
                   keep: list[np.ndarray]) -> Any:
    """input → convolution (+ relu) → output. Returns the output tensor."""
    x = network.add_input(INPUT, trt_dtype(trt, spec.precision), spec.input_shape)
    bias = (_weights(trt, data.b, spec.precision, keep) if data.b is not None
            else trt.Weights(trt_dtype(trt, spec.precision)))
    conv = network.add_convolution_nd(x, spec.out_channels, spec.kernel,
                                      _weights(trt, data.w, spec.precision, keep), bias)
    if conv is None:
        raise BuildFailed(f"add_convolution_nd refused {spec.short_name()}")
    conv.stride_nd = spec.stride
    conv.padding_nd = spec.padding
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


def configure(trt: ModuleType, builder: Any, spec: ConvSpec, flavour: Flavour,
              target: Any | None) -> tuple[Any, dict[str, Any]]:
    """A builder config for ``spec``; returns it and what was set, for BuildInfo.extra."""
    config = builder.create_builder_config()
    applied: dict[str, Any] = {}
    if spec.workspace is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, spec.workspace)
        applied["workspace"] = spec.workspace
    if spec.opt_level is not None:
        if hasattr(config, "builder_optimization_level"):
            config.builder_optimization_level = spec.opt_level
            applied["opt_level"] = spec.opt_level
        else:
            applied["opt_level"] = None  # this flavour has no optimization levels
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    if spec.precision == "fp32":
        if spec.tf32:
            config.set_flag(trt.BuilderFlag.TF32)
        else:
            config.clear_flag(trt.BuilderFlag.TF32)
    applied["tf32"] = bool(spec.precision == "fp32" and config.get_flag(trt.BuilderFlag.TF32))
    if flavour.rtx and target is not None:
        # TensorRT-RTX only: build for one compute capability instead of its portable default
        config.num_compute_capabilities = 1
        if not config.set_compute_capability(target, 0):
            raise BuildFailed(f"TensorRT-RTX refused target compute capability {target}")
    return config, applied


# --- caches ---------------------------------------------------------------------------------------
def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class EngineCache:
    """Plans on disk, one per (spec key, weights, flavour, version, target), with a sidecar.

    ``<key>.plan`` holds the serialized engine; ``<key>.json`` its sha256, size and the fields it
    was built for, plus the BuildInfo of the build (layers, build seconds). The sidecar is
    written last, so a plan without one is an interrupted write.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.last_rejection: str | None = None  # why the last load() refused an entry

    @staticmethod
    def key_fields(spec: ConvSpec, data: ConvData, flavour: Flavour, version: str,
                   target: str) -> dict[str, Any]:
        h = hashlib.sha256()
        for a in (data.w, data.b):
            if a is not None:
                h.update(np.ascontiguousarray(a, dtype=np.float32).tobytes())
        return {"spec_key": spec.key, "weights_sha256": h.hexdigest(), "flavour": flavour.module,
                "version": version, "target": target, "network_version": NETWORK_VERSION}

    def _paths(self, fields: dict[str, Any]) -> tuple[Path, Path]:
        digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:20]
        d = self.root / fields["flavour"] / fields["version"] / fields["target"]
        name = f"{fields['spec_key']}-{digest}"
        return d / f"{name}.plan", d / f"{name}.json"

    def load(self, fields: dict[str, Any]) -> tuple[bytes, dict[str, Any]] | None:
        """(plan, sidecar) of a valid entry, or None. A bad entry is logged and removed."""
        plan_path, meta_path = self._paths(fields)
        if not plan_path.exists() and not meta_path.exists():
            return None
        try:
            meta = json.loads(meta_path.read_text())
            plan = plan_path.read_bytes()
        except (OSError, ValueError) as e:
            return self._reject(fields, f"unreadable ({type(e).__name__}: {e})")
        if not isinstance(meta, dict) or meta.get("fields") != fields:
            return self._reject(fields, "built for something else (sidecar fields differ)")
        if meta.get("bytes") != len(plan) or meta.get("sha256") != hashlib.sha256(
                plan).hexdigest():
            return self._reject(fields, "corrupted (sha256 of the plan does not match)")
        return plan, meta

    def store(self, fields: dict[str, Any], plan: bytes, info: BuildInfo) -> None:
        plan_path, meta_path = self._paths(fields)
        _atomic_write(plan_path, plan)
        meta = {"schema": 1, "fields": fields, "bytes": len(plan),
                "sha256": hashlib.sha256(plan).hexdigest(), "build": info.to_json()}
        _atomic_write(meta_path, json.dumps(meta, indent=1).encode())

    def _reject(self, fields: dict[str, Any], why: str) -> None:
        plan_path, meta_path = self._paths(fields)
        log.warning("engine cache entry %s is %s: rebuilding it", plan_path, why)
        self.last_rejection = why
        self.discard(fields)
        return None

    def discard(self, fields: dict[str, Any]) -> None:
        for p in self._paths(fields):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()


def _load_timing_cache(trt: ModuleType, config: Any, path: Path | None) -> Any | None:
    """Attach the persistent timing cache (full TensorRT only). A bad file is logged and
    replaced by an empty cache."""
    if path is None:
        return None
    blob = b""
    if path.exists():
        blob = path.read_bytes()
    cache = config.create_timing_cache(blob)
    if cache is None and blob:
        log.warning("timing cache %s is unreadable by this TensorRT: starting a new one", path)
        cache = config.create_timing_cache(b"")
    if cache is not None and not config.set_timing_cache(cache, False):
        log.warning("timing cache %s does not match this GPU/TensorRT: starting a new one", path)
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, True)
    return cache


def _save_timing_cache(config: Any, path: Path | None) -> None:
    if path is None:
        return
    cache = config.get_timing_cache()
    if cache is not None:
        _atomic_write(path, bytes(cache.serialize()))


# --- backend --------------------------------------------------------------------------------------
class TensorRTBackend(Backend):
    """TensorRT if installed, else TensorRT-RTX."""

    name = "tensorrt"
    install_hint = "pip install 'trt-convbench[tensorrt]'"
    flavours: ClassVar[tuple[Flavour, ...]] = (TENSORRT, TENSORRT_RTX)

    def __init__(self) -> None:
        self._chosen: tuple[Flavour, ModuleType] | None = None

    # flavour ------------------------------------------------------------------------------------
    def _select(self) -> tuple[Flavour, ModuleType] | str:
        if self._chosen is not None:
            return self._chosen
        reasons = []
        for fl in self.flavours:
            mod = import_flavour(fl)
            if isinstance(mod, ModuleType):
                self._chosen = (fl, mod)
                return self._chosen
            reasons.append(f"{fl.label}: {mod}")
        return "; ".join(reasons)

    @property
    def flavour(self) -> Flavour | None:
        sel = self._select()
        return None if isinstance(sel, str) else sel[0]

    def _module(self) -> tuple[Flavour, ModuleType]:
        sel = self._select()
        if isinstance(sel, str):
            from bench.errors import BackendUnavailable

            raise BackendUnavailable(f"{self.name}: {sel}")
        return sel

    def available(self) -> tuple[bool, str]:
        sel = self._select()
        if isinstance(sel, str):
            return False, sel
        flavour, _ = sel
        if not flavour.rtx and current_gpu() is None:
            return False, ("no CUDA GPU: TensorRT's builder needs one (TensorRT-RTX builds "
                           "without one: pip install 'trt-convbench[tensorrt-rtx]')")
        return True, ""

    def runtime_support(self) -> tuple[bool, str]:
        """Whether engines can run here, and if not, why ("no supported GPU: ...")."""
        flavour, trt = self._module()
        gpu = current_gpu()
        if gpu is None:
            return False, (f"no supported GPU: no CUDA GPU found ({flavour.label} builds "
                           "engines without one but cannot run them)")
        if flavour.rtx and gpu.cc not in rtx_targets(trt):
            supported = ", ".join(f"{a}.{b}" for a, b in sorted(rtx_targets(trt)))
            return False, (f"no supported GPU: TensorRT-RTX does not run on compute capability "
                           f"{gpu.cc[0]}.{gpu.cc[1]} ({gpu.name}); it supports {supported}")
        return True, ""

    def versions(self) -> dict[str, str]:
        sel = self._select()
        if isinstance(sel, str):
            return {}
        flavour, trt = sel
        out = {flavour.module: str(trt.__version__), "flavour": flavour.label,
               "build_target": self.build_target()[0]}
        ok, why = self.runtime_support()
        out["execution"] = "ok" if ok else why
        return out

    @property
    def device(self) -> DeviceKind:
        # Engines run on the GPU; without one nothing runs (builds still do, for TensorRT-RTX)
        # and the runner must not open a CUDA session.
        return "cuda" if current_gpu() is not None else "cpu"

    def build_target(self) -> tuple[str, Any | None]:
        """(label, ComputeCapability or None) the engines are built for.

        Full TensorRT builds for the GPU it runs on. TensorRT-RTX builds for the GPU when it
        supports it, else its portable default (CC 8.0, 8.6, 8.9, 12.0 and later, per NVIDIA's
        "CPU-Only AOT and TensorRT-RTX Engines").
        """
        flavour, trt = self._module()
        gpu = current_gpu()
        if not flavour.rtx:
            return (f"{gpu.sm}-{gpu.uuid}" if gpu else "none"), None
        targets = rtx_targets(trt)
        if gpu is not None and gpu.cc in targets:
            return gpu.sm, targets[gpu.cc]
        return "portable", None

    def require_runtime(self, info: BuildInfo) -> None:
        """Raise :class:`NoSupportedGpu` (carrying ``info``) when the built plan cannot run."""
        ok, why = self.runtime_support()
        if not ok:
            raise NoSupportedGpu(why, info)

    # build --------------------------------------------------------------------------------------
    def _build_impl(self, spec: ConvSpec, data: ConvData, ctx: BuildContext) -> Engine:
        cache_dir = ctx.cache_dir
        flavour, trt = self._module()
        target_label, target = self.build_target()
        self._check_precision(spec, target_label)
        version = str(trt.__version__)
        cache = EngineCache(cache_dir / "tensorrt" / "engines") if cache_dir else None
        fields = EngineCache.key_fields(spec, data, flavour, version, target_label)
        for attempt in (1, 2):
            plan, info = self.build_plan(spec, data, cache_dir, cache, fields, target)
            info.extra.update(flavour=flavour.label, version=version, target=target_label)
            self.require_runtime(info)
            try:
                return TensorRTEngine(spec, info, trt, plan, flavour, cache_dir, fields)
            except _DeserializeFailed as e:
                if not info.cache_hit or cache is None or attempt == 2:
                    raise BuildFailed(str(e)) from None
                log.warning("cached engine for %s does not deserialize (%s): rebuilding it",
                            spec.short_name(), e)
                cache.discard(fields)
        raise AssertionError("unreachable")

    def _check_precision(self, spec: ConvSpec, target_label: str) -> None:
        gpu = current_gpu()
        cc = gpu.cc if gpu else None
        if target_label.startswith("sm") and cc is None:
            cc = (int(target_label[2:-1]), int(target_label[-1]))
        if spec.precision == "bf16" and cc is not None and cc < (8, 0):
            raise UnsupportedCase(f"bf16 needs compute capability 8.0 or newer "
                                  f"(this target is {cc[0]}.{cc[1]})")

    def build_plan(self, spec: ConvSpec, data: ConvData, cache_dir: Path | None,
                   cache: EngineCache | None, fields: dict[str, Any],
                   target: Any | None) -> tuple[bytes, BuildInfo]:
        """The serialized engine for ``spec``, from the engine cache or a fresh build."""
        note = None
        if cache is not None:
            hit = cache.load(fields)
            if hit is not None:
                plan, meta = hit
                old = meta.get("build", {})
                info = BuildInfo(build_s=0.0, plan_bytes=len(plan), cache_hit=True,
                                 layers=list(old.get("layers", [])),
                                 extra={**old.get("extra", {}),
                                        "original_build_s": old.get("build_s")})
                return plan, info
            note = cache.last_rejection
        flavour, trt = self._module()
        plan, info = self._build_fresh(trt, flavour, spec, data, cache_dir, target)
        if note:
            info.extra["cache_rejected"] = note
        if cache is not None:
            cache.store(fields, plan, info)
        return plan, info

    def _build_fresh(self, trt: ModuleType, flavour: Flavour, spec: ConvSpec, data: ConvData,
                     cache_dir: Path | None, target: Any | None) -> tuple[bytes, BuildInfo]:
        logger = _make_logger(trt)
        keep: list[np.ndarray] = []  # weights must outlive build_serialized_network
        t0 = time.perf_counter()
        builder = trt.Builder(logger)
        network = builder.create_network(network_flags(trt, flavour))
        define_network(trt, network, spec, data, keep)
        config, applied = configure(trt, builder, spec, flavour, target)
        tc_path = None
        if cache_dir is not None and not flavour.rtx:
            tc_path = (cache_dir / "tensorrt" /
                       f"timing-{trt.__version__}-{self.build_target()[0]}.cache")
        _load_timing_cache(trt, config, tc_path)
        plan = builder.build_serialized_network(network, config)
        build_s = time.perf_counter() - t0
        if plan is None:
            msg = f"{flavour.label} build failed: {logger.errors()}"
            if spec.workspace is not None and any(
                    w in msg.lower() for w in ("workspace", "scratch", "outofmemory")):
                msg = f"workspace limit {spec.workspace} B too small? {msg}"
            raise BuildFailed(msg)
        _save_timing_cache(config, tc_path)
        blob = bytes(plan)
        info = BuildInfo(build_s=build_s, plan_bytes=len(blob), cache_hit=False,
                         layers=network_layers(network),
                         extra={**applied, "strongly_typed": True,
                                "warnings": [m for m in logger.messages
                                             if m.startswith("[WARNING]")][:20]})
        return blob, info


class TensorRTRTXBackend(TensorRTBackend):
    """Always TensorRT-RTX, even where full TensorRT is installed."""

    name = "tensorrt-rtx"
    install_hint = "pip install 'trt-convbench[tensorrt-rtx]'"
    flavours = (TENSORRT_RTX,)


# --- runtime (needs a GPU the flavour supports) ---------------------------------------------------
class _DeserializeFailed(Exception):
    pass


def _make_profiler(trt: ModuleType) -> Any:
    class _Profiler(trt.IProfiler):  # type: ignore[misc, name-defined]
        """Collects IProfiler reports, one list of (layer, ms) per report_to_profiler()."""

        def __init__(self) -> None:
            trt.IProfiler.__init__(self)
            self.reports: list[list[tuple[str, float]]] = [[]]

        def report_layer_time(self, layer_name: str, ms: float) -> None:
            self.reports[-1].append((layer_name, float(ms)))

        def next_iteration(self) -> None:
            self.reports.append([])

    return _Profiler()


class TensorRTEngine(Engine):
    """A deserialized engine with its execution context and device buffers."""

    device: DeviceKind = "cuda"

    def __init__(self, spec: ConvSpec, info: BuildInfo, trt: ModuleType, plan: bytes,
                 flavour: Flavour, cache_dir: Path | None, fields: dict[str, Any]) -> None:
        super().__init__(spec, info)
        self._trt, self._flavour = trt, flavour
        self._logger = _make_logger(trt)
        self._runtime = self._engine = self._context = None
        self._runtime_cache_path: Path | None = None
        self._runtime_cache: Any = None
        self._x = self._y = self._own_stream = None
        self.layout: EngineLayout | None = None
        try:
            self._open(plan, cache_dir, fields)
        except BaseException:
            self.close()
            raise

    def _open(self, plan: bytes, cache_dir: Path | None, fields: dict[str, Any]) -> None:
        from bench.gpu import cuda

        trt, spec = self._trt, self.spec
        self._device = cuda.Device(0)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(plan)
        if self._engine is None:
            raise _DeserializeFailed(f"{self._flavour.label} could not deserialize the plan: "
                                     f"{self._logger.errors()}")
        if self._flavour.rtx:
            self._context = self._rtx_context(cache_dir, fields)
        else:
            self._context = self._engine.create_execution_context()
        if self._context is None:
            raise BuildFailed(f"could not create an execution context: {self._logger.errors()}")
        self.layout = self._inspect()
        if self.layout is not None:
            self.info.layers = [layer.to_json() for layer in self.layout.layers]
            self.info.extra["inspector_schema"] = self.layout.schema
        sdt = storage_dtype(spec.precision)
        self._x = self._device.alloc(int(np.prod(spec.input_shape)) * sdt.itemsize)
        self._y = self._device.alloc(int(np.prod(spec.output_shape)) * sdt.itemsize)
        for name, buf in ((INPUT, self._x), (OUTPUT, self._y)):
            if not self._context.set_tensor_address(name, buf.ptr):
                raise RuntimeError(f"set_tensor_address({name!r}) failed: "
                                   f"{self._logger.errors()}")
        self._out_dtype = sdt

    def _rtx_context(self, cache_dir: Path | None, fields: dict[str, Any]) -> Any:
        """TensorRT-RTX compiles kernels at first run; a runtime cache per engine keeps them."""
        rc = self._engine.create_runtime_config()
        if cache_dir is not None:
            self._runtime_cache_path = (cache_dir / "tensorrt" / "runtime" /
                                        f"{fields['spec_key']}-{fields['target']}.cache")
            cache = rc.create_runtime_cache()
            if self._runtime_cache_path.exists():
                blob = self._runtime_cache_path.read_bytes()
                if not cache.deserialize(blob):
                    log.warning("runtime cache %s is unreadable: starting a new one",
                                self._runtime_cache_path)
                    cache = rc.create_runtime_cache()
            rc.set_runtime_cache(cache)
            self._runtime_cache = cache
        return self._engine.create_execution_context(rc)

    def _inspect(self) -> EngineLayout | None:
        trt = self._trt
        inspector = self._engine.create_engine_inspector()
        if inspector is None:
            return None
        inspector.execution_context = self._context
        text = inspector.get_engine_information(trt.LayerInformationFormat.JSON)
        # kept as TensorRT wrote it: ``convbench export --trtexec`` writes it back as
        # trtexec's --exportLayerInfo file (samples/common/sampleReporting.cpp, v11.0, l. 556-560)
        self.info.extra["inspector_json"] = text
        try:
            return parse_engine_info(text)
        except ValueError as e:
            log.warning("engine inspector output not understood: %s", e)
            return None

    def _stream(self, stream: StreamLike | None) -> StreamLike:
        if stream is not None:
            return stream
        if self._own_stream is None:
            self._own_stream = self._device.stream()
        return self._own_stream

    def _set_input_impl(self, x: np.ndarray) -> None:
        s = self._stream(None)
        self._x.upload(encode(x, self.spec.precision), s)
        s.sync()

    def _enqueue_impl(self, stream: StreamLike | None) -> None:
        if not self._context.execute_async_v3(self._stream(stream).handle):
            raise RuntimeError(f"execute_async_v3 failed: {self._logger.errors()}")

    def _output_impl(self, stream: StreamLike | None) -> np.ndarray:
        s = self._stream(stream)
        raw = self._y.download(self.spec.output_shape, self._out_dtype, s)
        s.sync()
        return decode(np.asarray(raw), self.spec.precision)

    def _layer_profile_impl(self, stream: StreamLike | None, iters: int) -> list[LayerTime]:
        """Per-layer times in a run of its own: the profiler is attached only here.

        ``enqueue_emits_profile = False`` makes enqueue only record TensorRT's per-layer events
        (as inside a CUDA graph); ``report_to_profiler()`` then reports one inference."""
        s = self._stream(stream)
        prof = _make_profiler(self._trt)
        self._context.profiler = prof
        self._context.enqueue_emits_profile = False
        for i in range(max(1, iters)):
            self._enqueue_impl(s)
            s.sync()
            if i:
                prof.next_iteration()
            if not self._context.report_to_profiler():
                raise RuntimeError(f"report_to_profiler failed: {self._logger.errors()}")
        return layer_times([r for r in prof.reports if r], self.layout)

    def _close_impl(self) -> None:
        if self._runtime_cache is not None and self._runtime_cache_path is not None:
            with contextlib.suppress(Exception):  # a cache that cannot be saved is not fatal
                _atomic_write(self._runtime_cache_path,
                              bytes(self._runtime_cache.serialize()))
        for buf in (self._x, self._y):
            close = getattr(buf, "close", None) or getattr(buf, "free", None)
            if close:
                close()
        self._x = self._y = None
        if self._own_stream is not None:
            self._own_stream.close()
            self._own_stream = None
        # drop TensorRT objects child-first (context before engine before runtime)
        self._context = self._engine = self._runtime = None
