"""``convbench export RUN_DIR``: tables for other tools (formats in :mod:`bench.export`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.export import FORMATS, export_tables, export_trtexec
from bench.text import plain


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="run directory, or latest / latest~N (under --results)")
    p.add_argument("--results", type=Path, default=Path("results"),
                   help="results root that latest refers to (default: results)")
    p.add_argument("--format", choices=FORMATS, default="csv", help="table format (csv)")
    p.add_argument("--out", type=Path, help="output folder (default RUN_DIR/export)")
    p.add_argument("--trtexec", action="store_true",
                   help="also write per-case trtexec --exportTimes / --exportProfile JSON")


def main(args: argparse.Namespace) -> int:
    from bench.rundirs import resolve_run_dir

    return run(run_dir=resolve_run_dir(args.run_dir, args.results), format=args.format,
               out=args.out, trtexec=args.trtexec)


def run(*, run_dir: str | Path, format: str = "csv", out: str | Path | None = None,
        trtexec: bool = False) -> int:
    out_dir = Path(out) if out else Path(run_dir) / "export"
    paths = export_tables(run_dir, out_dir, format)
    if trtexec:
        paths += export_trtexec(run_dir, out_dir / "trtexec")
    print(plain(f"wrote {len(paths)} file(s) under {out_dir}"))
    return 0
