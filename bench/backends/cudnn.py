"""The cudnn backend: one fused cuDNN graph per case (conv_fprop [+ bias] [+ ReLU]) with NHWC
tensors, through NVIDIA's cuDNN frontend Python API (PyPI ``nvidia-cudnn-frontend``, module
``cudnn``).

This is TensorRT's tactic search done in the open: cuDNN's heuristics (modes A and FALLBACK)
rank the engine configurations that can run the graph; every plan is built, checked against the
float64 reference and timed with a short budget by convbench's own graph timer (a few replays of
a CUDA graph of back-to-back executions); then the chosen plan is measured by convbench's timers
like any engine.
``spec.algo`` chooses: ``autotune`` keeps the fastest plan, ``heuristic`` cuDNN's first usable
plan. Every plan (index, name, engine id, knobs, heuristic mode, behaviour notes, workspace,
time, relative error, status) is recorded in ``BuildInfo.extra["plans"]``.

The graph follows the frontend's own conv samples (NVIDIA/cudnn-frontend
test/python/test_conv_bias.py ``create_conv_bias_relu_graph`` and test_conv_fprop.py
``test_conv_fprop_execute_plan_at_index_tvm_ffi``: ``pygraph(io, intermediate, compute,
handle)``, ``tensor``, ``conv_fprop(pre_padding, post_padding, stride, dilation)``, ``bias``,
``relu``, ``validate``, ``build_operation_graph``, ``create_execution_plans([A, FALLBACK])``,
``check_support``, ``execute_plan_at_index``); names and signatures checked against the 1.32
wheel (``cudnn/_pygraph.py``). Device memory is convbench's own (``bench.gpu.cuda.Buffer``), passed
as raw device pointers, and every kernel runs on convbench's stream (``cudnn.set_stream``).
"""

from __future__ import annotations

import contextlib
import glob
import logging
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

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
from bench.errors import BuildFailed, UnsupportedCase
from bench.gpu.cuda import GpuStuck
from bench.precision import TOLERANCE, decode, encode, storage_dtype
from bench.spec import ConvSpec

log = logging.getLogger(__name__)

#: one replay of a plan's tactic-timing graph lasts about this long
PLAN_REPLAY_MS = 1.0
#: replays per plan; the plan's time is their median per execution
PLAN_REPLAYS = 5
#: a plan whose first execution is this many times slower than the best so far, and longer
#: than SLOW_PLAN_MIN_MS, is timed once (an eager execution carries ~tens of µs of host launch
#: overhead, so short plans are always timed in a graph)
SLOW_PLAN_FACTOR = 10.0
SLOW_PLAN_MIN_MS = 2.0
#: a safety net, not a tuning knob: plans not reached after this many seconds of one case's
#: search (building runtime-compiled engines can take seconds each) are ``skipped_budget``
SEARCH_BUDGET_S = 120.0
#: a plan's execution or timing replay still unfinished after this many seconds stops the
#: case with ``GpuStuck`` naming the plan (whatever is stuck may still occupy the GPU)
PLAN_WAIT_S = 10.0
_IO_TYPES = {"fp32": "FLOAT", "fp16": "HALF", "bf16": "BFLOAT16"}
#: what ``status`` of a plan means (reports count them)
PLAN_STATUS = {
    "ok": "built, correct, timed: a candidate",
    "unsupported": "cuDNN could not build it for this graph",
    "excluded": "deselected by a numerical note (fp32 with tf32 = false: no TF32 engines)",
    "skipped_workspace": "needs more workspace than the case's `workspace`",
    "skipped_memory": "its workspace could not be allocated",
    "wrong": "relative error above the precision's tolerance",
    "not_capturable": "its execution could not be captured in a CUDA graph",
    "failed": "execution failed",
    "skipped_budget": f"not reached within the search budget ({SEARCH_BUDGET_S:g} s per case)",
}


def _cudnn() -> Any:
    import cudnn

    return cudnn


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text[:600] or type(e).__name__


