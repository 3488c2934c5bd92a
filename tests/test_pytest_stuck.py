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
