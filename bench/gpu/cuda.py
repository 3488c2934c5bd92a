"""CUDA through cuda-python: device, streams, buffers, graphs, L2 flush, profiler range.

``cuda.core`` (1.x) provides the device, its primary context, streams and events;
``cuda.bindings.driver`` the calls cuda.core has no API for (raw allocations, copies, memsets,
stream capture, stream memory operations) and ``cuda.bindings.runtime`` the profiler range.
Buffers use ``cuMemAlloc``/``cuMemFree`` rather than a stream-ordered pool so that freeing one
really returns it to the driver: device free memory before and after a sweep is then an honest
leak check.

Every failing call raises ``CudaError`` naming the call and the error. Nothing CUDA is imported
at module import time: on a machine with no driver ``unavailable_reason()`` says why.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

#: the smallest L2 flush buffer, for devices that report a tiny or no L2
_MIN_FLUSH_BYTES = 8 << 20


class CudaError(RuntimeError):
    """A CUDA call failed. ``call`` names it, ``error`` is the CUDA error name."""

    def __init__(self, call: str, error: str, detail: str = "") -> None:
        self.call = call
        self.error = error
        text = f"{call} failed: {error}"
        super().__init__(f"{text} ({detail})" if detail else text)


#: GPU work still unfinished after this many seconds is taken as stuck (a kernel that never
#: ends, or a stream waiting for something that never comes): ``GpuStuck`` instead of a
#: process that waits for ever. ``CONVBENCH_GPU_TIMEOUT_S`` overrides it.
GPU_WAIT_TIMEOUT_S = 60.0
#: a wait polls without sleeping for this long, as a blocking synchronize in CUDA's default
#: (spin) scheduling does, so a host-clock sample ends within microseconds of the GPU work;
#: past it, it sleeps between polls (at most _WAIT_MAX_SLEEP_S: 0.1 % of such a wait)
_WAIT_SPIN_S = 1.0
_WAIT_MAX_SLEEP_S = 0.001


def gpu_wait_timeout_s() -> float:
    """``CONVBENCH_GPU_TIMEOUT_S`` (seconds, > 0) or ``GPU_WAIT_TIMEOUT_S``."""
    text = os.environ.get("CONVBENCH_GPU_TIMEOUT_S")
    if text is None:
        return GPU_WAIT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        from bench.errors import BenchError

        raise BenchError(f"CONVBENCH_GPU_TIMEOUT_S={text!r}: give a number of seconds > 0")
    return value


class GpuStuck(CudaError):
    """GPU work did not finish within its timeout. Whatever is stuck may still occupy the
    GPU: the process's CUDA context cannot be trusted afterwards."""


def wait_until(done: Callable[[], bool], call: str, timeout_s: float | None = None) -> None:
    """Poll ``done()`` (a cuEventQuery / cuStreamQuery) until it is true; ``GpuStuck`` after
    ``timeout_s`` (default ``gpu_wait_timeout_s()``). Unlike a blocking synchronize, a wait can
    end: a hung kernel costs its case, not the sweep."""
    limit = gpu_wait_timeout_s() if timeout_s is None else timeout_s
    t0 = time.monotonic()
    sleep = 1e-5
    while not done():
        waited = time.monotonic() - t0
        if waited > limit:
            raise GpuStuck(call, "not finished", f"GPU work still running after {limit:g} s")
        if waited > _WAIT_SPIN_S:
            time.sleep(sleep)
            sleep = min(sleep * 2, _WAIT_MAX_SLEEP_S)


def _query(result: Any, call: str) -> bool:
    """True when a cuEventQuery/cuStreamQuery result says done, False when not ready."""
    err = result[0] if isinstance(result, tuple) else result
    if int(err) == 0:
        return True
    if getattr(err, "name", "") == "CUDA_ERROR_NOT_READY":
        return False
    _check(err, call)
    return False


def wait_event(event: Any, timeout_s: float | None = None) -> None:
    """Wait for a cuda.core ``Event`` (or a raw CUevent handle) with a timeout."""
    drv = _driver()
    handle = drv.CUevent(int(getattr(event, "handle", event)))
    wait_until(lambda: _query(drv.cuEventQuery(handle), "cuEventQuery"), "cuEventSynchronize",
               timeout_s)


