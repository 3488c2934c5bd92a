"""Buffer placements (``[timing] placements``): the budget split, the pooled samples, the
headline and its interval over placements with exact numbers, the note where an engine cannot
move its buffers, samples kept past the deadline, and the real CPU path (one placement, with a
note)."""

from __future__ import annotations

import math
import statistics
from typing import Any

import numpy as np
import pytest
from helpers import case

from bench.backends.base import Engine
from bench.deadline import CaseDeadline, CaseTimeout
from bench.errors import BenchError
from bench.gpu.cuda import GpuStuck
from bench.placements import measure_placements, placement_settings, spread_pct, widen
from bench.record import Placement, Stats, TimingFacts
from bench.repeats import pass_timing
from bench.stats import t95
from bench.suite import TimingConfig, parse_suite
from bench.timing import TimingSettings


class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class _Engine(Engine):
    """A 'GPU' engine whose time per inference is set by where its buffers are."""

    device = "cuda"

    def __init__(self, movable: bool = True, memory_for: int = 99,
                 stuck: bool = False) -> None:
        super().__init__(case().spec, None)  # type: ignore[arg-type]
        self.placement = 0
        self._movable = movable
        self.memory_for = memory_for  # relocations that fit in device memory
        self.stuck = stuck  # the GPU hangs in the first relocation
        self.draws: list[int] = []

    @property
    def movable(self) -> bool:
        return self._movable

    def _relocate_impl(self, draw: int) -> None:
        self.draws.append(draw)
        if self.stuck:
            raise GpuStuck("cuStreamSynchronize", "GPU_STUCK", "no progress in 60 s")
        if len(self.draws) > self.memory_for:
            raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 MiB\nmore text")
        self.placement = draw

    def _set_input_impl(self, x: np.ndarray) -> None: ...

    def _enqueue_impl(self, stream: Any) -> None: ...

    def _output_impl(self, stream: Any) -> np.ndarray:
        return np.zeros(1)


class _Source:
    """One sample = 10 ms of (fake) wall time; its value is 1.0 + 0.1 * placement ms."""

    mode = "graph"
    iters_per_sample = 5

    def __init__(self, engine: _Engine, clock: _Clock, closed: list[int]) -> None:
        self.engine, self.clock, self.closed = engine, clock, closed
        self.info = {"mode": "graph", "placement": engine.placement}

    def __call__(self) -> float:
        self.clock.t += 0.01
        return 1.0 + 0.1 * self.engine.placement

    def close(self) -> None:
        self.closed.append(self.engine.placement)


SETTINGS = TimingSettings(warmup_s=0.2, min_samples=10, min_time_s=0.4, max_time_s=8.0,
                          target_rse=0.005)


def test_the_budget_is_split_between_placements_and_the_first_keeps_the_warmup() -> None:
    first, later = placement_settings(SETTINGS, 0, 4), placement_settings(SETTINGS, 3, 4)
    assert (first.warmup_s, first.min_time_s, first.max_time_s, first.min_samples) == (
        0.2, 0.1, 2.0, 3)
    assert (later.warmup_s, later.min_time_s, later.max_time_s, later.min_samples) == (
        0.05, 0.1, 2.0, 3)
    assert placement_settings(SETTINGS, 0, 1) is SETTINGS


def test_samples_are_pooled_over_placements_and_each_placement_is_recorded() -> None:
    clock, closed = _Clock(), []
    engine = _Engine()
    placed = measure_placements(engine, lambda _: _Source(engine, clock, closed), SETTINGS, 4,
                                clock=clock)
    assert engine.draws == [1, 2, 3]  # placement 0 is where the build put the buffers
    assert closed == [0, 1, 2, 3]  # every timer closed after its placement
    assert [(p.index, p.moved, p.median_ms) for p in placed.placements] == [
        (0, False, 1.0), (1, True, 1.1), (2, True, pytest.approx(1.2)),
        (3, True, pytest.approx(1.3))]
    # each placement: min_time 0.1 s of 10 ms samples -> 10 samples (rse 0 from the start)
    assert [p.samples for p in placed.placements] == [10, 10, 10, 10]
    assert len(placed.samples.ms) == 40 and placed.samples.converged
    assert placed.samples.iters_per_sample == 5 and placed.note is None
    assert placed.source_info["placement"] == 0  # the first timer's facts
    # warm-up: 0.2 s, then 0.05 s three times, in whole 10 ms calls (each loop may take one
    # more call than the exact sum as the float clock adds up)
    assert 0.35 - 1e-9 <= placed.samples.warmup_s <= 0.35 + 0.04 + 1e-9
    assert spread_pct([p.median_ms for p in placed.placements]) == pytest.approx(30.0)


