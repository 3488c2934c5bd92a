"""Memory growth over a long sweep: device free memory and host RSS after N cases.

    python benchmarks/memory_growth.py --cases 500 [--backend torch] [--out FILE.md]

Runs N distinct small convolutions through convbench's own runner (build, check, time, profile)
and compares device free memory (cuMemGetInfo) and host RSS after a warm-up of 20 cases with
the values at the end. Target (issue 3): no device-memory growth, host RSS growth < 50 MB.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.backends.registry import get_backend  # noqa: E402
from bench.runner import GpuSession, measure_case  # noqa: E402
from bench.spec import ConvSpec  # noqa: E402
from bench.suite import Case, TimingConfig  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cases(n: int) -> list[Case]:
    grid = itertools.product([8, 16, 24, 32, 40, 48, 56, 64], [1, 3, 5], [14, 28],
                             ["fp32", "fp16"], [1, 2, 4], [1, 2])
    out = []
    for i, (c, k, hw, prec, batch, stride) in enumerate(grid):
        if i == n:
            break
        out.append(Case(index=i, spec=ConvSpec(batch=batch, in_channels=c, out_channels=c,
                                               height=hw, width=hw, kernel=k, stride=stride,
                                               padding=k // 2, precision=prec)))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--cases", type=int, default=500)
    ap.add_argument("--backend", default="torch")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--same-case", action="store_true",
                    help="run the first case N times: separates a leak per case from caches "
                         "that grow with each new shape (cuDNN plans, torch's kernel caches)")
    ap.add_argument("--profile-iters", type=int, default=2, help="per-layer profile runs")
    args = ap.parse_args()
    backend = get_backend(args.backend)
    gpu = GpuSession(0, cold=False) if backend.device == "cuda" else None
    timing = TimingConfig(warmup_s=0.005, min_samples=5, min_time_s=0.01, max_time_s=0.05,
                          profile_iters=args.profile_iters)
    todo = cases(args.cases)
    if args.same_case:
        todo = [Case(index=i, spec=todo[0].spec) for i in range(args.cases)]
    if len(todo) < args.cases:
        raise SystemExit(f"only {len(todo)} distinct cases available")
    statuses: dict[str, int] = {}
    marks = {}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as cache:
        for i, case in enumerate(todo):
            rec, _ = measure_case(case, backend, timing, gpu, Path(cache))
            statuses[rec.status] = statuses.get(rec.status, 0) + 1
            if i + 1 in (20, len(todo)):
                gc.collect()
                free = gpu.device.mem_info()[0] if gpu else None
                marks[i + 1] = (free, rss_mb())
    wall = time.perf_counter() - t0
    (f0, r0), (f1, r1) = marks[20], marks[len(todo)]
    what = "runs of one case" if args.same_case else "distinct cases"
    lines = [f"# Memory growth over {len(todo)} {what} ({backend.name} on {backend.device}, "
             f"profile_iters={args.profile_iters})", "",
             f"- statuses: {statuses}", f"- wall: {wall:.1f} s ({wall / len(todo):.3f} s/case)",
             f"- host RSS after 20 cases: {r0:.1f} MB, after {len(todo)}: {r1:.1f} MB "
             f"(growth {r1 - r0:+.1f} MB; target < 50 MB)"]
    if gpu:
        lines.append(f"- device free memory after 20 cases: {f0 / 2**20:.1f} MiB, after "
                     f"{len(todo)}: {f1 / 2**20:.1f} MiB (growth of use {(f0 - f1) / 2**20:+.1f} "
                     f"MiB; target 0, torch's caching allocator may hold freed blocks)")
        lines.append(f"- GPU: {gpu.info.name} {gpu.info.uuid}")
        gpu.close()
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
