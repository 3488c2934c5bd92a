"""A stuck wait inside the torch backend's per-kernel profile, on a real GPU.

The stream of the profiled calls is held at a device flag (``cuStreamWaitValue32``) that nobody
sets, so the profile's closing wait never finishes. The wait must end with ``GpuStuck`` after
the GPU wait timeout, and the profiler must not be stopped: its stop synchronizes the whole
device (torch/autograd/profiler.py), which the held stream would block for ever. The child
process releases the flag afterwards so that the GPU is free again when it exits.

A fake profiler covers the same rule on the CPU (tests/test_gpu_stuck.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import ROOT

pytestmark = pytest.mark.gpu

_CHILD = r"""
import faulthandler, json, sys, threading, time
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
waited = time.monotonic() - t1
say(outcome)
free_the_stream("test")
torch.cuda.synchronize()
say("synchronized")
faulthandler.cancel_dump_traceback_later()
print(json.dumps({"outcome": outcome, "waited_s": waited}), flush=True)
"""


def test_a_stuck_profile_raises_after_the_timeout_instead_of_hanging(tmp_path: Path) -> None:
    env = dict(os.environ, CONVBENCH_GPU_TIMEOUT_S="2",
               PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH"))
                                          if p))
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
