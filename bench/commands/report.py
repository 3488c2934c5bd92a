"""``convbench report RUN_DIR``: report.md, report.html and plots for a run directory."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.commands._output import console
from bench.text import safe


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", type=Path)
    p.add_argument("--out", type=Path, default=Path("reports"), help="reports root")


def main(args: argparse.Namespace) -> int:
    return run(run_dir=args.run_dir, out=args.out)


def run(*, run_dir: str | Path, out: str | Path = "reports") -> int:
    from bench.report import write_report

    path = write_report(run_dir, out_root=out)
    console().print(f"report: {safe(path)}")
    return 0
