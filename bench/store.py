"""Results on disk: ``results/<suite>/<run-id>/{run.json, records.jsonl, layers.jsonl}``.

Records are JSON Lines, appended, flushed and fsynced one by one, so an interrupted sweep loses
nothing it finished. A torn last line (the process died mid-write) is detected, reported and
dropped, never merged with the next record.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import shlex
import shutil
import socket
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.record import (
    SCHEMA_VERSION,
    LayerRow,
    Record,
    parse_layer_row,
    parse_record,
    parse_run_info,
)

RUN_FILE = "run.json"
RECORDS_FILE = "records.jsonl"
LAYERS_FILE = "layers.jsonl"
LOCK_FILE = ".lock"


class TornRecordWarning(UserWarning):
    """A records file ended in a partial line (a sweep was killed mid-write)."""


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


class WriteError(BenchError):
    """A results file could not be written; ``why`` is the reason alone ("disk full"), for
    callers whose outcome differs from a sweep's (merge discards its partial output)."""

    def __init__(self, message: str, why: str) -> None:
        super().__init__(message)
        self.why = why


def _write_error(path: Path, e: OSError) -> WriteError:
    # EFBIG: a file size limit (quota, RLIMIT_FSIZE) is a full disk for this file
    if e.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        why = "disk full" if e.errno == errno.ENOSPC else f"disk full ({e.strerror})"
        return WriteError(f"{path}: {why}; every record written before this one is kept", why)
    if e.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
        why = f"not writable ({e.strerror})"
    else:
        why = f"cannot write ({e.strerror or e})"
    return WriteError(f"{path}: {why}", why)


class RunLocked(BenchError):
    """Another process is writing this run directory."""


