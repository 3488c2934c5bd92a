"""The local launcher: worker processes on the CPU (the CI has no GPU), one result directory."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from bench.cli import main
from bench.plan import RunPlan, make_plan
from bench.record import Record
from bench.runner import run_suite
from bench.scale.driver import Sweep
from bench.scale.local import cpu_slots, run_local
from bench.scale.worker import Worker
from bench.store import load_records, read_run_info
from bench.suite import load_suite

pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "suites" / "quickstart.toml"
# quick timing: these tests check the plumbing, not the numbers
FAST = {"warmup_s": 0.0, "min_samples": 3, "min_time_s": 0.02, "max_time_s": 0.1,
        "target_rse": 0.5, "profile_iters": 0}


def _plan(out: Path, **kw: Any) -> RunPlan:
    return make_plan(load_suite(QUICKSTART), out=out, progress=False, timing=FAST,
                     argv=["test"], **kw)


def _keys(records: list[Record]) -> list[tuple[str, str]]:
    return [(r.case_key, r.backend) for r in records]


def test_two_cpu_workers_run_the_quickstart_suite(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    suite = plan.suite
    summary = run_local(plan, cpu_slots(2))
    recs = load_records(summary.run_dir)
    assert sorted(_keys(recs)) == sorted((c.key, "torch") for c in suite.cases)
    assert all(r.status == "ok" for r in recs), [r.error for r in recs]
    assert all(r.stats.median > 0 and r.device == "cpu" for r in recs)
    assert {r.worker["executor"] for r in recs} == {"local"}
    info = read_run_info(summary.run_dir)
    assert info["suite_text"] == suite.text and "torch" in info["backends"]
    session = info["executors"][0]
    assert session["kind"] == "local" and session["crashes"] == []
    # the driver measured nothing; on a loaded machine one worker may finish the suite before
    # the other has started, so "at most 2" (the kill test shows the second one working)
    pids = {w["pid"] for w in session["workers"]}
    assert 1 <= len(pids) <= 2 and os.getpid() not in pids
    assert {r.worker["pid"] for r in recs} <= pids
    # longest first: the first case to finish is one of the two (one per worker) with the
    # most FLOPs, which went out first
    top2 = sorted(suite.cases, key=lambda c: -c.spec.flops)[:2]
    assert recs[0].case_key in {c.key for c in top2}


def test_a_killed_worker_loses_nothing_and_its_case_is_retried(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    suite = plan.suite
    seen: list[Record] = []
    killed: list[int] = []

    def kill_first_worker(rec: Record) -> None:
        seen.append(rec)
        if not killed:
            # the driver has already handed this worker its next case: kill it mid-case
            killed.append(rec.worker["pid"])
            os.kill(rec.worker["pid"], signal.SIGKILL)

    summary = run_local(plan, cpu_slots(2), on_record=kill_first_worker)
    recs = load_records(summary.run_dir)
    keys = _keys(recs)
    assert len(keys) == len(set(keys)) == len(suite.cases)  # none lost, none twice
    # what the driver reported is what is on disk, in order
    assert [r.to_json() for r in recs] == [r.to_json() for r in seen]
    assert all(r.status == "ok" for r in recs)
    crash = read_run_info(summary.run_dir)["executors"][0]["crashes"]
    assert len(crash) == 1 and f"pid {killed[0]}" in crash[0]["how"]
    assert "SIGKILL" in crash[0]["how"]
    retried = [r for r in recs if r.worker["attempt"] == 2]
    assert [(r.case_key, r.backend) for r in retried] == \
        [(crash[0]["case_key"], crash[0]["backend"])]
    assert retried[0].worker["pid"] != killed[0]
    assert retried[0].worker["slot"] != next(r for r in seen if r.worker["pid"] ==
                                             killed[0]).worker["slot"]
    assert "SIGKILL" in retried[0].worker["earlier_crashes"][0]


def test_a_case_that_crashes_two_workers_is_recorded_as_failed(tmp_path: Path) -> None:
    sweep = Sweep(_plan(tmp_path), executor="local")
    worker = Worker(sweep.plan.for_worker(), {"slot": 0})
    try:
        sweep.worker_ready(worker.info())
    finally:
        worker.close()
    live = {0, 1}
    task = sweep.next_task(0, live)
    assert task is not None
    sweep.crashed(task, 0, "worker pid 11 (cpu) died: signal SIGKILL")
    other = sweep.next_task(0, live)  # the crashed case waits for the other worker
    assert other is not None and other.id != task.id
    again = sweep.next_task(1, live)
    assert again is task and again.attempt == 2
    sweep.crashed(again, 1, "worker pid 12 (cpu) died: signal SIGSEGV")
    sweep.close()
    recs = load_records(sweep.store.dir)  # type: ignore[union-attr]
    assert len(recs) == 1 and recs[0].case_key == task.case.key
    assert recs[0].status == "error"
    assert "pid 11" in recs[0].error and "pid 12" in recs[0].error
    assert task.id not in {t.id for t in sweep.pending}


def test_cli_resume_with_workers_completes_a_partial_run(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = load_suite(QUICKSTART)
    first = run_suite(_plan(tmp_path, shard=(0, 4)))
    before = load_records(first.run_dir)
    # the CLI in this process (its workers are processes of their own): the same timing
    # options as the first part, which --resume requires
    argv = ["run", str(QUICKSTART), "--resume", str(first.run_dir), "--workers", "2",
            "--max-time-s", "0.1", "--min-time-s", "0.02", "--warmup-s", "0",
            "--min-samples", "3", "--target-rse", "0.5", "--profile-iters", "0",
            "--no-progress"]
    rc = main(argv)
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert f"results: {first.run_dir}" in out
    assert "resumed: 3 case(s) already done were skipped" in out
    after = load_records(first.run_dir)
    assert after[: len(before)] == before
    assert sorted(_keys(after)) == sorted((c.key, "torch") for c in suite.cases)
    assert {r.worker["executor"] for r in after[len(before):]} == {"local"}
    assert read_run_info(first.run_dir)["executors"][0]["kind"] == "local"


@pytest.mark.parametrize(("argv", "message"), [
    (["--gpus", "all", "--workers", "2"], "pick one"),
    (["--workers", "0"], "needs at least 1"),
    (["--address", "localhost:6379"], "--address is for --executor ray"),
    (["--executor", "local"], "needs --gpus"),
    (["--executor", "ray", "--gpus", "all"], "--gpus is for the local executor"),
])
def test_bad_scale_flags_are_one_line(argv: list[str], message: str, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(QUICKSTART), "--out", str(tmp_path), *argv]) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not list(tmp_path.iterdir())  # refused before any run directory was made


@pytest.mark.gpu
def test_gpu_workers_are_pinned_and_records_name_their_gpu(tmp_path: Path) -> None:
    from bench.scale.local import gpu_slots

    slots = gpu_slots("all")
    summary = run_local(_plan(tmp_path, filter="index < 4"), slots)
    recs = load_records(summary.run_dir)
    assert len(recs) == 4 and all(r.status == "ok" for r in recs), recs
    by_index = {s.gpu_index: s.visible for s in slots}
    for r in recs:
        assert r.device == "cuda" and r.gpu["uuid"].startswith(("GPU-", "MIG-"))
        pinned = by_index[r.worker["gpu_index"]]
        if pinned.startswith("GPU-"):  # pinned by UUID: the record names that very GPU
            assert r.gpu["uuid"] == pinned
