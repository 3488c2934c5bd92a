"""The cudnn backend's plan search and selection, driven through a FAKE cuDNN frontend and a fake
device (orchestration only: which plans are built, checked, timed, skipped, chosen, and what is
recorded). The real library is exercised by tests/gpu/test_cudnn_backend.py on a GPU.

The fake graph proposes plans with given outcomes: refused at build, a workspace size, a time
per execution, wrong results. Its execute writes the correct output (the float64 reference, in
NHWC) or garbage, and advances a per-stream clock that the fake events read.
"""

from __future__ import annotations

import enum
import types
from typing import Any

import numpy as np
import pytest

from bench.backends import cudnn as backend_mod
from bench.backends.base import BuildInfo
from bench.errors import UnsupportedCase
from bench.precision import decode, encode, storage_dtype
from bench.reference import make_data, reference
from bench.spec import ConvSpec

SPEC = ConvSpec(batch=2, in_channels=8, out_channels=8, height=6, width=6, kernel=3,
                padding=1, activation="relu", precision="fp16")


class NotSupported(Exception):
    pass


class Knob(enum.Enum):
    TILE_SIZE = 1


class FakeStream:
    _next = 100

    def __init__(self, clock: dict[int, float]) -> None:
        FakeStream._next += 1
        self.handle = FakeStream._next
        self.clock = clock
        clock[self.handle] = 0.0

    def record(self, event: Any) -> None:
        event.t = self.clock[self.handle]

    def sync(self, timeout_s: float | None = None) -> None:
        return None

    def close(self) -> None:
        return None


@pytest.fixture(autouse=True)
def _fake_event_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    """The backend waits for events through bench.gpu.cuda.wait_event (cuEventQuery with a
    timeout); a fake event is done as soon as it is recorded."""
    from bench.gpu import cuda

    monkeypatch.setattr(cuda, "wait_event", lambda event, timeout_s=None: event.sync())


class FakeEvent:
    t = 0.0

    def sync(self) -> None:
        return None

    def __sub__(self, other: FakeEvent) -> float:
        return self.t - other.t

    def close(self) -> None:
        return None


class FakeBuffer:
    _next = 1 << 20
    by_ptr: dict[int, FakeBuffer] = {}

    def __init__(self, nbytes: int) -> None:
        FakeBuffer._next += 1 << 16
        self.ptr, self.nbytes = FakeBuffer._next, nbytes
        self.data = np.zeros(min(nbytes, 1 << 22), np.uint8)  # workspaces are never read
        self.closed = False
        FakeBuffer.by_ptr[self.ptr] = self

    def upload(self, host: np.ndarray, stream: Any = None) -> None:
        raw = np.ascontiguousarray(host).view(np.uint8).ravel()
        self.data[:raw.size] = raw

    def download(self, shape: Any, dtype: Any, stream: Any = None) -> np.ndarray:
        n = int(np.prod(shape)) * np.dtype(dtype).itemsize
        return self.data[:n].view(dtype).reshape(shape).copy()

    def close(self) -> None:
        self.closed = True


class FakeDevice:
    index = 0
    info = types.SimpleNamespace(cc=(9, 0))

    def __init__(self, alloc_limit: int = 1 << 40) -> None:
        self.clock: dict[int, float] = {}
        self.buffers: list[FakeBuffer] = []
        self.alloc_limit = alloc_limit

    def stream(self) -> FakeStream:
        return FakeStream(self.clock)

    def alloc(self, nbytes: int) -> FakeBuffer:
        from bench.gpu.cuda import CudaError

        if nbytes > self.alloc_limit:
            raise CudaError(f"cuMemAlloc({nbytes} bytes)", "CUDA_ERROR_OUT_OF_MEMORY")
        b = FakeBuffer(nbytes)
        self.buffers.append(b)
        return b

    def event(self) -> FakeEvent:
        return FakeEvent()


