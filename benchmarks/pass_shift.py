#!/usr/bin/env python
"""Why are the smallest fidelity cases slower in the second pass? (issue 13, diagnosis)

``benchmarks/fidelity.py`` times every case twice, in two passes over all 24 cases, and the
smallest (3-14 µs) came out 0.2-0.5 µs slower in the second pass on the H200 while NVML read the
same SM clock. A second pass differs from the first in two ways: the case is built again (new
buffers, new cuDNN state) and it runs right after the suite's heaviest case (8.6 ms at up to
320 W) instead of on an idle, cool GPU. This script separates the two, with the graph timer
that fidelity.py uses (warm L2, the suite's timing settings), for the cases named by
``--filter`` (default: the four small ones that moved):

- ``A1``: build, time; ``A2``: the same engine timed again; ``A3``: built again, timed;
- ``H``: the heavy case's graph replayed back to back for ``--heavy-s`` seconds;
- ``C1``: right after H, built again and timed; ``C2``: the same engine again;
- ``E1``: ``torch.cuda.empty_cache()`` (torch's allocator gives its cached blocks back), built
  again and timed;
- ``D1``: after ``--idle-s`` seconds idle, built again and timed.

With ``--heavy-in-child`` H runs in a child process, so this process's allocator never holds
the heavy case's buffers: a slowdown that follows H there is the GPU's, not buffer placement.
Each timed step records the input and weight addresses.

Each step records NVML's SM clock, temperature and power before it. Prints a markdown table
and writes ``--out`` (.md and .json).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT, ROOT / "benchmarks"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

SMALL = "name in ['tiny-1x1', 'tiny-3x3', 'tiny-3x3-bias-relu', 'depthwise-128x56']"
HEAVY = "name == '3x3-b64-256-fp32'"


def gpu_state(uuid: str) -> dict[str, Any]:
    from bench.gpu import nvml

    got = nvml.device_handle(uuid)
    if not got:
        return {}
    nv, h = got
    try:
        return {"sm_mhz": int(nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM)),
                "temp_c": int(nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU)),
                "power_w": nv.nvmlDeviceGetPowerUsage(h) / 1000.0}
    except Exception:  # noqa: BLE001 - a missing reading is left out
        return {}


def time_graph(engine: Any, stream: Any, settings: Any) -> float:
    from bench.gpu.timers import make_source
    from bench.stats import summarize
    from bench.timing import measure

    source = make_source(engine, stream, "graph", "warm", None)
    try:
        return summarize(measure(source, settings).ms).median * 1e3
    finally:
        source.close()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--suite", default=str(ROOT / "suites" / "fidelity.toml"))
    p.add_argument("--filter", default=SMALL)
    p.add_argument("--heavy", default=HEAVY, help="filter naming the heavy case")
    p.add_argument("--heavy-s", type=float, default=10.0)
    p.add_argument("--idle-s", type=float, default=20.0)
    p.add_argument("--heavy-in-child", action="store_true")
    p.add_argument("--heavy-only", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    if args.out is None and not args.heavy_only:
        p.error("--out is required")

    from bench.gpu import cuda

    reason = cuda.unavailable_reason()
    if reason:
        print(f"pass_shift: needs a CUDA GPU: {reason}", file=sys.stderr)
        return 2
    from fidelity import case_spec

    from bench.backends.registry import get_backend
    from bench.gpu.timers import make_source
    from bench.plan import select_cases
    from bench.reference import make_data
    from bench.suite import load_suite

    suite = load_suite(args.suite)
    cases = select_cases(suite, args.filter)
    (heavy,) = select_cases(suite, args.heavy)
    settings = suite.timing.settings()
    backend = get_backend("torch")
    device = cuda.Device(0)
    uuid = device.info.uuid
    stream = device.stream()

    def build(case: Any) -> Any:
        spec = case_spec(case)
        return backend.build(spec, make_data(spec))

    steps: list[dict[str, Any]] = []

    def step(name: str, case: Any, engine: Any) -> None:
        state = gpu_state(uuid)
        us = time_graph(engine, stream, settings)
        ptrs = {k: hex(getattr(engine, a).data_ptr()) for k, a in (("x", "_x"), ("w", "_w"))
                if getattr(engine, a, None) is not None}
        steps.append({"step": name, "case": case.name, "us": us, **state, **ptrs})
        print(f"{name} {case.name}: {us:.3f} us {state} {ptrs}", flush=True)

    def timed_build(name: str, case: Any) -> None:
        e = build(case)
        try:
            step(name, case, e)
        finally:
            e.close()

    def heavy_load() -> None:
        e = build(heavy)
        try:
            source = make_source(e, stream, "graph", "warm", None)
            try:
                before = gpu_state(uuid)
                t0, n = time.perf_counter(), 0
                while time.perf_counter() - t0 < args.heavy_s:
                    source()
                    n += 1
                after = gpu_state(uuid)
            finally:
                source.close()
            steps.append({"step": "H", "case": heavy.name, "replays": n,
                          "before": before, "after": after})
            print(f"H {heavy.name}: {n} replays; {before} -> {after}", flush=True)
        finally:
            e.close()

    if args.heavy_only:
        try:
            heavy_load()
        finally:
            stream.close()
        return 0
    try:
        for case in cases:
            e = build(case)
            try:
                step("A1", case, e)
                step("A2", case, e)
            finally:
                e.close()
            timed_build("A3", case)
        if args.heavy_in_child:
            import subprocess

            subprocess.run([sys.executable, __file__, "--heavy-only", "--suite", args.suite,
                            "--heavy", args.heavy, "--heavy-s", str(args.heavy_s)], check=True)
            steps.append({"step": "H", "case": heavy.name, "replays": "child",
                          "before": {}, "after": gpu_state(uuid)})
        else:
            heavy_load()
        engines = []
        for case in cases:
            e = build(case)
            engines.append(e)
            step("C1", case, e)
        for case, e in zip(cases, engines):
            step("C2", case, e)
            e.close()
        import torch

        torch.cuda.empty_cache()
        for case in cases:
            timed_build("E1", case)
        time.sleep(args.idle_s)
        for case in cases:
            timed_build("D1", case)
    finally:
        stream.close()

    names = ["A1", "A2", "A3", "C1", "C2", "E1", "D1"]
    out = [f"# Pass shift of the small fidelity cases ({device.info.name})", "",
           f"Command: `{' '.join(sys.argv)}`. Graph timer, warm L2, heuristic algorithm; "
           f"H = `{heavy.name}` replayed back to back for {args.heavy_s:.0f} s"
           f"{' in a child process' if args.heavy_in_child else ''}; D1 after "
           f"{args.idle_s:.0f} s idle. µs per inference (SM MHz / °C before the step).", "",
           "| case | " + " | ".join(names) + " | C1 vs A1 % | E1 vs A1 % | D1 vs A1 % |",
           "|---|" + "---|" * (len(names) + 3)]
    for case in cases:
        by = {s["step"]: s for s in steps if s["case"] == case.name and "us" in s}
        cells = [f"{by[n]['us']:.3f} ({by[n].get('sm_mhz')}/{by[n].get('temp_c')})" for n in names]
        a1 = by["A1"]["us"]
        out.append(f"| {case.name} | " + " | ".join(cells)
                   + "".join(f" | {(by[n]['us'] - a1) / a1 * 100:+.2f}"
                             for n in ("C1", "E1", "D1")) + " |")
    out += ["", "Addresses (x, w) per step:", ""]
    for s in steps:
        if "x" in s:
            out.append(f"- {s['step']} {s['case']}: x {s['x']}, w {s['w']}")
    h = next(s for s in steps if s["step"] == "H")
    out += ["", f"H: {h['replays']} replays; before {h['before']}, after {h['after']}", ""]
    text = "\n".join(out)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    args.out.with_suffix(".json").write_text(json.dumps(steps, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