def test_the_median_is_the_pooled_samples_and_its_interval_covers_the_placements() -> None:
    meds = [1.0, 1.1, 1.2, 1.3]
    placements = [Placement(index=i, moved=i > 0, samples=10, median_ms=m)
                  for i, m in enumerate(meds)]
    samples = [m for m in meds for _ in range(10)]
    stats = Stats.of(samples)
    wide = widen(stats, placements)
    half = 3.182 * statistics.stdev(meds) / 2  # t(3) * s / sqrt(4) = 0.20540...
    assert t95(3) == 3.182 and half == pytest.approx(0.2054, abs=1e-4)
    assert wide.median == stats.median == pytest.approx(1.15)  # the pooled samples' median
    assert wide.median_ci_low == pytest.approx(1.15 - half)
    assert wide.median_ci_high == pytest.approx(1.15 + half)
    # one placement: unchanged; an order-statistic interval already wider is kept
    assert widen(stats, placements[:1]) == stats
    broad = stats.model_copy(update={"median_ci_low": 0.1, "median_ci_high": 5.0})
    assert (widen(broad, placements).median_ci_low, widen(broad, placements).median_ci_high) \
        == (0.1, 5.0)


def test_an_engine_that_cannot_move_its_buffers_gets_one_placement_and_the_whole_budget(
        ) -> None:
    clock, closed = _Clock(), []
    engine = _Engine(movable=False)
    placed = measure_placements(engine, lambda _: _Source(engine, clock, closed), SETTINGS, 4,
                                clock=clock)
    assert engine.draws == [] and closed == [0]  # never asked to move
    assert placed.note == ("placements: this CUDA engine cannot move its buffers; timed at 1 "
                           "of 4 placements")
    assert placed.placements == []
    with pytest.raises(RuntimeError, match="this CUDA engine cannot move its buffers"):
        engine.relocate(1)  # asked directly, it refuses instead of pretending
    # the whole budget: min_time 0.4 s of 10 ms samples
    assert len(placed.samples.ms) == 40


def test_a_stuck_gpu_while_moving_the_buffers_stops_the_case() -> None:
    clock, closed = _Clock(), []
    engine = _Engine(stuck=True)
    with pytest.raises(GpuStuck):
        measure_placements(engine, lambda _: _Source(engine, clock, closed), SETTINGS, 4,
                           clock=clock)
    assert closed == [0]


def test_later_placements_keep_the_first_placements_inferences_per_sample() -> None:
    clock, closed, asked = _Clock(), [], []
    engine = _Engine()

    def make(iters: int | None) -> _Source:
        asked.append(iters)
        return _Source(engine, clock, closed)

    measure_placements(engine, make, SETTINGS, 4, clock=clock)
    assert asked == [None, 5, 5, 5]  # sized once, at the first placement (_Source: 5)


def test_a_timer_that_fails_at_a_later_placement_keeps_those_timed() -> None:
    clock, closed = _Clock(), []
    engine = _Engine()

    def make(iters: int | None) -> _Source:
        if engine.placement == 3:
            raise RuntimeError("CUDA out of memory (graph capture)")
        return _Source(engine, clock, closed)

    placed = measure_placements(engine, make, SETTINGS, 4, clock=clock)
    assert [p.index for p in placed.placements] == [0, 1, 2] and len(placed.samples.ms) == 30
    assert placed.note == ("placements: moving the buffers for placement 3 failed "
                           "(RuntimeError: CUDA out of memory (graph capture)); timed at 3 of "
                           "4 placements")
    # the first placement's failure is the case's, as without placements
    engine0 = _Engine()
    with pytest.raises(RuntimeError):
        measure_placements(engine0, lambda _: (_ for _ in ()).throw(RuntimeError("x")),
                           SETTINGS, 4, clock=clock)


def test_a_relocation_out_of_memory_keeps_the_placements_timed_so_far() -> None:
    clock, closed = _Clock(), []
    engine = _Engine(memory_for=1)
    placed = measure_placements(engine, lambda _: _Source(engine, clock, closed), SETTINGS, 4,
                                clock=clock)
    assert engine.draws == [1, 2] and closed == [0, 1]
    assert [p.median_ms for p in placed.placements] == [1.0, 1.1]
    assert len(placed.samples.ms) == 20
    assert placed.note == ("placements: moving the buffers for placement 2 failed "
                           "(RuntimeError: CUDA out of memory. Tried to allocate 20.00 MiB); "
                           "timed at 2 of 4 placements")


