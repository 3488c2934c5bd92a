"""``convbench report RUN_DIR``: report.md, report.html and plots for a run directory."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.commands._output import console
from bench.text import safe


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="run directory, or latest / latest~N (under --results)")
    p.add_argument("--results", type=Path, default=Path("results"),
                   help="results root that latest refers to (default: results)")
    p.add_argument("--out", type=Path, default=Path("reports"), help="reports root")


def main(args: argparse.Namespace) -> int:
    from bench.rundirs import resolve_run_dir

    return run(run_dir=resolve_run_dir(args.run_dir, args.results), out=args.out)


def run(*, run_dir: str | Path, out: str | Path = "reports") -> int:
    from bench.report import write_report
    from bench.report.render import incomplete_note
    from bench.store import load_records, read_run_info

    path = write_report(run_dir, out_root=out)
    con = console()
    con.print(f"report: {safe(path)}")
    note = incomplete_note(read_run_info(Path(run_dir)), len(load_records(Path(run_dir))),
                           run_dir)
    if note:
        con.print(f"[yellow]{safe(note.replace('**', '').replace('`', ''))}[/]")
    return 0