def _backend_version(cudnn: Any) -> str | None:
    """The cuDNN library version the frontend loaded, or None when it found no libcudnn.

    The frontend dlopens libcudnn at import: LD_LIBRARY_PATH, then the interpreter's
    site-packages (``nvidia/cudnn/lib``, the wheel torch depends on), then ``libcudnn.so.9``
    (cudnn/__init__.py ``_dlopen_cudnn``). Installed with ``pip --target`` or in a user site it
    can miss the wheel torch uses: then load that library by path and let the frontend look
    again (its last try finds the already-loaded soname).
    """
    try:
        return str(cudnn.backend_version_string())
    except RuntimeError:
        pass
    found = [p for base in sys.path if base
             for p in glob.glob(os.path.join(base, "nvidia", "cudnn", "lib", "libcudnn.so.*[0-9]"))]
    if not found:
        return None
    import ctypes

    try:
        ctypes.CDLL(sorted(found)[0], mode=ctypes.RTLD_GLOBAL)
        cudnn._dlopen_cudnn()
        return str(cudnn.backend_version_string())
    except (OSError, RuntimeError, AttributeError):
        return None


class CudnnBackend(Backend):
    name = "cudnn"
    install_hint = "pip install 'trt-convbench[cudnn]'"

    def available(self) -> tuple[bool, str]:
        try:
            cudnn = _cudnn()
        except ImportError as e:
            return False, f"nvidia-cudnn-frontend is not installed ({e}) — {self.install_hint}"
        except Exception as e:  # noqa: BLE001 - the frontend dlopens libcudnn at import
            return False, f"nvidia-cudnn-frontend failed to import: {_one_line(e)}"
        from bench.gpu import cuda

        reason = cuda.unavailable_reason()
        if reason:
            return False, f"needs a CUDA GPU: {reason}"
        if _backend_version(cudnn) is None:
            return False, ("the cuDNN library (libcudnn.so.9) was not found: pip install "
                           "nvidia-cudnn-cu13 (or -cu12, as torch does), or put it on "
                           "LD_LIBRARY_PATH")
        return True, ""

    def versions(self) -> dict[str, str]:
        try:
            cudnn = _cudnn()
        except Exception:  # noqa: BLE001 - not importable: available() says why
            return {}
        v = {"cudnn_frontend": str(cudnn.__version__)}
        lib = _backend_version(cudnn)
        if lib:
            v["cudnn"] = lib
        return v

    @property
    def device(self) -> DeviceKind:
        return "cuda"

    def probe_reason(self, spec: ConvSpec) -> str | None:
        # autotune: every build times every plan again, so a rebuild is a fresh draw
        if spec.algo != "autotune":
            return (f"algo = {spec.algo!r}: cuDNN's heuristic pick is the same in every build; "
                    "probes draw autotuning choices (algo = \"autotune\")")
        return None

    def _build_impl(self, spec: ConvSpec, data: ConvData, ctx: BuildContext) -> Engine:
        from bench.gpu import cuda

        if spec.precision not in _IO_TYPES:
            raise UnsupportedCase(f"cudnn backend: {spec.precision} (quantized, Q/DQ) graphs are "
                                  "not built by this backend; it builds fp32, fp16 and bf16 "
                                  "convolutions")
        if spec.typing != "strong":
            raise UnsupportedCase(f"cudnn backend: typing = {spec.typing!r} is a TensorRT "
                                  "builder mode (fp32 network, lower precision allowed)")
        cudnn = _cudnn()
        device = cuda.Device(ctx.device_index)
        cc = device.info.cc
        if spec.precision == "bf16" and cc < (8, 0):
            raise UnsupportedCase(f"bf16 needs compute capability 8.0 or newer (this GPU: "
                                  f"{cc[0]}.{cc[1]})")
        t0 = time.perf_counter()
        engine = CudnnEngine(spec, BuildInfo(build_s=0.0), cudnn, device)
        try:
            engine.build(data)
        except GpuStuck:
            engine.info.build_s = time.perf_counter() - t0
            raise  # not closed: its streams and buffers may still be in use by the stuck work
        except BaseException:
            engine.info.build_s = time.perf_counter() - t0
            engine.close()
            raise
        engine.info.build_s = time.perf_counter() - t0
        return engine


