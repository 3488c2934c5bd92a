"""CUDA-event and CUDA-graph sample sources for the measurement loop (``bench.timing.measure``).

``graph``: K back-to-back enqueues captured once in a CUDA graph; one event pair around each
replay; a sample is the replay time / K. K makes a replay last about ``TARGET_REPLAY_MS`` so the
~0.5 µs resolution of CUDA events is negligible.

``events``: one event pair around each enqueue. This is what a plain event loop sees, launch
overhead included (when the host launches more slowly than the GPU runs, the gap shows).

Launch latency never leaks into a graph sample: before the start event the stream waits on a
device flag (``cuStreamWaitValue32``) that the host sets only after it has queued the whole
sample, so the start event, the replay and the stop event run back to back on the GPU (nvbench's
"blocking kernel", done with a stream memory operation instead of a kernel).

``cold`` L2: the flusher's memset runs before each sample, outside the event pair. A cold graph
sample is a single inference (K = 1), so every timed inference starts from a cold L2, like
Nsight Compute's ``--cache-control all``.
"""

from __future__ import annotations

import math
import os
from typing import Any

from bench.backends.base import Engine, Graph
from bench.gpu.cuda import (
    CudaError,
    GpuStuck,
    L2Flusher,
    Stream,
    _calling,
    _check,
    _cu_ptr,
    _cu_stream,
    _driver,
    capture_graph,
    wait_event,
)
from bench.timing import SampleSource

#: a graph replay lasts about this long. A replay costs 3-7 µs beyond its kernels (start event
#: to first kernel, last kernel to stop event; CUPTI on the H200, benchmarks/results/
#: replay-length-h200.md), which K divides: at 0.2 ms replays that put medians 0.7-3.1 %
#: high, at 2 ms 0.1 % or less
TARGET_REPLAY_MS = 2.0
MAX_ITERS = 1000
#: the eager probe that sizes K runs the case for about this long
PROBE_MS = 2.0


def iters_for(per_inference_ms: float, target_ms: float = TARGET_REPLAY_MS,
              max_iters: int = MAX_ITERS) -> int:
    """Enqueues per graph so that one replay lasts at least ``target_ms`` (1..max_iters)."""
    if not per_inference_ms > 0 or math.isinf(per_inference_ms):
        return max_iters if per_inference_ms == 0 else 1
    return int(min(max_iters, max(1, math.ceil(target_ms / per_inference_ms))))


#: set (to anything) by ``convbench profile``, or by hand, to time graph replays unblocked
UNBLOCK_ENV = "CONVBENCH_UNBLOCKED"
# ncu 2025.3 sets the NV_COMPUTE_PROFILER_* / NV_NSIGHT_INJECTION_* ones (seen on the H100)
_INJECTION_ENV = ("CUDA_INJECTION64_PATH", "NVTX_INJECTION64_PATH",
                  "NV_COMPUTE_PROFILER_PERFWORKS_DIR", "NV_NSIGHT_INJECTION_TRANSPORT_TYPE")


def profiler_attached() -> str:
    """Why a profiler looks attached (the variable that says so), or ""."""
    for name in (UNBLOCK_ENV, *_INJECTION_ENV):
        if os.environ.get(name):
            return name
    if "injection" in os.environ.get("LD_PRELOAD", "").lower():
        return "LD_PRELOAD"
    return ""


