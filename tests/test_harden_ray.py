"""Without --address, convbench starts its own Ray instance on 127.0.0.1 (issue 14, item 10):
nothing it starts listens on another interface."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="ray is not installed (pip install 'trt-convbench[ray]')")

ROOT = Path(__file__).resolve().parents[1]

PROBE = r"""
import os, subprocess
from bench.scale.ray_executor import import_ray, init_local

ray = import_ray(local=True)
init_local(ray)
def children(pid):
    out = set()
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                out |= {int(d)} | children(int(d))
    return out
pids = children(os.getpid()) | {os.getpid()}
lines = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout.splitlines()
mine = [l for l in lines if any(f"pid={p}," in l for p in pids)]
print("NODE", ray.util.get_node_ip_address())
for l in mine:
    print("LISTEN", l.split()[3])
ray.shutdown()
"""


@pytest.mark.slow
def test_local_ray_listens_on_loopback_only(cli_env: dict[str, str]) -> None:
    if not shutil.which("ss"):
        pytest.skip("needs ss (iproute2) to list listening sockets")
    env = {**cli_env, "RAY_ADDRESS": ""}
    env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
    res = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
                         timeout=240, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-2000:]
    lines = res.stdout.splitlines()
    assert "NODE 127.0.0.1" in lines
    listening = [line.split()[1] for line in lines if line.startswith("LISTEN")]
    assert len(listening) >= 3, res.stdout  # GCS, raylet, the driver's core worker at least
    outside = [a for a in listening if not a.rsplit(":", 1)[0].strip("[]").endswith("127.0.0.1")]
    assert outside == [], listening
