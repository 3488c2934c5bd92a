"""``convbench profile SUITE --case KEY``: run one case for Nsight Systems / Nsight Compute.

The timed region is wrapped in cudaProfilerStart/Stop and every phase in NVTX ranges (domain
``convbench``), so a profiler can capture exactly the measurement. The command prints the
``nsys`` and ``ncu`` command lines that do that.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from bench.errors import BenchError


def find_case(suite: Any, which: str) -> Any:
    """A case by key, label, short name or index."""
    for c in suite.cases:
        if which in (c.key, c.label, c.name, c.spec.short_name()) or which == str(c.index):
            return c
    raise BenchError(f"{suite.path}: no case {which!r} (use a key, label or index from "
                     f"`convbench show {suite.path}`)")


def profiler_commands(argv: list[str], case_key: str) -> dict[str, str]:
    """nsys and ncu command lines that profile exactly the timed region of ``argv``."""
    cmd = shlex.join(argv)
    return {
        "nsys": (f"nsys profile --trace=cuda,nvtx,cudnn,cublas --capture-range=cudaProfilerApi "
                 f"--capture-range-end=stop -o convbench-{case_key} {cmd}"),
        "nsys (NVTX range)": (f"nsys profile --trace=cuda,nvtx --capture-range=nvtx "
                              f"--nvtx-capture='measure@convbench' -o convbench-{case_key}-nvtx "
                              f"{cmd}"),
        # the NVTX filter, not --profile-from-start off: that one hung under ncu 2025.3 on the
        # H100, while NVTX filtering is what the fidelity benchmark and the GPU tests use
        "ncu": (f"ncu --nvtx --nvtx-include 'convbench@measure/' --launch-count 20 "
                f"--clock-control none "
                f"--cache-control none --metrics gpu__time_duration.sum "
                f"-o convbench-{case_key} {cmd}"),
    }


def cmd_profile(args: argparse.Namespace) -> int:
    from bench.cli import _console, _print_summary, timing_overrides
    from bench.plan import make_plan
    from bench.runner import measure_case, nvtx_range
    from bench.suite import load_suite

    suite = load_suite(args.suite)
    case = find_case(suite, args.case)
    plan = make_plan(suite, backends=[args.backend or suite.backends[0]],
                     timing={"profile_iters": 0, **timing_overrides(args)},
                     cache_dir=args.cache_dir, device_index=args.device)
    timing = plan.timing
    [backend], _ = plan.resolve_backends()
    out = _console()
    # this interpreter, explicitly: a profiler may start another python3 from its own PATH
    argv = [sys.executable, "-m", "bench", *sys.argv[1:]]
    # a profiler replays each kernel synchronously: a stream held until the host has queued
    # the whole sample would never run under it, so time this run's graph replays unblocked
    from bench.gpu.timers import UNBLOCK_ENV

    os.environ[UNBLOCK_ENV] = "1"
    gpu = plan.gpu_session() if backend.device == "cuda" else None
    try:
        with nvtx_range(f"case {case.index} {backend.name} {case.name}", payload=case.index):
            rec, _ = measure_case(case, backend, timing, gpu, plan.cache_dir,
                                  profiler_range=gpu is not None)
    finally:
        if gpu is not None:
            gpu.close()
    _print_summary(out, [rec])
    if gpu is None:
        out.print("this case ran on the CPU: the Nsight commands below need a CUDA backend")
    for tool, line in profiler_commands(argv, case.key).items():
        out.print(f"[bold]{tool}:[/] {line}", soft_wrap=True, highlight=False)
    return 0 if rec.status in ("ok", "check_failed") else 1


def register(sub: Any) -> None:
    from bench.cli import add_timing_args

    p = sub.add_parser("profile", help="run one case with profiler ranges; print nsys/ncu lines")
    p.add_argument("suite", type=Path)
    p.add_argument("--case", required=True, help="case key, label, name or index")
    p.add_argument("--backend", help="backend (default: the suite's first)")
    p.add_argument("--device", type=int, default=0)
    p.add_argument("--cache-dir", type=Path)
    add_timing_args(p)
    p.set_defaults(func=cmd_profile)
