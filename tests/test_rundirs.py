"""``latest`` / ``latest~N``: newest run directories across suites."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.errors import BenchError
from bench.rundirs import resolve_run_dir


def _run(root: Path, suite: str, run_id: str, mtime: float) -> Path:
    d = root / suite / run_id
    d.mkdir(parents=True)
    (d / "run.json").write_text("{}")
    os.utime(d / "run.json", (mtime, mtime))
    return d


def test_latest_is_the_newest_run_across_suites(tmp_path: Path) -> None:
    a = _run(tmp_path, "quickstart", "20261201-101500-aaaa", 100)
    b = _run(tmp_path, "resnet18", "20261201-101501-0000", 50)  # newer id, older file
    c = _run(tmp_path, "resnet18", "20261201-101501-ffff", 60)  # same second: by mtime
    (tmp_path / "resnet18" / "not-a-run").mkdir()
    assert resolve_run_dir("latest", tmp_path) == c
    assert resolve_run_dir("latest~1", tmp_path) == b
    assert resolve_run_dir("latest~2", tmp_path) == a
    with pytest.raises(BenchError, match="latest~3: only 3 run"):
        resolve_run_dir("latest~3", tmp_path)
    assert resolve_run_dir("results/x/y", tmp_path) == Path("results/x/y")


def test_no_runs_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match=r"latest: no run directories under "):
        resolve_run_dir("latest", tmp_path / "results")
