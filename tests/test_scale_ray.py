"""The Ray executor on a local Ray cluster with 2 declared GPUs and the CPU torch backend.

Ray gives each actor one of the declared GPUs (CUDA_VISIBLE_DEVICES "0" / "1"); the machine has
none, so torch runs on the CPU: the test checks the executor, not GPU numbers.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.plan import RunPlan, make_plan
from bench.record import Record
from bench.store import load_records, read_run_info
from bench.suite import load_suite

pytest.importorskip("torch")
ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'trt-convbench[ray]')")

from bench.scale.ray_executor import run_ray  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "suites" / "quickstart.toml"
FAST = {"warmup_s": 0.0, "min_samples": 3, "min_time_s": 0.02, "max_time_s": 0.1,
        "target_rse": 0.5, "profile_iters": 0}


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    try:
        yield
    finally:
        ray.shutdown()


def _plan(out: Path) -> RunPlan:
    return make_plan(load_suite(QUICKSTART), out=out, progress=False, timing=FAST,
                     argv=["test"])


def _keys(records: list[Record]) -> list[tuple[str, str]]:
    return [(r.case_key, r.backend) for r in records]


def test_two_actors_run_the_quickstart_suite(cluster: None, tmp_path: Path) -> None:
    suite = load_suite(QUICKSTART)
    summary = run_ray(_plan(tmp_path))
    recs = load_records(summary.run_dir)
    assert sorted(_keys(recs)) == sorted((c.key, "torch") for c in suite.cases)
    assert all(r.status == "ok" for r in recs), [r.error for r in recs]
    session = read_run_info(summary.run_dir)["executors"][0]
    # each actor pinned to its own declared GPU; the driver measured nothing. (On a loaded
    # machine one actor can finish the suite before the other has started, so "at most 2".)
    assert session["kind"] == "ray"
    gpus = [w["gpu_index"] for w in session["workers"]]
    assert set(gpus) <= {"0", "1"} and len(set(gpus)) == len(gpus) >= 1
    pids = {w["pid"] for w in session["workers"]}
    assert os.getpid() not in pids
    assert {r.worker["pid"] for r in recs} <= pids
    assert {r.worker["executor"] for r in recs} == {"ray"}


def test_a_killed_actor_loses_nothing_and_its_case_is_retried(cluster: None,
                                                              tmp_path: Path) -> None:
    suite = load_suite(QUICKSTART)
    killed: list[int] = []

    def kill_first_actor(rec: Record) -> None:
        if not killed:  # its next case is already out: the actor dies mid-case
            killed.append(rec.worker["pid"])
            os.kill(rec.worker["pid"], signal.SIGKILL)

    summary = run_ray(_plan(tmp_path), on_record=kill_first_actor)
    recs = load_records(summary.run_dir)
    keys = _keys(recs)
    assert len(keys) == len(set(keys)) == len(suite.cases)
    assert all(r.status == "ok" for r in recs)
    crashes = read_run_info(summary.run_dir)["executors"][0]["crashes"]
    assert crashes and f"pid {killed[0]}" in crashes[0]["how"]
    retried = [r for r in recs if r.worker["attempt"] == 2]
    assert _keys(retried) == [(crashes[0]["case_key"], crashes[0]["backend"])]
    # retried on the other actor, which holds the other GPU
    first = next(w for w in read_run_info(summary.run_dir)["executors"][0]["workers"]
                 if w["pid"] == killed[0])
    assert retried[0].worker["pid"] != killed[0]
    assert retried[0].worker["gpu_index"] != first["gpu_index"]

