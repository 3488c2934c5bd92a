"""The pytest plugin after a case whose GPU work never finished (``CaseStuck``): its record is
stored like any other, the session's GPU stream (which may hold the stuck work) is never
closed, and a later GPU case is refused in one line instead of waiting on that GPU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers import QUICKSTART

import bench.pytest_support as ps
from bench.errors import BenchError, CaseStuck
from bench.store import load_records
from bench.suite import load_suite


def test_a_stuck_case_is_stored_and_later_gpu_cases_are_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.runner import new_record

    run = ps.PytestRun(out=tmp_path, cache_dir=None, timing_overrides={}, device_index=0,
                       command="pytest suites/quickstart.toml")
    plan = run.plan(load_suite(QUICKSTART), ["torch"])
    case = plan.cases[0]
    backend = run.backend("torch")
    closed: list[Any] = []

    class Session:
        flusher = None

        def close(self) -> None:
            closed.append(self)

    def stuck(case: Any, backend: Any, *args: Any, **kwargs: Any) -> Any:
        rec = new_record(case, backend.name, "cuda", None, status="error",
                         error="GPU work did not finish: (test)")
        raise CaseStuck(rec)

    run._suite_run(plan)  # the run directory (its run.json describes no GPU here)
    run._gpu = Session()  # type: ignore[assignment]
    monkeypatch.setattr(ps, "measure_case", stuck)
    with pytest.raises(CaseStuck):
        run.measure(case, backend, plan)
    (run_dir,) = run.run_dirs()
    assert [(r.label, r.status) for r in load_records(run_dir)] == [(case.label, "error")]
    with pytest.raises(BenchError, match=r"^an earlier case's GPU work did not finish \(GPU "
                                         r"work did not finish: \(test\)\); no later GPU case "):
        run.gpu(plan)
    run.close()
    assert closed == []  # the stuck session is never closed


_SESSION = r"""
import atexit, sys
import bench.pytest_support as ps
from bench.errors import CaseStuck
from bench.runner import new_record

real = ps.measure_case

def measure_case(case, backend, *args, **kwargs):
    if case.label == "3x3-relu":
        rec = new_record(case, backend.name, "cuda", None, status="error",
                         error="GPU work did not finish: (test)")
        raise CaseStuck(rec)
    return real(case, backend, *args, **kwargs)

ps.measure_case = measure_case
atexit.register(lambda: print("AN EXIT HANDLER RAN", flush=True))
import pytest


class LateStatus:
    # a hook wrapper that changes the exit status after every sessionfinish hook has run (as
    # pytest's own wrappers may): the stuck session must leave with the final status

    @pytest.hookimpl(hookwrapper=True)
    def pytest_sessionfinish(self, session):
        yield
        session.exitstatus = 7


sys.exit(pytest.main(sys.argv[1:], plugins=[LateStatus()]))
"""


def test_a_stuck_session_reports_then_leaves_without_exit_handlers(tmp_path: Path) -> None:
    """The whole session, as a user runs it: the stuck case fails, pytest prints its summary
    (with the convbench lines), and the process leaves with pytest's final exit status without
    running exit handlers, which could wait for the stuck GPU work or crash on it."""
    import subprocess
    import sys
    import textwrap

    from helpers import checkout_env

    env = checkout_env(HOME=str(tmp_path))
    # --assert=plain: bench is imported before pytest starts, so its rewrite warning would fail
    args = [str(QUICKSTART), "-p", "no:cacheprovider", "--assert=plain", "-q",
            "--convbench-out", str(tmp_path),
            "-k", "3x3-relu or 5x5", "--convbench-min-time-s", "0.01",
            "--convbench-max-time-s", "0.05", "--convbench-warmup-s", "0",
            "--convbench-profile-iters", "0"]
    p = subprocess.run([sys.executable, "-c", textwrap.dedent(_SESSION), *args], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 7, (p.returncode, p.stdout[-2000:], p.stderr[-2000:])
    assert "1 failed, 1 passed" in p.stdout, p.stdout[-2000:]
    assert "stuck: GPU work did not finish: (test); the session leaves without running exit " \
        "handlers" in p.stdout
    assert "AN EXIT HANDLER RAN" not in p.stdout + p.stderr
