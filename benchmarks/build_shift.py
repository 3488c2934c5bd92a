#!/usr/bin/env python
"""Is a heuristic case's process shift fixed per process or per build?

Under cuDNN's heuristics (``algo = "heuristic"``) a few cases of
``suites/reproducibility.toml`` still differ between separate ``convbench run`` processes by
1.5–2.8 %, although each process times them at 32 buffer placements
(``reproducibility-heuristic-placements32*-h200.md``): every placement of one process sits
above or below every placement of another. So something fixed for the whole pass moves them.

This script separates two candidates. It starts ``--processes`` P child processes one after
another. Each child builds every selected case ``--builds`` B times — the first build in the
main thread, the others each in a new thread, where torch's cuDNN plan cache is empty so the
execution plan is made again (``TorchBackend.fresh_selection``) — and times each build at
``--placements`` K buffer placements with the graph timer (warm L2), as ``convbench run`` does.
From the third build on, the context's stack size limit is changed before the build
(``cuCtxSetLimit(CU_LIMIT_STACK_SIZE)``), so the driver places the context's local memory
anew: a third candidate for what stays fixed within a process.
For every build it records the kernels' names and launch configurations from one profiled
inference (grid, block, registers, shared memory: kineto's trace).

Per case it prints the spread of the P processes' first builds, the spread of all builds'
medians within each process (median over processes), and whether every build in every
process launched the same kernels with the same configuration. A shift fixed per process
shows as a wide between-process spread with narrow within-process spreads; a shift fixed per
build shows within the processes too. An ANOVA of the placement medians
(``anova.process_build_placement``, the placement index as a third factor) puts numbers on
both: the process × build interaction is an offset per build, which a rebuild samples; the
process effect over that interaction is what stays fixed per process.

Writes ``--out`` (.md and .json); ``--render JSON`` prints the table of a saved run again.
``--filter "batch > 0"`` selects the whole suite, where the heuristic misses happen (the
default filter's eight cases run in a shorter process with another history).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT, ROOT / "benchmarks"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from anova import cell, process_build_placement  # noqa: E402  (benchmarks/ on sys.path)

DEFAULT_FILTER = ("label in ['mobilenetv2-pointwise', '3x3-64to128', 'resnet50-layer1-3x3', "
                  "'deeplab-dilated']")


def launch_configs(run: Any, sync: Any) -> list[dict[str, Any]]:
    """The kernels of one call of ``run`` with their launch configurations (kineto trace)."""
    import torch

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "trace.json"
        with torch.profiler.profile(
                activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            run()
            sync()
        prof.export_chrome_trace(str(path))
        events = json.loads(path.read_text()).get("traceEvents", [])
    out = []
    for e in events:
        if e.get("cat") != "kernel":
            continue
        a = e.get("args", {})
        out.append({"name": e.get("name"), "grid": a.get("grid"), "block": a.get("block"),
                    "registers": a.get("registers per thread"),
                    "shared": a.get("shared memory"), "dur_us": e.get("dur")})
    return out


def one_build(backend: Any, spec: Any, placements: int, per_s: float,
              stream: Any) -> dict[str, Any]:
    """Build ``spec``, name its kernels, time it at ``placements`` placements."""
    from dataclasses import replace

    from bench.gpu.timers import make_source
    from bench.reference import make_data
    from bench.stats import summarize
    from bench.timing import TimingSettings, measure

    first = replace(TimingSettings(), min_time_s=per_s, max_time_s=1.0, min_samples=5)
    later = replace(first, warmup_s=0.02)
    engine = backend.build(spec, make_data(spec))
    try:
        engine.enqueue(stream)
        stream.sync()
        kernels = launch_configs(lambda: engine.enqueue(stream), stream.sync)
        meds, addrs = [], []
        for k in range(placements):
            if k:
                engine.relocate(k)
            source = make_source(engine, stream, "graph", "warm", None)
            try:
                meds.append(summarize(measure(source, first if k == 0 else later).ms).median
                            * 1e3)
            finally:
                source.close()
            addrs.append(f"x {engine._x.data_ptr():#x} w {engine._w.data_ptr():#x}")
    finally:
        engine.close()
    return {"kernels": kernels, "placements_us": meds, "median_us": statistics.median(meds),
            "addresses": addrs}


def set_stack_limit(nbytes: int) -> None:
    """Change the context's per-thread stack size: the driver reallocates its local memory."""
    from cuda.bindings import driver

    (err,) = driver.cuCtxSetLimit(driver.CUlimit.CU_LIMIT_STACK_SIZE, nbytes)
    if err != driver.CUresult.CUDA_SUCCESS:
        raise RuntimeError(f"cuCtxSetLimit(CU_LIMIT_STACK_SIZE, {nbytes}) failed: {err}")