class _Blocker:
    """Holds a stream at a device flag until the host releases it (see the module docstring).

    If the driver refuses stream memory operations the blocker turns itself off and samples
    are taken unblocked (``enabled`` says which, and is recorded with the samples).
    """

    def __init__(self, stream: Stream, off_because: str = "") -> None:
        """``off_because``: the caller's reason to measure unblocked here ("" = block)."""
        self._stream = stream
        self._flag = stream.device.alloc(4)
        self._flag.fill(0, stream)
        stream.sync()
        self._release_stream = stream.device.stream()
        self._seq = 0
        self._held = False
        # torch's CUDAGraph.replay() synchronizes the device on drivers older than 12.4: a
        # blocked stream would then wait for a host that waits for it
        version = int(_check(_driver().cuDriverGetVersion(), "cuDriverGetVersion"))
        self.enabled = version >= 12040
        self.why_not = "" if self.enabled else f"driver {version} < 12040"
        # Nsight Compute / Systems inject themselves through CUDA_INJECTION64_PATH. ncu
        # serializes each launch and waits for the kernel: a stream held until the host has
        # queued the whole sample never runs (seen on the H100: `ncu ... convbench profile`
        # hung). nvbench turns its blocking kernel off under a profiler for the same reason.
        profiler = profiler_attached()
        if self.enabled and profiler:
            self.enabled = False
            self.why_not = f"a profiler is attached ({profiler})"
        if self.enabled and off_because:
            self.enabled = False
            self.why_not = off_because

    def hold(self) -> None:
        if not self.enabled:
            return
        drv = _driver()
        first = self._seq == 0
        seq = (self._seq + 1) & 0xFFFFFFFF
        geq = int(drv.CUstreamWaitValue_flags.CU_STREAM_WAIT_VALUE_GEQ)
        # marked held before the wait is queued: a Ctrl-C arriving during the call must still
        # be followed by a release (writing the flag with nothing waiting is harmless)
        self._seq, self._held = seq, True
        err = drv.cuStreamWaitValue32(_cu_stream(self._stream.handle), _cu_ptr(self._flag.ptr),
                                      seq, geq)
        err = err[0] if isinstance(err, tuple) else err
        if int(err) != 0:
            self._held = False
            if first:  # unsupported here: measure unblocked
                self.enabled = False
                self.why_not = f"cuStreamWaitValue32: {getattr(err, 'name', err)}"
                return
            _check(err, "cuStreamWaitValue32")

    def release(self) -> None:
        if not self._held:
            return
        self._held = False
        _check(_driver().cuStreamWriteValue32(_cu_stream(self._release_stream.handle),
                                              _cu_ptr(self._flag.ptr), self._seq, 0),
               "cuStreamWriteValue32")

    def close(self, stuck: bool = False) -> None:
        """``stuck``: the held stream's work never finished; do not wait for it, and leave the
        flag allocated (a pending wait may still read it)."""
        try:
            self.release()
            if not stuck:
                self._release_stream.sync()
                self._stream.sync()
        finally:
            self._release_stream.close()
            if not stuck:
                self._flag.close()


class _EventSource:
    """Shared parts: events, the flusher, closing."""

    mode: Any = "events"
    iters_per_sample: int = 1
    #: how long one sample's wait may last before ``GpuStuck`` (None: GPU_WAIT_TIMEOUT_S)
    wait_timeout_s: float | None = None

    def __init__(self, engine: Engine, stream: Stream, l2: str,
                 flusher: L2Flusher | None) -> None:
        if l2 not in ("warm", "cold"):
            raise ValueError(f"l2 must be 'warm' or 'cold', got {l2!r}")
        if l2 == "cold" and flusher is None:
            raise ValueError("cold L2 needs an L2Flusher")
        if not isinstance(stream, Stream):
            raise TypeError(f"need a bench.gpu.cuda.Stream, got {type(stream).__name__}")
        self.engine = engine
        self.stream = stream
        self.l2 = l2
        self._flusher = flusher if l2 == "cold" else None
        self._start = stream.device.event()
        self._stop = stream.device.event()
        self.info: dict[str, Any] = {"l2": l2}
        self._closed = False
        self._stuck = False

    def _elapsed_ms(self) -> float:
        try:
            wait_event(self._stop, self.wait_timeout_s)
        except GpuStuck:
            self._stuck = True  # close() must not wait for the stuck work again
            raise
        with _calling("cuEventElapsedTime"):
            return float(self._stop - self._start)

    def _sync(self) -> None:
        try:
            self.stream.sync(self.wait_timeout_s)
        except GpuStuck:
            self._stuck = True
            raise

    def _flush(self) -> None:
        if self._flusher is not None:
            self._flusher.flush(self.stream)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._before_sync()
            if not self._stuck:
                self.stream.sync(self.wait_timeout_s)
        finally:
            self._close_impl()
            self._start.close()
            self._stop.close()

    def _close_impl(self) -> None:
        return None

    def _before_sync(self) -> None:
        """Undo anything that would keep the stream from draining (a held blocker)."""
        return None


class EventsSource(_EventSource):
    """One event pair around each enqueue."""

    mode = "events"

    def __init__(self, engine: Engine, stream: Stream, l2: str,
                 flusher: L2Flusher | None) -> None:
        super().__init__(engine, stream, l2, flusher)
        self.iters_per_sample = 1
        self.info.update(mode="events", iters_per_sample=1, blocked=False)

    def __call__(self) -> float:
        self._flush()
        self.stream.record(self._start)
        self.engine.enqueue(self.stream)
        self.stream.record(self._stop)
        return self._elapsed_ms()


