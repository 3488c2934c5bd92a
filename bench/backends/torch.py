"""The torch backend: what a user would pick instead of TensorRT.

cuDNN on a CUDA GPU (``cudnn.benchmark=True``: the fastest algorithm is chosen at build time),
oneDNN/ATen on the CPU. On the GPU it enqueues on convbench's stream (an external stream), so it is
timed by the same event/graph code as TensorRT.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from bench.backends import base
from bench.backends.base import Backend, BuildContext, BuildInfo, ConvData, Engine
from bench.errors import UnsupportedCase
from bench.precision import info as precision_info
from bench.precision import needs_cc
from bench.spec import ConvSpec


def _torch() -> Any:
    import torch

    return torch


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence the C++ profiler's own stderr lines (kineto prints start/stop notices)."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    try:
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)
        os.close(devnull)


def _set_tf32(torch: Any, enabled: bool) -> None:
    """TF32 for cuDNN convolutions: torch >= 2.9's per-backend precision setting where it
    exists (the old ``allow_tf32`` flag is deprecated there), else the old flag."""
    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision"):
        conv.fp32_precision = "tf32" if enabled else "ieee"
    else:
        torch.backends.cudnn.allow_tf32 = enabled


def _kineto_profile(cuda: bool) -> Any:
    """On CUDA ``torch.profiler.profile(activities=[CUDA])``, the path verified on the H200.
    On the CPU the Kineto profiler that torch.profiler makes for ``[CPU]`` (its
    ``prepare_trace``, torch/profiler/profiler.py), made directly: torch.profiler's wrapper
    first does ``hasattr(torch, "_inductor")``, which imports TorchDynamo (~2 s a process, paid
    by every CPU test process)."""
    if cuda:
        from torch.profiler import ProfilerActivity, profile

        return profile(activities=[ProfilerActivity.CUDA])
    from torch.autograd.profiler import profile as autograd_profile

    return autograd_profile(use_cpu=True, use_device=None, use_kineto=True)


def _events(prof: Any, cuda: bool) -> Any:
    """The function events of either profiler (``torch.profiler.profile.events()`` returns its
    inner autograd profiler's ``function_events``)."""
    return prof.events() if cuda else prof.function_events


def _wait_stream(stream: Any) -> None:
    """Wait for a ``torch.cuda.Stream`` as its ``synchronize()`` does, but by polling
    ``query()`` with convbench's GPU wait timeout: work that never finishes raises
    ``GpuStuck`` (its case is stored as stuck) instead of blocking the sweep for ever."""
    from bench.gpu.cuda import wait_until

    wait_until(stream.query, "torch.cuda.Stream.synchronize")


@contextlib.contextmanager
def profiling(cuda: bool = True) -> Iterator[Any]:
    """torch's profiler (``_kineto_profile``) around a ``with`` block. After ``GpuStuck`` it is
    left running: stopping it synchronizes the whole device (torch/autograd/profiler.py,
    ``profile.__exit__``), which the stuck work would block for ever; the case is stored as
    stuck and the sweep stops. Any other error stops it as usual."""
    from bench.gpu.cuda import GpuStuck

    prof = _kineto_profile(cuda)
    prof.__enter__()
    try:
        yield prof
    except GpuStuck:
        raise
    except BaseException:
        prof.__exit__(*sys.exc_info())
        raise
    prof.__exit__(None, None, None)


def profile_kernels(run: Callable[[], None], sync: Callable[[], None], iters: int,
                    cuda: bool = True) -> list[base.LayerTime]:
    """Per-kernel times of ``iters`` calls of ``run`` from ``torch.profiler``: every CUDA kernel
    the process launches (CUPTI sees all of them, whichever library launched them), or the
    top-level ATen ops on the CPU. ``sync`` waits for the work before the profile closes."""
    iters = max(1, iters)
    with warnings.catch_warnings(), _quiet_stderr():
        # torch >= 2.6 warns on every first profile that events of earlier cycles are
        # dropped: we run one cycle, so nothing is lost
        warnings.filterwarnings("ignore", message=".*Profiler clears events.*")
        with profiling(cuda) as prof:
            for _ in range(iters):
                run()
            sync()
    times: dict[str, list[tuple[float, float]]] = {}  # name -> (start, ms) per call
    for evt in _events(prof, cuda):
        tr = getattr(evt, "time_range", None)
        start = float(tr.start) if tr is not None else 0.0
        if cuda:
            if str(evt.device_type).endswith("CUDA") and getattr(evt, "is_user_annotation",
                                                                 False) is False:
                us = getattr(evt, "device_time", None)
                if us is None:
                    us = evt.cuda_time
                times.setdefault(evt.name, []).append((start, us / 1e3))
        elif evt.cpu_parent is None and evt.name.startswith("aten::"):
            times.setdefault(evt.name, []).append((start, evt.cpu_time_total / 1e3))
    if not times:
        return []
    calls = {n: [ms for _, ms in sorted(v)] for n, v in times.items()}
    first = sorted(times, key=lambda n: min(t for t, _ in times[n]))
    order = {n: i for i, n in enumerate(first)}  # launch order (the export's graph)
    per_inf = {n: statistics.median(v) * len(v) / iters for n, v in calls.items()}
    total = sum(per_inf.values()) or 1.0
    return [base.LayerTime(name=n, median_ms=statistics.median(v), share=per_inf[n] / total,
                      calls=max(1, round(len(v) / iters)),
                      type="kernel" if cuda else "op", extra={"launch_order": order[n]},
                      total_ms=sum(v), iterations=iters,
                      times_ms=_per_inference(v, iters))
            for n, v in sorted(calls.items(), key=lambda kv: -per_inf[kv[0]])]


def _per_inference(calls_ms: list[float], iters: int) -> list[float]:
    """A kernel's calls (in launch order) summed per inference: ``iters`` values when every
    inference launched it equally often, else [] (the split would be a guess)."""
    if iters < 1 or len(calls_ms) % iters:
        return []
    c = len(calls_ms) // iters
    return [sum(calls_ms[i * c:(i + 1) * c]) for i in range(iters)]


#: set to 1 to start every torch CUDA build from an emptied caching allocator (an experiment,
#: not yet run on a GPU; see ``fresh_allocator``)
FRESH_ALLOCATOR_ENV = "CONVBENCH_TORCH_FRESH_ALLOCATOR"


def fresh_allocator(torch: Any, device: Any) -> bool:
    """With ``CONVBENCH_TORCH_FRESH_ALLOCATOR`` set to 1 (or true, yes, on): collect garbage,
    wait for the device and hand torch's cached blocks back to the driver before a case's
    buffers are allocated, so that where they land depends less on the cases before it (live
    tensors, graph pools and the driver's address reuse still carry over). Returns whether it
    did.

    Why: on an H100 (benchmarks/results/build-shift-h100.md), in 3 of 8 cases each (build,
    placement) read the same time in every process of a short run, while in the 24-case suite,
    whose processes' histories diverge (replay lengths are calibrated from timing and differed
    between processes in 18 of 24 cases), whole placement distributions shifted per process.
    The reset cannot remove a divergence that arises inside the case itself (its own
    calibration). Whether it removes the shifts has not been measured."""
    flag = os.environ.get(FRESH_ALLOCATOR_ENV, "").strip().lower()
    if flag not in ("1", "true", "yes", "on"):
        return False
    import gc

    gc.collect()
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    return True


def in_thread(fn: Callable[[], base.T]) -> base.T:
    """``fn()`` in a new thread; its result, or its exception raised here."""
    import threading

    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - raised again in the caller
            box["error"] = e

    t = threading.Thread(target=target, name="convbench-probe")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


class TorchBackend(Backend):
    name = "torch"
    install_hint = "pip install 'trt-convbench[torch]'"

    def available(self) -> tuple[bool, str]:
        try:
            _torch()
        except ImportError:
            return False, f"not installed — {self.install_hint}"
        return True, ""

    def versions(self) -> dict[str, str]:
        try:
            torch = _torch()
        except ImportError:
            return {}
        v = {"torch": torch.__version__}
        if self.device == "cuda":
            v["cuda"] = str(torch.version.cuda)
            v["cudnn"] = str(torch.backends.cudnn.version())
        else:
            v["mkldnn"] = str(torch.backends.mkldnn.is_available())
            v["threads"] = str(torch.get_num_threads())
        return v

    @property
    def device(self) -> base.DeviceKind:
        try:
            torch = _torch()
        except ImportError:
            return "cpu"
        return "cuda" if torch.cuda.is_available() else "cpu"

    def probe_reason(self, spec: ConvSpec) -> str | None:
        if self.device != "cuda":
            return "torch on the CPU (oneDNN) does not autotune"
        if spec.algo != "autotune":
            return (f"algo = {spec.algo!r}: cuDNN's heuristic pick is the same in every build; "
                    "probes draw autotuning choices (algo = \"autotune\")")
        return None

    def fresh_selection(self, fn: Callable[[], base.T]) -> base.T:
        """``fn()`` in a new thread: torch keeps cuDNN's autotuning results in a thread-local
        benchmark cache (aten/src/ATen/native/cudnn/Conv_v8.cpp, ``_get_benchmark_cache``:
        ``static thread_local``), so the first conv of a shape in a new thread is autotuned
        again, as in a new process (measured on the H200: draws in fresh threads of one
        process chose the kernel sets that separate processes chose,
        benchmarks/results/selection-draws-h200.md)."""
        return in_thread(fn)

    def _build_impl(self, spec: ConvSpec, data: ConvData, ctx: BuildContext) -> Engine:
        torch = _torch()
        kind = self.device
        prec = precision_info(spec.precision)
        if prec.torch is None:
            raise UnsupportedCase(prec.torch_unsupported or f"torch: no {spec.precision}")
        if spec.typing != "strong":
            raise UnsupportedCase(f"torch backend: typing = {spec.typing!r} is a TensorRT "
                                  "builder mode (fp32 network, lower precision allowed)")
        dtype = getattr(torch, prec.torch)
        # spec.algo: "autotune" (cudnn.benchmark=True, torch's usual choice for fixed shapes)
        # times cuDNN's algorithms in this process and keeps the fastest, so another process
        # may keep another; "heuristic" takes cuDNN's heuristic pick, the same in every process
        autotune = spec.algo == "autotune"
        device: Any = "cpu"
        if kind == "cuda":
            n = torch.cuda.device_count()
            if not 0 <= ctx.device_index < n:
                raise UnsupportedCase(f"no CUDA device {ctx.device_index} (torch sees {n})")
            device = torch.device("cuda", ctx.device_index)
            torch.cuda.set_device(device)
            why = needs_cc(spec.precision, tuple(torch.cuda.get_device_capability(device)))
            if why:
                raise UnsupportedCase(why)
            torch.backends.cudnn.benchmark = autotune
            _set_tf32(torch, spec.tf32)
        fresh = kind == "cuda" and fresh_allocator(torch, device)
        t0 = time.perf_counter()
        w = torch.from_numpy(data.w).to(device=device, dtype=dtype)
        b = torch.from_numpy(data.b).to(device=device, dtype=dtype) if data.b is not None else None
        engine = TorchEngine(spec, BuildInfo(build_s=0.0), w, b, dtype, kind, device)
        engine.set_input(data.x)
        try:
            engine.enqueue(None)  # first call: cuDNN benchmarks algorithms, oneDNN primitives
            engine.output(None)
        except (RuntimeError, NotImplementedError) as e:
            engine.close()
            if "not implemented" in str(e) or "not supported" in str(e):
                raise UnsupportedCase(f"torch on {kind}: {str(e).splitlines()[0]}") from None
            raise
        engine.info.build_s = time.perf_counter() - t0
        engine.info.extra = {"device": str(device), "algo": spec.algo if kind == "cuda" else
                             "n/a", "cudnn_benchmark": kind == "cuda" and autotune,
                             "tf32": bool(spec.tf32 and spec.precision == "fp32"
                                          and kind == "cuda")}
        if fresh:
            engine.info.extra["fresh_allocator"] = True
        return engine


class _TorchGraph:
    def __init__(self, graph: Any, engine: TorchEngine) -> None:
        self._graph = graph
        self._engine = engine

    def launch(self, stream: base.StreamLike) -> None:
        torch = _torch()
        with torch.cuda.stream(self._engine._stream(stream)):
            self._graph.replay()

    def close(self) -> None:
        self._graph.reset()


class TorchEngine(Engine):
    def __init__(self, spec: ConvSpec, info: BuildInfo, w: Any, b: Any, dtype: Any,
                 kind: base.DeviceKind, device: Any) -> None:
        super().__init__(spec, info)
        self.device = kind
        self._torch_device = device
        self._w, self._b, self._dtype = w, b, dtype
        self._x: Any = None
        self._out: Any = None
        self._streams: dict[int, Any] = {}
        self._graphs: list[_TorchGraph] = []
        self._left: list[Any] = []  # buffers left behind by relocate(), and its spacers

    def _stream(self, stream: base.StreamLike | None) -> Any:
        torch = _torch()
        if stream is None:
            return torch.cuda.current_stream(self._torch_device)
        s = self._streams.get(stream.handle)
        if s is None:
            s = self._streams[stream.handle] = torch.cuda.ExternalStream(
                stream.handle, device=self._torch_device)
        return s

    def _forward(self) -> Any:
        torch = _torch()
        s = self.spec
        x, padding = self._x, s.padding
        if s.asymmetric:
            # conv2d pads symmetrically only: four-sided padding is an explicit pad first
            # (what a torch user writes); the pad is part of the timed work
            (top, left), (bottom, right) = s.padding, s.pad_end
            x = torch.nn.functional.pad(x, (left, right, top, bottom))
            padding = (0, 0)
        y = torch.nn.functional.conv2d(x, self._w, self._b, stride=s.stride,
                                       padding=padding, dilation=s.dilation, groups=s.groups)
        if s.activation == "relu":
            y = torch.relu_(y)
        return y

    def _set_input_impl(self, x: np.ndarray) -> None:
        torch = _torch()
        self._x = torch.from_numpy(np.ascontiguousarray(x)).to(self._torch_device, self._dtype)
        if self.device == "cuda":  # the copy and the cast ran on torch's current stream
            _wait_stream(torch.cuda.current_stream(self._torch_device))

    def _enqueue_impl(self, stream: base.StreamLike | None) -> None:
        if self.device == "cpu":
            self._out = self._forward()
            return
        torch = _torch()
        with torch.cuda.stream(self._stream(stream)):
            self._out = self._forward()

    def _output_impl(self, stream: base.StreamLike | None) -> np.ndarray:
        if self.device == "cuda":
            _wait_stream(self._stream(stream))
        return self._out.float().cpu().numpy()

    def _capture_impl(self, stream: base.StreamLike, iters: int) -> _TorchGraph:
        # torch's caching allocator must know about the capture: use torch's own graph API,
        # on convbench's stream, so the replay is timed by the same event code as any engine.
        torch = _torch()
        s = self._stream(stream)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g, stream=s):
            for _ in range(iters):
                self._out = self._forward()
        graph = _TorchGraph(g, self)
        self._graphs.append(graph)
        return graph

    def _layer_profile_impl(self, stream: base.StreamLike | None,
                            iters: int) -> list[base.LayerTime]:
        """Per-kernel times from ``torch.profiler`` (GPU kernels on CUDA, ATen ops on CPU)."""
        cuda = self.device == "cuda"

        def sync() -> None:
            if cuda:
                _wait_stream(self._stream(stream))

        return profile_kernels(lambda: self.enqueue(stream), sync, iters, cuda)

    @property
    def movable(self) -> bool:
        return self.device == "cuda"

    def _relocate_impl(self, draw: int) -> None:
        """New copies of the input, weights and bias after two spacers: one in torch's small
        pool (under 1 MiB, where tensors of at most 1 MiB live) and one in its large pool, of
        sizes drawn from ``draw`` in steps of 512 bytes (the allocator's rounding). The old
        tensors are held until close, so the copies land elsewhere. With the graph timer the
        output and cuDNN's workspace move too: the next capture allocates them from a new
        private pool (each timer resets its graph when it closes, so that pool's memory may
        be reused by a later one)."""
        import random

        torch = _torch()
        rng = random.Random(draw)
        small = 512 * rng.randrange(1, 2048)  # 512 B .. 1 MiB - 512 B
        large = (1 << 20) + 512 * rng.randrange(1, 38 * 1024)  # 1 MiB .. 20 MiB
        dev = self._torch_device
        self._left += [torch.empty(small, dtype=torch.uint8, device=dev),
                       torch.empty(large, dtype=torch.uint8, device=dev),
                       self._x, self._w, self._b]
        self._x = self._x.clone() if self._x is not None else None
        self._w = self._w.clone()
        self._b = self._b.clone() if self._b is not None else None
        _wait_stream(torch.cuda.current_stream(dev))

    def _close_impl(self) -> None:
        for g in self._graphs:
            g.close()
        self._graphs.clear()
        self._left.clear()
        self._x = self._out = self._w = self._b = None
        self._streams.clear()
