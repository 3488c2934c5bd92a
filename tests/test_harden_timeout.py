"""Bounded cases and a prompt Ctrl-C (issue 14, item 3): ``[timing] case_timeout_s`` records a
case that runs past it as ``timeout`` (step and elapsed time, what was measured kept) and the
sweep goes on; Ctrl-C in the middle of a long native call ends ``convbench run`` within about
a second with one line, keeping every finished record."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.deadline import CaseDeadline, CaseTimeout
from bench.errors import BenchError
from bench.plan import make_plan
from bench.runner import profile_budget, run_suite
from bench.store import load_records
from bench.suite import TimingConfig, parse_suite
from bench.timing import TimingSettings, measure

ROOT = Path(__file__).resolve().parents[1]


class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class _Source:
    mode = "host"
    iters_per_sample = 1

    def __init__(self, clock: _Clock, sample_s: float) -> None:
        self.clock, self.sample_s = clock, sample_s

    def __call__(self) -> float:
        self.clock.t += self.sample_s
        return 1.0


def test_measure_stops_at_the_case_limit_and_hands_over_its_samples() -> None:
    clock = _Clock()
    deadline = CaseDeadline(2.0, clock=clock)
    settings = TimingSettings(warmup_s=0.5, min_samples=10**6, min_time_s=100, max_time_s=100)
    with pytest.raises(CaseTimeout) as e:
        measure(_Source(clock, 0.25), settings, clock=clock, deadline=deadline)
    # warm-up 0.5 s (2 calls), then samples until 2.0 s: 6 samples, none begun past the limit
    assert e.value.step == "timing" and len(e.value.samples) == 6
    assert e.value.elapsed_s == 2.0 and e.value.limit_s == 2.0
    assert str(e.value) == "case_timeout_s = 2 s reached in step timing after 2.0 s"


def test_warm_up_past_the_limit_is_a_timeout_in_warm_up() -> None:
    clock = _Clock()
    deadline = CaseDeadline(1.0, clock=clock)
    with pytest.raises(CaseTimeout) as e:
        measure(_Source(clock, 0.4), TimingSettings(warmup_s=5.0), clock=clock,
                deadline=deadline)
    assert e.value.step == "warm-up" and e.value.samples == []


def test_profile_gets_the_time_left() -> None:
    clock = _Clock()
    deadline = CaseDeadline(10.0, clock=clock)
    clock.t = 6.0  # 4 s left; an iteration is estimated at 4 x 100 ms
    assert profile_budget(20, 100.0, deadline) == (10, "profile cut to 10 iterations "
                                                   "(case_timeout_s = 10 s: 6.0 s used, time "
                                                   "for 10 of 20 profile iterations)")
    assert profile_budget(5, 100.0, deadline) == (5, "")
    clock.t = 11.0
    iters, why = profile_budget(20, 100.0, deadline)
    assert iters == 0 and why.startswith("profile skipped")


def test_default_limit_is_a_few_times_the_timing_budget() -> None:
    assert TimingConfig().case_limit_s() == 120 + 3 * (0.2 + 10.0)
    assert TimingConfig(case_timeout_s=5).case_limit_s() == 5


SUITE = """
name = "bounded"
backends = ["torch"]
[defaults]
in_channels = 16
out_channels = 16
height = 16
width = 16
kernel = 3
padding = 1
[sweep]
out_channels = [8, 16, 24]
[timing]
warmup_s = 0.0
min_samples = 1000000
min_time_s = 60
max_time_s = 60
profile_iters = 0
case_timeout_s = 0.5
"""


def test_case_past_its_limit_is_recorded_as_timeout_and_the_sweep_goes_on(tmp_path: Path,
                                                                          ) -> None:
    """Cases that would sample for 60 s each stop at 0.5 s: each is a `timeout` record with
    its step, elapsed time and the samples taken; all three are stored and a --resume finds
    nothing left to do."""
    # the first case of a process loads the backend's libraries (on a cold GPU machine the
    # H200 took 1.7 s in build): one short case first, outside the limit
    run_suite(make_plan(parse_suite(SUITE), out=tmp_path / "warm", progress=False,
                        filter="out_channels == 8",
                        timing={"min_samples": 2, "min_time_s": 0.0, "max_time_s": 0.01,
                                "case_timeout_s": 600.0}))
    t = time.perf_counter()
    plan = make_plan(parse_suite(SUITE), out=tmp_path, progress=False)
    summary = run_suite(plan)
    assert time.perf_counter() - t < 30
    recs = load_records(summary.run_dir)
    assert [r.status for r in recs] == ["timeout"] * 3
    for r in recs:
        assert r.error.startswith("case_timeout_s = 0.5 s reached in step timing after "), r.error
        assert r.error.endswith(f"its {len(r.samples_ms)} sample(s) are kept")
        assert r.check is not None and r.check.passed and r.build is not None
        assert len(r.samples_ms) >= 2 and r.stats is not None
        assert 0.5 <= r.wall_s < 5
    again = run_suite(make_plan(parse_suite(SUITE), out=tmp_path, resume=summary.run_dir,
                                progress=False))
    assert again.skipped == 3 and not again.records


@pytest.mark.parametrize("value", ["inf", "nan", "0", "-1", "1e9"])
def test_case_timeout_flag_is_validated(value: str) -> None:
    with pytest.raises(BenchError, match=r"^--case-timeout-s: "):
        make_plan(parse_suite(SUITE), timing={"case_timeout_s": float(value)})


def test_case_timeout_in_the_suite_is_validated() -> None:
    text = SUITE.replace("case_timeout_s = 0.5", "case_timeout_s = inf")
    with pytest.raises(BenchError, match=r"timing.case_timeout_s"):
        parse_suite(text, source="s.toml")


def test_case_timeout_s_is_a_generated_flag() -> None:
    out = subprocess.run([sys.executable, "-m", "bench", "run", "--help"], capture_output=True,
                         text=True, check=True, cwd=ROOT).stdout
    assert "--case-timeout-s S" in out


# --- Ctrl-C ----------------------------------------------------------------------------------
SLOW = """
name = "slow"
backends = ["torch"]
[defaults]
batch = 4
in_channels = 128
out_channels = 128
height = 112
width = 112
kernel = 3
padding = 1
precision = "fp16"
[sweep]
out_channels = [128, 129, 130]
[timing]
warmup_s = 0.1
min_time_s = 20
max_time_s = 30
"""  # each case samples for >= 20 s: the signal lands mid-case on a fast CPU too


def test_ctrl_c_mid_case_exits_within_two_seconds_with_one_line(tmp_path: Path,
                                                                cli_env: dict[str, str]) -> None:
    """A real `convbench run` of fp16 CPU cases (oneDNN takes seconds per convolution; before
    the fix Ctrl-C waited for the running one: 11 s measured) gets SIGINT mid-case."""
    suite = tmp_path / "slow.toml"
    suite.write_text(SLOW)
    out = tmp_path / "results"
    p = subprocess.Popen([sys.executable, "-m", "bench", "run", str(suite), "--out", str(out),
                          "--no-progress"], env=cli_env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob("slow/*/.lock")):
            assert p.poll() is None, p.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(2.0)  # inside the first case: its check or warm-up convolutions
        t = time.monotonic()
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=60)
        latency = time.monotonic() - t
    finally:
        if p.poll() is None:
            p.kill()
    print(f"Ctrl-C latency {latency:.2f} s")
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert p.returncode == 130, err
    assert len(lines) == 1 and lines[0].startswith("interrupted: ") and "--resume" in lines[0]
    assert latency < 2.5, latency
    run_dir = next(out.glob("slow/*"))
    assert load_records(run_dir) == []  # nothing torn; the case in flight is not recorded
