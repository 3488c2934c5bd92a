"""Selection probes (``[timing] probes``): their statistics with exact numbers, the flag, the
interval they widen, the note when a backend draws none, and a real CPU case whose probes are
built, timed and profiled in fresh threads."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from helpers import case, record

from bench.deadline import CaseDeadline
from bench.probes import draw_probes, kernel_names, probe_settings
from bench.record import BuildFacts, LayerRow, Pass, Probe, Stats
from bench.repeats import PassLine, aggregate, combine, selection_flag
from bench.suite import TimingConfig, parse_suite
from bench.timing import TimingSettings


def _stats(median: float) -> Stats:
    return Stats(n=10, min=median, median=median, mean=median, p90=median, p95=median,
                 p99=median, max=median, std=0.0, cov=0.0, rse=0.0,
                 median_ci_low=median * 0.99, median_ci_high=median * 1.01)


def _probe(i: int, median: float | None, kernels: list[str], status: str = "ok") -> Probe:
    return Probe(index=i, status=status, median_ms=median, kernels=kernels,  # type: ignore
                 error=None if status == "ok" else "RuntimeError: x")


def _pass(i: int, median: float, kernels: list[str], probes: list[Probe]) -> Pass:
    return Pass(index=i, status="ok", stats=_stats(median), samples_ms=[median] * 10,
                kernels=kernels, probes=probes)


def test_a_rare_choice_seen_only_by_a_probe_is_a_kernel_set_and_flags_the_case() -> None:
    # three passes chose k_fast; one probe of pass 1 chose k_slow (the 1-in-4 choice that
    # three passes miss), another of pass 0 chose k_fast again
    passes = [_pass(0, 13.0e-3, ["k_fast"], [_probe(0, 13.05e-3, ["k_fast"])]),
              _pass(1, 13.1e-3, ["k_fast"], [_probe(0, 20.4e-3, ["k_slow"])]),
              _pass(2, 13.2e-3, ["k_fast"], [])]
    agg = aggregate(passes)
    assert agg is not None
    assert agg.median_ms == pytest.approx(13.1e-3)  # the passes' alone
    assert agg.spread_pct == pytest.approx(0.2 / 13.1 * 100)  # between pass medians
    assert (agg.probes, agg.probe_low_ms, agg.probe_high_ms) == (
        2, pytest.approx(13.05e-3), pytest.approx(20.4e-3))
    assert agg.interval_high_ms == pytest.approx(20.4e-3)  # widened to the slow probe
    assert agg.interval_kind.endswith("widened to cover the medians of 2 selection probes")
    sets = {tuple(k.kernels): (k.passes, k.median_ms, k.probes, k.probe_median_ms)
            for k in agg.kernel_sets}
    assert sets == {("k_fast",): ([0, 1, 2], pytest.approx(13.1e-3), 1,
                                  pytest.approx(13.05e-3)),
                    ("k_slow",): ([], pytest.approx(20.4e-3), 1, pytest.approx(20.4e-3))}
    flag = selection_flag(agg)
    assert flag is not None and flag.name == "selection-unstable"
    assert flag.reason.startswith("2 kernel sets (2 probes), medians "
                                  f"{(20.4 - 13.1) / 13.1 * 100:.1f} % apart: ")
    assert "passes 0,1,2 + 1 probe(s): 0.0131 ms" in flag.reason
    assert "| 1 probe(s): 0.0204 ms with 1 kernel(s) [k_slow]" in flag.reason


def test_probes_of_the_same_kernels_widen_the_interval_but_do_not_flag() -> None:
    agg = aggregate([_pass(0, 1.0, ["a"], [_probe(0, 1.06, ["a"]), _probe(1, 0.97, ["a"])]),
                     _pass(1, 1.0, ["a"], [])])
    assert agg is not None and len(agg.kernel_sets) == 1
    assert (agg.interval_low_ms, agg.interval_high_ms) == (pytest.approx(0.97),
                                                           pytest.approx(1.06))
    assert selection_flag(agg) is None
    # other kernels that time alike (within 2 %): not flagged either
    agg = aggregate([_pass(0, 1.0, ["a"], [_probe(0, 1.015, ["b"])])])
    assert agg is not None and len(agg.kernel_sets) == 2 and selection_flag(agg) is None


def test_failed_probes_are_kept_but_not_counted() -> None:
    agg = aggregate([_pass(0, 1.0, ["a"], [_probe(0, None, [], status="error"),
                                           _probe(1, 1.5, ["b"])])])
    assert agg is not None and agg.probes == 1 and len(agg.kernel_sets) == 2


def test_untimed_probes_count_as_draws_of_their_set_without_a_number() -> None:
    # pass 0 ran "a"; its probes: "a" again (not timed), "b" (timed, 1.5), "b" again (not)
    agg = aggregate([_pass(0, 1.0, ["a"], [_probe(0, None, ["a"]), _probe(1, 1.5, ["b"]),
                                           _probe(2, None, ["b"])])])
    assert agg is not None and agg.probes == 3
    assert (agg.probe_low_ms, agg.probe_high_ms) == (1.5, 1.5)
    assert agg.interval_kind.endswith("widened to cover the medians of 1 selection probes")
    sets = {tuple(k.kernels): (k.median_ms, k.probes, k.probe_median_ms)
            for k in agg.kernel_sets}
    assert sets == {("a",): (1.0, 1, None), ("b",): (1.5, 2, 1.5)}
    flag = selection_flag(agg)
    assert flag is not None and flag.reason.startswith("2 kernel sets (3 probes), medians 50.0 %")
    assert "passes 0 + 1 probe(s): 1 ms" in flag.reason
    assert "| 2 probe(s): 1.5 ms" in flag.reason


def test_kernel_names_are_profile_kernels_and_build_tactics() -> None:
    build = BuildFacts(build_s=0.1, layers=[{"name": "conv", "tactic": "0x1f"}],
                       extra={"chosen_plan": "eng0_k2"})
    assert kernel_names(build, ["Memset (Device)", "sm90_xmma_fprop", "Memcpy HtoD"]) == [
        "conv: 0x1f", "plan: eng0_k2", "sm90_xmma_fprop"]


def test_a_probe_times_briefly_with_the_pass_timer() -> None:
    s = probe_settings(TimingSettings(warmup_s=0.2, min_time_s=0.5, max_time_s=10.0,
                                      target_rse=0.003, criterion="stdrel"))
    assert (s.warmup_s, s.min_samples, s.min_time_s, s.max_time_s) == (0.01, 5, 0.02, 0.2)
    assert s.criterion == "rse" and s.target_rse == 0.003
    # a pass budget below the probe's maximum caps it
    assert probe_settings(TimingSettings(max_time_s=0.05)).max_time_s == 0.05


class _Backend:
    """Orchestration only: records where each probe ran."""

    name = "fake"

    def __init__(self, reason: str | None = None) -> None:
        self.reason, self.calls = reason, 0

    def probe_reason(self, spec: Any) -> str | None:
        return self.reason

    def fresh_selection(self, fn: Any) -> Any:
        self.calls += 1
        return fn()


def test_no_probes_where_the_backend_chooses_the_same_way() -> None:
    b = _Backend(reason="algo = 'heuristic': the same pick in every build")
    probes, note = draw_probes(3, case(0), b, None, None, TimingConfig(), None)
    assert probes == [] and b.calls == 0
    assert note == "probes = 3 not drawn: algo = 'heuristic': the same pick in every build"
    assert draw_probes(0, case(0), b, None, None, TimingConfig(), None) == ([], None)


def test_probes_stop_before_the_case_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    import bench.probes as probes_mod

    monkeypatch.setattr(probes_mod, "one_probe",
                        lambda i, *a: Probe(index=i, status="ok", median_ms=1.0, wall_s=4.0))
    clock = iter([0.0, 95.0, 95.0, 95.0]).__next__
    deadline = CaseDeadline(100.0, clock=clock)  # 5 s left; a probe took 4 s, needs 6
    b = _Backend()
    probes, note = draw_probes(3, case(0), b, None, None, TimingConfig(), None, deadline)
    assert len(probes) == 1 and b.calls == 1
    assert note == "probes cut to 1 of 3: case_timeout_s = 100 s leaves 5.0 s"


def test_combine_judges_all_passes_and_probes_once() -> None:
    def line(i: int, median: float, probes: list[Probe], note: str | None = None) -> PassLine:
        rec = record(0, samples=[median] * 5, stats=_stats(median), probes=probes,
                     probes_note=note)
        layers = LayerRow(case_key=rec.case_key, backend="torch",
                          layers=[{"name": "k_fast", "median_ms": median, "share": 1.0}])
        return PassLine(pass_index=i, record=rec, layers=layers)

    lines = [line(0, 1.0, [_probe(0, 1.5, ["k_slow"])]), line(1, 1.02, []),
             line(2, 0.99, [_probe(0, 1.0, ["k_fast"])], note="probes cut to 1 of 2: x")]
    rec, _ = combine(lines)
    assert rec.aggregate is not None and rec.aggregate.probes == 2
    assert [len(p.probes) for p in rec.passes or []] == [1, 0, 1]
    assert rec.probes == [] and rec.probes_note == "probes cut to 1 of 2: x"
    assert rec.flag_names == ["selection-unstable"]
    assert rec.median_ms == pytest.approx(1.0)


SUITE = """
name = "probes"
backends = ["torch"]
[defaults]
in_channels = 8
out_channels = 8
height = 8
width = 8
[timing]
warmup_s = 0.0
min_time_s = 0.02
max_time_s = 0.2
profile_iters = 2
probes = 2
"""


def test_probes_build_time_and_profile_a_real_case_in_fresh_threads(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """torch on the CPU does not autotune, so it draws no probes (the record says why); with
    that refusal lifted, the probes run the real path — build, host timing, ATen profile —
    each in its own new thread, and name the same ops as the pass."""
    pytest.importorskip("torch")
    from bench.backends.torch import TorchBackend
    from bench.runner import measure_case

    suite = parse_suite(SUITE)
    c = suite.cases[0]
    backend = TorchBackend()
    rec, layers = measure_case(c, backend, suite.timing, None, None)
    assert rec.status == "ok" and rec.probes == []
    assert rec.probes_note == ("probes = 2 not drawn: torch on the CPU (oneDNN) does not "
                               "autotune")

    threads: list[str] = []
    real_one = __import__("bench.probes", fromlist=["one_probe"]).one_probe

    def spy(*a: Any) -> Probe:
        threads.append(threading.current_thread().name)
        return real_one(*a)  # type: ignore[no-any-return]

    monkeypatch.setattr("bench.probes.one_probe", spy)
    monkeypatch.setattr(TorchBackend, "probe_reason", lambda self, spec: None)
    rec, layers = measure_case(c, backend, suite.timing, None, None)
    assert rec.status == "ok" and rec.probes_note is None
    assert threads == ["convbench-probe", "convbench-probe"]
    assert [p.index for p in rec.probes] == [0, 1]
    assert layers is not None
    ops = kernel_names(rec.build, [la.name for la in layers.layers])
    for p in rec.probes:  # the pass's own ops: draws of a timed set, not timed again
        assert p.status == "ok", p.error
        assert p.samples == 0 and p.median_ms is None
        assert p.kernels == ops and "aten::conv2d" in ops
        assert p.build_s is not None and p.wall_s is not None and p.wall_s >= p.build_s
    agg = aggregate([Pass(index=0, status="ok", stats=rec.stats, kernels=ops,
                          probes=rec.probes)])
    assert agg is not None and agg.probes == 2 and agg.probe_low_ms is None
    assert [(k.passes, k.probes, k.probe_median_ms) for k in agg.kernel_sets] == [([0], 2, None)]


def test_a_probe_of_a_set_not_yet_timed_is_timed_and_a_repeat_of_it_is_not(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The real path on the CPU (torch build, host timer, ATen profile), with the pass's own
    set given as something else: the first probe finds a new set and times it; the second
    chose the same set, now timed, and only names it."""
    pytest.importorskip("torch")
    from bench.backends.base import BuildContext
    from bench.backends.torch import TorchBackend
    from bench.reference import make_data

    suite = parse_suite(SUITE)
    c = suite.cases[0]
    monkeypatch.setattr(TorchBackend, "probe_reason", lambda self, spec: None)
    backend = TorchBackend()
    probes, note = draw_probes(2, c, backend, make_data(c.spec), BuildContext(), suite.timing,
                               None, timed=[["not_this_kernel"]])
    assert note is None and [p.status for p in probes] == ["ok", "ok"], probes
    first, second = probes
    assert first.samples >= 5 and first.median_ms is not None and first.median_ms > 0
    assert second.kernels == first.kernels and "aten::conv2d" in first.kernels
    assert second.samples == 0 and second.median_ms is None