# --- cuda.bindings plumbing -------------------------------------------------------------------
def _driver() -> Any:
    from cuda.bindings import driver

    return driver


def _runtime() -> Any:
    from cuda.bindings import runtime

    return runtime


def _error_text(err: Any) -> tuple[str, str]:
    """(name, description) of a ``CUresult`` or ``cudaError_t``."""
    name = getattr(err, "name", None) or str(err)
    desc = ""
    with contextlib.suppress(Exception):  # describing an error must never raise another
        if type(err).__name__ == "CUresult":
            res, text = _driver().cuGetErrorString(err)
        else:
            res, text = _runtime().cudaGetErrorString(err)
        if int(res) == 0 and text:
            desc = text.decode() if isinstance(text, bytes) else str(text)
    return name, desc


def _check(result: Any, call: str) -> Any:
    """Unpack a cuda.bindings result ``(err, *values)``; raise ``CudaError`` unless success.

    Returns None, the single value, or the tuple of values.
    """
    if isinstance(result, tuple):
        err, values = result[0], result[1:]
    else:
        err, values = result, ()
    if int(err) != 0:  # CUDA_SUCCESS and cudaSuccess are both 0
        name, desc = _error_text(err)
        raise CudaError(call, name, desc)
    if not values:
        return None
    return values[0] if len(values) == 1 else values


@contextlib.contextmanager
def _calling(call: str) -> Iterator[None]:
    """Turn an exception of cuda.core into a ``CudaError`` naming ``call``."""
    try:
        yield
    except CudaError:
        raise
    except Exception as e:
        if not type(e).__module__.startswith("cuda"):
            raise
        text = " ".join(str(e).split())
        error, _, detail = text.partition(":")
        if not error.startswith(("CUDA_ERROR", "cuda")):
            error, detail = type(e).__name__, text
        raise CudaError(call, error.strip(), detail.strip()) from e


def _cu_stream(handle: int) -> Any:
    return _driver().CUstream(int(handle))


def _cu_ptr(ptr: int) -> Any:
    return _driver().CUdeviceptr(int(ptr))


# --- availability -----------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def unavailable_reason() -> str | None:
    """None when a CUDA device and a driver usable by the installed cuda-python are present;
    otherwise one line saying what is missing."""
    try:
        import cuda.bindings
        from cuda.bindings import driver
    except ImportError as e:
        return (f"cuda-python is not installed ({e}); pip install 'trt-convbench[cu13]' "
                "(or [cu12] on a CUDA 12 driver)")
    try:
        res = driver.cuInit(0)
    except Exception:  # noqa: BLE001 - libcuda.so.1 missing raises from the loader
        return "no CUDA driver (libcuda.so.1 not found)"
    err = res[0] if isinstance(res, tuple) else res
    name = getattr(err, "name", str(err))
    if name == "CUDA_ERROR_NO_DEVICE":
        return "no CUDA device"
    if int(err) != 0:
        return f"CUDA driver unusable: cuInit failed with {name}"
    bindings_major = int(str(cuda.bindings.__version__).split(".")[0])
    try:
        driver_version = int(_check(driver.cuDriverGetVersion(), "cuDriverGetVersion"))
        count = int(_check(driver.cuDeviceGetCount(), "cuDeviceGetCount"))
    except CudaError as e:
        return f"CUDA driver unusable: {e}"
    if driver_version // 1000 < bindings_major:
        return (f"the CUDA driver supports CUDA {driver_version // 1000}."
                f"{driver_version % 1000 // 10} but cuda-bindings {cuda.bindings.__version__} "
                f"needs CUDA {bindings_major}: pip install 'trt-convbench[cu12]' "
                "(cuda-core[cu12]) or update the driver")
    if count == 0:
        return "no CUDA device"
    try:
        import cuda.core  # noqa: F401
    except ImportError as e:
        return f"cuda.core is not importable ({e}); pip install 'cuda-core>=1.0'"
    return None