class GraphSource(_EventSource):
    """K enqueues in one CUDA graph; one event pair around each (blocked) replay."""

    mode = "graph"

    def __init__(self, engine: Engine, stream: Stream, l2: str, flusher: L2Flusher | None,
                 target_ms: float = TARGET_REPLAY_MS, max_iters: int = MAX_ITERS,
                 wait_timeout_s: float | None = None, unblocked_because: str = "",
                 iters: int | None = None) -> None:
        """``wait_timeout_s``: how long one replay's wait may last (None: the GPU wait
        timeout); ``unblocked_because``: replays are not held until queued, for this reason
        (recorded with the samples); ``iters``: inferences per replay, given (a later buffer
        placement keeps the first one's, ``bench.placements``) instead of sized here from an
        eager probe and a replay."""
        super().__init__(engine, stream, l2, flusher)
        self.wait_timeout_s = wait_timeout_s
        self._graph: Graph | None = None
        self._blocker: _Blocker | None = None
        try:
            self._blocker = _Blocker(stream, unblocked_because)
            given = bool(iters)
            probe_ms: float | None = None
            if iters:
                self.engine.enqueue(stream)  # lazy initialisation outside the capture
                self._sync()
            else:
                probe_ms = self._eager_probe()
                iters = iters_for(probe_ms, target_ms, max_iters)
            # cold L2 flushes before every inference, so one per replay
            iters = 1 if l2 == "cold" else min(iters, max_iters)
            self._graph = self._capture(iters)
            # the first replays also settle whether the blocker works here
            replay_ms = min(self._replay_ms() for _ in range(3))
            if l2 == "warm" and iters < max_iters and not given:
                # the eager probe includes host launch overhead; a replay shows the GPU time
                better = iters_for(replay_ms / iters, target_ms, max_iters)
                if better > iters * 1.2:
                    self._graph.close()
                    self._graph = None
                    iters = better
                    self._graph = self._capture(iters)
            self.iters_per_sample = iters
            self.info.update(mode="graph", iters_per_sample=iters, probe_ms=probe_ms,
                             target_ms=target_ms, blocked=self._blocker.enabled)
            if not self._blocker.enabled:
                self.info["unblocked_because"] = self._blocker.why_not
        except BaseException:
            self.close()
            raise

    def _eager_probe(self) -> float:
        """Milliseconds per eager enqueue (an upper bound of the GPU time)."""
        s = self.stream
        self.engine.enqueue(s)  # lazy initialisation outside the probe
        self._sync()
        s.record(self._start)
        self.engine.enqueue(s)
        s.record(self._stop)
        once = max(self._elapsed_ms(), 1e-4)
        n = int(min(50, max(1, PROBE_MS // once)))
        s.record(self._start)
        for _ in range(n):
            self.engine.enqueue(s)
        s.record(self._stop)
        return self._elapsed_ms() / n

    def _capture(self, iters: int) -> Graph:
        self._sync()
        graph = self.engine.capture(self.stream, iters)
        if graph is None:
            engine, stream = self.engine, self.stream

            def enqueue_all() -> None:
                for _ in range(iters):
                    engine.enqueue(stream)

            graph = capture_graph(stream, enqueue_all)
        self._sync()
        return graph

    def _replay_ms(self) -> float:
        assert self._graph is not None and self._blocker is not None
        graph, s, blocker = self._graph, self.stream, self._blocker
        self._flush()
        try:
            blocker.hold()
            s.record(self._start)
            graph.launch(s)
            s.record(self._stop)
        finally:
            blocker.release()  # never leave the stream waiting, even when the launch failed
        return self._elapsed_ms()

    def __call__(self) -> float:
        return self._replay_ms() / self.iters_per_sample

    def _before_sync(self) -> None:
        if self._blocker is not None:
            self._blocker.release()

    def _close_impl(self) -> None:
        try:
            if self._blocker is not None:
                self._blocker.close(stuck=self._stuck)
        finally:
            if self._graph is not None:
                self._graph.close()
                self._graph = None


def make_source(engine: Engine, stream: Any, mode: str, l2: str,
                flusher: L2Flusher | None, iters: int | None = None) -> SampleSource:
    """A sample source for ``bench.timing.measure``; call its ``close()`` when done.
    ``iters``: the graph timer's inferences per replay, where already known."""
    if mode == "graph":
        return GraphSource(engine, stream, l2, flusher, iters=iters)
    if mode == "events":
        return EventsSource(engine, stream, l2, flusher)
    raise ValueError(f"GPU timer mode must be 'graph' or 'events', got {mode!r}")


__all__ = ["CudaError", "EventsSource", "GraphSource", "iters_for", "make_source",
           "TARGET_REPLAY_MS", "MAX_ITERS"]
