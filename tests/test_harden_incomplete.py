"""The report of an interrupted run says it is incomplete (issue 14, item 11): results recorded
vs results planned, in report.md, report.html and the terminal."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.plan import make_plan, planned_results
from bench.report import write_report
from bench.runner import run_suite
from bench.store import read_run_info
from bench.suite import parse_suite

ROOT = Path(__file__).resolve().parents[1]
RUN_A = ROOT / "tests" / "data" / "runs" / "quickstart-cpu-a"  # 12 cases, made before `planned`


@pytest.fixture
def no_plots(monkeypatch: pytest.MonkeyPatch) -> None:
    """The marker is text: these reports skip drawing their plots (seconds each); the plots of
    the same loader are checked in tests/test_report.py."""
    from bench.report import render

    monkeypatch.setattr(render, "_plots", lambda run, out: [])


def _interrupted_copy(tmp_path: Path, keep: int) -> Path:
    run = tmp_path / "results" / "quickstart" / "a"
    shutil.copytree(RUN_A, run)
    lines = (run / "records.jsonl").read_text().splitlines(keepends=True)
    (run / "records.jsonl").write_text("".join(lines[:keep]))
    return run


def test_report_of_an_interrupted_run_says_incomplete(tmp_path: Path, no_plots: None) -> None:
    run = _interrupted_copy(tmp_path, 5)
    md = write_report(run, out_root=tmp_path / "reports")
    text = md.read_text()
    assert text.startswith("# convbench report: quickstart / a (incomplete)\n")
    assert "**Incomplete run**: 5 of 12 results (case × backend) recorded" in text
    html = (md.parent / "report.html").read_text()
    assert "<strong>Incomplete run</strong>: 5 of 12 results" in html


def test_report_of_a_finished_run_has_no_marker(tmp_path: Path, no_plots: None) -> None:
    md = write_report(RUN_A, out_root=tmp_path / "reports")
    assert "ncomplete" not in md.read_text()


def test_report_command_prints_incomplete(tmp_path: Path, no_plots: None,
                                         capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.cli import main

    monkeypatch.setenv("COLUMNS", "300")
    run = _interrupted_copy(tmp_path, 3)
    assert main(["report", str(run), "--out", str(tmp_path / "reports")]) == 0
    out = capsys.readouterr().out
    assert "Incomplete run: 3 of 12 results (case × backend) recorded" in out, out


def test_new_runs_store_what_they_planned(tmp_path: Path) -> None:
    """run.json holds the planned count (filter and backends applied), so the marker needs no
    re-expansion of the suite; runs made before it get the same count from their suite text."""
    suite = parse_suite((ROOT / "suites" / "quickstart.toml").read_text())
    plan = make_plan(suite, out=tmp_path, filter="label == 'pointwise-1x1'", progress=False,
                     timing={"warmup_s": 0, "min_time_s": 0.01, "max_time_s": 0.05,
                             "min_samples": 3, "profile_iters": 0})
    summary = run_suite(plan)
    info = read_run_info(summary.run_dir)
    assert info["planned"] == 1 == len(summary.records)
    old = {k: v for k, v in info.items() if k != "planned"}
    assert planned_results(old) == 1
    assert planned_results(json.loads((RUN_A / "run.json").read_text())) == 12


def test_compare_says_which_run_is_incomplete(tmp_path: Path, cli_env: dict[str, str]) -> None:
    run = _interrupted_copy(tmp_path, 5)
    r = subprocess.run([sys.executable, "-m", "bench", "compare", str(RUN_A), str(run)],
                       env={**cli_env, "COLUMNS": "300"}, capture_output=True, text=True,
                       check=False, timeout=300)
    assert "Traceback" not in r.stderr, r.stderr
    assert "NEW is an incomplete run: 5 of 12 results recorded" in r.stdout, r.stdout
    assert "BASE is an incomplete run" not in r.stdout