def _require_cuda() -> None:
    reason = unavailable_reason()
    if reason:
        raise CudaError("cuInit", "CUDA unavailable", reason)


# --- device -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class DeviceInfo:
    index: int
    name: str
    uuid: str  # "GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", as nvidia-smi and NVML write it
    cc: tuple[int, int]
    sm_count: int
    l2_bytes: int
    total_mem: int

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["cc"] = list(self.cc)
        return d


class Device:
    """One CUDA device; making it makes its primary context current on this thread (the
    context torch and TensorRT use too)."""

    def __init__(self, index: int = 0) -> None:
        _require_cuda()
        count = int(_check(_driver().cuDeviceGetCount(), "cuDeviceGetCount"))
        if not 0 <= index < count:
            raise CudaError(f"cuDeviceGet({index})", "CUDA_ERROR_INVALID_DEVICE",
                            f"this machine has {count} CUDA device(s)")
        from cuda.core import Device as CoreDevice

        self.index = index
        with _calling(f"cuDeviceGet({index})"):
            self._dev = CoreDevice(index)
        self.make_current()
        self._info: DeviceInfo | None = None

    def make_current(self) -> None:
        """Make this device's primary context current on the calling thread."""
        with _calling("cuCtxSetCurrent (Device.set_current)"):
            self._dev.set_current()

    @property
    def info(self) -> DeviceInfo:
        if self._info is None:
            with _calling("cuDeviceGetAttribute (Device.properties)"):
                props = self._dev.properties
                cc = self._dev.compute_capability
                uuid = str(self._dev.uuid)
                self._info = DeviceInfo(
                    index=self.index, name=str(self._dev.name),
                    uuid=uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}",
                    cc=(int(cc.major), int(cc.minor)),
                    sm_count=int(props.multiprocessor_count),
                    l2_bytes=int(props.l2_cache_size), total_mem=self.mem_info()[1])
        return self._info

    def stream(self) -> Stream:
        """A new non-blocking stream (it does not synchronize with the legacy default stream)."""
        from cuda.core import StreamOptions

        self.make_current()
        with _calling("cuStreamCreate"):
            s = self._dev.create_stream(options=StreamOptions(nonblocking=True))
        return Stream(s, self)

    def alloc(self, nbytes: int) -> Buffer:
        return Buffer(self, nbytes)

    def event(self) -> Any:
        """A cuda.core ``Event`` with timing enabled."""
        from cuda.core import EventOptions

        with _calling("cuEventCreate"):
            return self._dev.create_event(options=EventOptions(timing_enabled=True))

    def mem_info(self) -> tuple[int, int]:
        """(free, total) device memory in bytes."""
        free, total = _check(_driver().cuMemGetInfo(), "cuMemGetInfo")
        return int(free), int(total)

    def sync(self) -> None:
        with _calling("cuCtxSynchronize"):
            self._dev.sync()


class Stream:
    """A CUDA stream; ``handle`` is the raw ``cudaStream_t`` engines enqueue on."""

    def __init__(self, core_stream: Any, device: Device) -> None:
        self._s = core_stream
        self.device = device
        self._handle = int(core_stream.handle)
        self._closed = False

    @property
    def handle(self) -> int:
        return self._handle

    def __cuda_stream__(self) -> tuple[int, int]:
        return (0, self._handle)

    def record(self, event: Any) -> None:
        with _calling("cuEventRecord"):
            self._s.record(event)

    def sync(self, timeout_s: float | None = None) -> None:
        """Wait for the stream's work; ``GpuStuck`` after ``timeout_s`` (``GPU_WAIT_TIMEOUT_S``)."""
        drv = _driver()
        handle = _cu_stream(self._handle)
        wait_until(lambda: _query(drv.cuStreamQuery(handle), "cuStreamQuery"),
                   "cuStreamSynchronize", timeout_s)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            with _calling("cuStreamDestroy"):
                self._s.close()

    def __repr__(self) -> str:
        return f"Stream(0x{self._handle:x})"


def _stream_arg(stream: Any | None) -> Any:
    return _cu_stream(0 if stream is None else stream.handle)


