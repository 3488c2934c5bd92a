"""``convbench export``: CSV/Parquet tables and trtexec-compatible JSON, from committed runs."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import bench
from bench.cli import main
from bench.export import export_tables, export_trtexec
from bench.store import load_records

DATA = Path(__file__).parent / "data" / "runs"
QUICK = DATA / "quickstart-cpu-a"
SYNTH = DATA / "synthetic-h100"

# trtexec's key order (TensorRT samples/common/sampleReporting.cpp, exportJSONTrace)
TRTEXEC_TIME_KEYS = ["startEnqMs", "endEnqMs", "startH2dMs", "endH2dMs", "startComputeMs",
                     "endComputeMs", "startD2hMs", "endD2hMs", "h2dMs", "computeMs", "d2hMs",
                     "latencyMs"]
TRTEXEC_PROFILE_KEYS = ["name", "timeMs", "averageMs", "medianMs", "percentage"]


def test_csv_round_trips_the_records_table(tmp_path: Path) -> None:
    paths = export_tables(QUICK, tmp_path, "csv")
    assert [p.name for p in paths] == ["records.csv", "layers.csv"]
    back = pd.read_csv(tmp_path / "records.csv")
    df = bench.load(QUICK).records
    assert len(back) == len(df) == 12
    pd.testing.assert_series_equal(back["median_ms"], df["median_ms"], check_names=False)
    assert back.loc[0, "kernel"] == "[1, 1]"  # pairs are written as JSON lists


def test_parquet_export(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow", reason="Parquet export needs pyarrow (pip install pyarrow)")
    export_tables(SYNTH, tmp_path, "parquet")
    back = pd.read_parquet(tmp_path / "records.parquet")
    df = bench.load(SYNTH).records
    assert len(back) == len(df)
    assert back["pct_of_bound"].tolist() == pytest.approx(df["pct_of_bound"].tolist(),
                                                          nan_ok=True)


def test_trtexec_times_have_trtexecs_layout(tmp_path: Path) -> None:
    paths = export_trtexec(QUICK, tmp_path)
    rec = load_records(QUICK)[4]
    times = json.loads((tmp_path / f"0004-{rec.name}-torch.times.json").read_text())
    assert len(times) == len(rec.samples_ms)
    for entry, ms in zip(times, rec.samples_ms):
        assert list(entry) == TRTEXEC_TIME_KEYS
        assert entry["computeMs"] == entry["latencyMs"] == ms
        assert entry["endComputeMs"] - entry["startComputeMs"] == pytest.approx(ms)
    # a script reading trtexec traces (e.g. one doing end - start of compute) gets our samples
    lat = [e["endComputeMs"] - e["startComputeMs"] for e in times]
    assert lat == pytest.approx(rec.samples_ms)
    assert len([p for p in paths if p.name.endswith(".times.json")]) == 12


def test_trtexec_profile_has_trtexecs_layout(tmp_path: Path) -> None:
    export_trtexec(SYNTH, tmp_path)
    prof = json.loads((tmp_path / "0001-fp16-n32-c3-k64-28x28-r3-s1-p1-tensorrt.profile.json")
                      .read_text())
    assert list(prof[0]) == ["count"]
    layers = prof[1:]
    assert all(list(la) == TRTEXEC_PROFILE_KEYS for la in layers)
    assert [la["name"] for la in layers][0].startswith("Reformatting CopyNode")
    assert sum(la["percentage"] for la in layers) == pytest.approx(100.0)
    for la in layers:
        assert la["timeMs"] == pytest.approx(la["averageMs"] * prof[0]["count"])


def test_cli_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(QUICK), "--out", str(tmp_path), "--trtexec"]) == 0
    assert (tmp_path / "records.csv").exists()
    assert len(list((tmp_path / "trtexec").glob("*.profile.json"))) == 12
    assert "wrote 26 file(s)" in capsys.readouterr().out


def test_unknown_schema_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                         ) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(QUICK, run)
    lines = (run / "records.jsonl").read_text().splitlines()
    lines[0] = lines[0].replace('"schema":1', '"schema":99', 1)
    (run / "records.jsonl").write_text("\n".join(lines) + "\n")
    assert main(["export", str(run), "--out", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err
    assert "schema version 99" in err and err.count("\n") == 1