def fake_cudnn(outcomes: list[dict[str, Any]], spec: ConvSpec, device: FakeDevice,
               executed: list[int]) -> Any:
    """A module with the frontend calls the backend makes; ``outcomes[i]`` describes plan i:
    ``refuse`` (build error text), ``ws`` (bytes), ``ms`` (per execution), ``wrong``."""
    data = make_data(spec)
    good = np.ascontiguousarray(np.transpose(reference(spec, data, spec.batch), (0, 2, 3, 1)))

    class Tensor:
        def __init__(self, name: str) -> None:
            self.name = name

        def set_output(self, v: bool) -> Tensor:
            return self

        def set_data_type(self, v: Any) -> Tensor:
            return self

        def set_dim(self, v: Any) -> Tensor:
            return self

        def set_stride(self, v: Any) -> Tensor:
            return self

    class Graph:
        def __init__(self, **kw: Any) -> None:
            # the ranked list drops the mode; backend_plan_entries() keeps it (as in 1.32)
            self.plans = [types.SimpleNamespace(cpp_index=i, mode=None)
                          for i in range(len(outcomes))]
            self.notes: list[Any] = []

        def tensor(self, name: str, **kw: Any) -> Tensor:
            return Tensor(name)

        def _op(self, name: str) -> Tensor:
            self.output = Tensor(name)  # the last op's output is the graph's output
            return self.output

        def conv_fprop(self, **kw: Any) -> Tensor:
            return self._op("conv")

        def bias(self, **kw: Any) -> Tensor:
            return self._op("bias")

        def relu(self, **kw: Any) -> Tensor:
            return self._op("relu")

        def validate(self) -> None: ...

        def build_operation_graph(self) -> None: ...

        def create_execution_plans(self, modes: list[Any]) -> None:
            assert modes == ["A", "FALLBACK"]

        def deselect_numeric_notes(self, notes: list[Any]) -> None:
            self.notes += notes

        def check_support(self) -> None:
            if all("refuse" in o for o in outcomes):
                raise NotSupported("No execution plans support the graph.")

        def backend_plan_entries(self) -> list[Any]:
            return [types.SimpleNamespace(cpp_index=i, mode="heur_mode." + (
                "FALLBACK" if o.get("ms", 0) >= 5 else "A")) for i, o in enumerate(outcomes)]

        def get_execution_plan_count(self) -> int:
            return len(outcomes)

        def get_plan_name_at_index(self, i: int) -> str:
            return f"eng{i}"

        def get_engine_and_knobs_at_index(self, i: int) -> tuple[int, dict[Any, int]]:
            return i, {Knob.TILE_SIZE: i}

        def build_plan_at_index(self, i: int) -> None:
            if "refuse" in outcomes[i]:
                raise NotSupported(outcomes[i]["refuse"])

        def get_workspace_size_plan_at_index(self, i: int) -> int:
            return outcomes[i].get("ws", 0)

        def get_behavior_notes_for_plan_at_index(self, i: int) -> list[Any]:
            return []

        def execute_plan_at_index(self, pack: dict[Tensor, int], ws: int | None, index: int,
                                  handle: Any) -> None:
            o = outcomes[index]
            need = o.get("ws", 0)
            assert (ws is not None) == bool(need)
            if need:
                assert FakeBuffer.by_ptr[ws].nbytes >= need
            executed.append(index)
            if o.get("hang"):  # what a wait on a plan whose execution never ends raises
                from bench.gpu.cuda import GpuStuck

                raise GpuStuck("cuStreamSynchronize", "not finished",
                               "GPU work still running after 10 s")
            y = pack[self.output]
            out = good + (7.0 if o.get("wrong") else 0.0)
            FakeBuffer.by_ptr[y].upload(encode(out, spec.precision))
            device.clock[handle.stream] += o["ms"]

    def set_stream(handle: Any, stream: int) -> None:
        handle.stream = stream

    return types.SimpleNamespace(
        data_type=types.SimpleNamespace(FLOAT="FLOAT", HALF="HALF", BFLOAT16="BFLOAT16"),
        pygraph=Graph, heur_mode=types.SimpleNamespace(A="A", FALLBACK="FALLBACK"),
        numerical_note=types.SimpleNamespace(TENSOR_CORE="TC", DOWN_CONVERT_INPUTS="DC"),
        cudnnGraphNotSupportedError=NotSupported,
        create_handle=lambda: types.SimpleNamespace(stream=None, destroyed=False),
        set_stream=set_stream,
        destroy_handle=lambda h: setattr(h, "destroyed", True))


