"""Replicated passes: the shared budget, the between-pass statistics (exact numbers), the
selection-unstable flag, and a real CPU sweep with ``repeats = 2`` in fresh processes."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bench.contention import clock_flags, cpu_load_flag
from bench.plan import make_plan
from bench.record import Clocks, Pass, Stats
from bench.repeats import (
    PASSES_FILE,
    aggregate,
    between_pass_interval,
    load_passes,
    pass_timing,
    selection_flag,
)
from bench.runner import run_suite
from bench.store import load_records
from bench.suite import TimingConfig, parse_suite


def _pass(i: int, median: float, kernels: list[str], status: str = "ok") -> Pass:
    if status != "ok":
        return Pass(index=i, status=status, kernels=kernels)  # type: ignore[arg-type]
    st = Stats(n=10, min=median, median=median, mean=median, p90=median, p95=median,
               p99=median, max=median, std=0.0, cov=0.0, rse=0.0,
               median_ci_low=median * 0.99, median_ci_high=median * 1.01)
    return Pass(index=i, status="ok", stats=st, samples_ms=[median] * 10, kernels=kernels)


def test_the_budget_is_shared_between_passes() -> None:
    t = pass_timing(TimingConfig(repeats=3))
    assert t.repeats == 1
    assert t.warmup_s == pytest.approx(0.2 / 3)
    assert t.min_time_s == pytest.approx(0.5 / 3)
    assert t.max_time_s == pytest.approx(10 / 3)
    assert t.profile_iters == 7  # ceil(20 / 3)
    assert t.min_samples == 10 and t.target_rse == 0.005  # the noise target is not shared


def test_between_pass_interval_is_a_t_prediction_interval() -> None:
    lo, hi, kind = between_pass_interval([1.0, 1.1, 1.2],
                                         [(0.99, 1.01), (1.09, 1.11), (1.19, 1.21)])
    half = 4.303 * 0.1 * math.sqrt(1 + 1 / 3)  # t(0.975, 2) · s · √(1 + 1/n)
    assert lo == pytest.approx(1.1 - half) and hi == pytest.approx(1.1 + half)
    assert "prediction interval" in kind and "3 passes" in kind
    # identical passes: the interval still covers each pass's own CI
    lo, hi, _ = between_pass_interval([2.0, 2.0], [(1.9, 2.1), (1.95, 2.05)])
    assert (lo, hi) == (1.9, 2.1)
    # one pass: its CI, said as such
    assert between_pass_interval([3.0], [(2.9, 3.2)]) == (
        2.9, 3.2, "95 % CI of the median within one pass")


def test_aggregate_groups_passes_by_kernel_set_and_flags_unstable_selection() -> None:
    passes = [_pass(0, 20.4e-3, ["k_slow"]), _pass(1, 13.0e-3, ["k_fast"]),
              _pass(2, 13.1e-3, ["k_fast"])]
    agg = aggregate(passes)
    assert agg is not None
    assert agg.median_ms == pytest.approx(13.1e-3)
    assert (agg.low_ms, agg.high_ms) == (pytest.approx(13.0e-3), pytest.approx(20.4e-3))
    assert agg.spread_pct == pytest.approx((20.4 - 13.0) / 13.1 * 100)
    sets = {tuple(k.kernels): (k.passes, k.median_ms) for k in agg.kernel_sets}
    assert sets == {("k_slow",): ([0], pytest.approx(20.4e-3)),
                    ("k_fast",): ([1, 2], pytest.approx(13.05e-3))}
    flag = selection_flag(agg)
    assert flag is not None and flag.name == "selection-unstable"
    assert "2 kernel sets" in flag.reason and "passes 1,2" in flag.reason
    # the same kernels in every pass, or kernels that differ but time alike: not flagged
    assert selection_flag(aggregate([_pass(0, 1.0, ["a"]), _pass(1, 1.3, ["a"])])) is None
    assert selection_flag(aggregate([_pass(0, 1.0, ["a"]), _pass(1, 1.01, ["b"])])) is None


def test_failed_passes_are_counted_not_averaged() -> None:
    agg = aggregate([_pass(0, 1.0, ["a"]), _pass(1, 0.0, [], status="error"),
                     _pass(2, 1.2, ["a"])])
    assert agg is not None and (agg.passes, agg.ok_passes) == (3, 2)
    assert agg.median_ms == pytest.approx(1.1)
    assert aggregate([_pass(0, 0.0, [], status="error")]) is None


def test_contention_flags() -> None:
    assert cpu_load_flag(load=2.9, cores=2) is None
    f = cpu_load_flag(load=5.2, cores=2)
    assert f is not None and f.name == "cpu-load" and "5.2 on 2 core(s)" in f.reason
    clocks = Clocks(before={"throttled": True, "clock_event_reasons": ["sw_power_cap"]},
                    after={"sm_mhz": 1400, "max_sm_mhz": 1980, "throttled": False})
    names = {f.name: f.reason for f in clock_flags(clocks)}
    assert names == {"throttled": "clock-event reasons sw_power_cap",
                     "low-clocks": "SM clock 1400 MHz of 1980 MHz maximum"}
    assert clock_flags(Clocks(after={"sm_mhz": 1980, "max_sm_mhz": 1980})) == []


SUITE = """
name = "rep"
backends = ["torch"]
[defaults]
in_channels = 8
out_channels = 8
height = 8
width = 8
[sweep]
kernel = [1, 3]
[timing]
warmup_s = 0.0
min_time_s = 0.02
max_time_s = 0.2
profile_iters = 2
repeats = 2
"""


@pytest.mark.slow
def test_a_sweep_with_repeats_keeps_every_pass(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    suite = parse_suite(SUITE)
    summary = run_suite(make_plan(suite, out=tmp_path, progress=False, argv=["t"]))
    recs = load_records(summary.run_dir)
    assert len(recs) == 2 and all(r.status == "ok" for r in recs)
    for r in recs:
        assert r.passes is not None and [p.index for p in r.passes] == [0, 1]
        assert r.aggregate is not None and r.aggregate.passes == 2
        assert r.interval is not None and r.interval[2] == "between passes"
        # each pass ran in its own worker process
        assert r.passes[0].worker["pid"] != r.passes[1].worker["pid"]  # type: ignore[index]
        assert r.median_ms == pytest.approx(
            sorted(p.stats.median for p in r.passes if p.stats)[0] / 2
            + sorted(p.stats.median for p in r.passes if p.stats)[1] / 2)
    lines = load_passes(summary.run_dir)
    assert len(lines) == 4 and (summary.run_dir / PASSES_FILE).exists()
    assert {ln.pass_index for ln in lines} == {0, 1}
