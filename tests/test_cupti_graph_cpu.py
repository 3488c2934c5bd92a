"""benchmarks/cupti_graph.py on a machine without a GPU: the CUPTI graph-trace reference's
bookkeeping (records in, per-inference numbers out) against a stand-in for ``cupti`` that
hands back records as CUPTI's buffer callback would, and the target lines with exact numbers.
The CUPTI path itself runs only on a GPU (benchmarks/results/cupti-graph-h200.md)."""

from __future__ import annotations

import ctypes
import importlib.util
import struct
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
GRAPH, KERNEL = 10, 20


class FakeCupti:
    """Queues records while a kind is enabled; ``activity_flush_all`` hands them to the
    registered completion callback, as CUPTI does."""

    ActivityKind = SimpleNamespace(GRAPH_TRACE=GRAPH, CONCURRENT_KERNEL=KERNEL)

    def __init__(self) -> None:
        self.enabled: set[int] = set()
        self.pending: list[SimpleNamespace] = []
        self.completed = None
        self.registrations = 0

    def activity_register_callbacks(self, requested, completed) -> None:  # noqa: ANN001
        assert requested() == (8 << 20, 0)
        self.completed = completed
        self.registrations += 1

    def activity_enable(self, kind: int) -> None:
        self.enabled.add(kind)

    def activity_disable(self, kind: int) -> None:
        self.enabled.discard(kind)

    def activity_flush_all(self, flag: int) -> None:
        assert self.completed is not None
        self.completed(self.pending)
        self.pending = []

    def emit(self, kind: int, start: int, end: int) -> None:
        if kind in self.enabled:
            self.pending.append(SimpleNamespace(kind=kind, start=start, end=end))


@pytest.fixture()
def fake() -> Iterator[FakeCupti]:
    f = FakeCupti()
    pkg = types.ModuleType("cupti")
    pkg.cupti = f  # type: ignore[attr-defined]
    saved = sys.modules.get("cupti")
    sys.modules["cupti"] = pkg
    try:
        yield f
    finally:
        if saved is None:
            sys.modules.pop("cupti", None)
        else:
            sys.modules["cupti"] = saved


