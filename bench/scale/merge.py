"""Join the run directories of shards (``--shard I/N`` jobs) into one run.

Refuses inputs that do not belong together: a different suite text, a different timing setup,
mixed schema versions, or the same (case, backend) measured twice. The inputs are only read.
"""

from __future__ import annotations

import json
import shlex
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.errors import BenchError, SchemaError
from bench.paths import check_name, contained, staged_dir
from bench.record import SCHEMA_VERSION, LayerRow, Record
from bench.store import (
    RUN_FILE,
    RunStore,
    WriteError,
    load_layers,
    load_records,
    new_run_id,
    read_run_info,
)


@dataclass
class MergeSummary:
    run_dir: Path
    records: int
    expected: int | None  # cases × backends the suite defines (None: suite text unreadable)
    inputs: list[Path]


def _raw_schema(run_dir: Path) -> Any:
    """The schema field of run.json before any check, to name mixed versions as such."""
    path = run_dir / RUN_FILE
    try:
        return json.loads(path.read_text()).get("schema")
    except FileNotFoundError:
        raise BenchError(f"{path}: not found; is {run_dir} a convbench run directory?") from None
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as e:
        raise BenchError(f"{path}: not a convbench run file ({e})") from None


def merge_runs(run_dirs: list[Path], out: Path, argv: list[str] | None = None) -> MergeSummary:
    """Write one new run under ``out/<suite>/`` holding every record of ``run_dirs``."""
    dirs = [Path(d) for d in run_dirs]
    if not dirs:
        raise BenchError("merge: no run directory given")
    if len({d.resolve() for d in dirs}) != len(dirs):
        raise BenchError("merge: a run directory is given twice")
    schemas = {d: _raw_schema(d) for d in dirs}
    if len(set(map(repr, schemas.values()))) > 1:
        detail = ", ".join(f"{d} has {v!r}" for d, v in schemas.items())
        raise SchemaError(f"merge: mixed schema versions ({detail}); re-run the older shards "
                          "with one convbench version")
    infos = {d: read_run_info(d) for d in dirs}  # checks the version is one this code reads
    first_dir, first = dirs[0], infos[dirs[0]]
    for d, info in infos.items():
        if info.get("suite_text") != first.get("suite_text"):
            raise BenchError(f"merge: {d} was made from a different suite text than {first_dir} "
                             f"({info.get('suite_path')} vs {first.get('suite_path')})")
        if info.get("timing") != first.get("timing"):
            raise BenchError(f"merge: {d} was timed with other settings than {first_dir} "
                             f"({info.get('timing')} vs {first.get('timing')})")

    owner: dict[tuple[str, str], Path] = {}
    records: list[Record] = []
    layers: list[LayerRow] = []
    for d in dirs:
        for rec in load_records(d):
            key = (rec.case_key, rec.backend)
            if key in owner:
                raise BenchError(f"merge: case {rec.name} ({key[0]}) on "
                                 f"{key[1]} is in both {owner[key]} and {d}; shards must not "
                                 "overlap")
            owner[key] = d
            records.append(rec)
        layers.extend(load_layers(d))

    suite = check_name(first.get("suite"), f"{first_dir / RUN_FILE}: suite")
    final = contained(out, suite, new_run_id())
    info = {"schema": SCHEMA_VERSION, **_merged_info(dirs, infos, argv)}
    ordered = sorted(records, key=lambda r: (r.case_index, r.backend))
    # written into a hidden sibling and renamed when complete: a merge killed or out of space
    # midway leaves no directory that looks like a merged run
    try:
        with staged_dir(final) as tmp:
            store = RunStore(tmp)
            store.write_run_info(info)
            for rec in ordered:
                store.append(rec)
            for row in layers:
                store.append_layers(row)
    except WriteError as e:
        raise BenchError(f"merge: {final}: {e.why}; the merged run was not written (the input "
                         "runs are unchanged)") from None
    except OSError as e:  # creating or renaming the staging directory
        raise BenchError(f"merge: {final}: cannot write ({e.strerror or e}); the merged run was "
                         "not written (the input runs are unchanged)") from None
    return MergeSummary(final, len(records), _expected(first), dirs)


def _merged_info(dirs: list[Path], infos: dict[Path, dict[str, Any]],
                 argv: list[str] | None) -> dict[str, Any]:
    first = infos[dirs[0]]
    info = {k: v for k, v in first.items() if k != "schema"}
    backends: dict[str, Any] = {}
    gpus: list[Any] = []
    for d in dirs:
        backends.update(infos[d].get("backends") or {})
        gpu = infos[d].get("gpu")
        if gpu and gpu not in gpus:
            gpus.append(gpu)
    info.update({
        "command": shlex.join(argv if argv is not None else sys.argv),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "shard": None, "backends": backends, "planned": _expected(first),
        # every record names its own GPU; this lists the distinct ones for the reader
        "gpus": gpus,
        "merged_from": [{"dir": str(d), "shard": infos[d].get("shard"),
                         "host": (infos[d].get("host") or {}).get("host"),
                         "gpu": infos[d].get("gpu"), "created": infos[d].get("created")}
                        for d in dirs],
    })
    return info


def _expected(info: dict[str, Any]) -> int | None:
    from bench.plan import select_cases
    from bench.suite import parse_suite

    try:
        suite = parse_suite(info.get("suite_text") or "", source=str(info.get("suite_path")))
    except BenchError:
        return None
    return len(select_cases(suite, info.get("filter"))) * max(1, len(info.get("backends") or {}))
