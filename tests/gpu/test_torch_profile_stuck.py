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

import pytest
from helpers import ROOT

pytestmark = pytest.mark.gpu

_CHILD = r"""
import json, sys, time
import torch
from cuda.bindings import driver as drv
import bench.backends.torch as tb
from bench.gpu.cuda import GpuStuck

torch.cuda.init()
held = torch.cuda.Stream()
flag = torch.zeros(1, dtype=torch.int32, device="cuda")
torch.cuda.synchronize()
conv = torch.nn.Conv2d(16, 16, 3, padding=1).cuda()
x = torch.randn(1, 16, 32, 32, device="cuda")
geq = drv.CUstreamWaitValue_flags.CU_STREAM_WAIT_VALUE_GEQ
calls = []

def run():
    if not calls:  # the first profiled call gets stuck: its stream waits for the flag
        (err,) = drv.cuStreamWaitValue32(drv.CUstream(held.cuda_stream),
                                         drv.CUdeviceptr(flag.data_ptr()), 1, geq)
        assert int(err) == 0, err
    calls.append(1)
    with torch.cuda.stream(held):
        conv(x)

t0 = time.monotonic()
outcome = "returned"
try:
    tb.profile_kernels(run, lambda: tb._wait_stream(held), iters=2, cuda=True)
except GpuStuck as e:
    outcome = "stuck: " + str(e)
waited = time.monotonic() - t0
# free the held stream (a second stream writes the flag), then wait for everything
release = torch.cuda.Stream()
(err,) = drv.cuStreamWriteValue32(drv.CUstream(release.cuda_stream),
                                  drv.CUdeviceptr(flag.data_ptr()), 1, 0)
assert int(err) == 0, err
torch.cuda.synchronize()
print(json.dumps({"outcome": outcome, "waited_s": waited}), flush=True)
"""


def test_a_stuck_profile_raises_after_the_timeout_instead_of_hanging() -> None:
    env = dict(os.environ, CONVBENCH_GPU_TIMEOUT_S="2",
               PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH"))
                                          if p))
    try:
        p = subprocess.run([sys.executable, "-c", textwrap.dedent(_CHILD)], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=90)
    except subprocess.TimeoutExpired as e:  # the profiler's stop waited for the held stream
        pytest.fail(f"the profile hung after a stuck wait: {e.stderr!r}")
    lines = [line for line in p.stdout.splitlines() if line.startswith("{")]
    assert lines, (p.returncode, p.stdout, p.stderr)
    got = json.loads(lines[-1])
    want = "stuck: torch.cuda.Stream.synchronize failed: not finished"
    assert got["outcome"].startswith(want), got
    assert 2.0 <= got["waited_s"] < 10.0, got
    assert p.returncode == 0, p.stderr
