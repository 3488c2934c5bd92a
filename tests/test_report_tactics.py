"""The tactic report from a committed synthetic run (tests/data/make_synthetic_cudnn_run.py):
the cuDNN plan spread per case, the findings about the heuristic's choice, the plot, and torch /
cudnn / tensorrt side by side with kernel counts.

Golden files: regenerate with CONVBENCH_UPDATE_GOLDEN=1 python -m pytest
tests/test_report_tactics.py and review the diff.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from test_report import check_golden  # tests/ is on sys.path (rootdir import mode)

import bench
from bench.report import tactics
from bench.report.findings import findings, tactic_findings
from bench.report.tables import Run

DATA = Path(__file__).parent / "data"
RUN = DATA / "runs" / "synthetic-cudnn"
QUICK = DATA / "runs" / "quickstart-cpu-a"


@pytest.fixture(scope="module")
def run() -> Run:
    return bench.load(RUN)


def test_tactic_and_side_by_side_tables_match_golden(run: Run) -> None:
    plans = tactics.load_plans(run.dir)
    text = "\n\n".join(t.to_csv(index=False, float_format="%.6g") for t in
                       (tactics.tactic_table(plans, run.records),
                        tactics.backend_table(run.records, run.layers)))
    check_golden("synthetic-cudnn.tactics.csv", text)


def test_tactic_spread_per_case(run: Run) -> None:
    t = tactics.tactic_table(tactics.load_plans(run.dir), run.records).set_index("#")
    # case 0: 7 plans, one refused, one over the workspace; the heuristic's plan is the fastest
    r = t.loc[0]
    assert (r["plans"], r["usable"], r["skipped ws"]) == (7, 5, 1)
    assert r["heuristic / fastest"] == pytest.approx(1.0)
    assert r["slowest ms"] == pytest.approx(0.0321 * 950)
    # case 1: cuDNN's first plan is 1.35x the fastest; autotune chose the fastest
    r = t.loc[1]
    assert r["heuristic / fastest"] == pytest.approx(1.35)
    assert r["chosen"] == r["fastest plan"] != r["heuristic plan"]
    # case 3 (algo = heuristic) keeps cuDNN's first plan, 1.12x the fastest
    r = t.loc[3]
    assert r["selection"] == "heuristic" and r["chosen"] == r["heuristic plan"]
    # case 4: no usable plan, its plans still listed
    assert (t.loc[4, "plans"], t.loc[4, "usable"]) == (2, 0)


def test_findings_name_the_cases_where_the_heuristic_is_10_percent_slower(
        run: Run) -> None:
    table = tactics.tactic_table(tactics.load_plans(run.dir), run.records)
    found = tactic_findings(table)
    assert "fastest plan in 2 of 4 cases and at least 10 % slower in 2" in found[0].text
    named = [f.text for f in found[1:]]
    assert len(named) == 2
    assert "c128-k128-56x56-r3-s1-p1-relu:" in named[0] and "1.35×" in named[0]
    assert "-heuristic:" in named[1] and "1.12×" in named[1]
    everything = findings(run.records, run.layers, table)
    check_golden("synthetic-cudnn.findings.txt",
                 "\n".join(f"{f.rule}: {f.text}" for f in everything) + "\n")


def test_side_by_side_counts_kernels_per_backend(run: Run) -> None:
    side = tactics.backend_table(run.records, run.layers).set_index("#")
    assert list(side.columns[:6]) == ["case", "torch ms", "torch kernels", "cudnn ms",
                                      "cudnn kernels", "tensorrt ms"]
    assert side.loc[0, "torch kernels"] == 4 and side.loc[0, "cudnn kernels"] == 1
    assert side.loc[0, "tensorrt layers"] == 1 and side.loc[0, "fastest"] == "tensorrt"
    assert side.loc[4, "cudnn ms"] == "unsupported"


def test_tactic_plot_marks_every_usable_plan(run: Run) -> None:
    plans = tactics.load_plans(run.dir)
    fig = tactics.tactic_figure(plans)
    assert fig is not None
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()][0].startswith("#0 fp16-n16-c64")
    assert len(ax.get_yticklabels()) == 4  # case 4 has no usable plan
    grey = ax.collections[0]  # first case's usable plans
    assert len(grey.get_offsets()) == 5
    assert tactics.tactic_figure(plans.iloc[0:0]) is None


def test_report_has_the_tactic_sections_only_where_there_are_plans(
        committed_report: Callable[[str], Path]) -> None:
    md_path = committed_report(RUN.name)  # write_report(RUN, <tmp>), shared
    md = md_path.read_text()
    assert "## Backends side by side" in md and "## cuDNN plans (tactics)" in md
    assert "![cuDNN plan times per case](tactics.png)" in md
    assert md_path.parent.parts[-2:] == ("synthetic-cudnn", "synthetic-cudnn")
    assert (md_path.parent / "tactics.png").exists()
    cpu = committed_report(QUICK.name).read_text()  # one backend, no plans
    assert "cuDNN plans" not in cpu and "side by side" not in cpu
