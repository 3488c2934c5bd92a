"""Results store: append, torn lines, schema versions, unwritable directories."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bench.errors import BenchError, SchemaError
from bench.store import RECORDS_FILE, RunStore, TornRecordWarning, load_records


def _store(tmp_path: Path) -> RunStore:
    return RunStore.create(tmp_path, "s", {"suite": "s", "suite_text": "x"}, run_id="r1")


def test_append_and_read_back(tmp_path: Path) -> None:
    st = _store(tmp_path)
    st.append({"case_key": "a", "backend": "torch", "status": "ok"})
    st.append({"case_key": "b", "backend": "torch", "status": "error"})
    recs = load_records(tmp_path / "s" / "r1")
    assert [r["case_key"] for r in recs] == ["a", "b"]
    assert all(r["schema"] == 1 for r in recs)
    assert st.done() == {("a", "torch"), ("b", "torch")}


def test_existing_run_dir_is_not_overwritten(tmp_path: Path) -> None:
    _store(tmp_path)
    with pytest.raises(BenchError, match="already exists; use --resume"):
        _store(tmp_path)


def test_torn_last_line_is_dropped_with_warning_and_truncated_on_resume(tmp_path: Path) -> None:
    st = _store(tmp_path)
    st.append({"case_key": "a", "backend": "torch", "status": "ok"})
    path = st.dir / RECORDS_FILE
    with open(path, "ab") as f:
        f.write(b'{"schema":1,"case_key":"b","back')  # killed mid-write
    with pytest.warns(TornRecordWarning, match="partial last line"):
        assert [r["case_key"] for r in load_records(st.dir)] == ["a"]
    with pytest.warns(TornRecordWarning):
        resumed = RunStore.open(st.dir)
    resumed.append({"case_key": "b", "backend": "torch", "status": "ok"})
    # the new record is on its own line, not glued to the torn bytes
    assert [r["case_key"] for r in load_records(st.dir)] == ["a", "b"]


def test_corrupted_middle_line_is_an_error(tmp_path: Path) -> None:
    st = _store(tmp_path)
    (st.dir / RECORDS_FILE).write_text('{"schema":1,"case_key":"a"}\nnot json\n'
                                       '{"schema":1,"case_key":"b"}\n')
    with pytest.raises(BenchError, match=r"records.jsonl:2: not valid JSON"):
        load_records(st.dir)


def test_unknown_schema_version_is_refused(tmp_path: Path) -> None:
    st = _store(tmp_path)
    (st.dir / RECORDS_FILE).write_text(json.dumps({"schema": 99, "case_key": "a"}) + "\n")
    with pytest.raises(SchemaError, match="schema version 99, this convbench reads version 1"):
        load_records(st.dir)
    info = json.loads((st.dir / "run.json").read_text())
    (st.dir / "run.json").write_text(json.dumps({**info, "schema": 0}))
    with pytest.raises(SchemaError, match="run.json: schema version 0"):
        RunStore.open(st.dir)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to read-only directories")
def test_unwritable_results_dir(tmp_path: Path) -> None:
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(BenchError, match="not writable"):
            _store(tmp_path)
    finally:
        tmp_path.chmod(0o700)


def test_results_root_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(BenchError, match="cannot write"):
        RunStore.create(tmp_path / "file", "s", {})
