"""End-to-end sweeps on the CPU with the torch backend: records, failures, kill and resume."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.plan import make_plan
from bench.runner import run_suite
from bench.store import load_records
from bench.suite import parse_suite

pytest.importorskip("torch")

FAST = """
[timing]
warmup_s = 0.01
min_samples = 3
min_time_s = 0.01
max_time_s = 3.0
target_rse = 0.5
profile_iters = 2
"""

SUITE = """
name = "tiny"
backends = ["torch"]
[defaults]
in_channels = 8
out_channels = 8
height = 12
width = 12
padding = "same"
[sweep]
kernel = [1, 3]
precision = ["fp32", "bf16"]
""" + FAST


def test_cpu_sweep_stores_checked_timed_records(tmp_path: Path) -> None:
    suite = parse_suite(SUITE)
    summary = run_suite(make_plan(suite, out=tmp_path, progress=False))
    recs = load_records(summary.run_dir)
    assert len(recs) == 4
    for r in recs:
        assert r.status == "ok", r.error
        assert r.device == "cpu" and r.timing.mode == "host"
        assert len(r.samples_ms) >= 3 and all(v > 0 for v in r.samples_ms)
        assert r.stats.median > 0 and r.median_ms == r.stats.median
        assert r.check.passed and r.check.rel_err < r.check.tol
        assert r.profile_error is None, r.profile_error
    # what the sweep returned is what is on disk
    assert [r.to_json() for r in recs] == [r.to_json() for r in summary.records]
    run = json.loads((summary.run_dir / "run.json").read_text())
    assert run["suite_text"] == SUITE and "torch" in run["backends"]
    layers = (summary.run_dir / "layers.jsonl").read_text().splitlines()
    assert len(layers) == 4 and "aten::" in layers[0]


def test_failed_case_is_a_record_and_the_sweep_goes_on(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.backends import torch as tb

    real = tb.TorchEngine._enqueue_impl

    def flaky(self, stream):  # type: ignore[no-untyped-def]
        if self.spec.kernel == (1, 1):
            raise RuntimeError("simulated kernel failure")
        return real(self, stream)

    monkeypatch.setattr(tb.TorchEngine, "_enqueue_impl", flaky)
    summary = run_suite(make_plan(parse_suite(SUITE), out=tmp_path, progress=False))
    statuses = {(r.spec.kernel[0], r.status) for r in load_records(summary.run_dir)}
    assert statuses == {(1, "error"), (3, "ok")}
    err = next(r for r in summary.records if r.status == "error")
    assert "simulated kernel failure" in err.error


def test_filter_and_shard_select_cases(tmp_path: Path) -> None:
    suite = parse_suite(SUITE)
    plan = make_plan(suite, out=tmp_path, filter="precision == 'bf16'")
    assert [c.spec.precision for c in plan.cases] == ["bf16", "bf16"]
    plan = make_plan(suite, out=tmp_path, shard=(1, 3))
    assert [c.index for c in plan.cases] == [1]
    assert not any(tmp_path.iterdir())  # a plan runs nothing and writes nothing


def _count_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _sweep_cmd(tmp_path: Path, name: str, sweep: str) -> tuple[list[str], Path]:
    """A `convbench run` command line for a copy of SUITE with another sweep, and its out dir."""
    suite_path = tmp_path / f"{name}.toml"
    suite_path.write_text(SUITE.replace('name = "tiny"', f'name = "{name}"').replace(
        "kernel = [1, 3]", sweep))
    out = tmp_path / "results"
    return [sys.executable, "-m", "bench", "run", str(suite_path), "--out", str(out),
            "--no-progress"], out


def _wait_for_records(out: Path, name: str, count: int) -> Path | None:
    """The records file once it holds ``count`` lines (None after two minutes)."""
    deadline = time.time() + 120
    while time.time() < deadline:
        found = list(out.glob(f"{name}/*/records.jsonl"))
        if found and _count_lines(found[0]) >= count:
            return found[0]
        time.sleep(0.05)
    return None


def test_killed_sweep_resumes_without_loss_or_duplicates(tmp_path: Path,
                                                         cli_env: dict[str, str]) -> None:
    cmd, out = _sweep_cmd(tmp_path, "kill", "kernel = [1, 3, 5]\nbatch = [1, 2]")
    log = open(tmp_path / "first.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(cmd, env=cli_env, stdout=subprocess.DEVNULL, stderr=log)
    records = _wait_for_records(out, "kill", 3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    log.close()
    assert records is not None, (tmp_path / "first.log").read_text()
    before = load_records(records.parent)
    assert 3 <= len(before) < 12
    res = subprocess.run(cmd + ["--resume", str(records.parent)], env=cli_env,
                         capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    after = load_records(records.parent)
    keys = [(r.case_key, r.backend) for r in after]
    assert len(keys) == 12 and len(set(keys)) == 12
    assert after[: len(before)] == before  # nothing finished was lost or rewritten


def test_ctrl_c_stops_cleanly_and_keeps_finished_records(tmp_path: Path,
                                                         cli_env: dict[str, str]) -> None:
    cmd, out = _sweep_cmd(tmp_path, "intr", "kernel = [1, 3, 5]\nbatch = [1, 2, 4]")
    proc = subprocess.Popen(cmd, env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    _wait_for_records(out, "intr", 2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted:" in stderr and "--resume" in stderr
    assert "Traceback" not in stderr
    run_dir = next(out.glob("intr/*"))
    kept = load_records(run_dir)  # parses: nothing torn
    assert 2 <= len(kept) < 18
    res = subprocess.run(cmd + ["--resume", str(run_dir)], env=cli_env, capture_output=True,
                         text=True, check=False)
    assert res.returncode == 0, res.stderr
    keys = [(r.case_key, r.backend) for r in load_records(run_dir)]
    assert len(keys) == 18 and len(set(keys)) == 18


def test_two_concurrent_resumes_one_refused_naming_the_holder_no_duplicates(
        tmp_path: Path, cli_env: dict[str, str]) -> None:
    """Two `convbench run --resume RUN` at once: the second one exits 1 with one line naming
    the process that holds the run, before it measures or writes anything."""
    from bench.runner import backend_facts, describe_run
    from bench.store import RunStore
    from bench.suite import load_suite

    cmd, out = _sweep_cmd(tmp_path, "lock", "kernel = [1, 3]")
    suite_path = Path(cmd[4])
    # cases far longer than the test: the first resume holds the run until it is interrupted
    suite_path.write_text(suite_path.read_text().replace("min_time_s = 0.01", "min_time_s = 60")
                          .replace("max_time_s = 3.0", "max_time_s = 120"))
    # a run interrupted before its first record, as `convbench run` creates it
    plan = make_plan(load_suite(suite_path), out=out, progress=False)
    backends, unavailable = plan.resolve_backends()
    run_dir = RunStore.create(out, plan.suite.name, describe_run(
        plan, backend_facts(backends), unavailable, None)).dir
    resume = cmd + ["--resume", str(run_dir)]
    holder = subprocess.Popen(resume, env=cli_env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        lock = run_dir / ".lock"
        deadline = time.time() + 120
        while f'"pid": {holder.pid},' not in (lock.read_text() if lock.exists() else ""):
            assert holder.poll() is None, holder.communicate()
            assert time.time() < deadline, "the first resume never took the run's lock"
            time.sleep(0.05)
        # paused, the holder keeps its lock and leaves the CPU to the second process
        holder.send_signal(signal.SIGSTOP)
        second = subprocess.run(resume, env=cli_env, capture_output=True, text=True,
                                timeout=120)
    finally:
        holder.send_signal(signal.SIGCONT)
        holder.send_signal(signal.SIGINT)
        _, h_err = holder.communicate(timeout=120)
    assert second.returncode == 1, second.stderr
    lines = [ln for ln in second.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in second.stderr and len(lines) == 1, second.stderr
    assert lines[0].startswith(f"convbench: error: {run_dir}: in use by pid {holder.pid} on "
                               ), lines[0]
    assert "results" not in second.stdout  # refused before any case ran
    assert holder.returncode == 130, h_err  # the holder was still measuring: it held the run
    keys = [(r.case_key, r.backend) for r in load_records(run_dir)]  # parses, no duplicates
    assert len(keys) == len(set(keys)) <= 4
