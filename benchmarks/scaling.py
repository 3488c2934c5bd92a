"""Cases per minute with 1 worker vs 2 (or more): what the scale-out executors buy.

Runs the same suite once per worker count, each into its own result directory, and prints the
throughput (cases/minute, wall clock from start to the last record, worker start-up included),
the speed-up over one worker, and how well the per-case medians of each run agree with the
one-worker run (on a GPU host, where each worker owns a GPU, they should agree within noise;
CPU workers share cores, so there they need not).

On a CPU host the noise-driven stopping rule makes each case last longer when workers contend for
cores, so the default timing understates what the executor gives; ``--fixed-time 0.3`` times every
case for the same 0.3 s and shows the executor's own speed-up. "steady" excludes worker start-up.

    python benchmarks/scaling.py                                   # quickstart, 1 vs 2 CPU workers
    python benchmarks/scaling.py --fixed-time 0.3                  # same, fixed work per case
    python benchmarks/scaling.py --suite suites/deepbench_inference.toml --gpus   # 1 vs 2 GPUs
    python benchmarks/scaling.py --suite suites/deepbench_inference.toml --gpus --executor ray
    python benchmarks/scaling.py --suite suites/channels.toml --gpus --workers 0 1   # plain vs 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from bench.plan import make_plan  # noqa: E402
from bench.store import load_records  # noqa: E402
from bench.suite import load_suite  # noqa: E402


def run_once(suite: Any, workers: int, gpus: bool, executor: str, out: Path,
             backends: list[str] | None,
             timing: dict[str, Any]) -> tuple[float, float, list[dict[str, Any]]]:
    """One run with ``workers`` workers; returns (wall s, start-up s, records).

    Start-up (spawning workers, importing torch, opening the GPU) is estimated as the time to
    the first record minus that record's own wall time. A Ray cluster is started before the
    clock starts: in practice it is up before a sweep begins."""
    plan = make_plan(suite, backends=backends, out=out, progress=False, argv=sys.argv,
                     timing=timing)
    first: list[float] = []

    def on_record(rec: Any) -> None:
        if not first:
            first.append(time.perf_counter() - t0 - (rec.wall_s or 0.0))

    if workers == 0:  # a plain run in this process: the reference the executors must match
        from bench.runner import run_suite

        t0 = time.perf_counter()
        summary = run_suite(plan, on_record=on_record)
    elif executor == "ray":
        from bench.scale.ray_executor import import_ray, run_ray

        ray = import_ray()
        if gpus:
            ray.init(include_dashboard=False, log_to_driver=False)
        else:  # CPU actors only: declare no GPU so that none is taken
            ray.init(num_cpus=workers, num_gpus=0, include_dashboard=False,
                     log_to_driver=False)
        try:
            t0 = time.perf_counter()
            summary = run_ray(plan, workers=workers, on_record=on_record)
        finally:
            ray.shutdown()
    else:
        from bench.scale.local import cpu_slots, gpu_slots, run_local

        slots = gpu_slots(",".join(map(str, range(workers)))) if gpus else cpu_slots(workers)
        t0 = time.perf_counter()
        summary = run_local(plan, slots, on_record=on_record)
    wall = time.perf_counter() - t0
    assert summary.run_dir is not None
    return wall, (first[0] if first else 0.0), load_records(summary.run_dir)


def medians(records: list[dict[str, Any]]) -> dict[tuple[str, str], float]:
    return {(r.case_key, r.backend): r.median_ms for r in records
            if r.status == "ok" and r.median_ms}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--suite", type=Path, default=ROOT / "suites" / "quickstart.toml")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                   help="worker counts to compare, the first is the baseline; 0 = a plain "
                        "run without workers")
    p.add_argument("--gpus", action="store_true", help="GPU workers (GPUs 0..N-1), not CPU")
    p.add_argument("--executor", choices=["local", "ray"], default="local")
    p.add_argument("--backend", action="append", dest="backends")
    p.add_argument("--out", type=Path, help="keep the runs here (default: a temporary dir)")
    p.add_argument("--repeat", type=int, default=3,
                   help="runs per worker count; the median wall time is reported (a shared "
                        "machine is noisy)")
    p.add_argument("--fixed-time", type=float, metavar="S",
                   help="time every case for exactly S seconds (no noise-driven stopping), so "
                        "the work per case is the same in every run")
    p.add_argument("--tolerance", type=float, default=0.02,
                   help="relative median difference counted as agreement (0.02 = 2%%)")
    args = p.parse_args(argv)

    suite = load_suite(args.suite)
    tmp = None
    if args.out is None:
        tmp = tempfile.TemporaryDirectory(prefix="convbench-scaling-")
        args.out = Path(tmp.name)
    kind = "GPU" if args.gpus else "CPU"
    print(f"suite {suite.name}: {len(suite.cases)} case(s), executor {args.executor}, "
          f"{kind} workers {args.workers}")
    rows = []
    base_rate = base_steady = base_medians = None
    timing: dict[str, Any] = {}
    if args.fixed_time is not None:
        timing = {"min_time_s": args.fixed_time, "max_time_s": args.fixed_time,
                  "target_rse": 1.0}
    for n in args.workers:
        runs = []
        for k in range(args.repeat):
            runs.append(run_once(suite, n, args.gpus, args.executor, args.out / f"w{n}-{k}",
                                 args.backends, timing))
        runs.sort(key=lambda r: r[0])
        wall, startup, recs = runs[len(runs) // 2]  # the median run by wall time
        print(f"  {n} worker(s): wall {', '.join(f'{r[0]:.1f}' for r in runs)} s, start-up "
              f"{', '.join(f'{r[1]:.1f}' for r in runs)} s")
        rate = len(recs) / wall * 60
        steady = len(recs) / max(wall - startup, 1e-9) * 60
        med = medians(recs)
        gpu_ids = sorted({(r.gpu or {}).get("uuid") or "-" for r in recs})
        agree = "-"
        if base_medians is None:
            base_rate, base_steady, base_medians = rate, steady, med
        else:
            common = sorted(set(med) & set(base_medians))
            if common:
                diffs = [abs(med[k] / base_medians[k] - 1) for k in common]
                ok = sum(d <= args.tolerance for d in diffs)
                agree = (f"{ok}/{len(common)} ({ok / len(common):.0%}) within "
                         f"{args.tolerance:.0%}, median diff {statistics.median(diffs):.1%}")
        bad = sum(r.status != "ok" for r in recs)
        rows.append((n, len(recs), bad, wall, rate, rate / base_rate, steady,
                     steady / base_steady, agree, gpu_ids))
    print("cases/min: wall clock incl. start-up | steady: after start-up")
    print(f"{'workers':>7} {'records':>7} {'not ok':>6} {'wall s':>7} {'cases/min':>9} "
          f"{'speed-up':>8} {'steady':>7} {'speed-up':>8}  medians vs 1st run")
    for n, count, bad, wall, rate, speedup, steady, s_up, agree, _ in rows:
        print(f"{n:>7} {count:>7} {bad:>6} {wall:>7.1f} {rate:>9.1f} {speedup:>7.2f}x "
              f"{steady:>7.1f} {s_up:>7.2f}x  {agree}")
    for n, *_, gpu_ids in rows:
        print(f"GPUs seen with {n} worker(s): {', '.join(gpu_ids)}")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