class RunStore:
    """One run directory, opened for appending."""

    def __init__(self, run_dir: Path) -> None:
        self.dir = run_dir

    # --- create / open ---------------------------------------------------------------------------
    @classmethod
    def create(cls, root: Path, suite_name: str, run_info: dict[str, Any],
               run_id: str | None = None) -> RunStore:
        """A new run directory ``root/<suite>/<run id>``; both names are checked and the path
        must stay under ``root`` (a stored ``suite`` field of ``../x`` is refused)."""
        from bench.paths import check_name, contained

        run_id = run_id or new_run_id()
        check_name(suite_name, "suite name")
        check_name(run_id, "run id")
        contained(root, suite_name, run_id)  # also refuses a symlinked suite folder leaving root
        run_dir = Path(root) / suite_name / run_id
        try:
            run_dir.mkdir(parents=True, exist_ok=False)
        except FileExistsError:
            raise BenchError(f"{run_dir}: already exists; use --resume to continue it") from None
        except OSError as e:
            raise _write_error(run_dir, e) from None
        store = cls(run_dir)
        try:
            store.write_run_info({**run_info, "schema": SCHEMA_VERSION})
        except BenchError:
            # a run directory without run.json can be neither resumed nor reported: remove it
            shutil.rmtree(run_dir, ignore_errors=True)
            raise
        return store

    @classmethod
    def open(cls, run_dir: Path) -> RunStore:
        """Open an existing run for resuming; drops a torn last record line (with a warning)."""
        store = cls(Path(run_dir))
        store.run_info()  # validates presence + schema
        with store.lock():  # a writer's line in flight is not a torn tail: refuse, don't cut
            for name in (RECORDS_FILE, LAYERS_FILE):
                _truncate_torn_tail(store.dir / name)
        return store

    @contextlib.contextmanager
    def lock(self) -> Iterator[RunStore]:
        """Hold an exclusive lock on the run directory while writing it.

        ``flock`` on ``<run>/.lock``, non-blocking: a second writer (two ``--resume`` of one run)
        fails at once with one line naming the holder (pid, host, command), instead of both
        appending the same cases. The kernel drops the lock when the holder exits, SIGKILL
        included, so a stale lock file never blocks a later resume. The file is kept (removing it
        would let a third process lock a fresh inode while the second still holds the old one).
        flock is advisory and per open file: only convbench's writers take it, and it does not
        reach across NFS clients."""
        import fcntl

        path = self.dir / LOCK_FILE
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise _write_error(path, e) from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunLocked(f"{self.dir}: in use by {_holder(fd)}; wait for it to finish or "
                                "stop it, then --resume") from None
            holder = {"pid": os.getpid(), "host": socket.gethostname(),
                      "start": _start_time(os.getpid()),
                      # cut: the line must stay well inside what a refused writer reads
                      "command": shlex.join(sys.argv)[:HOLDER_COMMAND_CHARS]}
            # the new line first, then the old tail cut off: a reader never finds the file empty
            data = (json.dumps(holder) + "\n").encode()
            os.pwrite(fd, data, 0)
            os.ftruncate(fd, len(data))
            yield self
        finally:
            os.close(fd)  # releases the lock

    def write_run_info(self, info: dict[str, Any]) -> None:
        path = self.dir / RUN_FILE
        tmp = path.with_suffix(".json.tmp")
        try:
            tmp.write_text(json.dumps(info, indent=2, default=str) + "\n")
            os.replace(tmp, path)
        except OSError as e:
            raise _write_error(path, e) from None

    def run_info(self) -> dict[str, Any]:
        return read_run_info(self.dir)

    # --- append ----------------------------------------------------------------------------------
    def append(self, record: Record) -> None:
        self._append_line(self.dir / RECORDS_FILE, record.to_json())

    def append_line(self, name: str, obj: dict[str, Any]) -> None:
        """Append one JSON object to the run's file ``name`` (fsynced, as records are)."""
        self._append_line(self.dir / name, obj)

    def append_layers(self, row: LayerRow) -> None:
        self._append_line(self.dir / LAYERS_FILE, row.to_json())

    def append_result(self, record: Record, layers: LayerRow | None) -> None:
        """One finished case: its layer profile first, then the record. The record marks the
        case done for ``--resume``, so a kill between the two writes leaves a layers row that
        the re-measured case supersedes (``load_layers`` keeps the last), never a record
        whose profile is missing for good."""
        if layers:
            self.append_layers(layers)
        self.append(record)

    def _append_line(self, path: Path, obj: dict[str, Any]) -> None:
        line = json.dumps(obj, separators=(",", ":"), default=str, allow_nan=False) + "\n"
        data = line.encode()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                start = os.fstat(fd).st_size
                try:
                    # one write() call: an append of this size is not interleaved with others
                    written = os.write(fd, data)
                    if written != len(data):
                        # the disk filled up part-way; writing the rest reports why (ENOSPC,
                        # EFBIG...) or, if space came back, completes the line
                        rest = memoryview(data)[written:]
                        while rest:
                            n = os.write(fd, rest)
                            if n == 0:
                                raise OSError(errno.ENOSPC, "No space left on device")
                            rest = rest[n:]
                    os.fsync(fd)
                except OSError:
                    # take back a partial line so the file stays whole for readers and --resume
                    # (one process writes a run's files: the driver, also when scaled out)
                    with contextlib.suppress(OSError):
                        os.ftruncate(fd, start)
                    raise
            finally:
                os.close(fd)
        except OSError as e:
            raise _write_error(path, e) from None

    # --- read ------------------------------------------------------------------------------------
    def records(self) -> list[Record]:
        return load_records(self.dir)

    def done(self) -> set[tuple[str, str]]:
        """(case key, backend) of every record already stored."""
        return {(r.case_key, r.backend) for r in self.records()}


#: how long a refused writer waits for the holder to name itself in the lock file
HOLDER_WAIT_S = 1.0
#: the holder's command line is cut to this many characters in the lock file
HOLDER_COMMAND_CHARS = 500


def _holder(fd: int) -> str:
    """Who holds the lock, from what the holder wrote into the lock file. The holder writes
    its line just after it takes the lock, so a writer refused in between reads the last
    holder's line (a process that has exited) or nothing: it reads again for up to
    ``HOLDER_WAIT_S`` until the line names a live process. After that it names what the file
    says, marked as perhaps gone (a holder in another PID namespace of the same host looks
    exited from here), or "another process"."""
    deadline = time.monotonic() + HOLDER_WAIT_S
    while True:
        named, live = _named_holder(fd)
        if live or time.monotonic() >= deadline:
            if not named:
                return "another process"
            return named if live else f"{named}, which may have exited"
        time.sleep(0.02)