def _load() -> ModuleType:
    """A fresh copy of the benchmark module (its Trace keeps per-process state)."""
    spec = importlib.util.spec_from_file_location("convbench_cupti_graph",
                                                  ROOT / "benchmarks" / "cupti_graph.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture()
def cg(fake: FakeCupti) -> ModuleType:
    mod = _load()
    mod.BINDING = "python"  # the stand-in above, as cupti-python
    return mod


@pytest.fixture()
def libcupti() -> object:
    """The ctypes binding over the real libcupti (no GPU needed to walk records)."""
    try:
        return _load().CuptiCtypes()
    except OSError as e:
        pytest.skip(f"no libcupti here (pip install nvidia-cuda-cupti): {e}")


class Source:
    """A graph source of K inferences per replay: each call 'replays' the graph (one graph
    record of ``replay_ns`` device time) and returns the event timer's ms per inference."""

    def __init__(self, fake: FakeCupti, k: int, replay_ns: list[int], event_ms: list[float],
                 kernels_per_replay: int = 0) -> None:
        self.fake, self.iters_per_sample = fake, k
        self.replay_ns, self.event_ms = list(replay_ns), list(event_ms)
        self.kernels = kernels_per_replay
        self.t = 1_000_000

    def __call__(self) -> float:
        d = self.replay_ns.pop(0)
        self.fake.emit(GRAPH, self.t, self.t + d)
        for i in range(self.kernels):
            self.fake.emit(KERNEL, self.t + i, self.t + i + 1)
        self.t += d + 5_000
        return self.event_ms.pop(0)


def test_graph_trace_gives_per_inference_medians_of_the_replays(cg: ModuleType,
                                                                 fake: FakeCupti) -> None:
    # K = 4 inferences per replay; device durations 400, 404, 440 ns per replay
    src = Source(fake, 4, [400_000, 404_000, 440_000], [0.1010, 0.1020, 0.1100])
    got = cg.traced_replays(lambda: src, 3)
    assert got["cupti_us"] == pytest.approx(101.0)  # 404 µs / 4
    assert got["cupti_min_us"] == pytest.approx(100.0)
    assert got["cupti_max_us"] == pytest.approx(110.0)
    assert got["traced_us"] == pytest.approx(102.0)  # the event timer's median, µs/inference
    assert got["iters_per_sample"] == 4 and got["replays"] == 3
    assert fake.enabled == set()  # the trace is off again


def test_graph_trace_ignores_other_kinds_and_registers_callbacks_once(
        cg: ModuleType, fake: FakeCupti) -> None:
    src = Source(fake, 2, [200_000] * 4, [0.1] * 4, kernels_per_replay=3)
    fake.enabled.add(KERNEL)  # someone else's kernel records in the same buffers
    a = cg.traced_replays(lambda: src, 2)
    b = cg.traced_replays(lambda: src, 2)
    assert a["cupti_us"] == b["cupti_us"] == pytest.approx(100.0)
    assert fake.registrations == 1


def test_the_source_is_made_under_the_trace_and_its_own_first_replays_are_skipped(
        cg: ModuleType, fake: FakeCupti) -> None:
    made_with: list[set[int]] = []

    class Settling(Source):
        def settle(self) -> Settling:  # the timer's three replays while it is made
            for _ in range(3):
                self()
            return self

    def make() -> Source:
        made_with.append(set(fake.enabled))
        return Settling(fake, 2, [900_000] * 3 + [200_000, 202_000], [0.1] * 5).settle()

    got = cg.traced_replays(make, 2)
    assert made_with == [{GRAPH}]  # captured with the graph trace already on
    assert got["cupti_us"] == pytest.approx(100.5)  # the two timed replays only


def test_a_missing_graph_record_is_an_error_not_a_number(cg: ModuleType,
                                                         fake: FakeCupti) -> None:
    class Lossy(Source):
        def __call__(self) -> float:  # the second replay's record is dropped
            ms = super().__call__()
            if len(self.replay_ns) == 1:
                fake.pending.pop()
            return ms

    with pytest.raises(RuntimeError, match="CUPTI reported 2 graph launches for 3 replays"):
        cg.traced_replays(lambda: Lossy(fake, 1, [10_000] * 3, [0.01] * 3), 3)


def test_kernels_per_inference_counts_kernel_records(cg: ModuleType, fake: FakeCupti) -> None:
    class Engine:
        def enqueue(self, stream: object) -> None:
            for i in range(4):
                fake.emit(KERNEL, i, i + 1)

    stream = SimpleNamespace(sync=lambda: None)
    assert cg.kernels_per_inference(Engine(), stream, calls=3) == 4.0


def test_summary_judges_multi_kernel_cases_of_at_least_50_us(cg: ModuleType) -> None:
    rows = [  # the 50 µs cut is on the reference, as in fidelity.py
        {"case": "one-kernel", "kernels": 1, "graph_us": 80.0, "cupti_us": 77.7, "err_pct": 3.0},
        {"case": "small-multi", "kernels": 4, "graph_us": 20.0, "cupti_us": 20.5,
         "err_pct": -2.5},
        {"case": "big-multi-ok", "kernels": 4, "graph_us": 120.0, "cupti_us": 121.8,
         "err_pct": -1.5},
        {"case": "big-multi-off", "kernels": 5, "graph_us": 60.0, "cupti_us": 58.8,
         "err_pct": 2.01},
        {"case": "graph-over-50-reference-under", "kernels": 4, "graph_us": 50.5,
         "cupti_us": 49.0, "err_pct": 3.06},
        {"case": "no-trace", "kernels": 4, "graph_us": 70.0, "err_pct": None},
    ]
    assert cg.summary(rows) == [
        "- multi-kernel cases ≥ 50 µs (of the reference, as fidelity.py judges), graph vs "
        "CUPTI graph trace within ±2 %: 1/2; worst +2.01 % (big-multi-off)",
        "- multi-kernel cases, graph vs CUPTI graph trace within ±2 %: 1/4; worst +3.06 % "
        "(graph-over-50-reference-under)",
        "- all cases, graph vs CUPTI graph trace within ±2 %: 1/5; worst +3.06 % "
        "(graph-over-50-reference-under)",
    ]


def _graph_record(start: int, end: int) -> bytes:
    """A ``CUpti_ActivityGraphTrace2`` as CUDA 13's cupti_activity.h lays it out (56 bytes):
    kind, correlationId, start, end, deviceId, graphId, contextId, streamId, reserved,
    endDeviceId, endContextId."""
    return struct.pack("<IIQQIIIIQII", 51, 7, start, end, 0, 3, 1, 13, 0, 0, 1)


def test_the_ctypes_binding_reads_graph_records_through_the_real_libcupti(
        libcupti: Any) -> None:
    """libcupti's own record iterator (cuptiActivityGetNextRecord, no GPU needed) walks a
    buffer of two graph-trace records; the ctypes binding reads their timestamps."""
    lib = libcupti
    got: list[SimpleNamespace] = []
    # the callbacks CUPTI would call (registering them needs a driver)
    req, on_complete = lib.thunks(lambda: (1 << 16, 0), got.extend)
    payload = _graph_record(1_000, 5_000) + _graph_record(6_000, 9_500)
    raw = ctypes.create_string_buffer(payload, len(payload) + 8)
    on_complete(None, 0, ctypes.addressof(raw), len(payload), len(payload))
    assert [(r.kind, r.start, r.end) for r in got] == [(51, 1_000, 5_000), (51, 6_000, 9_500)]
    # a buffer CUPTI asked for is 8-byte aligned and released once completed
    buf, size, n = ctypes.c_void_p(), ctypes.c_size_t(), ctypes.c_size_t()
    req(ctypes.byref(buf), ctypes.byref(size), ctypes.byref(n))
    assert buf.value % 8 == 0 and size.value == 1 << 16 and buf.value in lib._buffers
    on_complete(None, 0, buf.value, size.value, 0)
    assert buf.value not in lib._buffers


def test_the_committed_h200_targets_are_what_its_json_gives(cg: ModuleType) -> None:
    """The target lines of benchmarks/results/cupti-graph-h200.md follow from its .json."""
    import json

    results = ROOT / "benchmarks" / "results"
    rows = json.loads((results / "cupti-graph-h200.json").read_text(encoding="utf-8"))["rows"]
    md = (results / "cupti-graph-h200.md").read_text(encoding="utf-8")
    lines = cg.summary(rows)
    assert all(line in md for line in lines)
    assert lines[0].endswith("11/11; worst +0.21 % (7x7-stem-b32)")
    # the form that replays a new capture for 20 replays, from the same device call
    rows = json.loads((results / "cupti-graph-new-capture-h200.json").read_text(
        encoding="utf-8"))["rows"]
    assert cg.summary(rows)[0].endswith("10/11; worst +2.20 % (3x3-b64-256-fp16)")
    assert "(of the reference, as fidelity.py judges)" in lines[0]


def test_records_lost_inside_cupti_are_an_error_and_incomplete_ones_no_number(
        cg: ModuleType, fake: FakeCupti) -> None:
    src = Source(fake, 1, [10_000] * 3, [0.01] * 3)
    fake.errors = ["CUPTI dropped 3 records"]  # as CuptiCtypes notes them in its callback
    with pytest.raises(RuntimeError, match="records lost: CUPTI dropped 3 records"):
        cg.traced_replays(lambda: src, 3)
    assert fake.errors == [] and fake.enabled == set()

    class Incomplete(Source):
        def __call__(self) -> float:  # the last replay's record has no end yet
            ms = super().__call__()
            if not self.replay_ns:
                fake.pending[-1].end = 0
            return ms

    with pytest.raises(RuntimeError, match="CUPTI reported 2 graph launches for 3 replays"):
        cg.traced_replays(lambda: Incomplete(fake, 1, [10_000] * 3, [0.01] * 3), 3)


def test_the_ctypes_binding_notes_a_record_libcupti_cannot_read(libcupti: Any) -> None:
    lib = libcupti
    got: list[SimpleNamespace] = []
    _, on_complete = lib.thunks(lambda: (1 << 16, 0), got.extend)
    payload = _graph_record(1_000, 5_000) + struct.pack("<II", 9_999, 0) + bytes(48)
    raw = ctypes.create_string_buffer(payload, len(payload) + 8)
    on_complete(None, 0, ctypes.addressof(raw), len(payload), len(payload))
    assert [(r.start, r.end) for r in got] == [(1_000, 5_000)]
    assert len(lib.errors) == 1 and lib.errors[0].startswith("cuptiActivityGetNextRecord returned")


def test_trace_from_start_keeps_the_graph_trace_on_across_blocks(cg: ModuleType,
                                                                 fake: FakeCupti) -> None:
    cg.Trace.keep_on("GRAPH_TRACE")
    assert fake.enabled == {GRAPH} and fake.registrations == 1
    src = Source(fake, 2, [200_000] * 4, [0.1] * 4)
    assert cg.traced_replays(lambda: src, 2)["cupti_us"] == pytest.approx(100.0)
    assert fake.enabled == {GRAPH}  # a block does not switch it off
    assert cg.traced_replays(lambda: src, 2)["cupti_us"] == pytest.approx(100.0)
    assert fake.registrations == 1


def test_trace_from_start_replays_the_timed_source_and_pauses_for_the_kernel_count(
        cg: ModuleType, fake: FakeCupti) -> None:
    class Kept(Source):
        closed = False

        def close(self) -> None:
            self.closed = True

    cg.Trace.keep_on("GRAPH_TRACE")
    src = Kept(fake, 2, [200_000, 204_000], [0.1, 0.1])
    assert cg.traced_replays(lambda: src, 2, close=False)["cupti_us"] == pytest.approx(101.0)
    assert not src.closed  # the timed graph lives on: "after" times it again

    seen: list[set[int]] = []

    class Engine:
        def enqueue(self, stream: object) -> None:
            seen.append(set(fake.enabled))
            for i in range(3):
                fake.emit(KERNEL, i, i + 1)

    stream = SimpleNamespace(sync=lambda: None)
    assert cg.kernels_per_inference(Engine(), stream) == 3
    assert seen[1:] == [{KERNEL}] * 3  # the counted calls ran without the graph trace
    assert fake.enabled == {GRAPH}  # and it is on again for the next case


def test_trace_from_start_reads_cupti_over_the_timed_samples_themselves(
        cg: ModuleType) -> None:
    # two warm-up replays, then three timed samples; K = 2 inferences per replay
    records = [(0, 900_000), (1_000_000, 1_900_000),
               (2_000_000, 2_200_000), (3_000_000, 3_204_000), (4_000_000, 4_260_000)]
    got = cg.same_replays(records, [0.1005, 0.1025, 0.131], 2)
    assert got["cupti_us"] == pytest.approx(102.0)  # 204 µs / 2: the samples' replays only
    assert (got["cupti_min_us"], got["cupti_max_us"]) == (pytest.approx(100.0),
                                                          pytest.approx(130.0))
    assert got["traced_us"] == pytest.approx(102.5) and got["replays"] == 3
    with pytest.raises(RuntimeError, match="CUPTI reported 2 graph launches for 3 replays"):
        cg.same_replays(records[:2], [0.1, 0.1, 0.1], 2)
