#!/usr/bin/env python
"""How much does one graph replay's fixed cost add to convbench's graph median? (issue 13)

The graph timer puts K inferences in one CUDA graph and times a replay with one event pair, so
whatever a replay costs beyond its kernels (the start event to the first kernel, the last
kernel to the stop event) is divided by K. A CUPTI trace of the timed replays on the H200
(fidelity.py, 2026-12-02) put that cost at 3-7 µs per replay, which at the 0.2 ms replays
convbench aimed for is 1.5-3.7 % of every case under ~0.2 ms.

This script builds each case once (cuDNN heuristics) and times it with the graph timer at
several replay lengths (``target_ms``), warm L2, the suite's timing settings, each with a CUPTI
trace of 10 more replays (fidelity.py's ``cupti_graph_us``). Prints per case and length: K, the
graph median per inference, its change against the longest replay, and the event timer's
reading minus CUPTI's span per replay. Writes ``--out`` (.md and .json).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "benchmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

CASES = ("name in ['tiny-1x1', 'depthwise-128x56', '3x3-64x56-fp16-bias', '3x3-b8-128', "
         "'3x3-b16-256x28', 'grouped-g32-b16-256']")
TARGETS_MS = (0.2, 0.5, 1.0, 2.0, 5.0)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--suite", default=str(ROOT / "suites" / "fidelity.toml"))
    p.add_argument("--filter", default=CASES)
    p.add_argument("--targets-ms", type=float, nargs="+", default=list(TARGETS_MS))
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)

    from bench.gpu import cuda

    reason = cuda.unavailable_reason()
    if reason:
        print(f"replay_length: needs a CUDA GPU: {reason}", file=sys.stderr)
        return 2
    from fidelity import case_spec, cupti_graph_us

    from bench.backends.registry import get_backend
    from bench.gpu.timers import GraphSource
    from bench.plan import select_cases
    from bench.reference import make_data
    from bench.stats import summarize
    from bench.suite import load_suite
    from bench.timing import measure

    suite = load_suite(args.suite)
    settings = suite.timing.settings()
    backend = get_backend("torch")
    device = cuda.Device(0)
    stream = device.stream()
    rows: list[dict[str, Any]] = []
    try:
        for case in select_cases(suite, args.filter):
            spec = case_spec(case)
            engine = backend.build(spec, make_data(spec))
            try:
                for target in args.targets_ms:
                    source = GraphSource(engine, stream, "warm", None, target_ms=target)
                    try:
                        us = summarize(measure(source, settings).ms).median * 1e3
                        tr = cupti_graph_us(source)
                    finally:
                        source.close()
                    k = source.iters_per_sample
                    row = {"case": case.name, "target_ms": target, "k": k, "us": us,
                           "cupti": tr, "fixed_us": ((tr["traced_us"] - tr["span_us"]) * k
                                                     if tr else None)}
                    rows.append(row)
                    print(f"{case.name} target {target} ms: K={k} {us:.3f} us; "
                          f"per-replay event-span {row['fixed_us']}", flush=True)
            finally:
                engine.close()
    finally:
        stream.close()
    out = [f"# Graph replay length against the graph median ({device.info.name})", "",
           f"Command: `{' '.join(sys.argv)}`. Warm L2, cuDNN heuristics, suite timing "
           "settings. Δ % = against the same case at the longest replay. event − span = the "
           "event timer's reading of a traced replay minus CUPTI's first-kernel-start to "
           "last-kernel-end, per replay (median of 10).", "",
           "| case | target ms | K | graph µs | Δ % | event − span µs per replay |",
           "|---|---|---|---|---|---|"]
    for row in rows:
        base = [r for r in rows if r["case"] == row["case"]][-1]["us"]
        fixed = "n/a" if row["fixed_us"] is None else f"{row['fixed_us']:.2f}"
        out.append(f"| {row['case']} | {row['target_ms']} | {row['k']} | {row['us']:.3f} | "
                   f"{(row['us'] - base) / base * 100:+.2f} | {fixed} |")
    text = "\n".join(out) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
