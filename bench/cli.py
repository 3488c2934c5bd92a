"""The ``convbench`` command: parse arguments, call the library, map ``BenchError`` to one line.

Each subcommand is three layers (as in asv): ``add_*_args(parser)``, then ``cmd_*(args)`` maps
arguments to keywords, then plain library functions that tests and notebooks call directly.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

from bench.errors import BenchError

EXIT_USER_ERROR = 1
EXIT_INTERRUPTED = 130


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    # a pipe or CI log gets a wide table instead of rich's 80-column default
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else 160
    return Console(stderr=stderr, width=width)


# --- shared option groups -------------------------------------------------------------------
def add_timing_args(p: argparse.ArgumentParser) -> None:
    """Timing options, defined once (the pytest plugin reuses them)."""
    g = p.add_argument_group("timing (override the suite's [timing])")
    g.add_argument("--mode", choices=["auto", "graph", "events", "host"])
    g.add_argument("--l2", choices=["warm", "cold"])
    g.add_argument("--warmup-s", type=float)
    g.add_argument("--min-samples", type=int)
    g.add_argument("--min-time-s", type=float)
    g.add_argument("--max-time-s", type=float)
    g.add_argument("--target-rse", type=float)
    g.add_argument("--profile-iters", type=int)


def timing_overrides(args: argparse.Namespace) -> dict[str, Any]:
    names = ["mode", "l2", "warmup_s", "min_samples", "min_time_s", "max_time_s", "target_rse",
             "profile_iters"]
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def _shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard expects I/N, got {text!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise argparse.ArgumentTypeError(f"--shard {text}: needs 0 <= I < N")
    return i, n


# --- run ---------------------------------------------------------------------------------------
def add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("suite", type=Path, help="suite TOML file")
    p.add_argument("--backend", action="append", dest="backends",
                   help="backend to run (repeatable; default: the suite's backends)")
    p.add_argument("--out", type=Path, default=Path("results"), help="results root")
    p.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue an interrupted run")
    p.add_argument("--filter", metavar="EXPR",
                   help="only cases matching, e.g. \"precision == 'fp16' and in_channels >= 64\"")
    p.add_argument("--shard", type=_shard, metavar="I/N", help="only cases with index %% N == I")
    p.add_argument("--max-cases", type=_positive_int, default=None,
                   help="refuse larger sweeps (10000)")
    p.add_argument("--dry-run", action="store_true", help="list the cases, run nothing")
    p.add_argument("--report", action="store_true", help="write the report after the run")
    p.add_argument("--cache-dir", type=Path, help="engine/timing caches (default OUT/.cache)")
    p.add_argument("--device", type=int, default=0, help="CUDA device index")
    p.add_argument("--no-progress", action="store_true")
    add_timing_args(p)
    from bench.scale.cli import add_scale_args

    add_scale_args(p)


def cmd_run(args: argparse.Namespace) -> int:
    from bench.runner import RunOptions, run_suite
    from bench.suite import DEFAULT_MAX_CASES, load_suite

    suite = load_suite(args.suite, max_cases=args.max_cases or DEFAULT_MAX_CASES)
    opts = RunOptions(out=args.out, backends=args.backends, resume=args.resume,
                      filter=args.filter, shard=args.shard, dry_run=args.dry_run,
                      timing=timing_overrides(args), cache_dir=args.cache_dir,
                      device_index=args.device, progress=not args.no_progress)
    out = _console()
    if args.dry_run:
        from bench.runner import select_cases

        cases = select_cases(suite, args.filter, args.shard)
        _print_cases(out, suite, cases)
        return 0
    from bench.scale.cli import run_scaled, wants_scale_out

    summary = run_scaled(suite, opts, args) if wants_scale_out(args) else run_suite(suite, opts)
    from rich.markup import escape

    for name, reason in summary.unavailable.items():
        out.print(f"[yellow]skipped backend {name}: {escape(reason)}[/]")
    _print_summary(out, summary.records)
    if summary.skipped:
        out.print(f"resumed: {summary.skipped} case(s) already done were skipped")
    out.print(f"results: {summary.run_dir}")
    if summary.interrupted:
        print(f"interrupted: {len(summary.records)} new record(s) kept in {summary.run_dir}; "
              f"continue with: convbench run {args.suite} --resume {summary.run_dir}",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    if args.report and summary.run_dir:
        from bench.report import write_report

        path = write_report(summary.run_dir)
        out.print(f"report: {path}")
    return 0


def _print_cases(out: Any, suite: Any, cases: list[Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

    t = Table(title=escape(f"{suite.name}: {len(cases)} case(s) × backends "
                           f"{', '.join(suite.backends)}"))
    for col in ("#", "name", "key", "output", "GFLOP", "FLOP/B"):
        t.add_column(col, justify="right" if col in ("#", "GFLOP", "FLOP/B") else "left")
    for c in cases:
        s = c.spec
        t.add_row(str(c.index), escape(c.name), c.key, "x".join(map(str, s.output_shape)),
                  f"{s.flops / 1e9:.3f}", f"{s.intensity:.1f}")
    out.print(t)


def _print_summary(out: Any, records: list[dict[str, Any]]) -> None:
    from rich.markup import escape
    from rich.table import Table

    if not records:
        return
    t = Table(title="results")
    for col in ("case", "backend", "status", "median ms", "95% CI", "noise", "TFLOP/s",
                "rel err"):
        t.add_column(col, justify="left" if col in ("case", "backend", "status") else "right")
    for r in records:
        st = r.get("stats") or {}
        med = st.get("median")
        chk = r.get("check") or {}
        t.add_row(
            escape(r["name"]), r["backend"],
            r["status"] if r["status"] == "ok" else f"[red]{r['status']}",
            f"{med:.4f}" if med else "-",
            f"{st['median_ci_low']:.4f}–{st['median_ci_high']:.4f}" if med else "-",
            f"{st['rse'] * 100:.2f}%" if st.get("rse") is not None else "-",
            f"{r['derived']['flops'] / med / 1e9:.3f}" if med else "-",
            f"{chk['rel_err']:.1e}" if chk.get("rel_err") is not None else "-",
        )
    out.print(t)
    bad = [r for r in records if r["status"] != "ok"]
    for r in bad[:20]:
        out.print(f"[red]{r['status']}[/] {r['backend']} {escape(r['name'])}: "
                  f"{escape(str(r.get('error')))}")


# --- show / doctor / report ---------------------------------------------------------------------
def cmd_show(args: argparse.Namespace) -> int:
    from bench.runner import select_cases
    from bench.suite import DEFAULT_MAX_CASES, load_suite

    suite = load_suite(args.suite, max_cases=args.max_cases or DEFAULT_MAX_CASES)
    _print_cases(_console(), suite, select_cases(suite, args.filter, None))
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from rich.markup import escape
    from rich.table import Table

    from bench.backends.registry import backend_status

    t = Table(title="convbench doctor")
    for col in ("backend", "available", "versions / reason"):
        t.add_column(col)
    for name, ok, reason, versions in backend_status():
        detail = ", ".join(f"{k} {v}" for k, v in versions.items()) if ok else reason
        t.add_row(name, "[green]yes" if ok else "[red]no", escape(detail))
    out = _console()
    out.print(t)
    from bench.gpu import cuda

    reason = cuda.unavailable_reason()
    if reason:
        out.print(f"CUDA: {escape(reason)}")
    else:
        info = cuda.Device(0).info
        out.print(f"CUDA device 0: {info.name}, CC {info.cc[0]}.{info.cc[1]}, {info.sm_count} SMs,"
                  f" L2 {info.l2_bytes >> 20} MiB, {info.total_mem >> 30} GiB, {info.uuid}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from bench.report import write_report

    path = write_report(args.run_dir, out_root=args.out)
    _console().print(f"report: {path}")
    return 0


# --- main ------------------------------------------------------------------------------------
#: modules that add subcommands: each defines ``register(subparsers)`` and imports nothing heavy
#: at module level. One line per module, so features stay in their own modules.
COMMAND_MODULES: list[str] = [
    "bench.scale.cli",
    "bench.compare",
    "bench.export",
    "bench.calibrate",
    "bench.profile_cmd",
    "bench.onnx_cmd",
]


# --- parser --------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="convbench",
                                description="Benchmark convolution layers on TensorRT and cuDNN.")
    sub = p.add_subparsers(dest="command", required=True)
    add_run_args(r := sub.add_parser("run", help="run a suite and store every result"))
    r.set_defaults(func=cmd_run)
    s = sub.add_parser("show", help="print a suite's expanded cases without running anything")
    s.add_argument("suite", type=Path)
    s.add_argument("--filter", metavar="EXPR")
    s.add_argument("--max-cases", type=_positive_int, default=None)
    s.set_defaults(func=cmd_show)
    d = sub.add_parser("doctor", help="which backends and GPUs can run here, and why not")
    d.set_defaults(func=cmd_doctor)
    rep = sub.add_parser("report", help="write report.md (+ plots) for a run directory")
    rep.add_argument("run_dir", type=Path)
    rep.add_argument("--out", type=Path, default=Path("reports"), help="reports root")
    rep.set_defaults(func=cmd_report)
    import importlib

    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            return int(args.func(args))
    except BenchError as e:
        print(f"convbench: error: {' '.join(str(e).split())}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("convbench: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
