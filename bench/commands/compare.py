"""``convbench compare BASE NEW``: a verdict per case (rules in :mod:`bench.compare`)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from bench.commands._output import console
from bench.compare import (
    DEFAULT_ALPHA,
    DEFAULT_THRESHOLD,
    Comparison,
    compare_runs,
    kernel_note,
    parse_threshold,
    write_plot,
)
from bench.errors import BenchError
from bench.text import safe

STYLE = {"SLOW": "red", "FAILED": "red", "FAST": "green", "AMBIGUOUS": "yellow"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("base", help="baseline run directory (or latest~N)")
    p.add_argument("new", help="run directory to judge (or latest)")
    p.add_argument("--results", type=Path, default=Path("results"),
                   help="results root that latest refers to (default: results)")
    p.add_argument("--threshold", type=parse_threshold, default=DEFAULT_THRESHOLD,
                   help="smallest change of the median that counts (default 5%%)")
    p.add_argument("--alpha", type=float, default=DEFAULT_ALPHA,
                   help="p-value below which the Mann-Whitney U test calls a change real "
                        "(default 0.001)")
    p.add_argument("--allow-different-gpus", action="store_true",
                   help="compare runs made on different GPU models")
    p.add_argument("--plot", type=Path, metavar="PNG", help="also write the comparison plot")
    p.add_argument("--csv", type=Path, metavar="CSV", help="also write the table as CSV")


def main(args: argparse.Namespace) -> int:
    from bench.rundirs import resolve_run_dir

    return run(base=resolve_run_dir(args.base, args.results),
               new=resolve_run_dir(args.new, args.results), threshold=args.threshold,
               alpha=args.alpha,
               allow_different_gpus=args.allow_different_gpus, plot=args.plot, csv=args.csv)


def run(*, base: str | Path, new: str | Path, threshold: float = DEFAULT_THRESHOLD,
        alpha: float = DEFAULT_ALPHA, allow_different_gpus: bool = False,
        plot: str | Path | None = None, csv: str | Path | None = None) -> int:
    """Print the comparison table; exit code 1 when any case is SLOW or FAILED."""
    cmp = compare_runs(base, new, threshold=threshold, alpha=alpha,
                       allow_different_gpus=allow_different_gpus)
    print_comparison(cmp)
    from bench.paths import staged_file

    try:
        if csv:
            with staged_file(Path(csv)) as tmp:  # never a truncated CSV under its name
                cmp.table.to_csv(tmp, index=False)
        if plot:
            path = write_plot(cmp, Path(plot))
            if path:
                print(f"plot: {path}")
    except OSError as e:
        raise BenchError(f"{e.filename or csv or plot}: cannot write "
                         f"({e.strerror or e})") from None
    return 1 if cmp.regressed else 0


def _num(v: Any, fmt: str) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def print_comparison(cmp: Comparison) -> None:
    from rich.table import Table

    t = Table(title=f"compare (threshold {cmp.threshold * 100:g} %, p < {cmp.alpha:g})")
    left = ("case", "backend", "verdict", "basis", "kernels")
    for col in ("case", "backend", "base ms", "new ms", "new/base", "p", "verdict", "basis",
                "kernels"):
        t.add_column(col, justify="left" if col in left else "right")
    for r in cmp.table.itertuples(index=False):
        v = r.verdict
        t.add_row(safe(r.name), safe(r.backend), _num(r.base_median_ms, ".4f"),
                  _num(r.new_median_ms, ".4f"), _num(r.ratio, ".3f"), _num(r.p_value, ".1g"),
                  f"[{STYLE[v]}]{v}[/]" if v in STYLE else v,
                  safe(getattr(r, "basis", None) or "-"),
                  safe(r.kernel_diff or r.kernels))
    out = console()
    out.print(t)
    unstable = [f"{r.name} ({r.selection})" for r in cmp.table.itertuples(index=False)
                if getattr(r, "selection", "")]
    if unstable:
        out.print("[yellow]selection-unstable (verdicts rest on several kernel sets):[/] "
                  + safe("; ".join(unstable[:10])))
    out.print(", ".join(f"{k}: {v}" for k, v in sorted(cmp.counts().items())))
    from bench.plan import planned_results

    for which, info, col in (("BASE", cmp.base_info, "base_status"),
                             ("NEW", cmp.new_info, "new_status")):
        planned = planned_results(info)
        n = int(cmp.table[col].notna().sum()) if col in cmp.table else 0
        if planned is not None and n < planned:  # its missing cases read as NEW / GONE
            out.print(f"[yellow]{which} is an incomplete run: {n} of {planned} results "
                      "recorded[/]")
    note = kernel_note(cmp)
    if note:
        out.print(note)
