#!/usr/bin/env python
"""How much does buffer placement move a case, and how many placements does a number need?

``pass-shift-h200.md`` found that the smallest fidelity cases move by up to 6 % when their
buffers land elsewhere in device memory, while the same engine timed again repeats within
0.1 %. This script measures that spread directly, in one process, with the graph timer of a
``convbench run`` (warm L2): each case is built once, then timed at ``--placements`` P
placements — ``Engine.relocate(k)`` moves the input, weights and bias to new device memory
after spacers, and the next graph capture puts the output and workspace in a new pool. Each
placement is timed twice on the same graph (``rep Δ %``: the timer's own repeatability).

Per case it prints the placement medians' spread, and what an estimator over K placements
would repeat like: for K in ``--k``, ``--draws`` times, five "processes" each take K of the P
placements (without replacement) and the spread (max − min) / min of their five estimates is
taken; the table gives the share of draws whose spread is ≤ 1 %, for the median of the K
placement medians and for their mean. (The P placements of one process stand in for those of
five processes: that is what this script can measure in one process, and what the
reproducibility benchmark then checks across processes.)

Writes ``--out`` (.md and .json).
"""

from __future__ import annotations

import argparse
import json
import random
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


def repeat_share(medians: Sequence[float], k: int, draws: int, estimator: Any,
                 processes: int = 5, seed: int = 0, within_pct: float = 1.0) -> float:
    """Share of ``draws`` in which ``processes`` estimates, each ``estimator`` over ``k``
    placement medians drawn without replacement, lie within ``within_pct`` of each other."""
    from bench.placements import spread_pct

    rng = random.Random(seed)
    k = min(k, len(medians))
    ok = 0
    for _ in range(draws):
        est = [estimator(rng.sample(list(medians), k)) for _ in range(processes)]
        ok += spread_pct(est) <= within_pct
    return ok / draws


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--suite", action="append", default=None,
                   help="suite file (repeatable; default suites/reproducibility.toml)")
    p.add_argument("--filter", default=None)
    p.add_argument("--algo", default="heuristic", choices=["heuristic", "autotune"])
    p.add_argument("--placements", type=int, default=16)
    p.add_argument("--per-placement-s", type=float, default=0.05,
                   help="min_time_s of each placement's timing (warm-up 0.02 s after the first)")
    p.add_argument("--k", default="1,2,4,8")
    p.add_argument("--draws", type=int, default=400)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)

    from bench.gpu import cuda

    reason = cuda.unavailable_reason()
    if reason:
        print(f"placement: needs a CUDA GPU: {reason}", file=sys.stderr)
        return 2
    from dataclasses import replace

    from fidelity import case_spec

    from bench.backends.registry import get_backend
    from bench.gpu.timers import make_source
    from bench.placements import spread_pct as placement_spread
    from bench.plan import select_cases
    from bench.reference import make_data
    from bench.stats import summarize
    from bench.suite import load_suite
    from bench.timing import measure

    ks = [int(x) for x in args.k.split(",")]
    backend = get_backend("torch")
    device = cuda.Device(0)
    stream = device.stream()
    rows: list[dict[str, Any]] = []
    t_start = time.perf_counter()
    for suite_path in args.suite or [str(ROOT / "suites" / "reproducibility.toml")]:
        suite = load_suite(suite_path)
        base = suite.timing.settings()
        first = replace(base, min_time_s=args.per_placement_s, max_time_s=1.0,
                        min_samples=5)
        later = replace(first, warmup_s=0.02)
        for case in select_cases(suite, args.filter):
            spec = case_spec(case, args.algo)
            t0 = time.perf_counter()
            engine = backend.build(spec, make_data(spec))
            meds: list[float] = []
            reps: list[float] = []
            addrs: list[str] = []
            try:
                for k in range(args.placements):
                    if k:
                        engine.relocate(k)
                    source = make_source(engine, stream, "graph", "warm", None)
                    try:
                        a = summarize(measure(source, first if k == 0 else later).ms).median
                        b = summarize(measure(source, later).ms).median
                    finally:
                        source.close()
                    meds.append(a * 1e3)
                    reps.append((b - a) / a * 100.0)
                    addrs.append(f"x {engine._x.data_ptr():#x} w {engine._w.data_ptr():#x}")
            finally:
                engine.close()
            med = statistics.median(meds)
            row = {"suite": Path(suite_path).name, "case": case.name,
                   "median_us": med, "min_us": min(meds), "max_us": max(meds),
                   "spread_pct": placement_spread(meds),
                   "max_rep_pct": max(abs(r) for r in reps),
                   "placement_us": meds, "rep_pct": reps, "addresses": addrs,
                   "wall_s": time.perf_counter() - t0}
            for kk in ks:
                row[f"median_of_{kk}"] = repeat_share(meds, kk, args.draws, statistics.median)
                row[f"mean_of_{kk}"] = repeat_share(meds, kk, args.draws, statistics.fmean)
            rows.append(row)
            print(f"{row['case']:<44} {med:9.2f} µs  spread {row['spread_pct']:5.2f} %  "
                  f"rep ≤ {row['max_rep_pct']:.2f} %  "
                  + "  ".join(f"K={kk}: {row[f'median_of_{kk}']:.2f}/{row[f'mean_of_{kk}']:.2f}"
                              for kk in ks), flush=True)
    stream.close()
    total = time.perf_counter() - t_start

    head = ["suite", "case", "median µs", "min µs", "max µs", "spread %", "rep Δ % (max)"]
    head += [f"K={kk} median / mean" for kk in ks]
    lines = [f"# Buffer placement ({device.info.name})", "",
             f"Command: `benchmarks/placement.py {' '.join(argv or sys.argv[1:])}`. Graph "
             f"timer, warm L2, `algo = \"{args.algo}\"`, torch backend; {args.placements} "
             f"placements per case, each timed twice; total {total:.0f} s.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["suite"], r["case"], f"{r['median_us']:.2f}", f"{r['min_us']:.2f}",
                 f"{r['max_us']:.2f}", f"{r['spread_pct']:.2f}", f"{r['max_rep_pct']:.2f}"]
        cells += [f"{r[f'median_of_{kk}']:.2f} / {r[f'mean_of_{kk}']:.2f}" for kk in ks]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"K columns: share of {args.draws} draws in which five estimates over K "
              "placements each lay within 1 % of each other (median of the K placement "
              "medians / their mean).", ""]
    for kk in ks:
        for est in ("median", "mean"):
            n = sum(r[f"{est}_of_{kk}"] >= 0.95 for r in rows)
            lines.append(f"- K = {kk}, {est}: {n}/{len(rows)} cases repeat within 1 % in "
                         "≥ 95 % of draws")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    args.out.with_suffix(".json").write_text(json.dumps(
        {"gpu": device.info.name, "algo": args.algo, "placements": args.placements,
         "rows": rows, "total_s": total}, indent=1))
    print("\n".join(lines[-2 * len(ks):]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
