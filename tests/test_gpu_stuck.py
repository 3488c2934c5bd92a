"""GPU work that never finishes: a wait ends with ``GpuStuck`` instead of hanging, the case is
stored as an error, and the sweep stops with one line saying how to go on (seen on the H200:
one cuDNN plan's CUDA-graph replay never finished, and `convbench run` waited for ever).

The waits are tested with a fake query; the sweep with a build step that raises ``GpuStuck``
(no GPU here). The real hang was reproduced only on the H200 (tests/gpu and the closing note).
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers import QUICKSTART, checkout_env

from bench.gpu.cuda import GpuStuck, wait_until


def test_a_wait_that_never_ends_raises_after_its_timeout() -> None:
    t0 = time.monotonic()
    with pytest.raises(GpuStuck, match=r"cuEventSynchronize failed: not finished \(GPU work "
                                       r"still running after 0.2 s\)"):
        wait_until(lambda: False, "cuEventSynchronize", timeout_s=0.2)
    assert 0.2 <= time.monotonic() - t0 < 1.0


def test_a_wait_returns_as_soon_as_the_work_is_done() -> None:
    calls = iter([False, False, True])
    t0 = time.monotonic()
    wait_until(lambda: next(calls), "cuStreamSynchronize", timeout_s=5)
    assert time.monotonic() - t0 < 0.5


_SWEEP = """
import sys
import bench.runner as runner
from bench.gpu.cuda import GpuStuck
real = runner.build_step
def build_step(case, backend, ctx):
    if case.label == "3x3-relu":
        raise GpuStuck("cuEventSynchronize", "not finished", "GPU work still running after 60 s")
    return real(case, backend, ctx)
runner.build_step = build_step
from bench.cli import main
sys.exit(main(sys.argv[1:]))
"""


_ENV = checkout_env()


def test_a_stuck_case_is_stored_and_the_sweep_stops_with_one_line(tmp_path: Path) -> None:
    args = ["run", str(QUICKSTART), "--out", str(tmp_path), "--no-progress",
            "--filter", 'label == "3x3" or label == "3x3-relu" or label == "5x5"',
            "--warmup-s", "0", "--min-time-s", "0.01", "--max-time-s", "0.05",
            "--profile-iters", "1"]
    p = subprocess.run([sys.executable, "-c", textwrap.dedent(_SWEEP), *args], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300,
                       env=_ENV)
    assert p.returncode == 1, p.stderr
    errors = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "Traceback" not in p.stderr, p.stderr
    (run_dir,) = (tmp_path / "quickstart").iterdir()
    assert errors[0].startswith("convbench: error: torch 3x3-relu: GPU work did not finish: "
                                "cuEventSynchronize failed: not finished")
    recs = [json.loads(line) for line in (run_dir / "records.jsonl").read_text().splitlines()]
    # the case before is kept, the stuck one is stored as an error, the one after never ran
    assert [(r["label"], r["status"]) for r in recs] == [("3x3", "ok"), ("3x3-relu", "error")]
    assert "the sweep stops here" in recs[1]["error"]
    # the line names a command that goes on: the same options, --resume RUN
    hint = re.search(r"`(convbench run .*)` goes on with the next case$", errors[0])
    assert hint, errors[0]
    cmd = shlex.split(hint.group(1))
    assert cmd[-2:] == ["--resume", str(run_dir)] and str(QUICKSTART) in cmd
    p = subprocess.run([sys.executable, "-m", "bench", *cmd[1:]], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300,
                       env=_ENV)
    assert p.returncode == 0, p.stderr
    recs = [json.loads(line) for line in (run_dir / "records.jsonl").read_text().splitlines()]
    assert [(r["label"], r["status"]) for r in recs] == [("3x3", "ok"), ("3x3-relu", "error"),
                                                         ("5x5", "ok")]


class _FakeProfiler:
    """Records whether the profile was stopped (on CUDA, torch's stop synchronizes the device)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __enter__(self) -> _FakeProfiler:
        self.calls.append("start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.calls.append("stop")


def test_a_profile_whose_wait_is_stuck_is_not_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stopping torch's CUDA profiler runs torch.cuda.synchronize(), which a stuck kernel
    blocks for ever: after a stuck wait the profile is left as it is and GpuStuck goes on to
    the runner (its case is stored as stuck). Any other error still stops the profile."""
    pytest.importorskip("torch")
    import bench.backends.torch as tb

    fake = _FakeProfiler()
    monkeypatch.setattr(tb, "_kineto_profile", lambda cuda: fake)

    def stuck() -> None:
        raise GpuStuck("torch.cuda.Stream.synchronize", "not finished", "still running")

    with pytest.raises(GpuStuck):
        tb.profile_kernels(lambda: None, stuck, iters=2, cuda=True)
    assert fake.calls == ["start"]
    fake.calls.clear()

    def broken() -> None:
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    with pytest.raises(RuntimeError):
        tb.profile_kernels(lambda: None, broken, iters=2, cuda=True)
    assert fake.calls == ["start", "stop"]
