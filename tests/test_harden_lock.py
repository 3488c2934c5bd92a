"""One writer per run directory (issue 14, item 1): two ``convbench run --resume RUN`` at once
must not both measure the same cases."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.errors import BenchError
from bench.store import RunStore, load_records

SUITE = """
name = "lock"
backends = ["torch"]
[defaults]
in_channels = 4
out_channels = 4
height = 8
width = 8
[sweep]
batch = [1, 2, 3, 4, 5, 6, 7, 8]
kernel = [1, 3, 5]
[timing]
warmup_s = 0.01
min_samples = 3
min_time_s = 0.15
max_time_s = 0.3
target_rse = 0.5
profile_iters = 0
"""


def test_second_writer_is_refused_naming_the_holder(tmp_path: Path) -> None:
    store = RunStore.create(tmp_path, "s", {"suite": "s"})
    with store.lock(), pytest.raises(BenchError) as e:
        # a second open file description in the same process conflicts like another process
        with RunStore(store.dir).lock():
            pass
    import os

    assert f"in use by pid {os.getpid()}" in str(e.value) and str(store.dir) in str(e.value)
    with store.lock():  # released when the first block ended
        pass


def test_two_concurrent_resumes_write_no_duplicates(tmp_path: Path,
                                                     cli_env: dict[str, str]) -> None:
    suite = tmp_path / "lock.toml"
    suite.write_text(SUITE)
    out = tmp_path / "results"
    base = [sys.executable, "-m", "bench", "run", str(suite), "--out", str(out), "--no-progress"]
    first = subprocess.run(base + ["--filter", "batch == 1"], env=cli_env, capture_output=True,
                           text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    (run_dir,) = out.glob("lock/*")
    assert len(load_records(run_dir)) == 3
    procs = [subprocess.Popen(base + ["--resume", str(run_dir)], env=cli_env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [(p.pid, *p.communicate(timeout=300)) for p in procs]
    codes = [p.returncode for p in procs]
    keys = [(r.case_key, r.backend) for r in load_records(run_dir)]
    assert len(keys) == 24 and len(set(keys)) == 24  # every case once, no duplicate
    assert sorted(codes) == [0, 1], results
    loser = codes.index(1)
    winner_pid = results[1 - loser][0]
    err = [line for line in results[loser][2].splitlines() if line.strip()]
    assert len(err) == 1 and "Traceback" not in results[loser][2]
    assert f"in use by pid {winner_pid} " in err[0] and "--resume" in err[0]


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_a_refused_writer_never_names_a_holder_that_has_exited(tmp_path: Path) -> None:
    """Seen in CI: the second of two concurrent --resume read the lock file in the moment after
    the first took the lock and before it wrote its own line. The file then named the process
    of the run before (which had exited), or nothing."""
    import fcntl
    import json
    import os
    import socket
    import threading

    from bench.store import LOCK_FILE

    store = RunStore.create(tmp_path, "s", {"suite": "s"})
    path = store.dir / LOCK_FILE
    stale = _dead_pid()
    path.write_text(json.dumps({"pid": stale, "host": socket.gethostname(),
                                "command": "convbench run old.toml"}) + "\n")
    fd = os.open(path, os.O_RDWR)  # the new holder: locked, its line not yet written
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(BenchError) as e, RunStore(store.dir).lock():
            pass
        # after the wait it says what the file says, marked as perhaps gone
        assert (f"in use by pid {stale} on {socket.gethostname()} (convbench run old.toml), "
                "which may have exited;") in str(e.value)
        if not Path("/proc/self/stat").exists():
            return  # no start times to compare (not Linux)
        # a pid used again: the line names this process but another start time
        path.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                    "start": 1, "command": "convbench run reused.toml"}) + "\n")
        with pytest.raises(BenchError) as e, RunStore(store.dir).lock():
            pass
        assert "(convbench run reused.toml), which may have exited;" in str(e.value)

        def name_myself() -> None:  # the holder writes its line 0.2 s late
            line = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                               "command": "convbench run new.toml --resume x"}) + "\n"
            os.pwrite(fd, line.encode(), 0)
            os.ftruncate(fd, len(line))

        timer = threading.Timer(0.2, name_myself)
        timer.start()
        with pytest.raises(BenchError) as e, RunStore(store.dir).lock():
            pass
        timer.join()
        assert f"in use by pid {os.getpid()} " in str(e.value) and "new.toml" in str(e.value)
        assert "may have exited" not in str(e.value)
    finally:
        os.close(fd)
