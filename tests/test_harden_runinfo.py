"""A corrupted run.json is one line naming the file and the key, exit 1, from every reader
(issue 14, class 6): run.json is validated by ``bench.record.RunInfo`` as records are by
``Record``. A stored ``ok`` record without its samples is refused the same way."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bench.errors import BenchError
from bench.store import load_records, read_run_info

ROOT = Path(__file__).resolve().parents[1]
RUN_A = ROOT / "tests" / "data" / "runs" / "quickstart-cpu-a"

Edit = Callable[[dict[str, Any]], dict[str, Any]]


def _copy(tmp_path: Path, edit: Edit) -> Path:
    run = tmp_path / "run"
    shutil.copytree(RUN_A, run)
    info = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps(edit(info)))
    return run


CORRUPTED: list[tuple[str, Edit, str]] = [
    ("gpu a list", lambda i: {**i, "gpu": [1]}, "gpu"),
    ("host a string", lambda i: {**i, "host": "h"}, "host"),
    ("timing a string", lambda i: {**i, "timing": "fast"}, "timing"),
    ("gpu.cc a string", lambda i: {**i, "gpu": {"name": "X", "cc": "abc"}}, "gpu.cc"),
    ("backends a list", lambda i: {**i, "backends": ["torch"]}, "backends"),
    ("host.cpu_count a string", lambda i: {**i, "host": {**i["host"], "cpu_count": "2"}},
     "host.cpu_count"),
    ("timing.profile_iters negative",
     lambda i: {**i, "timing": {**i["timing"], "profile_iters": -1}}, "timing.profile_iters"),
    ("suite_text a number", lambda i: {**i, "suite_text": 7}, "suite_text"),
    ("schema 4", lambda i: {**i, "schema": 4}, "schema version 4"),
]


@pytest.mark.parametrize("what,edit,key", CORRUPTED, ids=[c[0] for c in CORRUPTED])
def test_corrupted_run_json_names_file_and_key(tmp_path: Path, what: str, edit: Edit,
                                               key: str) -> None:
    run = _copy(tmp_path, edit)
    with pytest.raises(BenchError) as e:
        read_run_info(run)
    line = str(e.value)
    assert "\n" not in line and line.startswith(f"{run / 'run.json'}: {key}"), line


@pytest.mark.parametrize("command", ["report", "compare", "export"])
def test_corrupted_run_json_is_one_line_from_the_cli(tmp_path: Path, cli_env: dict[str, str],
                                                     command: str) -> None:
    """The two tracebacks of faults-cpu-after-record.md (gpu a list in compare, host a string
    in report), and export, through the real CLI."""
    run = _copy(tmp_path, lambda i: {**i, "gpu": [1], "host": "h"})
    argv = {"report": ["report", str(run), "--out", str(tmp_path / "reports")],
            "compare": ["compare", str(RUN_A), str(run)],
            "export": ["export", str(run), "--out", str(tmp_path / "export")]}[command]
    r = subprocess.run([sys.executable, "-m", "bench", *argv], env=cli_env,
                       capture_output=True, text=True, timeout=120, check=False)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 1 and len(lines) == 1, r.stderr
    assert lines[0].startswith(f"convbench: error: {run / 'run.json'}: "), lines[0]
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "reports").exists() and not (tmp_path / "export").exists()


def test_current_schema_run_json_over_version_1_records_is_read(tmp_path: Path) -> None:
    """A version-1 run resumed by this convbench: run.json says 3 (its format is unchanged),
    the old records say 1. Valid input, read as such."""
    run = _copy(tmp_path, lambda i: {**i, "schema": 3})
    assert read_run_info(run)["schema"] == 3
    assert len(load_records(run)) == 12


def test_ok_record_without_samples_is_refused_with_its_line(tmp_path: Path) -> None:
    run = _copy(tmp_path, lambda i: i)
    rows = [json.loads(x) for x in (run / "records.jsonl").read_text().splitlines()]
    rows[3]["samples_ms"] = []
    (run / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(BenchError, match=r"records.jsonl:4: samples_ms: empty on a record "
                                         "with status ok"):
        load_records(run)
