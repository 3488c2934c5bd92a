"""Results store: append, torn lines, schema versions, unwritable directories."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers import record

from bench.errors import BenchError, SchemaError
from bench.record import SCHEMA_VERSION
from bench.store import RECORDS_FILE, RunStore, TornRecordWarning, load_records


def _store(tmp_path: Path) -> RunStore:
    return RunStore.create(tmp_path, "s", {"suite": "s", "suite_text": "x"}, run_id="r1")


def test_append_and_read_back(tmp_path: Path) -> None:
    st = _store(tmp_path)
    a, b = record(0), record(1, status="error")
    st.append(a)
    st.append(b)
    recs = load_records(tmp_path / "s" / "r1")
    assert [r.case_key for r in recs] == [a.case_key, b.case_key]
    assert [r.status for r in recs] == ["ok", "error"]
    assert recs[0].samples_ms == a.samples_ms and recs[0].stats == a.stats
    stored = [json.loads(line) for line in (st.dir / RECORDS_FILE).read_text().splitlines()]
    assert all(r["schema"] == SCHEMA_VERSION == 3 for r in stored)
    assert st.done() == {(a.case_key, "torch"), (b.case_key, "torch")}


def test_existing_run_dir_is_not_overwritten(tmp_path: Path) -> None:
    _store(tmp_path)
    with pytest.raises(BenchError, match="already exists; use --resume"):
        _store(tmp_path)


def test_torn_last_line_is_dropped_with_warning_and_truncated_on_resume(tmp_path: Path) -> None:
    st = _store(tmp_path)
    a, b = record(0), record(1)
    st.append(a)
    path = st.dir / RECORDS_FILE
    with open(path, "ab") as f:
        f.write(b'{"schema":2,"case_key":"b","back')  # killed mid-write
    with pytest.warns(TornRecordWarning, match="partial last line"):
        assert [r.case_key for r in load_records(st.dir)] == [a.case_key]
    with pytest.warns(TornRecordWarning):
        resumed = RunStore.open(st.dir)
    resumed.append(b)
    # the new record is on its own line, not glued to the torn bytes
    assert [r.case_key for r in load_records(st.dir)] == [a.case_key, b.case_key]


def test_corrupted_middle_line_is_an_error(tmp_path: Path) -> None:
    st = _store(tmp_path)
    good = json.dumps(record(0).to_json())
    (st.dir / RECORDS_FILE).write_text(f"{good}\nnot json\n{good}\n")
    with pytest.raises(BenchError, match=r"records.jsonl:2: not valid JSON"):
        load_records(st.dir)


def test_unknown_schema_version_is_refused(tmp_path: Path) -> None:
    st = _store(tmp_path)
    (st.dir / RECORDS_FILE).write_text(json.dumps({"schema": 99, "case_key": "a"}) + "\n")
    with pytest.raises(SchemaError, match="schema version 99, this convbench reads versions 1 "
                       "to 3; use the convbench version that wrote it"):
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


def test_a_record_stored_twice_is_an_error_naming_both_lines(tmp_path: Path) -> None:
    st = _store(tmp_path)
    st.append(record(0))
    st.append(record(1))
    st.append(record(0))  # a second sweep wrote the same case
    with pytest.raises(BenchError, match=r"records.jsonl:3: a second record of case "
                                         r"[0-9a-f]{16} on torch \(first at .*records.jsonl:1\)"):
        load_records(st.dir)


def test_a_schema_1_record_is_upgraded_on_load(tmp_path: Path) -> None:
    """Version-1 records (no flags; throttling a bool) read as version 2: a throttled record
    carries the throttled flag, the rest is unchanged."""
    st = _store(tmp_path)
    old = record(0).to_json()
    for k in ("flags", "passes", "aggregate", "profile_error", "probes", "probes_note"):
        old.pop(k)
    old.update(schema=1, throttled=True)
    (st.dir / RECORDS_FILE).write_text(json.dumps(old) + "\n")
    [rec] = load_records(st.dir)
    assert rec.schema_version == 3 and rec.flag_names == ["throttled"]
    assert rec.samples_ms == old["samples_ms"] and rec.stats.median == old["stats"]["median"]


def test_a_second_writer_is_refused_while_the_lock_is_held(tmp_path: Path) -> None:
    st = _store(tmp_path)
    with st.lock():
        with pytest.raises(BenchError, match=rf"in use by pid {os.getpid()} on "):
            with RunStore.open(st.dir).lock():
                pass  # pragma: no cover
    with RunStore.open(st.dir).lock():  # released: the next writer gets it
        pass