def child(args: argparse.Namespace) -> int:
    from fidelity import case_spec

    from bench.backends.registry import get_backend
    from bench.backends.torch import in_thread
    from bench.gpu import cuda
    from bench.plan import select_cases
    from bench.suite import load_suite

    backend = get_backend("torch")
    device = cuda.Device(0)
    stream = device.stream()
    suite = load_suite(args.suite)
    rows = []
    for case in select_cases(suite, args.filter):
        spec = case_spec(case, "heuristic")
        builds = []
        for b in range(args.builds):
            def fn(spec: Any = spec) -> dict[str, Any]:
                return one_build(backend, spec, args.placements, args.per_placement_s, stream)
            if b >= 2:
                set_stack_limit(1024 + 512 * b)
            build = fn() if b == 0 else in_thread(fn)
            build["kind"] = "main thread" if b == 0 else "new thread" if b == 1 else \
                f"new thread, stack limit {1024 + 512 * b} B"
            builds.append(build)
        rows.append({"case": case.name, "builds": builds})
        print(f"  {case.name:<40} " + " ".join(f"{b['median_us']:.2f}" for b in builds),
              file=sys.stderr, flush=True)
    stream.close()
    Path(args.child).write_text(json.dumps(rows))
    # torch 2.11 with cuda.bindings on driver 580 may abort in interpreter teardown (``free():
    # invalid pointer``, after all work is done: gpu-tests-h200.md); the result is written
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def spread(v: Sequence[float]) -> float:
    return (max(v) - min(v)) / min(v) * 100.0


def shown_command(argv: list[str]) -> str:
    """The command line as a reader would type it (values with spaces or quotes in double
    quotes: the filter expressions hold single quotes)."""
    shown = [f'"{x}"' if any(c in x for c in " '\"[") else x for x in argv]
    return " ".join(["benchmarks/build_shift.py", *shown])


