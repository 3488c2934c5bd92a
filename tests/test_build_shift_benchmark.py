"""benchmarks/build_shift.py: the two-way ANOVA that tells a shift fixed per process from an
offset per build, and the table it renders from saved processes (exact numbers, no GPU)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="module")
def bs() -> Any:
    from helpers import load_benchmark

    return load_benchmark("build_shift")


@pytest.fixture(scope="module")
def anova() -> Any:
    from helpers import load_benchmark

    return load_benchmark("anova")


def test_a_shift_fixed_per_process_stands_above_the_build_offsets(anova: Any) -> None:
    # y = 10 + placement (0, +2) + process (-1, +1) + 0.2 * process x build sign
    #     + 0.1 * process x placement sign + 0.05 * process x build x placement sign
    # SS: process 8, placement 8, process x build 2 * 4 * 0.04 = 0.32,
    #     process x placement 2 * 4 * 0.01 = 0.08, process x build x placement 8 * 0.0025 = 0.02
    s = (1, -1)
    y = [[[10 + 2 * k - s[p] + 0.2 * s[p] * s[b] + 0.1 * s[p] * s[k]
           + 0.05 * s[p] * s[b] * s[k] for k in range(2)] for b in range(2)] for p in range(2)]
    a = anova.process_build_placement(y)
    assert a["F_process"] == pytest.approx(8 / 0.08)  # against process x placement
    assert a["F_interaction"] == pytest.approx(0.32 / 0.02)  # against the three-way term
    # builds and placements both random: Satterthwaite's quasi-F
    # (MS_P + MS_PBK) / (MS_PB + MS_PK) = (8 + 0.02) / (0.32 + 0.08), df about 1.0 and 1.47
    assert a["F_process_over_builds"] == pytest.approx(8.02 / 0.4)
    assert a["p_process_over_builds"] == pytest.approx(0.079129, abs=1e-6)
    assert a["F_placement"] == pytest.approx(8 / 0.08)
    assert a["F_build"] == pytest.approx(0.0, abs=1e-9) and a["p_build"] == pytest.approx(1.0)


def test_an_offset_per_build_shows_in_the_interaction_not_the_process(anova: Any) -> None:
    # each process has one fast and one slow build, in opposite order (+-1), no process shift
    s = (1, -1)
    y = [[[10 + 2 * k + s[p] * s[b] + 0.1 * s[p] * s[k] + 0.05 * s[p] * s[b] * s[k]
           for k in range(2)] for b in range(2)] for p in range(2)]
    a = anova.process_build_placement(y)
    assert a["F_interaction"] == pytest.approx(8 / 0.02)  # 400
    assert a["F_process"] == pytest.approx(0.0, abs=1e-9)
    assert a["F_process_over_builds"] == pytest.approx(0.02 / 8.08)  # (0 + 0.02) / (8 + 0.08)
    assert a["p_process_over_builds"] == pytest.approx(0.968232, abs=1e-6)


def test_the_answer_does_not_depend_on_the_unit(anova: Any) -> None:
    y = [[[10.1, 10.8, 12.1], [10.0, 11.0, 12.0]], [[10.9, 12.2, 12.9], [11.0, 12.1, 13.0]]]
    in_s = [[[v * 1e-6 for v in b] for b in p] for p in y]
    assert anova.process_build_placement(in_s)["F_process"] == pytest.approx(
        anova.process_build_placement(y)["F_process"])
    assert anova.cell(anova.process_by_placement([[5e-6, 6e-6], [7e-6, 8.1e-6]]),
                      "process") != "inf (0)"


def test_placement_k_is_a_block_not_a_replicate(anova: Any) -> None:
    # placements read 10, 11, 12 in both processes (the same draws), the second process 1 µs
    # higher, plus a residual of +-0.1/0.2: SS process 1.5 on 1 df, residual 0.12 on 2 df.
    # As replicates the placements' own spread (1 µs) would hide the shift.
    x = [[10.1, 10.8, 12.1], [10.9, 12.2, 12.9]]
    a = anova.process_by_placement(x)
    assert a["F_process"] == pytest.approx(25.0)
    assert anova.cell(a, "process") == "25.0 (4e-02)"
    assert anova.process_by_placement([[10.1, 10.8, 12.1], [9.9, 11.2, 11.9]])[
        "F_process"] == pytest.approx(0.0, abs=1e-9)


def test_no_scatter_and_ragged_input_give_no_false_answer(anova: Any) -> None:
    flat = anova.process_by_placement([[5.0, 5.0], [5.0, 5.0]])
    assert anova.cell(flat, "process") == "n/a"  # no effect over no scatter: no answer
    exact = anova.process_by_placement([[5.0, 6.0], [7.0, 8.0]])  # additive, no residual
    assert anova.cell(exact, "process") == "inf (0)"
    with pytest.raises(ValueError, match="P x K"):
        anova.process_by_placement([[1.0, 2.0], [1.0]])
    with pytest.raises(ValueError, match="P x B x K"):
        anova.process_build_placement([[[1.0, 2.0]], [[1.0, 2.0]]])  # one build


def _build(meds: list[float], grid: int = 8) -> dict[str, Any]:
    return {"kernels": [{"name": "k", "grid": [grid, 1, 1], "block": [128, 1, 1],
                         "registers": 32, "shared": 0, "dur_us": 1.0}],
            "placements_us": meds, "median_us": sorted(meds)[len(meds) // 2],
            "addresses": [], "kind": "main thread"}


def test_render_shows_the_anova_and_the_launch_configurations(bs: Any, tmp_path: Path,
                                                             capsys: Any) -> None:
    # two processes x two builds x three placements: process 1 reads 4 µs higher, the
    # placements differ alike in both (the same draws), with a process x placement residual of
    # +-0.1; the second process's second build launched another grid
    procs = [[{"case": "a", "builds": [_build([1.1, 2.9, 2.0]), _build([1.1, 2.9, 2.0])]}],
             [{"case": "a", "builds": [_build([4.9, 7.1, 6.0]),
                                       _build([4.9, 7.1, 6.0], grid=16)]}]]
    lines, summary = bs.render(procs, "benchmarks/build_shift.py --processes 2", 12.0)
    row = next(x for x in lines if x.startswith("| a |"))
    # first builds' medians 2 and 6: spread (6 - 2) / 2 = 200 %; within each process 0 %;
    # SS process 2 * 3 * 8 = 48 on 1 df against process x placement 2 * 4 * 0.01 = 0.08 on 2:
    # F = 1200, and the same for the quasi-F (no build offsets, no three-way term); placement
    # SS 8 on 2 df: F = 100; no build order and no build offsets: n/a
    assert row.startswith("| a | 200.00 | 200.00 | 0.00, 0.00 | 1200.0 (8e-04) | n/a | n/a | "
                          "1200.0 (8e-04) | 100.0 (1e-02) | 2 | 2.00/2.00; 6.00/6.00 |")
    assert summary[0]["anova"]["F_process"] == pytest.approx(1200.0)
    assert summary[0]["anova"]["F_build"] is None  # no answer: null in the strict JSON
    json.dumps(summary, allow_nan=False)
    # a saved JSON renders the same table without a GPU
    saved = tmp_path / "shift.json"
    saved.write_text(json.dumps({"args": {"processes": 2, "builds": 2, "placements": 3,
                                          "per_placement_s": 0.03},
                                 "processes": procs, "total_s": 12.0}))
    assert bs.main(["--render", str(saved)]) == 0
    out = capsys.readouterr().out
    assert row in out.splitlines()
    assert "--processes 2 --builds 2 --placements 3 --per-placement-s 0.03" in out