def _named_holder(fd: int) -> tuple[str, bool]:
    """The lock file's holder ("" if it names none), and whether it looks alive: on this host,
    its pid runs and (where the line has it) started when the line says."""
    try:
        # 64 KiB: the command is cut to HOLDER_COMMAND_CHARS, but JSON escapes non-ASCII
        line = os.pread(fd, 1 << 16, 0).split(b"\n", 1)[0]
        info = json.loads(line or b"{}")
        pid, host, cmd = int(info["pid"]), str(info["host"]), str(info["command"])[:200]
    except (OSError, ValueError, KeyError, TypeError, OverflowError):
        return "", False
    if pid <= 0:
        return "", False
    from bench.text import escape_controls

    named = f"pid {pid} on {escape_controls(host)} ({escape_controls(cmd)})"
    if host != socket.gethostname():
        return named, True  # nothing to check it against
    started = info.get("start")
    alive = _alive(pid) and (started is None or _start_time(pid) in (None, started))
    return named, alive


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # it exists (another user's), or not a pid this check can judge
    return True


def _start_time(pid: int) -> int | None:
    """When the process started (clock ticks since boot, ``/proc/<pid>/stat`` field 22), so a
    pid used again by a later process is not taken for the holder; None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()  # the name may be any bytes
        return int(stat.rsplit(b")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def read_run_info(run_dir: Path) -> dict[str, Any]:
    """``run_dir/run.json``, validated (``bench.record.RunInfo``) and upgraded; a missing,
    unreadable or corrupted file is one BenchError line naming the file (and the key)."""
    path = Path(run_dir) / RUN_FILE
    try:
        info = json.loads(path.read_text())
    except (FileNotFoundError, NotADirectoryError):
        raise BenchError(f"{path}: not found; is {run_dir} a convbench run directory?") from None
    except OSError as e:
        raise BenchError(f"{path}: cannot read ({e.strerror or e})") from None
    except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError, int digits
        raise BenchError(f"{path}: not valid JSON ({str(e)[:200]})") from None
    if not isinstance(info, dict):
        raise BenchError(f"{path}: not a convbench run file")
    return parse_run_info(info, str(path))


def iter_jsonl(path: Path) -> Iterator[tuple[str, Any]]:
    """(``file:line``, parsed object) of each line of a JSON Lines file; a torn *last* line is
    dropped with a warning, a broken line elsewhere is an error (the file was edited or
    corrupted, not interrupted)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return
    except IsADirectoryError:
        raise BenchError(f"{path}: is a directory, not a results file") from None
    except OSError as e:
        raise BenchError(f"{path}: cannot read ({e.strerror or e})") from None
    lines = raw.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    if tail:
        warnings.warn(f"{path}: dropped a partial last line ({len(tail)} bytes) left by an "
                      "interrupted write", TornRecordWarning, stacklevel=2)
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            obj = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
            # ValueError: an integer of more than 4300 digits
            raise BenchError(f"{where}: not valid JSON; the file is corrupted") from None
        except RecursionError:
            raise BenchError(f"{where}: JSON nested too deeply; the file is corrupted") from None
        yield where, obj


def load_records(run_dir: Path) -> list[Record]:
    """Every record of a run, validated (and upgraded from older schemas); a record stored
    twice for one (case, backend) is an error naming both lines."""
    seen: dict[tuple[str, str], str] = {}
    out = []
    for where, obj in iter_jsonl(Path(run_dir) / RECORDS_FILE):
        rec = parse_record(obj, where)
        key = (rec.case_key, rec.backend)
        if key in seen:
            raise BenchError(f"{where}: a second record of case {rec.case_key} on {rec.backend} "
                             f"(first at {seen[key]}); two sweeps wrote this run at once?")
        seen[key] = where
        rec.run_dir = str(run_dir)
        out.append(rec)
    return out


def load_layers(run_dir: Path) -> list[LayerRow]:
    """Layer rows, the last one per (case key, backend): a case re-measured after a kill may
    have left an earlier row (see ``RunStore.append_result``)."""
    rows: dict[Any, LayerRow] = {}
    for where, obj in iter_jsonl(Path(run_dir) / LAYERS_FILE):
        row = parse_layer_row(obj, where)
        key = (row.case_key, row.backend)
        rows.pop(key, None)  # re-insert: keep file order of the surviving rows
        rows[key] = row
    return list(rows.values())


def _truncate_torn_tail(path: Path) -> None:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return
    if raw and not raw.endswith(b"\n"):
        keep = raw.rfind(b"\n") + 1
        warnings.warn(f"{path}: dropped a partial last line ({len(raw) - keep} bytes) left by an "
                      "interrupted write", TornRecordWarning, stacklevel=3)
        with open(path, "r+b") as f:
            f.truncate(keep)
            f.flush()
            os.fsync(f.fileno())
