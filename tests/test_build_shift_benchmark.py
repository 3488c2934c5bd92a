"""benchmarks/build_shift.py: the two-way ANOVA that tells a shift fixed per process from an
offset per build, and the table it renders from saved processes (exact numbers, no GPU)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="module")
def bs() -> Any:
    from helpers import load_benchmark

    return load_benchmark("build_shift")


def test_a_shift_fixed_per_process_shows_in_the_process_effect_only(bs: Any) -> None:
    # process 0 reads 1 and 3 in both builds, process 1 reads 5 and 7: process means 2 and 6,
    # SS process = 2 builds * 2 placements * (2^2 + 2^2) = 32 on 1 df; the placements' own
    # scatter: 4 cells * 2 = 8 on 4 df, mean square 2; F = 16
    a = bs.two_way([[[1, 3], [1, 3]], [[5, 7], [5, 7]]])
    assert a["F_process"] == pytest.approx(16.0)
    assert a["p_process"] == pytest.approx(0.016130, abs=1e-6)
    assert a["F_build"] == 0.0 and a["F_interaction"] == 0.0
    # no build offsets at all: the process effect stands above them without limit
    assert math.isinf(a["F_process_over_builds"]) and a["p_process_over_builds"] == 0.0


def test_an_offset_per_build_shows_in_the_interaction_not_the_process(bs: Any) -> None:
    # each process has one fast and one slow build (in opposite order): cell means 1.1 and
    # 3.1, SS interaction = 2 * 4 * 1 = 8 on 1 df; scatter 4 * 0.02 = 0.08 on 4 df; F = 400
    a = bs.two_way([[[1.0, 1.2], [3.0, 3.2]], [[3.0, 3.2], [1.0, 1.2]]])
    assert a["F_interaction"] == pytest.approx(400.0)
    assert a["F_process"] == pytest.approx(0.0, abs=1e-9)
    assert a["F_process_over_builds"] == pytest.approx(0.0, abs=1e-9)
    assert a["p_process_over_builds"] == pytest.approx(1.0)


def _build(meds: list[float], grid: int = 8) -> dict[str, Any]:
    return {"kernels": [{"name": "k", "grid": [grid, 1, 1], "block": [128, 1, 1],
                         "registers": 32, "shared": 0, "dur_us": 1.0}],
            "placements_us": meds, "median_us": sorted(meds)[len(meds) // 2],
            "addresses": [], "kind": "main thread"}


def test_render_shows_the_anova_and_the_launch_configurations(bs: Any, tmp_path: Path,
                                                             capsys: Any) -> None:
    procs = [[{"case": "a", "builds": [_build([1, 3, 2]), _build([1, 3, 2])]}],
             [{"case": "a", "builds": [_build([5, 7, 6]), _build([5, 7, 6], grid=16)]}]]
    lines, summary = bs.render(procs, "benchmarks/build_shift.py --processes 2", 12.0)
    row = next(x for x in lines if x.startswith("| a |"))
    # first builds 2 and 6: spread (6 - 2) / 2 = 200 %; within each process 0 %;
    # SS process = 2 * 3 * 8 = 48, scatter 4 cells * 2 = 8 on 8 df: F = 48
    assert row.startswith("| a | 200.00 | 200.00 | 0.00, 0.00 | 48.0 (")
    assert row.endswith(" | 2 | 2.00/2.00; 6.00/6.00 |")  # the second grid is a second config
    assert summary[0]["anova"]["F_process"] == pytest.approx(48.0)
    # a saved JSON renders the same table without a GPU
    saved = tmp_path / "shift.json"
    saved.write_text(json.dumps({"args": {"processes": 2, "builds": 2, "placements": 3,
                                          "per_placement_s": 0.03},
                                 "processes": procs, "total_s": 12.0}))
    assert bs.main(["--render", str(saved)]) == 0
    out = capsys.readouterr().out
    assert row in out.splitlines()
    assert "--processes 2 --builds 2 --placements 3 --per-placement-s 0.03" in out
