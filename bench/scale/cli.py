"""Command-line parts of scale-out: ``convbench merge`` and the executor flags of ``run``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bench.errors import BenchError


# --- run flags ----------------------------------------------------------------------------------
def add_scale_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("scale-out (one result directory, several workers)")
    g.add_argument("--gpus", metavar="all|0,1,...",
                   help="one worker process per GPU of this host")
    g.add_argument("--workers", type=int, metavar="N",
                   help="N CPU worker processes (no GPU); with --executor ray: N actors")
    g.add_argument("--executor", choices=["local", "ray"], default=None,
                   help="ray: one actor per GPU of a Ray cluster (pip install "
                        "'trt-convbench[ray]')")
    g.add_argument("--address", metavar="ADDR",
                   help="Ray cluster to join (default: RAY_ADDRESS, else a private local "
                        "instance on 127.0.0.1)")


def wants_scale_out(args: argparse.Namespace) -> bool:
    return any(getattr(args, n, None) is not None for n in ("gpus", "workers", "executor",
                                                             "address"))


def run_scaled(suite: Any, opts: Any, args: argparse.Namespace) -> Any:
    """``convbench run`` with --gpus/--workers/--executor: the same summary as a plain run."""
    executor = args.executor or "local"
    if args.address and executor != "ray":
        raise BenchError("--address is for --executor ray")
    if executor == "ray":
        if args.gpus is not None:
            raise BenchError("--gpus is for the local executor; Ray uses every GPU of the "
                             "cluster (limit with --workers N)")
        from bench.scale.ray_executor import run_ray

        return run_ray(suite, opts, address=args.address, workers=args.workers)
    from bench.scale.local import cpu_slots, gpu_slots, run_local

    if args.gpus is not None and args.workers is not None:
        raise BenchError("--gpus and --workers: pick one (GPU workers or CPU workers)")
    if args.gpus is None and args.workers is None:
        raise BenchError("--executor local needs --gpus all|0,1,... or --workers N")
    slots = gpu_slots(args.gpus) if args.gpus is not None else cpu_slots(args.workers)
    return run_local(suite, opts, slots)


# --- merge --------------------------------------------------------------------------------------
def register(subparsers: Any) -> None:
    m = subparsers.add_parser("merge", help="join shard run directories into one run")
    m.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR")
    m.add_argument("--out", type=Path, default=Path("results"),
                   help="results root; the merged run goes to OUT/<suite>/<run-id>")
    m.set_defaults(func=cmd_merge)


def cmd_merge(args: argparse.Namespace) -> int:
    from bench.cli import _console
    from bench.scale.merge import merge_runs

    s = merge_runs(args.run_dirs, args.out)
    out = _console()
    out.print(f"merged {s.records} record(s) from {len(s.inputs)} run(s)")
    if s.expected is not None and s.records < s.expected:
        out.print(f"[yellow]{s.expected - s.records} of the suite's {s.expected} case × backend "
                  "pairs have no record (a shard missing or unfinished?)[/]")
    out.print(f"results: {s.run_dir}")
    return 0
