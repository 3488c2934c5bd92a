"""A stuck wait inside the torch backend's per-kernel profile, on a real GPU.

The stream of the profiled calls is held at a device flag (``cuStreamWaitValue32``) that nobody
sets, so the profile's closing wait never finishes. The wait must end with ``GpuStuck`` after
the GPU wait timeout, and the profiler must not be stopped: its stop synchronizes the whole
device (torch/autograd/profiler.py), which the held stream would block for ever. The child
process releases the flag afterwards so that the GPU is free again when it exits.

A fake profiler covers the same rule on the CPU (tests/test_gpu_stuck.py). The second test
runs the same stuck profile through ``convbench run``: one line, the case stored, exit code 1.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers import QUICKSTART, ROOT

pytestmark = pytest.mark.gpu

_CHILD = r"""
import faulthandler, json, os, sys, threading, time
import torch
from cuda.bindings import driver as drv
import bench.backends.torch as tb
from bench.gpu.cuda import GpuStuck

def say(what):
    print(f"child: {what} at {time.monotonic() - t0:.1f} s", file=sys.stderr, flush=True)

t0 = time.monotonic()
torch.cuda.init()
held = torch.cuda.Stream()
release = torch.cuda.Stream()
flag = torch.zeros(1, dtype=torch.int32, device="cuda")
conv = torch.nn.Conv2d(16, 16, 3, padding=1).cuda()
x = torch.randn(1, 16, 32, 32, device="cuda")
conv(x)
torch.cuda.synchronize()
geq = drv.CUstreamWaitValue_flags.CU_STREAM_WAIT_VALUE_GEQ
calls = []
held_at = []  # when the stream was held (the profiler's own start-up, ~5 s on the H200, before)

def free_the_stream(why):
    with torch.cuda.stream(release):
        flag.fill_(1)
    say(f"flag set ({why})")

def watchdog():  # if anything hangs, say where, then free the GPU so that it may go on
    time.sleep(25)
    free_the_stream("watchdog")

faulthandler.dump_traceback_later(20)
threading.Thread(target=watchdog, daemon=True).start()

def run():
    if not calls:  # the first profiled call gets stuck: its stream waits for the flag
        (err,) = drv.cuStreamWaitValue32(drv.CUstream(held.cuda_stream),
                                         drv.CUdeviceptr(flag.data_ptr()), 1, geq)
        assert int(err) == 0, err
        held_at.append(time.monotonic())
        say("stream held")
    calls.append(1)
    with torch.cuda.stream(held):
        conv(x)
    say(f"call {len(calls)} queued")

t1 = time.monotonic()
outcome = "returned"
try:
    tb.profile_kernels(run, lambda: tb._wait_stream(held), iters=2, cuda=True)
except GpuStuck as e:
    outcome = "stuck: " + str(e)
waited = time.monotonic() - (held_at[0] if held_at else t1)
say(outcome)
free_the_stream("test")
torch.cuda.synchronize()
say("synchronized")
faulthandler.cancel_dump_traceback_later()
print(json.dumps({"outcome": outcome, "waited_s": waited}), flush=True)
# the profiler was left running: a normal exit then crashes in its teardown (SIGSEGV on the
# H200). convbench's CLI leaves with os._exit after a stuck case, and so does this child
os._exit(0)
"""


def test_a_stuck_profile_raises_after_the_timeout_instead_of_hanging(
        tmp_path: Path, cli_env: dict[str, str]) -> None:
    env = {**cli_env, "CONVBENCH_GPU_TIMEOUT_S": "2"}
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with out.open("w") as fo, err.open("w") as fe:
        p = subprocess.Popen([sys.executable, "-c", textwrap.dedent(_CHILD)], cwd=ROOT, env=env,
                             stdout=fo, stderr=fe, text=True)
        try:
            rc = p.wait(timeout=90)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            rc = None
    stdout, stderr = out.read_text(), err.read_text()
    # a watchdog in the child frees the stream after 25 s: a run that got this far only through
    # it hung in the profile (its Python stack was dumped at 20 s)
    assert rc is not None and "(watchdog)" not in stderr, f"the profile hung: {stderr}"
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    assert lines, (rc, stdout, stderr)
    got = json.loads(lines[-1])
    want = "stuck: torch.cuda.Stream.synchronize failed: not finished"
    assert got["outcome"].startswith(want), got
    assert 2.0 <= got["waited_s"] < 10.0, got
    assert rc == 0, stderr


_SWEEP = r"""
import sys
import torch
from cuda.bindings import driver as drv
import bench.backends.torch as tb

real = tb.TorchEngine._layer_profile_impl
flags = []

def layer_profile(self, stream, iters):
    if self.spec.activation == "relu":  # 3x3-relu: its stream waits for a flag nobody sets
        flag = torch.zeros(1, dtype=torch.int32, device="cuda")
        torch.cuda.synchronize()
        flags.append(flag)
        (err,) = drv.cuStreamWaitValue32(
            drv.CUstream(self._stream(stream).cuda_stream), drv.CUdeviceptr(flag.data_ptr()), 1,
            drv.CUstreamWaitValue_flags.CU_STREAM_WAIT_VALUE_GEQ)
        assert int(err) == 0, err
    return real(self, stream, iters)

tb.TorchEngine._layer_profile_impl = layer_profile
from bench.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_sweep_whose_profile_is_stuck_stops_with_one_line(tmp_path: Path,
                                                           cli_env: dict[str, str]) -> None:
    env = {**cli_env, "CONVBENCH_GPU_TIMEOUT_S": "2"}
    args = ["run", str(QUICKSTART), "--backend", "torch", "--out", str(tmp_path),
            "--no-progress", "--filter", 'label == "3x3" or label == "3x3-relu" or label == "5x5"',
            "--warmup-s", "0", "--min-time-s", "0.01", "--max-time-s", "0.05",
            "--profile-iters", "2"]
    t0 = time.monotonic()
    try:
        p = subprocess.run([sys.executable, "-c", textwrap.dedent(_SWEEP), *args], cwd=tmp_path,
                           env=env, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("convbench run hung after the stuck profile")
    took = time.monotonic() - t0
    assert p.returncode == 1, (p.returncode, p.stderr)
    errors = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "Traceback" not in p.stderr, p.stderr
    assert errors[0].startswith("convbench: error: torch 3x3-relu: GPU work did not finish: "
                                "torch.cuda.Stream.synchronize failed: not finished"), errors
    (run_dir,) = (tmp_path / "quickstart").iterdir()
    recs = [json.loads(line) for line in (run_dir / "records.jsonl").read_text().splitlines()]
    assert [(r["label"], r["status"]) for r in recs] == [("3x3", "ok"), ("3x3-relu", "error")]
    assert took < 90, took
