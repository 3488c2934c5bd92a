"""``convbench merge``: shards of one suite become one run; inputs that don't belong together
are refused with one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench.cli import main
from bench.errors import BenchError, SchemaError
from bench.plan import make_plan
from bench.runner import run_suite
from bench.scale.merge import merge_runs
from bench.store import load_layers, load_records, read_run_info
from bench.suite import parse_suite

pytest.importorskip("torch")

SUITE = """
name = "merge"
backends = ["torch"]
[defaults]
in_channels = 4
out_channels = 4
height = 8
width = 8
padding = "same"
[sweep]
kernel = [1, 3, 5]
[timing]
warmup_s = 0.0
min_samples = 3
min_time_s = 0.0
max_time_s = 0.05
target_rse = 0.5
profile_iters = 1
"""


def _run(tmp: Path, text: str = SUITE, **kw: object) -> Path:
    summary = run_suite(make_plan(parse_suite(text), out=tmp, progress=False, argv=["t"],
                                  **kw))  # type: ignore[arg-type]
    assert summary.run_dir is not None
    return summary.run_dir


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    tmp = tmp_path_factory.mktemp("shards")
    return [_run(tmp, shard=(i, 2)) for i in range(2)]


def _keys(run_dir: Path) -> list[tuple[str, str]]:
    return [(r.case_key, r.backend) for r in load_records(run_dir)]


def test_merge_of_shards_is_their_union(shards: list[Path], tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["merge", *map(str, shards), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "merged 3 record(s) from 2 run(s)" in out and "no record" not in out
    merged = next((tmp_path / "merge").iterdir())
    strip = [r for d in shards for r in load_records(d)]
    assert sorted((r.to_json() for r in load_records(merged)), key=lambda r: r["case_index"]) \
        == sorted((r.to_json() for r in strip), key=lambda r: r["case_index"])
    assert len(load_layers(merged)) == sum(len(load_layers(d)) for d in shards)
    info = read_run_info(merged)
    assert info["suite_text"] == SUITE and info["shard"] is None
    assert [m["shard"] for m in info["merged_from"]] == [[0, 2], [1, 2]]


def test_merge_warns_about_a_missing_shard(shards: list[Path], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["merge", str(shards[0]), "--out", str(tmp_path)]) == 0
    assert "1 of the suite's 3 case × backend pairs have no record" in capsys.readouterr().out


def test_merge_refuses_another_suite_text(shards: list[Path], tmp_path: Path) -> None:
    other = _run(tmp_path / "other", SUITE.replace("kernel = [1, 3, 5]", "kernel = [1, 3, 7]"),
                 shard=(1, 2))
    with pytest.raises(BenchError, match="different suite text"):
        merge_runs([shards[0], other], tmp_path / "out")


def test_merge_refuses_duplicate_cases(shards: list[Path], tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    full = _run(tmp_path / "full")
    assert main(["merge", str(shards[0]), str(full), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "is in both" in err and "shards must not overlap" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()  # nothing half-written


def test_merge_refuses_mixed_schema_versions(shards: list[Path], tmp_path: Path) -> None:
    # a shard written by a (future) convbench with schema 4
    newer = tmp_path / "newer"
    shutil.copytree(shards[1], newer)
    info = json.loads((newer / "run.json").read_text())
    info["schema"] = 4
    (newer / "run.json").write_text(json.dumps(info))
    with pytest.raises(SchemaError, match="mixed schema versions"):
        merge_runs([shards[0], newer], tmp_path / "out")


def test_merge_refuses_other_timing_settings(shards: list[Path], tmp_path: Path) -> None:
    other = _run(tmp_path / "t", shard=(1, 2), timing={"max_time_s": 0.06})
    with pytest.raises(BenchError, match="timed with other settings"):
        merge_runs([shards[0], other], tmp_path / "out")