def test_reproducibility_wall_time_leaves_out_builds_and_says_so_for_probe_builds() -> None:
    import importlib.util

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("reproducibility",
                                                  root / "benchmarks" / "reproducibility.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    p0 = Pass(index=0, status="ok", wall_s=2.0, build=BuildFacts(build_s=0.5),
              probes=[Probe(index=0, status="ok", median_ms=1.0, build_s=0.3, wall_s=0.4)])
    p1 = Pass(index=1, status="ok", wall_s=1.0, build=BuildFacts(build_s=0.25))
    rec = record(0, passes=[p0, p1])
    assert mod.measure_wall(rec) == pytest.approx(2.0 - 0.5 - 0.3 + 1.0 - 0.25)
    assert mod.measure_wall(rec, probe_builds=True) == pytest.approx(2.0 - 0.5 + 1.0 - 0.25)
    one = record(1, wall_s=1.5, build=BuildFacts(build_s=0.5))
    assert mod.measure_wall(one) == pytest.approx(1.0)


def test_one_pass_is_flagged_when_its_probes_chose_other_kernels_that_time_differently(
        monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    from bench.backends.torch import TorchBackend
    from bench.runner import measure_case

    suite = parse_suite(SUITE)
    monkeypatch.setattr(TorchBackend, "probe_reason", lambda self, spec: None)
    # orchestration: the probes' results are given (another kernel, 3x slower); the pass is real
    monkeypatch.setattr("bench.probes.one_probe", lambda i, *a: Probe(
        index=i, status="ok", median_ms=1.0, kernels=["other_kernel"]))
    rec, layers = measure_case(suite.cases[0], TorchBackend(), suite.timing, None, None)
    assert rec.status == "ok" and len(rec.probes) == 2
    [flag] = [f for f in rec.flags if f.name == "selection-unstable"]
    assert flag.reason.startswith("2 kernel sets (2 probes), medians ")
    assert "2 probe(s): 1 ms with 1 kernel(s) [other_kernel]" in flag.reason
    assert rec.interval is not None and rec.interval[2] == "within pass"  # no aggregate