@pytest.fixture(autouse=True)
def fake_graph_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    """The graph timer over the fake clock: a sample is K enqueues' clock time / K."""

    class Source:
        iters_per_sample = 4
        info = {"blocked": True}

        def __init__(self, engine: Any, stream: FakeStream, target_ms: float) -> None:
            self.engine, self.stream = engine, stream

        def __call__(self) -> float:
            before = self.stream.clock[self.stream.handle]
            for _ in range(self.iters_per_sample):
                self.engine.enqueue(self.stream)
            return (self.stream.clock[self.stream.handle] - before) / self.iters_per_sample

        def close(self) -> None:
            return None

    monkeypatch.setattr(backend_mod, "_graph_source", Source)


def build(outcomes: list[dict[str, Any]], spec: ConvSpec = SPEC,
          device: FakeDevice | None = None) -> tuple[Any, FakeDevice, list[int]]:
    device = device or FakeDevice()
    executed: list[int] = []
    engine = backend_mod.CudnnEngine(spec, BuildInfo(build_s=0.0),
                                     fake_cudnn(outcomes, spec, device, executed), device)
    try:
        engine.build(make_data(spec))
    except BaseException:
        engine.close()
        raise
    return engine, device, executed


PLANS = [{"ms": 0.05}, {"refuse": "CUDNN_STATUS_NOT_SUPPORTED"}, {"ms": 0.03, "ws": 4096},
         {"ms": 0.04, "wrong": True}, {"ms": 0.02, "ws": 1 << 30}, {"ms": 9.0}]


def test_autotune_keeps_the_fastest_correct_plan_within_the_workspace() -> None:
    spec = SPEC.model_copy(update={"workspace": 1 << 20})
    engine, device, _ = build(PLANS, spec)
    extra = engine.info.extra
    status = [p["status"] for p in extra["plans"]]
    assert status == ["ok", "unsupported", "ok", "wrong", "skipped_workspace", "ok"]
    assert extra["plan_status"] == {"ok": 3, "unsupported": 1, "wrong": 1,
                                    "skipped_workspace": 1}
    assert extra["plans_skipped_workspace"] == 1
    assert (extra["heuristic_index"], extra["fastest_index"], extra["chosen_index"]) == (0, 2, 2)
    p = extra["plans"]
    assert p[0]["ms"] == pytest.approx(0.05) and p[2]["ms"] == pytest.approx(0.03)
    assert p[0]["timed_by"] == "graph x4" and p[5]["timed_by"] == "once"
    assert p[3]["rel_err"] > 1 and p[0]["rel_err"] < 1e-3
    assert p[1]["error"] == "CUDNN_STATUS_NOT_SUPPORTED" and p[2]["knobs"] == {"TILE_SIZE": 2}
    assert [q["mode"] for q in p] == ["A"] * 5 + ["FALLBACK"]
    assert engine.info.layers[0]["tactic"] == "eng2"
    # the chosen plan runs on the caller's stream, with its own workspace
    s = device.stream()
    before = device.clock[s.handle]
    engine.enqueue(s)
    assert device.clock[s.handle] - before == pytest.approx(0.03)
    out = engine.output(s)
    assert out.shape == spec.output_shape
    ref = reference(spec, make_data(spec), spec.batch)
    assert np.abs(out - ref).max() < 1e-2
    engine.close()
    assert all(b.closed for b in device.buffers)


