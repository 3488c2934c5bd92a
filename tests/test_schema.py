"""Results on disk across schema versions, and corrupted results.

tests/data/runs/quickstart-cpu-a and -b were written by convbench before typed records
(schema 1, committed as they were): they must still report, compare, export and resume. A
corrupted records file is one line naming the file, the line and (where the line parses) the
field, from ``convbench report`` in a real subprocess: exit 1, no traceback.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import one_error_line

from bench.cli import main
from bench.record import SCHEMA_VERSION
from bench.store import load_layers, load_records

RUNS = Path(__file__).parent / "data" / "runs"
A, B = RUNS / "quickstart-cpu-a", RUNS / "quickstart-cpu-b"


def cli(*argv: str) -> tuple[int, str, str]:
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        rc = main(list(argv))
    return rc, out.getvalue(), err.getvalue()


def _schema(run_dir: Path) -> set[int]:
    lines = (run_dir / "records.jsonl").read_text().splitlines()
    return {json.loads(line)["schema"] for line in lines} | {
        json.loads((run_dir / "run.json").read_text())["schema"]}


# --- schema 1 still reads -------------------------------------------------------------------------
def test_the_committed_runs_are_schema_1() -> None:
    assert _schema(A) == _schema(B) == {1} and SCHEMA_VERSION == 3


def test_schema_1_runs_load_as_typed_records() -> None:
    recs = load_records(A)
    assert len(recs) == 12 and all(r.schema_version == 3 for r in recs)
    assert all(r.status == "ok" and r.median_ms == r.stats.median > 0 for r in recs)
    assert all(r.flags == [] for r in recs)  # none was throttled
    assert {(r.case_key, r.backend) for r in recs} == {(r.case_key, r.backend)
                                                        for r in load_layers(A)}


def test_schema_1_runs_report_compare_and_export(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # the report of A, from the same loader, with every plot drawn, is tests/test_report.py's
    # CPU report test; B's report here checks the command and its tables (plots cost seconds)
    from bench.report import render

    monkeypatch.setattr(render, "_plots", lambda run, out: [])
    rc, out, err = cli("report", str(B), "--out", str(tmp_path / "reports"))
    assert rc == 0, err
    report = Path(out.split("report: ")[1].strip())
    assert report.is_file() and "## Summary" in report.read_text()
    rc, out, err = cli("compare", str(A), str(B), "--csv", str(tmp_path / "cmp.csv"))
    assert rc in (0, 1), err  # 1: a regression found between the two real runs
    assert "convbench: error" not in err and len((tmp_path / "cmp.csv").read_text()
                                                  .splitlines()) == 13
    rc, out, err = cli("export", str(A), "--out", str(tmp_path / "x"), "--trtexec")
    assert rc == 0, err
    assert "wrote " in out and "file(s)" in out
    assert len(list((tmp_path / "x" / "trtexec").glob("*.times.json"))) == 12
    rc, _, err = cli("export", str(B), "--out", str(tmp_path / "b"), "--format", "csv")
    assert rc == 0, err
    assert len((tmp_path / "b" / "records.csv").read_text().splitlines()) == 13




def test_resume_of_a_schema_1_run_appends_current_schema_records_that_load_together(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    run = tmp_path / "run"
    shutil.copytree(A, run)
    lines = (run / "records.jsonl").read_text().splitlines(keepends=True)
    (run / "records.jsonl").write_text("".join(lines[:10]))  # the last two cases not done
    info = json.loads((run / "run.json").read_text())
    suite = tmp_path / "quickstart.toml"
    suite.write_text(info["suite_text"])
    t = info["timing"]
    rc, out, err = cli("run", str(suite), "--resume", str(run), "--no-progress",
                       "--warmup-s", str(t["warmup_s"]), "--min-samples", str(t["min_samples"]),
                       "--min-time-s", str(t["min_time_s"]), "--max-time-s", str(t["max_time_s"]),
                       "--target-rse", str(t["target_rse"]))
    assert rc == 0, err
    assert "resumed: 10 case(s) already done were skipped" in out
    stored = [json.loads(line)["schema"] for line in
              (run / "records.jsonl").read_text().splitlines()]
    assert stored == [1] * 10 + [3, 3]
    recs = load_records(run)
    assert len({(r.case_key, r.backend) for r in recs}) == 12
    assert all(r.status == "ok" for r in recs)
    from bench.report import render

    # the mixed run's tables load and render; its plots (the same table) are skipped here
    monkeypatch.setattr(render, "_plots", lambda run, out: [])
    rc, _, err = cli("report", str(run), "--out", str(tmp_path / "reports"))
    assert rc == 0, err


# --- corrupted records ---------------------------------------------------------------------------
def _replace_line_2(run: Path, edit) -> None:  # type: ignore[no-untyped-def]
    path = run / "records.jsonl"
    lines = path.read_text().splitlines()
    lines[1] = edit(lines[1])
    path.write_text("\n".join(lines) + "\n")


def _json_edit(change):  # type: ignore[no-untyped-def]
    def edit(line: str) -> str:
        obj = json.loads(line)
        change(obj)
        return json.dumps(obj)
    return edit


def _deep(line: str) -> str:
    return line.replace('"label":"3x3"', '"label":' + "[" * 100_000 + "]" * 100_000, 1)


def _huge_int(line: str) -> str:
    return line.replace('"case_index":1,', '"case_index":' + "7" * 5001 + ",", 1)


def _nan(line: str) -> str:
    obj = json.loads(line)
    obj["samples_ms"][3] = float("nan")
    return json.dumps(obj)  # json writes the literal token NaN (allow_nan is its default)


CORRUPTIONS = {
    # name: (edit of line 2 or None for a directory, what the error line must say after
    #        "records.jsonl:2: ")
    "missing-case-key": (_json_edit(lambda r: r.pop("case_key")), "case_key: Field required"),
    "string-median": (_json_edit(lambda r: r["stats"].update(median="fast")),
                      "stats.median: Input should be a valid number"),
    "nan-sample": (_nan, "samples_ms.3: Input should be a finite number"),
    "nested-100000-deep": (_deep, "JSON nested too deeply; the file is corrupted"),
    "5001-digit-integer": (_huge_int, "not valid JSON; the file is corrupted"),
}


@pytest.mark.parametrize("name", [*CORRUPTIONS, "records-is-a-directory",
                                  "second-record-of-a-case"])
def test_a_corrupted_records_file_is_one_line_from_convbench_report(
        name: str, tmp_path: Path, cli_env: dict[str, str]) -> None:
    run = tmp_path / "run"
    shutil.copytree(A, run)
    records = run / "records.jsonl"
    if name == "records-is-a-directory":
        records.unlink()
        records.mkdir()
        want = f"{records}: is a directory, not a results file"
    elif name == "second-record-of-a-case":
        lines = records.read_text().splitlines(keepends=True)
        records.write_text("".join(lines + lines[1:2]))  # line 13 repeats line 2
        want = (f"{records}:13: a second record of case {json.loads(lines[1])['case_key']} on "
                f"torch (first at {records}:2)")
    else:
        edit, says = CORRUPTIONS[name]
        _replace_line_2(run, edit)
        if name == "nan-sample":
            assert "NaN" in records.read_text().splitlines()[1]  # the literal token
        want = f"{records}:2: {says}"
    res = subprocess.run([sys.executable, "-m", "bench", "report", str(run), "--out",
                          str(tmp_path / "reports")], env=cli_env, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 1, res.stderr
    line = one_error_line(res.stderr)
    assert line.startswith(f"convbench: error: {want}"), line
    assert len(line) < 600, line  # one readable line, not the record echoed back
    assert not (tmp_path / "reports").exists() or not any((tmp_path / "reports").rglob("*.md"))