class NoUsablePlan(UnsupportedCase):
    """cuDNN proposed plans but none can be used here; carries the plan list (``build_info``),
    which the runner stores with the ``unsupported`` record."""

    def __init__(self, reason: str, build_info: BuildInfo) -> None:
        super().__init__(reason)
        self.build_info = build_info


def nhwc_strides(dims: tuple[int, int, int, int]) -> list[int]:
    """Strides (in elements) of an NCHW-ordered ``dims`` stored channels-last (NHWC)."""
    n, c, h, w = dims
    return [h * w * c, 1, w * c, c]


def make_graph(cudnn: Any, spec: ConvSpec, handle: Any) -> tuple[Any, dict[str, Any]]:
    """The cuDNN graph of ``spec``: conv_fprop, + bias, + ReLU, one graph, NHWC tensors.

    Dims are given in NCHW order with channels-last strides (the frontend's convention); the
    weight is (K, C/g, R, S) in KRSC memory order, the bias (1, K, 1, 1). fp16/bf16 accumulate
    in fp32 (compute and intermediate FLOAT), like torch's and TensorRT's convolutions.
    """
    dt = cudnn.data_type
    io = getattr(dt, _IO_TYPES[spec.precision])
    g = cudnn.pygraph(io_data_type=io, intermediate_data_type=dt.FLOAT,
                      compute_data_type=dt.FLOAT, handle=handle)
    k = spec.out_channels
    x = g.tensor(name="x", dim=list(spec.input_shape), stride=nhwc_strides(spec.input_shape),
                 data_type=io)
    w = g.tensor(name="w", dim=list(spec.weight_shape), stride=nhwc_strides(spec.weight_shape),
                 data_type=io)
    y = g.conv_fprop(image=x, weight=w, pre_padding=list(spec.padding),
                     post_padding=list(spec.pad_end), stride=list(spec.stride),
                     dilation=list(spec.dilation), compute_data_type=dt.FLOAT, name="conv")
    tensors = {"x": x, "w": w}
    if spec.bias:
        b = g.tensor(name="b", dim=[1, k, 1, 1], stride=[k, 1, k, k], data_type=io)
        tensors["b"] = b
        y = g.bias(name="bias", input=y, bias=b)
    if spec.activation == "relu":
        y = g.relu(name="relu", input=y)
    y.set_output(True).set_data_type(io)
    y.set_dim(list(spec.output_shape)).set_stride(nhwc_strides(spec.output_shape))
    tensors["y"] = y
    return g, tensors


def _graph_name(spec: ConvSpec) -> str:
    return "conv_fprop" + ("+bias" if spec.bias else "") + \
        ("+relu" if spec.activation == "relu" else "")


def _enum_name(v: Any) -> str:
    return str(getattr(v, "name", v)).split(".")[-1]