def config_key(kernels: list[dict[str, Any]]) -> str:
    return json.dumps([(k["name"], k["grid"], k["block"], k["registers"], k["shared"])
                       for k in kernels])


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--suite", default=str(ROOT / "suites" / "reproducibility.toml"))
    p.add_argument("--filter", default=DEFAULT_FILTER)
    p.add_argument("--processes", type=int, default=6)
    p.add_argument("--builds", type=int, default=4)
    p.add_argument("--placements", type=int, default=6)
    p.add_argument("--per-placement-s", type=float, default=0.05)
    p.add_argument("--out", type=Path)
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--render", type=Path, metavar="JSON",
                   help="no run: print the table of a saved --out JSON (with the ANOVA "
                        "columns, also for JSONs written before them)")
    args = p.parse_args(argv)
    if args.child:
        return child(args)
    if args.render:
        saved = json.loads(args.render.read_text())
        a = saved.get("args", {})
        command = saved.get("command") or shown_command(
            [x for k in ("filter", "processes", "builds", "placements", "per_placement_s")
             if a.get(k) is not None for x in (f"--{k.replace('_', '-')}", str(a[k]))])
        print("\n".join(render(saved["processes"], command, saved.get("total_s", 0.0))[0]))
        return 0
    if args.out is None:
        p.error("--out is required")

    from bench.gpu import cuda

    reason = cuda.unavailable_reason()
    if reason:
        print(f"build_shift: needs a CUDA GPU: {reason}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    procs: list[list[dict[str, Any]]] = []
    with tempfile.TemporaryDirectory() as d:
        for i in range(args.processes):
            path = Path(d) / f"p{i}.json"
            cmd = [sys.executable, __file__, "--suite", args.suite, "--filter", args.filter,
                   "--builds", str(args.builds), "--placements", str(args.placements),
                   "--per-placement-s", str(args.per_placement_s), "--child", str(path)]
            print(f"process {i + 1}/{args.processes}", file=sys.stderr, flush=True)
            subprocess.run(cmd, check=True, env=os.environ.copy())
            procs.append(json.loads(path.read_text()))
    total = time.perf_counter() - t0

    command = shown_command(list(argv or sys.argv[1:]))
    lines, summary = render(procs, command, total)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    args.out.with_suffix(".json").write_text(json.dumps(
        {"args": vars(args) | {"out": str(args.out)}, "command": command, "summary": summary,
         "processes": procs, "total_s": total}, indent=1, default=str))
    print("\n".join(lines))
    return 0


def render(procs: list[list[dict[str, Any]]], command: str,
           total: float) -> tuple[list[str], list[dict[str, Any]]]:
    """The markdown table and the per-case summary of the processes' builds."""
    n_builds, n_placements = len(procs[0][0]["builds"]), len(
        procs[0][0]["builds"][0]["placements_us"])
    lines = [f"# Process shift or build shift? (heuristic, {len(procs)} processes × "
             f"{n_builds} builds × {n_placements} placements)", "",
             f"Command: `{command}`; "
             f"total {total:.0f} s. µs per inference, median over a build's placements.", "",
             "| case | first builds: spread % across processes | all builds: spread % "
             "across processes (median of builds) | builds within a process: spread % "
             "(median, max over processes) | F process (p) | F build order over "
             "process × build (p) | F process × build (p) | F process, builds and placements "
             "random (quasi-F, p) | F placement index (p) | launch configurations | "
             "per process: builds' medians |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    summary = []
    for ci, row in enumerate(procs[0]):
        name = row["case"]
        per = [pr[ci]["builds"] for pr in procs]
        firsts = [b[0]["median_us"] for b in per]
        meds = [statistics.median(x["median_us"] for x in b) for b in per]
        within = [spread([x["median_us"] for x in b]) for b in per]
        keys = {config_key(x["kernels"]) for b in per for x in b}
        cells = "; ".join("/".join(f"{x['median_us']:.2f}" for x in b) for b in per)
        grid = [[x["placements_us"] for x in b] for b in per]
        try:
            res = process_build_placement(grid)
        except ValueError:  # ragged (a placement or build missing) or too small
            res = {}
        fs = " | ".join(cell(res, e) for e in ("process", "build", "interaction",
                                                "process_over_builds", "placement"))
        lines.append(f"| {name} | {spread(firsts):.2f} | {spread(meds):.2f} | "
                     f"{statistics.median(within):.2f}, {max(within):.2f} | {fs} | "
                     f"{len(keys)} | {cells} |")
        summary.append({"case": name, "first_spread_pct": spread(firsts),
                        "median_spread_pct": spread(meds), "within_pct": within,
                        # inf / nan (no answer) as null: the JSON stays strict
                        "anova": {k: v if math.isfinite(v) else None for k, v in res.items()},
                        "configs": sorted(keys)})
    lines += ["", "Builds in each process, in order: " + "; ".join(
        b["kind"] for b in procs[0][0]["builds"]) + ".", "",
              "Launch configurations: distinct (kernel, grid, block, registers, shared "
              "memory) lists over every build of every process.", "",
              "F: ANOVA of the placement medians (`benchmarks/anova.py`, "
              "process_build_placement): process × build order × placement index, one "
              "median per cell (placement k is the same draw in every process and build). "
              "Each effect is tested against the interaction that holds its scatter, none "
              "pooled: process and placement against process × placement, build order "
              "against process × build, process × build against the three-way term; the "
              "quasi-F (MS process + MS three-way) / (MS process × build + MS process × "
              "placement) tests the process with builds and placements both random. A large "
              "F process × build is an offset per build, which rebuilds in one process "
              "sample; a large quasi-F is a shift fixed per process beyond that, which no "
              "rebuild in that process samples.", ""]
    return lines, summary


if __name__ == "__main__":
    sys.exit(main())