class Buffer:
    """Device memory from ``cuMemAlloc``; freed by ``close``."""

    def __init__(self, device: Device, nbytes: int) -> None:
        if nbytes <= 0:
            raise ValueError(f"buffer size must be positive, got {nbytes}")
        self.device = device
        self.nbytes = int(nbytes)
        self._ptr: int | None = int(_check(_driver().cuMemAlloc(self.nbytes),
                                           f"cuMemAlloc({self.nbytes} bytes)"))

    @property
    def ptr(self) -> int:
        if self._ptr is None:
            raise ValueError("buffer is closed")
        return self._ptr

    def upload(self, host: np.ndarray, stream: Stream | None = None) -> None:
        """Copy a host array to the start of the buffer; returns when the copy is done."""
        a = np.ascontiguousarray(host)
        if a.nbytes > self.nbytes:
            raise ValueError(f"array of {a.nbytes} bytes does not fit a {self.nbytes}-byte buffer")
        drv = _driver()
        _check(drv.cuMemcpyHtoDAsync(_cu_ptr(self.ptr), a.ctypes.data, a.nbytes,
                                     _stream_arg(stream)), "cuMemcpyHtoDAsync")
        # the host array is pageable and may be freed when we return: wait for the copy
        self._wait(stream)

    def download(self, shape: tuple[int, ...] | int, dtype: Any,
                 stream: Stream | None = None) -> np.ndarray:
        """The start of the buffer as a new host array of ``shape`` and ``dtype``."""
        out = np.empty(shape, dtype=dtype)
        if out.nbytes > self.nbytes:
            raise ValueError(f"{out.nbytes} bytes requested from a {self.nbytes}-byte buffer")
        _check(_driver().cuMemcpyDtoHAsync(out.ctypes.data, _cu_ptr(self.ptr), out.nbytes,
                                           _stream_arg(stream)), "cuMemcpyDtoHAsync")
        self._wait(stream)
        return out

    def copy_from(self, other: Buffer, stream: Stream | None = None) -> None:
        """Copy ``other`` (device memory, at most this buffer's size) to the start of this
        buffer, asynchronously on ``stream``."""
        if other.nbytes > self.nbytes:
            raise ValueError(f"{other.nbytes} bytes do not fit a {self.nbytes}-byte buffer")
        _check(_driver().cuMemcpyDtoDAsync(_cu_ptr(self.ptr), _cu_ptr(other.ptr), other.nbytes,
                                           _stream_arg(stream)), "cuMemcpyDtoDAsync")

    def fill(self, value: int, stream: Stream | None = None) -> None:
        """Write the 32-bit pattern ``value`` over the buffer (asynchronously on ``stream``)."""
        _check(_driver().cuMemsetD32Async(_cu_ptr(self.ptr), int(value) & 0xFFFFFFFF,
                                          self.nbytes // 4, _stream_arg(stream)),
               "cuMemsetD32Async")

    def fill_random(self, precision: str, stream: Stream | None = None, seed: int = 0) -> None:
        """Fill with random non-zero values of ``precision`` (fp32, fp16 or bf16)."""
        from bench.precision import encode, storage_dtype

        n = self.nbytes // storage_dtype(precision).itemsize
        rng = np.random.default_rng(seed)
        # magnitudes in [0.5, 1.5) with random signs: never zero, exact in every precision's range
        x = rng.random(n, dtype=np.float32) + np.float32(0.5)
        x[rng.random(n) < 0.5] *= -1
        if n * storage_dtype(precision).itemsize < self.nbytes:  # a ragged tail: no zero bytes
            _check(_driver().cuMemsetD8Async(_cu_ptr(self.ptr), 0x3C, self.nbytes,
                                             _stream_arg(stream)), "cuMemsetD8Async")
        self.upload(encode(x, precision), stream)

    def _wait(self, stream: Stream | None) -> None:
        if stream is None:
            _check(_driver().cuStreamSynchronize(_cu_stream(0)), "cuStreamSynchronize")
        else:
            stream.sync()

    def close(self) -> None:
        if self._ptr is not None:
            ptr, self._ptr = self._ptr, None
            _check(_driver().cuMemFree(_cu_ptr(ptr)), "cuMemFree")

    def __enter__(self) -> Buffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- graphs -----------------------------------------------------------------------------------
class Graph:
    """An instantiated CUDA graph from stream capture; ``launch`` replays it on a stream."""

    def __init__(self, graph: Any, exec_: Any, nodes: int) -> None:
        self._graph = graph
        self._exec = exec_
        self.nodes = nodes

    def launch(self, stream: Any) -> None:
        if self._exec is None:
            raise ValueError("graph is closed")
        _check(_driver().cuGraphLaunch(self._exec, _cu_stream(stream.handle)), "cuGraphLaunch")

    def close(self) -> None:
        drv = _driver()
        if self._exec is not None:
            exec_, self._exec = self._exec, None
            _check(drv.cuGraphExecDestroy(exec_), "cuGraphExecDestroy")
        if self._graph is not None:
            graph, self._graph = self._graph, None
            _check(drv.cuGraphDestroy(graph), "cuGraphDestroy")


def capture_graph(stream: Any, enqueue: Callable[[], None]) -> Graph:
    """Capture whatever ``enqueue()`` launches on ``stream`` into an instantiated graph.

    Thread-local capture mode: other threads may keep allocating while we capture. If
    ``enqueue`` raises, the capture is ended and its error re-raised; the stream stays usable.
    """
    drv = _driver()
    h = _cu_stream(stream.handle)
    _check(drv.cuStreamBeginCapture(
        h, drv.CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_THREAD_LOCAL), "cuStreamBeginCapture")
    try:
        enqueue()
    except BaseException:
        res = drv.cuStreamEndCapture(h)  # invalidated captures end with an error: ignore it
        if isinstance(res, tuple) and len(res) > 1 and res[1] is not None and int(res[0]) == 0:
            drv.cuGraphDestroy(res[1])
        raise
    res = drv.cuStreamEndCapture(h)
    if int(res[0]) != 0:
        name, desc = _error_text(res[0])
        raise CudaError("cuStreamEndCapture", name,
                        (desc + "; " if desc else "") + "the enqueue made a call that cannot "
                        "be captured (a synchronization, a host copy or an allocation)")
    graph = res[1]
    try:
        nodes = _check(drv.cuGraphGetNodes(graph, 0), "cuGraphGetNodes")
        count = int(nodes[-1]) if isinstance(nodes, tuple) else int(nodes)
        if count == 0:
            raise ValueError("stream capture recorded no work: the enqueue launched nothing "
                             f"on {stream!r} (did it use another stream?)")
        exec_ = _check(drv.cuGraphInstantiate(graph, 0), "cuGraphInstantiate")
    except BaseException:
        drv.cuGraphDestroy(graph)
        raise
    return Graph(graph, exec_, count)


# --- L2 flush ---------------------------------------------------------------------------------
class L2Flusher:
    """A buffer of at least twice the L2 size; ``flush`` overwrites all of it (a memset), which
    evicts everything a timed region could find in L2."""

    def __init__(self, device: Device) -> None:
        l2 = device.info.l2_bytes
        self.nbytes = max(2 * l2, _MIN_FLUSH_BYTES)
        self.nbytes += -self.nbytes % 4
        self._buf = device.alloc(self.nbytes)
        self._value = 0

    def flush(self, stream: Stream) -> None:
        # a new value each time, so no write can be skipped as a no-op
        self._value = (self._value + 1) & 0xFFFFFFFF
        self._buf.fill(self._value, stream)

    def close(self) -> None:
        self._buf.close()


# --- profiler range ---------------------------------------------------------------------------
def profiler_start() -> None:
    """Start collection in a profiler launched with ``--profile-from-start off`` (nsys:
    ``--capture-range=cudaProfilerApi``)."""
    _check(_runtime().cudaProfilerStart(), "cudaProfilerStart")


def profiler_stop() -> None:
    _check(_runtime().cudaProfilerStop(), "cudaProfilerStop")