class CudnnEngine(Engine):
    """A cuDNN graph with all its plans built, the chosen one run by ``enqueue``. Owns its
    handle, a stream for its own copies and the tactic search, and every device buffer."""

    device: DeviceKind = "cuda"

    def __init__(self, spec: ConvSpec, info: BuildInfo, cudnn: Any, device: Any) -> None:
        super().__init__(spec, info)
        self._cudnn = cudnn
        self._device = device
        self._handle: Any = None
        self._graph: Any = None
        self._tensors: dict[str, Any] = {}
        self._bufs: dict[str, Any] = {}
        self._ws: Any = None
        self._pack: dict[Any, int] = {}
        self._plan = -1
        self._own_stream: Any = None
        self._left: list[Any] = []  # buffers left behind by relocate(), and its spacers

    # --- build ---------------------------------------------------------------------------------
    def build(self, data: ConvData) -> None:
        spec, cudnn = self.spec, self._cudnn
        self._own_stream = self._device.stream()
        self._handle = cudnn.create_handle()
        cudnn.set_stream(self._handle, self._own_stream.handle)
        sdt = storage_dtype(spec.precision)
        sizes = {"x": int(np.prod(spec.input_shape)), "w": int(np.prod(spec.weight_shape)),
                 "y": int(np.prod(spec.output_shape))}
        if spec.bias:
            sizes["b"] = spec.out_channels
        for key, count in sizes.items():
            self._bufs[key] = self._device.alloc(count * sdt.itemsize)
        s = self._own_stream
        self._bufs["w"].upload(encode(np.transpose(data.w, (0, 2, 3, 1)), spec.precision), s)
        if data.b is not None:
            self._bufs["b"].upload(encode(data.b, spec.precision), s)
        self.set_input(data.x)
        self._graph, self._tensors = self._plan_graph()
        self._pack = {t: self._bufs[key].ptr for key, t in self._tensors.items()}
        from bench.reference import check_batch, reference

        images = check_batch(spec)
        ref = reference(spec, data, images)
        plans, search_s = self._search(ref, images)
        self._choose(plans, search_s)

    def _plan_graph(self) -> tuple[Any, dict[str, Any]]:
        """validate → build_operation_graph → create_execution_plans([A, FALLBACK]) →
        check_support; cuDNN's refusal becomes ``unsupported`` with cuDNN's own words."""
        spec, cudnn = self.spec, self._cudnn
        declined = (cudnn.cudnnGraphNotSupportedError,)
        try:
            g, tensors = make_graph(cudnn, spec, self._handle)
            g.validate()
            g.build_operation_graph()
            g.create_execution_plans([cudnn.heur_mode.A, cudnn.heur_mode.FALLBACK])
            if spec.precision == "fp32" and not spec.tf32:
                # what torch does for allow_tf32=False (aten/src/ATen/native/cudnn/Conv_v8.cpp,
                # filterEngineConfigs): no tensor-core (TF32) engines for float data, and no
                # engines that down-convert their inputs
                g.deselect_numeric_notes([cudnn.numerical_note.TENSOR_CORE,
                                          cudnn.numerical_note.DOWN_CONVERT_INPUTS])
            g.check_support()
        except declined as e:
            raise UnsupportedCase(f"cuDNN: {_one_line(e)}") from None
        except (RuntimeError, ValueError) as e:
            text = _one_line(e)
            if "not supported" in text.lower() or "NOT_SUPPORTED" in text:
                raise UnsupportedCase(f"cuDNN: {text}") from None
            raise BuildFailed(f"cuDNN graph for {spec.short_name()}: {text}") from None
        return g, tensors

    def _plan_record(self, i: int, modes: dict[Any, str]) -> dict[str, Any]:
        g = self._graph
        rec: dict[str, Any] = {"index": i, "name": None, "engine_id": None, "mode": None,
                               "knobs": {}, "behavior_notes": [], "workspace_bytes": None,
                               "build_s": None, "ms": None, "rel_err": None,
                               "timed_by": None,
                               "status": "ok", "error": None}
        with contextlib.suppress(Exception):  # descriptive fields: never fail a plan for them
            rec["name"] = str(g.get_plan_name_at_index(i))
        with contextlib.suppress(Exception):
            engine_id, knobs = g.get_engine_and_knobs_at_index(i)
            rec["engine_id"] = int(engine_id)
            rec["knobs"] = {_enum_name(k): int(v) for k, v in (knobs or {}).items()}
        with contextlib.suppress(Exception):
            rec["mode"] = modes.get(g.plans[i].cpp_index)
        return rec

    def _heuristic_modes(self) -> dict[Any, str]:
        """C++ plan index → the heuristic mode (A, FALLBACK) that proposed it. The ranked list
        (``graph.plans``) drops the mode tag; ``backend_plan_entries()`` (public, answered once
        per graph) keeps it (cudnn/_pygraph.py ``backend_plan_entries``,
        engines/heuristics.py ``_strip``)."""
        try:
            return {e.cpp_index: _enum_name(e.mode) for e in self._graph.backend_plan_entries()
                    if e.cpp_index is not None and e.mode is not None}
        except Exception:  # noqa: BLE001 - descriptive only
            return {}

    def _search(self, ref: np.ndarray, images: int) -> tuple[list[dict[str, Any]], float]:
        """Build every plan, then check and time each usable one (the tactic search)."""
        spec, cudnn, g = self.spec, self._cudnn, self._graph
        t0 = time.perf_counter()
        tf32_filter = spec.precision == "fp32" and not spec.tf32
        plans = []
        modes = self._heuristic_modes()
        # one plan at a time, not build_plans(build_plan_policy.ALL): that keeps only the
        # plans that built and drops each refusal's reason, which the record should show
        for i in range(int(g.get_execution_plan_count())):
            rec = self._plan_record(i, modes)
            plans.append(rec)
            if time.perf_counter() - t0 > SEARCH_BUDGET_S:
                rec["status"], rec["error"] = "skipped_budget", PLAN_STATUS["skipped_budget"]
                continue
            t_build = time.perf_counter()
            try:
                g.build_plan_at_index(i)
                rec["workspace_bytes"] = int(g.get_workspace_size_plan_at_index(i))
            except (cudnn.cudnnGraphNotSupportedError, RuntimeError, ValueError,
                    NotImplementedError) as e:
                text = _one_line(e)
                rec["status"] = "excluded" if tf32_filter and "Deselect" in text else \
                    "unsupported"
                rec["error"] = text
                continue
            finally:
                rec["build_s"] = time.perf_counter() - t_build
                log.debug("plan %d %s: build %.3f s, %s", i, rec["name"], rec["build_s"],
                          rec["status"])
            with contextlib.suppress(Exception):
                rec["behavior_notes"] = [_enum_name(b) for b in
                                         g.get_behavior_notes_for_plan_at_index(i)]
            if spec.workspace is not None and rec["workspace_bytes"] > spec.workspace:
                rec["status"] = "skipped_workspace"
                rec["error"] = (f"needs {rec['workspace_bytes']} workspace bytes, the case "
                                f"allows {spec.workspace}")
        candidates = [p for p in plans if p["status"] == "ok"]
        ws = self._tactic_workspace(candidates)
        best = math.inf
        try:
            for rec in candidates:
                if rec["status"] != "ok":
                    continue
                if time.perf_counter() - t0 > SEARCH_BUDGET_S:
                    rec["status"], rec["error"] = "skipped_budget", PLAN_STATUS["skipped_budget"]
                    continue
                t_plan = time.perf_counter()
                try:
                    self._time_plan(rec, ws, ref, images, best)
                except GpuStuck as e:
                    # the stuck work keeps this case's buffers, stream and workspace: nothing
                    # of the case is freed, and the case (and the sweep) stops here
                    ws = None
                    raise GpuStuck(e.call, e.error,
                                   f"cuDNN plan {rec['index']} ({rec['name']}) of "
                                   f"{spec.short_name()}: its execution did not finish within "
                                   f"{PLAN_WAIT_S:g} s") from None
                log.debug("plan %d %s: %s, %s ms (%s) in %.3f s", rec["index"], rec["name"],
                          rec["status"], rec["ms"], rec["timed_by"], time.perf_counter() - t_plan)
                if rec["status"] == "ok" and rec["ms"] is not None:
                    best = min(best, rec["ms"])
        finally:
            if ws is not None:
                ws.close()
        return plans, time.perf_counter() - t0

    def _tactic_workspace(self, candidates: list[dict[str, Any]]) -> Any:
        """One workspace buffer for the whole search, as large as the largest plan needs; a plan
        whose workspace cannot be allocated is skipped (``skipped_memory``)."""
        from bench.gpu.cuda import CudaError

        for rec in sorted(candidates, key=lambda r: -r["workspace_bytes"]):
            need = rec["workspace_bytes"]
            if need == 0:
                return None
            try:
                return self._device.alloc(need)
            except CudaError as e:
                rec["status"], rec["error"] = "skipped_memory", _one_line(e)
        return None

    def _execute(self, index: int, stream_handle: int, ws_ptr: int | None) -> None:
        cudnn = self._cudnn
        cudnn.set_stream(self._handle, stream_handle)  # the handle skips an unchanged stream
        self._graph.execute_plan_at_index(self._pack, ws_ptr, index=index, handle=self._handle)

    def _time_plan(self, rec: dict[str, Any], ws: Any, ref: np.ndarray, images: int,
                   best_ms: float) -> None:
        """Check one plan against the reference, then time it with convbench's graph timer
        (``GraphSource``: back-to-back executions in one CUDA graph sized to about
        ``PLAN_REPLAY_MS``, blocked launch, one event pair per replay): the median of
        ``PLAN_REPLAYS`` replays per execution. A plan that fails any step gets that step's
        status and error, and the search goes on."""
        from bench.reference import rel_l2_error

        s, i = self._own_stream, rec["index"]
        ws_ptr = ws.ptr if ws is not None and rec["workspace_bytes"] else None
        failures = (RuntimeError, self._cudnn.cudnnGraphNotSupportedError)  # CudaError too

        def run() -> None:
            self._execute(i, s.handle, ws_ptr)

        start, stop = self._device.event(), self._device.event()
        step = "execute"
        try:
            run()  # the first execution loads modules; it is also the one checked
            s.sync(PLAN_WAIT_S)
            err = rel_l2_error(self._download(s, images), ref)
            rec["rel_err"] = None if math.isinf(err) else err
            tol = TOLERANCE[self.spec.precision]
            if not err <= tol:
                rec["status"] = "wrong"
                rec["error"] = f"relative L2 error {err:.3g} above the tolerance {tol}"
                return
            once = _elapsed_ms(s, start, stop, run)
            if once > max(SLOW_PLAN_FACTOR * best_ms, SLOW_PLAN_MIN_MS):
                rec["ms"], rec["timed_by"] = once, "once"
                return
            step = "capture"
            source = _graph_source(_PlanRun(self.spec, run), s, PLAN_REPLAY_MS)
            step = "execute"
            try:
                replays = [source() for _ in range(PLAN_REPLAYS)]
            finally:
                source.close()
            rec["ms"] = statistics.median(replays)
            rec["timed_by"] = f"graph x{source.iters_per_sample}" + \
                ("" if source.info.get("blocked") else " unblocked")
        except GpuStuck:
            raise  # the search decides (a new stream, or the case stops)
        except (*failures, ValueError) as e:
            if isinstance(e, ValueError) and step != "capture":
                raise  # a wrong variant pack or shape: a bug here, not the plan's fault
            with contextlib.suppress(Exception):
                s.sync()
            rec["status"] = "not_capturable" if step == "capture" else "failed"
            rec["error"] = _one_line(e)
        finally:
            start.close()
            stop.close()

    def _choose(self, plans: list[dict[str, Any]], search_s: float) -> None:
        spec = self.spec
        usable = [p for p in plans if p["status"] == "ok" and p["ms"] is not None]
        counts: dict[str, int] = {}
        for p in plans:
            counts[p["status"]] = counts.get(p["status"], 0) + 1
        extra: dict[str, Any] = {
            "device": f"cuda:{self._device.index}", "algo": spec.algo,
            "selection": "fastest" if spec.algo == "autotune" else "heuristic",
            "layout": "NHWC", "graph": _graph_name(spec),
            "tf32": bool(spec.tf32 and spec.precision == "fp32"),
            "heuristics": ["A", "FALLBACK"], "plan_count": len(plans),
            "plan_status": counts, "plans_usable": len(usable),
            "plans_skipped_workspace": counts.get("skipped_workspace", 0),
            "tactic_budget": {"replay_ms": PLAN_REPLAY_MS, "replays": PLAN_REPLAYS,
                              "slow_factor": SLOW_PLAN_FACTOR, "slow_min_ms": SLOW_PLAN_MIN_MS,
                              "search_s": SEARCH_BUDGET_S},
            "search_s": search_s, "plans": plans,
        }
        self.info.extra = extra
        if not usable:
            parts = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
            first_error = next((p["error"] for p in plans if p["error"]), "")
            raise NoUsablePlan(f"cuDNN: none of its {len(plans)} plans is usable here ({parts})"
                               + (f"; first: {first_error}" if first_error else ""), self.info)
        heuristic = min(usable, key=lambda p: p["index"])
        fastest = min(usable, key=lambda p: (p["ms"], p["index"]))
        chosen = fastest if spec.algo == "autotune" else heuristic
        extra.update(heuristic_index=heuristic["index"], fastest_index=fastest["index"],
                     chosen_index=chosen["index"],
                     chosen={k: chosen[k] for k in ("index", "name", "engine_id", "knobs",
                                                    "workspace_bytes", "ms", "behavior_notes")})
        self._plan = chosen["index"]
        need = chosen["workspace_bytes"] or 0
        self._ws = self._device.alloc(need) if need else None
        self.info.layers = [{"name": extra["graph"], "type": "cudnn graph",
                             "tactic": chosen["name"], "workspace_bytes": need,
                             "plans": len(plans), "plans_usable": len(usable)}]

    # --- run -----------------------------------------------------------------------------------
    def _stream_of(self, stream: StreamLike | None) -> StreamLike:
        return self._own_stream if stream is None else stream

    def _download(self, stream: Any, images: int | None = None) -> np.ndarray:
        """The first ``images`` images of the output (a prefix of the NHWC buffer), NCHW."""
        n, k, p, q = self.spec.output_shape
        raw = self._bufs["y"].download((images or n, p, q, k),
                                       storage_dtype(self.spec.precision), stream)
        return np.ascontiguousarray(np.transpose(decode(raw, self.spec.precision), (0, 3, 1, 2)))

    def _set_input_impl(self, x: np.ndarray) -> None:
        s = self._own_stream
        self._bufs["x"].upload(encode(np.transpose(x, (0, 2, 3, 1)), self.spec.precision), s)
        s.sync()

    def _enqueue_impl(self, stream: StreamLike | None) -> None:
        self._execute(self._plan, self._stream_of(stream).handle,
                      self._ws.ptr if self._ws is not None else None)

    def _output_impl(self, stream: StreamLike | None) -> np.ndarray:
        s = self._stream_of(stream)
        if s is not self._own_stream:
            s.sync()  # type: ignore[attr-defined]
        return self._download(self._own_stream)

    def _layer_profile_impl(self, stream: StreamLike | None, iters: int) -> list[LayerTime]:
        """Per-kernel times of the chosen plan from ``torch.profiler`` (CUPTI records every
        kernel of the process, cuDNN's included)."""
        try:
            from bench.backends.torch import profile_kernels
        except ImportError as e:  # pragma: no cover - torch.py imports nothing heavy
            raise RuntimeError(f"per-kernel profile: {e}") from None
        try:
            import torch  # noqa: F401
        except ImportError:
            raise RuntimeError("the cudnn backend's per-kernel profile uses torch.profiler "
                               "(CUPTI): pip install torch") from None
        s = self._stream_of(stream)
        return profile_kernels(lambda: self.enqueue(s), s.sync,  # type: ignore[attr-defined]
                               iters, cuda=True)

    @property
    def movable(self) -> bool:
        return True

    def _relocate_impl(self, draw: int) -> None:
        """New buffers for the input, weights, bias, output and workspace after a spacer of
        512 B .. 2 MiB drawn from ``draw``; the contents are copied over. ``cuMemAlloc``
        cannot hand out memory still held, and the old buffers are held until close. All or
        nothing: if an allocation or copy fails (out of memory), the new buffers are freed and
        the engine keeps the old ones."""
        import random

        s = self._own_stream
        s.sync()
        made: list[Any] = []
        try:
            made.append(self._device.alloc(512 * random.Random(draw).randrange(1, 4096)))
            bufs = {}
            for key, old in self._bufs.items():
                new = self._device.alloc(old.nbytes)
                made.append(new)
                new.copy_from(old, s)
                bufs[key] = new
            ws = None
            if self._ws is not None:
                ws = self._device.alloc(self._ws.nbytes)
                made.append(ws)
            s.sync()
        except GpuStuck:
            # a copy may still be queued: keep its buffers until close instead of waiting on
            # the stuck stream again or freeing memory it may yet write
            self._left += made
            raise
        except BaseException:
            with contextlib.suppress(Exception):
                s.sync()  # no copy may still write into a buffer freed here
            for buf in made:
                with contextlib.suppress(Exception):
                    buf.close()
            raise
        self._left += [made[0], *self._bufs.values()]
        if self._ws is not None:
            self._left.append(self._ws)
            self._ws = ws
        self._bufs = bufs
        self._pack = {t: self._bufs[key].ptr for key, t in self._tensors.items()}

    def _close_impl(self) -> None:
        # the graph before the handle it was built with; buffers after the last execution
        if self._own_stream is not None:
            with contextlib.suppress(Exception):
                self._own_stream.sync()
        self._graph = None
        self._tensors.clear()
        self._pack = {}
        for buf in [*self._bufs.values(), self._ws, *self._left]:
            if buf is not None:
                buf.close()
        self._bufs.clear()
        self._left.clear()
        self._ws = None
        if self._handle is not None:
            handle, self._handle = self._handle, None
            self._cudnn.destroy_handle(handle)
        if self._own_stream is not None:
            self._own_stream.close()
            self._own_stream = None


