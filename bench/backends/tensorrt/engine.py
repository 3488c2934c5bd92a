"""The runtime side: deserialize a plan, make an execution context, bind buffers, enqueue on
convbench's stream, and the per-layer IProfiler — Polygraphy's ``EngineFromBytes`` +
``TrtRunner`` in small parts. Needs a GPU the flavour's runtime supports.

Two execution APIs: tensor addresses + ``execute_async_v3`` (TensorRT 8.5 and later), else a
bindings list + ``execute_async_v2`` (the bindings era; removed in 10.0). Every runtime name used
here is checked against the real TensorRT 11.4 lean runtime in tests/test_trt_lean_runtime.py.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from bench.backends.base import BuildInfo, DeviceKind, Engine, LayerTime, StreamLike
from bench.backends.tensorrt.cache import atomic_write
from bench.backends.tensorrt.flavour import Flavour, make_logger
from bench.backends.tensorrt.inspector import EngineLayout, layer_times, parse_engine_info
from bench.backends.tensorrt.network import INPUT, OUTPUT
from bench.errors import BuildFailed
from bench.precision import decode, encode, storage_dtype
from bench.spec import ConvSpec

log = logging.getLogger(__name__)


class DeserializeFailed(Exception):
    pass


def make_profiler(trt: ModuleType) -> Any:
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


def deserialize_plan(trt: ModuleType, logger: Any, plan: bytes, label: str) -> tuple[Any, Any]:
    """(runtime, engine) from a serialized plan, on the current CUDA device."""
    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(plan)
    if engine is None:
        raise DeserializeFailed(f"{label} could not deserialize the plan: {logger.errors()}")
    return runtime, engine


def inspect_engine(trt: ModuleType, engine: Any, context: Any) -> EngineLayout | None:
    """What the engine inspector says about ``engine`` (layers, tactics, formats), or None.

    None also where the runtime binds ``create_engine_inspector`` but not the inspector class
    (TensorRT 11.4's lean runtime: pybind11 then raises TypeError on the return value)."""
    try:
        inspector = engine.create_engine_inspector()
    except TypeError as e:
        log.warning("engine inspector not available in this runtime: %s", e)
        return None
    if inspector is None:
        return None
    inspector.execution_context = context
    text = inspector.get_engine_information(trt.LayerInformationFormat.JSON)
    try:
        layout = parse_engine_info(text)
        # kept as TensorRT wrote it: ``convbench export --trtexec`` writes it back as
        # trtexec's --exportLayerInfo file (samples/common/sampleReporting.cpp, v11.0, l. 556-560)
        layout.raw_json = text
        return layout
    except ValueError as e:
        log.warning("engine inspector output not understood: %s", e)
        return None


class TensorRTEngine(Engine):
    """A deserialized engine with its execution context and device buffers."""

    device: DeviceKind = "cuda"

    def __init__(self, spec: ConvSpec, info: BuildInfo, trt: ModuleType, plan: bytes,
                 flavour: Flavour, device_index: int, runtime_cache: Path | None) -> None:
        super().__init__(spec, info)
        self._trt, self._flavour = trt, flavour
        self._logger = make_logger(trt)
        self._runtime = self._engine = self._context = None
        self._runtime_cache_path = runtime_cache
        self._runtime_cache: Any = None
        self._x = self._y = self._own_stream = None
        self._bindings: list[int] | None = None
        self.layout: EngineLayout | None = None
        try:
            self._open(plan, device_index)
        except BaseException:
            self.close()
            raise

    def _open(self, plan: bytes, device_index: int) -> None:
        from bench.backends.tensorrt.device import make_current

        trt, spec = self._trt, self.spec
        self._device = make_current(device_index)
        self._runtime, self._engine = deserialize_plan(trt, self._logger, plan,
                                                       self._flavour.label)
        if self._flavour.rtx:
            self._context = self._rtx_context()
        else:
            self._context = self._engine.create_execution_context()
        if self._context is None:
            raise BuildFailed(f"could not create an execution context: {self._logger.errors()}")
        self.layout = inspect_engine(trt, self._engine, self._context)
        if self.layout is not None:
            self.info.layers = [layer.to_json() for layer in self.layout.layers]
            self.info.extra["inspector_schema"] = self.layout.schema
            self.info.extra["tactics"] = self.layout.tactics()
            self.info.extra["inspector_json"] = self.layout.raw_json
        sdt = storage_dtype(spec.io_precision)
        self._x = self._device.alloc(int(np.prod(spec.input_shape)) * sdt.itemsize)
        self._y = self._device.alloc(int(np.prod(spec.output_shape)) * sdt.itemsize)
        self._bind({INPUT: self._x.ptr, OUTPUT: self._y.ptr})
        self._out_dtype = sdt

    def _bind(self, addresses: dict[str, int]) -> None:
        ctx = self._context
        if hasattr(ctx, "set_tensor_address"):  # TensorRT 8.5 and later
            for name, ptr in addresses.items():
                if not ctx.set_tensor_address(name, ptr):
                    raise RuntimeError(f"set_tensor_address({name!r}) failed: "
                                       f"{self._logger.errors()}")
            return
        # bindings era: one device pointer per binding index (TensorRT 8.x and older)
        self._bindings = [0] * self._engine.num_bindings
        for name, ptr in addresses.items():
            self._bindings[self._engine.get_binding_index(name)] = ptr

    def _rtx_context(self) -> Any:
        """TensorRT-RTX compiles kernels at first run; a runtime cache per engine keeps them
        (not with timing_cache = "fresh": then ``_runtime_cache_path`` is None)."""
        rc = self._engine.create_runtime_config()
        if self._runtime_cache_path is not None:
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

    def _stream(self, stream: StreamLike | None) -> StreamLike:
        if stream is not None:
            return stream
        if self._own_stream is None:
            self._own_stream = self._device.stream()
        return self._own_stream

    def _set_input_impl(self, x: np.ndarray) -> None:
        s = self._stream(None)
        self._x.upload(encode(x, self.spec.io_precision), s)
        s.sync()

    def _enqueue_impl(self, stream: StreamLike | None) -> None:
        handle = self._stream(stream).handle
        if self._bindings is None:
            ok, call = self._context.execute_async_v3(handle), "execute_async_v3"
        else:
            ok, call = self._context.execute_async_v2(self._bindings, handle), "execute_async_v2"
        if not ok:
            raise RuntimeError(f"{call} failed: {self._logger.errors()}")

    def _output_impl(self, stream: StreamLike | None) -> np.ndarray:
        s = self._stream(stream)
        raw = self._y.download(self.spec.output_shape, self._out_dtype, s)
        s.sync()
        return decode(np.asarray(raw), self.spec.io_precision)

    def _layer_profile_impl(self, stream: StreamLike | None, iters: int) -> list[LayerTime]:
        """Per-layer times in a run of its own: the profiler is attached only here.

        ``enqueue_emits_profile = False`` makes enqueue only record TensorRT's per-layer events
        (as inside a CUDA graph); ``report_to_profiler()`` then reports one inference."""
        s = self._stream(stream)
        prof = make_profiler(self._trt)
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
                atomic_write(self._runtime_cache_path, bytes(self._runtime_cache.serialize()))
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
