"""benchmarks/reproducibility.py: which medians count as inside a between-pass interval, and
what its table says about the heuristic repeats run (exact numbers, no GPU)."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(scope="module")
def repro() -> Any:
    from helpers import load_benchmark

    return load_benchmark("reproducibility")


def test_a_median_inside_or_within_one_per_cent_of_the_interval_counts(repro: Any) -> None:
    # interval 10..20: 9.9 is 1 % below its low end, 20.2 1 % above its high end
    assert repro.inside([10.0, 15.0, 20.0, 9.9, 20.2, 9.89, 20.21], 10.0, 20.0) == [
        True, True, True, True, True, False, False]
    assert repro.inside([9.5], 10.0, 20.0, slack=0.05) == [True]


def _summary(**extra: Any) -> dict[str, Any]:
    return {"suite": "suites/reproducibility.toml", "processes": 5, "autotune_processes": 4,
            "repeats": 3, "probes": 4, "placements": 1, "heuristic_within_1pct": "23/24",
            "autotune_within_repeats_interval_or_1pct": "94/96",
            "movers_over_5pct_flagged_or_covered": "9/9", "wall_ratio_median": 1.5,
            "wall_ratio_max": 2.7, "steady_ratio_median": 1.5, "steady_ratio_max": 1.9,
            "probe_build_ratio_median": 2.1, "probe_build_ratio_max": 4.2,
            "first_case": "a", "total_wall_s": 400.0, "gpu": "H200", **extra}


def _row(**extra: Any) -> dict[str, Any]:
    return {"case": "a", "status": "ok", "heuristic_median_us": 7.35,
            "heuristic_spread_pct": 3.61, "autotune_median_us": 7.32,
            "autotune_spread_pct": 5.75, "heuristic_over_autotune": 1.0,
            "repeats_median_us": 7.48, "interval_us": [6.56, 8.30], "interval_width_pct": 23.3,
            "kernel_sets": 1, "selection_unstable": False, "autotune_inside": "4/4",
            "wall_ratio": 1.4, **extra}


def test_the_table_shows_the_heuristic_repeats_interval_and_its_coverage(repro: Any) -> None:
    md = repro.to_markdown(
        _summary(heuristic_repeats=3,
                 heuristic_within_heuristic_repeats_interval_or_1pct="118/120"),
        [_row(heuristic_interval_us=[7.21, 7.52], heuristic_inside="5/5")])
    assert "--heuristic-repeats 3" in md
    assert ("| not an issue target: (case, heuristic process) medians inside the heuristic "
            "repeats=3 interval or within 1 % of it | 118/120 |") in md
    assert md.splitlines()[-1].endswith("| 1.40 | 7.21–7.52 | 5/5 |")


def test_the_full_table_names_the_fresh_allocator_run(repro: Any) -> None:
    md = repro.to_markdown(_summary(heuristic_repeats=0, fresh_allocator=True), [_row()])
    assert "--heuristic-repeats 0 --fresh-allocator`" in md
    assert "--fresh-allocator" not in repro.to_markdown(_summary(heuristic_repeats=0), [_row()])


def test_without_a_heuristic_repeats_run_the_table_says_so(repro: Any) -> None:
    md = repro.to_markdown(_summary(heuristic_repeats=0), [_row()])
    assert "heuristic process" not in md
    assert md.splitlines()[-1].endswith("| 1.40 | - | - |")


def test_the_heuristic_table_counts_processes_inside_the_repeats_interval(repro: Any) -> None:
    import argparse

    from helpers import record

    from bench.record import Aggregate, Clocks

    def proc(ms: float, sm_mhz: int) -> dict[str, Any]:
        return {"a": record(0, samples=[ms] * 3,
                            clocks=Clocks(after={"sm_mhz": sm_mhz, "mem_mhz": 3201}))}

    # spread 0.3 / 7.1 = 4.23 %; the third process ran at a lower SM clock
    heur = [proc(7.0e-3, 1980), proc(7.1e-3, 1980), proc(7.3e-3, 1755)]
    rep = record(0, aggregate=Aggregate(
        passes=3, ok_passes=3, median_ms=7.1e-3, low_ms=7.0e-3, high_ms=7.2e-3,
        interval_low_ms=6.95e-3, interval_high_ms=7.2e-3, interval_kind="t",
        spread_pct=2.8))
    args = argparse.Namespace(placements=1, heuristic_repeats=3, suite="s.toml", processes=3,
                              filter=None)
    md = repro.heuristic_only(args, heur, [30.0, 31.0, 29.0], {"a": rep})
    # 7.3 µs lies 1.4 % above the interval's top (7.2 µs): outside
    assert "within 1 % of it: **2/3**" in md
    assert "cases whose 3 process medians lie within 1 % (target ≥ 95 %): **0/1**" in md
    assert ("| a | 7.10 | 4.23 | **no** | 1755–1980 | 6.95–7.20 | 3.52 | 2/3 |"
            in md.splitlines())
    # one clock in every process is shown once
    same = repro.heuristic_only(args, [proc(7.0e-3, 1980)] * 3, [30.0] * 3, None)
    assert "| a | 7.00 | 0.00 | yes | 1980 |" in same.splitlines()


def test_leave_out_coverage_takes_every_choice_of_passes_and_checks_the_rest(
        repro: Any) -> None:
    def proc(us: float) -> dict[str, Any]:
        return {"headline_us": us, "ci_us": [us * 0.99, us * 1.01]}

    # three processes agree at 10 µs, a fourth reads 12 µs: the interval of the three is
    # their CIs' hull (no spread), 9.9..10.1, and misses it; each interval that includes the
    # 12 µs process is wide (t = 4.30 with 2 degrees of freedom) and holds the left-out 10 µs
    n_in, n_all, widths = repro.leave_out_coverage(
        {"a": [proc(10.0), proc(10.0), proc(10.0), proc(12.0)]}, passes=3)
    assert (n_in, n_all) == (3, 4)
    assert widths[0] == pytest.approx(2.0)
    assert all(w > 100 for w in widths[1:])


def test_the_placements_table_tells_a_process_shift_from_placement_scatter(repro: Any) -> None:
    import argparse

    from helpers import record

    from bench.record import Placement, TimingFacts

    def proc(meds_us: list[float]) -> dict[str, Any]:
        placed = [Placement(index=i, moved=i > 0, samples=3, median_ms=m * 1e-3)
                  for i, m in enumerate(meds_us)]
        return {"a": record(0, samples=[m * 1e-3 for m in meds_us],
                            timing=TimingFacts(mode="graph", iters_per_sample=1, l2="warm",
                                               placements=placed, placement_spread_pct=1.0))}

    args = argparse.Namespace(placements=3, heuristic_repeats=0, suite="s.toml", processes=2,
                              filter=None)
    # placement k is the same draw in both processes (10, 11, 12 µs); the second process reads
    # 1 µs higher, with a residual of +-0.1/0.2: F = 1.5 / 0.06 = 25 (p = 0.04), though each
    # process's placements spread by 2 µs
    md = repro.heuristic_only(args, [proc([10.1, 10.8, 12.1]), proc([10.9, 12.2, 12.9])],
                              [30.0, 31.0], None)
    row = next(x for x in md.splitlines() if x.startswith("| a |"))
    assert " | 25.0 (4e-02) | n/a |" in row  # no clocks in these records
    # the same placements without the shift: F = 0
    md = repro.heuristic_only(args, [proc([10.1, 10.8, 12.1]), proc([9.9, 11.2, 11.9])],
                              [30.0, 31.0], None)
    row = next(x for x in md.splitlines() if x.startswith("| a |"))
    assert " | 0.0 (1e+00) | n/a |" in row


def test_the_heuristic_table_says_when_the_allocator_was_emptied(repro: Any) -> None:
    import argparse

    from helpers import record

    from bench.record import BuildFacts

    def proc(fresh: bool) -> dict[str, Any]:
        extra = {"fresh_allocator": True} if fresh else {}
        return {"a": record(0, samples=[7e-3] * 3, build=BuildFacts(build_s=0.1, extra=extra))}

    args = argparse.Namespace(placements=1, heuristic_repeats=0, suite="s.toml", processes=2,
                              filter=None, fresh_allocator=True)
    md = repro.heuristic_only(args, [proc(True), proc(False)], [30.0, 31.0], None)
    assert "--fresh-allocator" in md
    assert "(CONVBENCH_TORCH_FRESH_ALLOCATOR=1): 1/2 records" in md
    # asked for, but no build did it (the variable did not reach the runs): shown as 0/2
    md = repro.heuristic_only(args, [proc(False), proc(False)], [30.0, 31.0], None)
    assert "(CONVBENCH_TORCH_FRESH_ALLOCATOR=1): 0/2 records" in md
    args.fresh_allocator = False
    md = repro.heuristic_only(args, [proc(False), proc(False)], [30.0, 31.0], None)
    assert "CONVBENCH_TORCH_FRESH_ALLOCATOR" not in md and "--fresh-allocator" not in md


def test_range_within_matches_the_closed_form_and_the_tabled_quantile(repro: Any) -> None:
    from scipy.stats import norm

    # two values: their difference is N(0, 2), so P(range <= w) = 2 Phi(w / sqrt 2) - 1
    assert repro.range_within(1.5, 2) == pytest.approx(2 * norm.cdf(1.5 / 2 ** 0.5) - 1,
                                                       abs=1e-6)
    # the range of 5 standard normal values: its 95th percentile is 3.858 (tables of the range)
    assert repro.range_within(3.858, 5) == pytest.approx(0.95, abs=5e-4)
    assert repro.range_within(0.5, 1) == 1.0


def test_pass_odds_pools_each_runs_process_scatter_and_counts_the_cases(repro: Any) -> None:
    import math

    def run(b: list[float]) -> dict[str, list[dict[str, float]]]:
        return {"a": [{"headline_us": 10.0}] * 5,
                "b": [{"headline_us": v} for v in b]}

    # case b: log medians 0, 0, 0, 0, 0.01 (variance 2e-5) in one run, all equal in the other;
    # pooled variance 1e-5. Case a never moves: it is within 1 % with certainty
    rows, dist, dist_each = repro.pass_odds([run([1.0] * 4 + [math.exp(0.01)]), run([1.0] * 5)])
    (_, sd_a, p_a, _, pe_a), (_, sd_b, p_b, each_b, pe_b) = rows
    assert (sd_a, p_a, pe_a) == (0.0, 1.0, 1.0)
    assert sd_b == pytest.approx(math.sqrt(1e-5) * 100)
    assert each_b == pytest.approx([math.sqrt(2e-5) * 100, 0.0])
    w = math.log1p(0.01)
    assert p_b == pytest.approx(repro.range_within(w / math.sqrt(1e-5), 5))
    assert 0.82 < p_b < 0.84  # range <= 3.15 sd of 5 values
    # per run: the steady run passes for sure, the other at its own sd (2.22 sd: 0.49)
    assert pe_b == pytest.approx((1.0 + repro.range_within(w / math.sqrt(2e-5), 5)) / 2)
    assert 0.73 < pe_b < 0.76
    # a always passes, b with its P: one or two cases, never none
    assert dist == pytest.approx([0.0, 1 - p_b, p_b])
    assert dist_each == pytest.approx([0.0, 1 - pe_b, pe_b])


def test_pass_odds_takes_a_case_from_every_run_that_has_it(repro: Any) -> None:
    import math

    steady = [{"headline_us": 10.0}] * 5
    moved = [{"headline_us": v} for v in [1.0] * 4 + [math.exp(0.01)]]
    # b only in the second run, c with one process only: b counts from that run, c not at all
    rows, dist, _ = repro.pass_odds([{"a": steady, "c": steady[:1]},
                                     {"a": steady, "b": moved}])
    assert [r[0] for r in rows] == ["a", "b"]
    assert rows[1][1] == pytest.approx(math.sqrt(2e-5) * 100)
    assert len(dist) == 3


def test_the_odds_table_shows_each_runs_count_and_the_chance_of_the_target(
        repro: Any, tmp_path: Any) -> None:
    import json
    import math

    case = [{"headline_us": v} for v in (10.0, 10.0, 10.0, 10.0, 10.2)]  # 2 % spread
    steady = [{"headline_us": 10.0}] * 5
    paths = []
    for i, cases in enumerate([{"a": steady, "b": case}, {"a": steady, "b": steady}]):
        paths.append(tmp_path / f"run{i}.json")
        paths[-1].write_text(json.dumps({"processes": 5, "placements": 16, "cases": cases}))
    md = repro.odds_table(paths)
    lines = md.splitlines()
    assert "| run0.json | 5 | 16 | 1/2 |" in lines
    assert "| run1.json | 5 | 16 | 2/2 |" in lines
    assert "| a | 0.000 | 0.00, 0.00 | 1.000 | 1.000 | 2/2 |" in lines
    assert any(line.startswith("| b |") and line.endswith("| 1/2 |") for line in lines)
    # the target is 95 % of 2 cases, that is both: a passes always, so P = P(b passes)
    logs = [math.log(r["headline_us"]) for r in case]
    var = sum((x - sum(logs) / 5) ** 2 for x in logs) / 4 / 2  # pooled with the steady run
    p_b = repro.range_within(math.log1p(0.01) / math.sqrt(var), 5)
    assert f"P(at least 2 of 2) = {p_b:.3f}" in lines[-2]
    assert lines[-2].startswith("pooled sd, 5 processes:")


def test_a_bad_file_given_to_odds_of_stops_with_one_line_naming_it(
        repro: Any, tmp_path: Any) -> None:
    import json

    broken = tmp_path / "broken.json"
    broken.write_text('{"cases": {')
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"summary": {}}))
    zero = tmp_path / "zero.json"
    zero.write_text(json.dumps({"processes": 5, "cases": {"a": [{"headline_us": 0}]}}))
    for path, said in ((broken, "cannot read it as JSON"), (other, "key 'cases' missing"),
                       (zero, "cases.a: every process needs a positive 'headline_us'")):
        with pytest.raises(SystemExit) as e:
            repro.main(["--odds-of", str(path)])
        assert str(e.value).startswith(f"{path}: ") and said in str(e.value)
        assert "\n" not in str(e.value)