def test_past_the_deadline_the_samples_of_every_placement_are_kept() -> None:
    clock, closed = _Clock(), []
    engine = _Engine()

    class _Deadline(CaseDeadline):
        def check(self) -> None:
            if engine.placement == 2 and clock.t > 0.6:
                raise CaseTimeout("timing", clock.t, 1.0)

    with pytest.raises(CaseTimeout) as e:
        measure_placements(engine, lambda _: _Source(engine, clock, closed), SETTINGS, 4,
                           _Deadline(None), clock=clock)
    ms = e.value.samples
    assert ms[:20] == [1.0] * 10 + [1.1] * 10  # placements 0 and 1 in full
    assert len(ms) > 20 and all(x == pytest.approx(1.2) for x in ms[20:])
    assert closed == [0, 1, 2]  # the interrupted placement's timer was closed too
    assert [p.index for p in e.value.placements] == [0, 1]  # timed in full before the limit


def test_placements_are_a_suite_key_and_a_flag_and_repeats_share_them() -> None:
    suite = parse_suite('name = "p"\n[timing]\nplacements = 8\nrepeats = 3\n'
                        '[[cases]]\nin_channels = 4\nout_channels = 4\nheight = 8\nwidth = 8\n')
    assert suite.timing.placements == 8
    assert pass_timing(suite.timing).placements == 3  # ceil(8 / 3)
    from bench.repeats import pass_placements

    # at least 3 per pass where 3 or more were asked for: t(1) would make the interval ±9 s
    assert [pass_placements(k, 3) for k in (1, 2, 3, 4, 7, 16)] == [1, 1, 3, 3, 3, 6]
    assert TimingConfig().placements == 1  # the default: where the build put the buffers
    with pytest.raises(BenchError, match="placements"):
        parse_suite('name = "p"\n[timing]\nplacements = 0\n[[cases]]\nin_channels = 4\n'
                    'out_channels = 4\nheight = 8\nwidth = 8\n')
    from bench.commands.common_args import timing_overrides

    assert timing_overrides({"placements": 16}) == {"placements": 16}
    with pytest.raises(BenchError, match="--placements"):
        timing_overrides({"placements": 65})


def test_a_record_with_placements_says_its_interval_covers_them() -> None:
    from helpers import record

    rec = record(0)
    assert rec.interval is not None and rec.interval[2] == "within pass"
    assert rec.timing is not None
    rec.timing = TimingFacts.model_validate({
        **rec.timing.model_dump(), "placements": [
            {"index": i, "moved": i > 0, "samples": 3, "median_ms": 1.0} for i in range(4)]})
    assert rec.interval is not None and rec.interval[2] == "within pass, over 4 placements"


def test_tables_and_the_report_show_the_placements() -> None:
    from helpers import record

    from bench.report.render import _interval_lines
    from bench.report.tables import records_frame

    placed, plain = record(0), record(1)
    assert placed.timing is not None
    placed.timing = TimingFacts.model_validate({
        **placed.timing.model_dump(), "placement_spread_pct": 4.0, "placements": [
            {"index": i, "moved": i > 0, "samples": 3, "median_ms": 1.0 + i / 100}
            for i in range(4)]})
    df = records_frame([placed, plain])
    assert df["placements"].tolist() == [4, 1]
    assert df["placement_spread_pct"].iloc[0] == 4.0
    assert df["interval_covers"].tolist() == ["within pass, over 4 placements",
                                              "within pass"]
    lines = _interval_lines(df)
    assert any(line.startswith("`interval` (within pass, over K placements)")
               for line in lines)
    assert any(line.startswith("`interval` (within pass):") for line in lines)


