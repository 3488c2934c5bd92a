"""``convbench run SUITE``: run a sweep (here, or spread over workers) and store every result."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from bench.commands import EXIT_INTERRUPTED, common_args
from bench.commands._output import console, print_cases, print_summary
from bench.errors import BenchError
from bench.text import safe


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("suite", type=Path, nargs="?", help="suite TOML file (or give --case)")
    p.add_argument("--case", action="append", dest="cases", metavar="FIELDS",
                   help="a one-off case instead of a suite file, e.g. \"batch=8,in_channels=64,"
                        "out_channels=64,height=56,width=56,kernel=3,padding=1\" (repeatable)")
    p.add_argument("--set", action="append", dest="sets", metavar="AXIS=V1,V2",
                   help="replace or add a [sweep] axis of the suite, e.g. --set "
                        "precision=fp16,fp32 (repeatable)")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue an interrupted run (a directory, or latest / latest~N)")
    p.add_argument("--filter", metavar="EXPR",
                   help="only cases matching, e.g. \"precision == 'fp16' and in_channels >= 64\"")
    p.add_argument("--shard", type=common_args.shard, metavar="I/N",
                   help="only cases with index %% N == I")
    p.add_argument("--max-cases", type=common_args.positive_int, default=None,
                   help="refuse larger sweeps (10000)")
    p.add_argument("--dry-run", action="store_true", help="list the cases, run nothing")
    p.add_argument("--report", action="store_true", help="write the report after the run")
    p.add_argument("--no-progress", action="store_true")
    common_args.add_target_options(p.add_argument)
    common_args.add_timing_group(p)
    add_scale_options(p)


def add_scale_options(p: argparse.ArgumentParser) -> None:
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


def main(args: argparse.Namespace) -> int:
    return run(suite=args.suite, cases=args.cases, sets=args.sets, backends=args.backends,
               out=args.out, resume=args.resume,
               filter=args.filter, shard=args.shard, max_cases=args.max_cases,
               dry_run=args.dry_run, report=args.report, cache_dir=args.cache_dir,
               device=args.device, progress=not args.no_progress,
               timing={n: getattr(args, n) for n in common_args.timing_fields()},
               gpus=args.gpus, workers=args.workers, executor=args.executor,
               address=args.address)


def run(*, suite: str | Path | None = None, cases: list[str] | None = None,
        sets: list[str] | None = None, backends: list[str] | None = None,
        out: str | Path = "results",
        resume: str | Path | None = None, filter: str | None = None,
        shard: tuple[int, int] | None = None, max_cases: int | None = None,
        dry_run: bool = False, report: bool = False, cache_dir: str | Path | None = None,
        device: int = 0, progress: bool = True, timing: dict[str, Any] | None = None,
        gpus: str | None = None, workers: int | None = None, executor: str | None = None,
        address: str | None = None, argv: list[str] | None = None) -> int:
    """Run ``suite``; ``timing`` overrides its ``[timing]`` keys (``None`` values are ignored).
    Returns the exit code (0, or 130 when interrupted with results kept)."""
    from bench.plan import make_plan
    from bench.rundirs import resolve_run_dir
    from bench.runner import run_suite
    from bench.suite import DEFAULT_MAX_CASES, load_suite
    from bench.suite_overrides import apply_sets, one_off_suite

    limit = max_cases or DEFAULT_MAX_CASES
    if cases and suite is not None:
        raise BenchError("--case: give either a suite file or --case, not both")
    if cases:
        the_suite = one_off_suite(cases, backends=backends, max_cases=limit)
    elif suite is not None:
        the_suite = load_suite(suite, max_cases=limit)
    else:
        raise BenchError("run: give a suite file or --case FIELDS")
    if sets:
        the_suite = apply_sets(the_suite, sets, max_cases=limit)
    if resume is not None:
        resume = resolve_run_dir(resume, Path(out))
    plan = make_plan(the_suite, backends=backends,
                     timing={k: v for k, v in (timing or {}).items() if v is not None},
                     out=Path(out), resume=Path(resume) if resume else None,
                     cache_dir=Path(cache_dir) if cache_dir else None, device_index=device,
                     filter=filter, shard=shard, progress=progress,
                     argv=list(sys.argv if argv is None else argv))
    con = console()
    if dry_run:
        print_cases(con, the_suite, list(plan.cases))
        return 0
    scale = {"gpus": gpus, "workers": workers, "executor": executor, "address": address}
    if any(v is not None for v in scale.values()):
        summary = run_scaled(plan, **scale)
    else:
        summary = run_suite(plan, interrupt_line=lambda s: interrupted_line(s, plan))
    for name, reason in summary.unavailable.items():
        con.print(f"[yellow]skipped backend {safe(name)}: {safe(reason)}[/]")
    print_summary(con, summary.records)
    if summary.skipped:
        con.print(f"resumed: {summary.skipped} case(s) already done were skipped")
    con.print(f"results: {safe(summary.run_dir)}")
    if summary.interrupted:
        print(interrupted_line(summary, plan), file=sys.stderr)
        return EXIT_INTERRUPTED
    if report and summary.run_dir:
        from bench.report import write_report

        con.print(f"report: {safe(write_report(summary.run_dir))}")
    return 0


def interrupted_line(summary: Any, plan: Any) -> str:
    """The one line of an interrupted run (also printed by a forced exit on Ctrl-C): the
    command that continues it keeps the run's own options (backends, --set, timing flags)."""
    from bench.runner import resume_command

    return (f"interrupted: {len(summary.records)} new record(s) kept in {summary.run_dir}; "
            f"continue with: {resume_command(plan, summary.run_dir)}")


def run_scaled(plan: Any, *, gpus: str | None = None, workers: int | None = None,
               executor: str | None = None, address: str | None = None) -> Any:
    """The sweep over --gpus / --workers / --executor: the same summary as a plain run."""
    executor = executor or "local"
    if plan.repeats > 1:
        raise BenchError("--repeats: repeated passes run one after another on one GPU; they do "
                         "not combine with --gpus/--workers/--executor")
    if address and executor != "ray":
        raise BenchError("--address is for --executor ray")
    if executor == "ray":
        if gpus is not None:
            raise BenchError("--gpus is for the local executor; Ray uses every GPU of the "
                             "cluster (limit with --workers N)")
        from bench.scale.ray_executor import run_ray

        return run_ray(plan, address=address, workers=workers)
    from bench.scale.local import cpu_slots, gpu_slots, run_local

    if gpus is not None and workers is not None:
        raise BenchError("--gpus and --workers: pick one (GPU workers or CPU workers)")
    if gpus is None and workers is None:
        raise BenchError("--executor local needs --gpus all|0,1,... or --workers N")
    slots = gpu_slots(gpus) if gpus is not None else cpu_slots(workers)
    return run_local(plan, slots)