class _PlanRun(Engine):
    """One plan of the search as an engine, for the graph timer (enqueue only)."""

    device: DeviceKind = "cuda"

    def __init__(self, spec: ConvSpec, run: Callable[[], None]) -> None:
        super().__init__(spec, BuildInfo(build_s=0.0))
        self._run = run

    def _set_input_impl(self, x: np.ndarray) -> None:
        return None

    def _enqueue_impl(self, stream: StreamLike | None) -> None:
        self._run()  # always on the search stream, which is the timer's stream

    def _output_impl(self, stream: StreamLike | None) -> np.ndarray:
        raise NotImplementedError


def _graph_source(engine: Engine, stream: Any, target_ms: float) -> Any:
    """convbench's graph timer over ``engine`` (warm L2), its waits ending after PLAN_WAIT_S.
    Unblocked: on the H200 (3x3 depthwise) a blocked replay of one plan never finished after
    its eager executions had; a plan's ~1 ms replay is long enough that the few µs of launch
    latency the blocker hides move its time by well under 1 %."""
    from bench.gpu.timers import MAX_ITERS, GraphSource

    return GraphSource(engine, stream, "warm", None, target_ms=target_ms, max_iters=MAX_ITERS,
                       wait_timeout_s=PLAN_WAIT_S,
                       unblocked_because="cuDNN tactic search (1 ms replays)")


def _elapsed_ms(stream: Any, start: Any, stop: Any, work: Callable[[], None]) -> float:
    """GPU milliseconds of ``work`` on ``stream`` between two events."""
    from bench.gpu.cuda import _calling, wait_event

    stream.record(start)
    work()
    stream.record(stop)
    wait_event(stop, PLAN_WAIT_S)
    with _calling("cuEventElapsedTime"):
        return float(stop - start)