def test_time_step_records_the_placements_and_widens_the_interval(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import bench.contention
    import bench.runner
    from bench.placements import widen as widen_stats

    clock, closed = _Clock(), []
    engine = _Engine()
    monkeypatch.setattr(bench.runner, "_source",
                        lambda *a, **k: _Source(engine, clock, closed))
    monkeypatch.setattr(bench.contention, "before_case", lambda gpu: [])
    monkeypatch.setattr(bench.contention, "after_case", lambda clocks, samples: [])

    class _Gpu:
        def clocks(self) -> None:
            return None

    # a short budget: time_step runs on the real clock, and the fake source never waits
    timing = TimingConfig(placements=4, warmup_s=0.01, min_samples=10, min_time_s=0.02,
                          max_time_s=0.2)
    timed = bench.runner.time_step(engine, timing, _Gpu())  # type: ignore[arg-type]
    t = timed.timing
    assert [p.median_ms for p in t.placements] == [1.0, 1.1, pytest.approx(1.2),
                                                   pytest.approx(1.3)]
    assert t.placement_spread_pct == pytest.approx(30.0) and t.placements_note is None
    # (time_step times with the real clock: the counts follow the host's speed)
    assert t.source["placement"] == 0
    assert len(timed.samples.ms) == sum(p.samples for p in t.placements)
    assert timed.stats == widen_stats(Stats.of(timed.samples.ms), t.placements)
    assert timed.stats.median_ci_high - timed.stats.median > 0.2  # t(3) * s / 2 = 0.205


def test_on_the_cpu_a_real_case_is_timed_at_one_placement_with_a_note() -> None:
    pytest.importorskip("torch")
    from bench.backends.registry import get_backend
    from bench.runner import measure_case

    timing = TimingConfig(placements=4, warmup_s=0.01, min_time_s=0.02, max_time_s=0.2,
                          profile_iters=0)
    rec, _ = measure_case(case(0), get_backend("torch"), timing, None, None)
    assert rec.status == "ok", rec.error
    assert rec.timing is not None and rec.timing.placements == []
    assert rec.timing.placements_note == ("placements: this CPU engine cannot move its "
                                          "buffers; timed at 1 of 4 placements")
    assert rec.interval is not None and rec.interval[2] == "within pass"
    assert math.isfinite(rec.stats.median)  # type: ignore[union-attr]


# --- the cuDNN backend's relocation is all or nothing ------------------------------------------
class _Buf:
    def __init__(self, dev: _Device, nbytes: int) -> None:
        self.dev, self.nbytes, self.ptr = dev, nbytes, dev.next_ptr
        dev.next_ptr += max(nbytes, 512)
        self.data: bytes = b""
        self.closed = False

    def copy_from(self, other: _Buf, stream: object) -> None:
        self.data = other.data

    def close(self) -> None:
        self.closed = True


class _Device:
    def __init__(self, fail_at: int | None = None) -> None:
        self.next_ptr, self.calls, self.fail_at = 0x1000, 0, fail_at
        self.made: list[_Buf] = []

    def alloc(self, nbytes: int) -> _Buf:
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("cuMemAlloc: CUDA_ERROR_OUT_OF_MEMORY")
        b = _Buf(self, nbytes)
        self.made.append(b)
        return b


def _cudnn_engine(fail_at: int | None) -> Any:
    from bench.backends.cudnn import CudnnEngine

    dev = _Device()
    eng = CudnnEngine(case().spec, None, None, dev)  # type: ignore[arg-type]
    eng._own_stream = type("S", (), {"sync": lambda self: None})()
    for key, n in (("x", 4096), ("w", 1024), ("y", 8192)):
        eng._bufs[key] = dev.alloc(n)
        eng._bufs[key].data = key.encode()
    eng._ws = dev.alloc(2048)
    eng._tensors = {"x": "tx", "w": "tw", "y": "ty"}
    eng._pack = {t: eng._bufs[k].ptr for k, t in eng._tensors.items()}
    dev.fail_at, dev.calls = fail_at, 0
    return eng, dev


def test_cudnn_relocation_moves_every_buffer_and_keeps_the_old_ones_until_close() -> None:
    eng, dev = _cudnn_engine(fail_at=None)
    old = dict(eng._bufs)
    eng._relocate_impl(3)
    assert all(eng._bufs[k] is not old[k] and eng._bufs[k].data == old[k].data for k in old)
    assert eng._pack == {"tx": eng._bufs["x"].ptr, "tw": eng._bufs["w"].ptr,
                         "ty": eng._bufs["y"].ptr}
    assert not any(b.closed for b in dev.made)  # the old ones held: no reuse of their memory
    assert len(eng._left) == 1 + 3 + 1  # the spacer, three buffers, the old workspace


@pytest.mark.parametrize("fail_at", [1, 3, 5])  # the spacer, a buffer, the workspace
def test_cudnn_relocation_that_runs_out_of_memory_leaves_the_engine_as_it_was(
        fail_at: int) -> None:
    eng, dev = _cudnn_engine(fail_at=fail_at)
    bufs, pack, ws = dict(eng._bufs), dict(eng._pack), eng._ws
    before = list(dev.made)
    with pytest.raises(RuntimeError, match="OUT_OF_MEMORY"):
        eng._relocate_impl(3)
    assert eng._bufs == bufs and eng._pack == pack and eng._ws is ws and eng._left == []
    new = [b for b in dev.made if b not in before]
    assert len(new) == fail_at - 1 and all(b.closed for b in new)  # nothing leaks
    assert not any(b.closed for b in before)


def test_cudnn_relocation_on_a_stuck_gpu_frees_nothing_a_queued_copy_may_still_write() -> None:
    eng, dev = _cudnn_engine(fail_at=None)
    bufs = dict(eng._bufs)
    calls = []

    def sync(self: object) -> None:
        calls.append(1)
        if len(calls) == 2:  # the wait after the copies
            raise GpuStuck("cuStreamSynchronize", "GPU_STUCK", "no progress in 60 s")

    eng._own_stream = type("S", (), {"sync": sync})()
    before = list(dev.made)
    with pytest.raises(GpuStuck):
        eng._relocate_impl(3)
    new = [b for b in dev.made if b not in before]
    assert len(calls) == 2  # no second wait on the stuck stream
    assert len(new) == 5 and not any(b.closed for b in new) and eng._left == new
    assert eng._bufs == bufs  # the engine still points at its old buffers
