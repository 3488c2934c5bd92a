#!/usr/bin/env python
"""Does cuDNN's autotuner choose again, differently, inside one process? (issue 13, diagnosis)

torch keeps cuDNN's autotuning results (``cudnn.benchmark=True``) in a benchmark cache that is
*thread-local* (aten/src/ATen/native/cudnn/Conv_v8.cpp, ``_get_benchmark_cache``: "static
thread_local"): a conv first run in a new thread is autotuned again. This script builds each
case D times, each time in a fresh thread (so cuDNN autotunes again), and in that same thread
times it with convbench's graph timer (warm L2, a short budget) and reads the kernel names
with torch.profiler. Draw 0 is the first autotuning of that shape in the process; later draws
run with every kernel of the earlier ones already loaded.

It answers: do the rare choices that ``benchmarks/reproducibility.py`` sees between processes
(one process in four) also appear between draws in one process, and is the first draw of a
process different from the later ones? Prints a markdown table and writes ``--out`` (.md and
.json). Run it in two or more processes to compare.

    python3 benchmarks/selection_draws.py --suite suites/reproducibility.toml --draws 6 \\
        --filter "label == 'resnet50-conv1'" --out /tmp/draws.md
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT, ROOT / "benchmarks"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))


def draw(backend: Any, case: Any, stream: Any, settings: Any) -> dict[str, Any]:
    """One autotuning draw, in the calling thread: build (cuDNN autotunes on the first call),
    time with the graph timer, read the kernel names of one call."""
    from fidelity import case_spec

    from bench.backends.torch import profile_kernels
    from bench.gpu.timers import make_source
    from bench.reference import make_data
    from bench.stats import summarize
    from bench.timing import measure

    spec = case_spec(case, "autotune")
    t0 = time.perf_counter()
    engine = backend.build(spec, make_data(spec))
    build_s = time.perf_counter() - t0
    try:
        source = make_source(engine, stream, "graph", "warm", None)
        try:
            samples = measure(source, settings)
        finally:
            source.close()
        layers = profile_kernels(lambda: engine.enqueue(stream), stream.sync, 1)
    finally:
        engine.close()
    return {"us": summarize(samples.ms).median * 1e3, "rse": samples.rse,
            "build_s": build_s, "kernels": [lt.name for lt in layers]}


def kernel_set(kernels: Sequence[str]) -> tuple[str, ...]:
    """A draw's choice: its kernel names in sorted order, as a repeats pass's kernel set
    (memsets and copies left out)."""
    from bench.probes import is_chosen_kernel

    return tuple(sorted(k for k in kernels if is_chosen_kernel(k)))


def kernel_sets(draws: Sequence[dict[str, Any]]) -> dict[tuple[str, ...], list[float]]:
    sets: dict[tuple[str, ...], list[float]] = {}
    for d in draws:
        sets.setdefault(kernel_set(d["kernels"]), []).append(d["us"])
    return sets


def render(results: dict[str, list[dict[str, Any]]], meta: dict[str, Any]) -> str:
    out = [f"# Autotuning draws in one process ({meta['gpu']}, pid {meta['pid']})", "",
           f"Command: `{meta['command']}`; torch {meta['torch']}, cuDNN {meta['cudnn']}; "
           f"{meta['draws']} draws per case, each in a fresh thread (a fresh cuDNN benchmark "
           "cache), graph timing warm L2 with `min_time_s` "
           f"{meta['min_time_s']}.", "",
           "| case | draw µs (draw 0 first) | spread % | kernel sets | draw 0 set | sets: "
           "median µs × draws |", "|---|---|---|---|---|---|"]
    for name, draws in results.items():
        us = [d["us"] for d in draws]
        sets = kernel_sets(draws)
        order = list(sets)
        first = order.index(kernel_set(draws[0]["kernels"])) + 1
        spread = (max(us) - min(us)) / min(us) * 100
        desc = "; ".join(f"#{i + 1} {statistics.median(v):.1f} × {len(v)}"
                         for i, v in enumerate(sets.values()))
        out.append(f"| {name} | {' '.join(f'{u:.1f}' for u in us)} | {spread:.1f} | "
                   f"{len(sets)} | #{first} | {desc} |")
    out += ["", "Kernel sets (names as torch.profiler gives them):", ""]
    for name, draws in results.items():
        for i, ks in enumerate(kernel_sets(draws)):
            out.append(f"- {name} #{i + 1}: " + " + ".join(f"`{k[:110]}`" for k in ks))
    return "\n".join(out) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--suite", default=str(ROOT / "suites" / "reproducibility.toml"))
    p.add_argument("--filter", default=None, help="case filter, as convbench run --filter")
    p.add_argument("--draws", type=int, default=6)
    p.add_argument("--min-time-s", type=float, default=0.1)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--rerender", type=Path, default=None,
                   help="a finished run's .json: write its table again to --out, no GPU")
    args = p.parse_args(argv)
    if args.rerender:
        raw = json.loads(args.rerender.read_text(encoding="utf-8"))
        args.out.write_text(render(raw["results"], raw["meta"]), encoding="utf-8")
        return 0

    from bench.gpu import cuda

    reason = cuda.unavailable_reason()
    if reason:
        print(f"selection_draws: needs a CUDA GPU: {reason}", file=sys.stderr)
        return 2
    import torch

    from bench.backends.registry import get_backend
    from bench.backends.torch import in_thread
    from bench.plan import select_cases
    from bench.suite import load_suite

    suite = load_suite(args.suite)
    cases = select_cases(suite, args.filter)
    settings = dataclasses.replace(suite.timing.settings(), min_time_s=args.min_time_s)
    backend = get_backend("torch")
    device = cuda.Device(0)
    stream = device.stream()
    results: dict[str, list[dict[str, Any]]] = {}
    t_start = time.perf_counter()
    try:
        for case in cases:
            draws = []
            for i in range(args.draws):
                d = in_thread(lambda case=case: draw(backend, case, stream, settings))
                draws.append(d)
                print(f"{case.name} draw {i}: {d['us']:.2f} us, build {d['build_s']:.2f} s, "
                      f"{len(d['kernels'])} kernels: {[k[:60] for k in d['kernels']]}",
                      flush=True)
            results[case.name] = draws
    finally:
        stream.close()
    meta = {"gpu": device.info.name, "pid": os.getpid(), "command": " ".join(sys.argv),
            "torch": torch.__version__, "cudnn": torch.backends.cudnn.version(),
            "draws": args.draws, "min_time_s": args.min_time_s,
            "wall_s": time.perf_counter() - t_start}
    text = render(results, meta)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    args.out.with_suffix(".json").write_text(json.dumps({"meta": meta, "results": results},
                                                        indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
