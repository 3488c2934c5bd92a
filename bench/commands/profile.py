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

from bench.commands import common_args
from bench.commands._output import console, print_summary
from bench.errors import BenchError, CaseStuck
from bench.text import safe


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


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("suite", type=Path)
    p.add_argument("--case", required=True, help="case key, label, name or index")
    p.add_argument("--backend", help="backend (default: the suite's first)")
    common_args.add_device_option(p.add_argument)
    common_args.add_cache_dir_option(p.add_argument)
    common_args.add_timing_group(p)


def main(args: argparse.Namespace) -> int:
    return run(suite=args.suite, case=args.case, backend=args.backend, device=args.device,
               cache_dir=args.cache_dir,
               timing={n: getattr(args, n) for n in common_args.timing_fields()})


def run(*, suite: str | Path, case: str, backend: str | None = None, device: int = 0,
        cache_dir: str | Path | None = None, timing: dict[str, Any] | None = None,
        argv: list[str] | None = None) -> int:
    """Measure one case with profiler ranges and print the nsys/ncu lines that capture it.
    ``argv``: the command those lines rerun (default: this process's)."""
    from bench.plan import make_plan
    from bench.runner import measure_case, nvtx_range
    from bench.suite import load_suite

    the_suite = load_suite(suite)
    the_case = find_case(the_suite, case)
    # no layer profile or selection probes unless asked for: the profiler should see the
    # measurement only
    given = {k: v for k, v in (timing or {}).items() if v is not None}
    plan = make_plan(the_suite, backends=[backend or the_suite.backends[0]],
                     timing={"profile_iters": 0, "probes": 0, **given},
                     cache_dir=Path(cache_dir) if cache_dir else None, device_index=device)
    cfg = plan.timing
    [b], _ = plan.resolve_backends()
    out = console()
    # this interpreter, explicitly: a profiler may start another python3 from its own PATH
    rerun = [sys.executable, "-m", "bench", *(sys.argv[1:] if argv is None else argv)]
    # a profiler replays each kernel synchronously: a stream held until the host has queued
    # the whole sample would never run under it, so time this run's graph replays unblocked
    from bench.gpu.timers import UNBLOCK_ENV

    os.environ[UNBLOCK_ENV] = "1"
    gpu = plan.gpu_session() if b.device == "cuda" else None
    try:
        with nvtx_range(f"case {the_case.index} {b.name} {the_case.name}",
                        payload=the_case.index):
            rec, _ = measure_case(the_case, b, cfg, gpu, plan.cache_dir,
                                  profiler_range=gpu is not None)
    except CaseStuck:
        gpu = None  # its stream may hold the stuck work: not closed (the CLI exits at once)
        raise
    finally:
        if gpu is not None:
            gpu.close()
    print_summary(out, [rec])
    if gpu is None:
        out.print("this case ran on the CPU: the Nsight commands below need a CUDA backend")
    for tool, line in profiler_commands(rerun, the_case.key).items():
        out.print(f"[bold]{tool}:[/] {safe(line)}", soft_wrap=True, highlight=False)
    return 0 if rec.status in ("ok", "check_failed") else 1