def test_heuristic_keeps_cudnns_first_usable_plan() -> None:
    engine, _, _ = build(PLANS, SPEC.model_copy(update={"algo": "heuristic"}))
    extra = engine.info.extra
    assert extra["selection"] == "heuristic" and extra["chosen_index"] == 0
    assert extra["fastest_index"] == 4  # no workspace limit: the 1 GiB plan is usable
    engine.close()


def test_a_plan_whose_workspace_cannot_be_allocated_is_skipped() -> None:
    engine, _, _ = build(PLANS, device=FakeDevice(alloc_limit=1 << 20))
    p = engine.info.extra["plans"]
    assert p[4]["status"] == "skipped_memory" and "OUT_OF_MEMORY" in p[4]["error"]
    assert engine.info.extra["chosen_index"] == 2
    engine.close()


def test_no_usable_plan_is_unsupported_and_keeps_the_plan_list() -> None:
    with pytest.raises(UnsupportedCase) as e:
        build([{"ms": 0.1, "wrong": True}, {"ms": 0.1, "ws": 1 << 30}],
              SPEC.model_copy(update={"workspace": 0}))
    assert "none of its 2 plans is usable here (1 skipped_workspace, 1 wrong)" in str(e.value)
    assert len(e.value.build_info.extra["plans"]) == 2  # type: ignore[attr-defined]


def test_cudnns_refusal_of_the_graph_is_unsupported_with_its_reason() -> None:
    with pytest.raises(UnsupportedCase, match="cuDNN: No execution plans support the graph"):
        build([{"refuse": "x"}])


def test_fp32_without_tf32_deselects_tensor_core_engines() -> None:
    spec = SPEC.model_copy(update={"precision": "fp32", "tf32": False})
    engine, _, _ = build([{"ms": 0.1}], spec)
    assert engine._graph.notes == ["TC", "DC"]
    assert engine.info.extra["tf32"] is False
    engine.close()
    engine, _, _ = build([{"ms": 0.1}], spec.model_copy(update={"tf32": True}))
    assert engine._graph.notes == [] and engine.info.extra["tf32"] is True
    engine.close()


def test_bf16_data_reaches_the_library_as_bf16_bits() -> None:
    spec = SPEC.model_copy(update={"precision": "bf16"})
    engine, _, _ = build([{"ms": 0.1}], spec)
    x = engine._bufs["x"].download((2, 6, 6, 8), storage_dtype("bf16"))
    host = np.transpose(make_data(spec).x, (0, 2, 3, 1))
    assert np.array_equal(decode(x, "bf16"), host)  # NHWC, exact
    engine.close()


def test_plans_past_the_search_budget_are_skipped_and_said_so(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backend_mod, "SEARCH_BUDGET_S", -1.0)
    with pytest.raises(UnsupportedCase, match=r"\(2 skipped_budget\)") as e:
        build([{"ms": 0.1}, {"ms": 0.2}])
    plans = e.value.build_info.extra["plans"]  # type: ignore[attr-defined]
    assert [p["status"] for p in plans] == ["skipped_budget"] * 2
    assert "search budget" in plans[0]["error"]


def test_a_plan_that_never_finishes_stops_the_case_and_frees_nothing() -> None:
    """Seen on the H200 (3x3 depthwise, fp32, blocked replays): one plan's CUDA-graph replay
    never finished and the sweep waited for ever. A wait now ends with ``GpuStuck`` naming the
    plan; nothing the stuck work may still use (buffers, workspace) is freed."""
    from bench.gpu.cuda import GpuStuck

    device = FakeDevice()
    plans = [{"ms": 0.05, "ws": 4096}, {"ms": 0.01, "ws": 4096, "hang": True},
             {"ms": 0.03, "ws": 4096}]
    engine = backend_mod.CudnnEngine(SPEC, BuildInfo(build_s=0.0),
                                     fake_cudnn(plans, SPEC, device, []), device)
    with pytest.raises(GpuStuck, match=r"cuDNN plan 1 \(eng1.*\) of .*: its execution did not "
                                       r"finish within 10 s"):
        engine.build(make_data(SPEC))
    assert device.buffers and not [b for b in device.buffers if b.closed]
