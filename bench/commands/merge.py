"""``convbench merge RUN_DIR...``: join shard runs into one (rules in :mod:`bench.scale.merge`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.commands._output import console
from bench.text import safe


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR")
    p.add_argument("--out", type=Path, default=Path("results"),
                   help="results root; the merged run goes to OUT/<suite>/<run-id>")


def main(args: argparse.Namespace) -> int:
    return run(run_dirs=args.run_dirs, out=args.out)


def run(*, run_dirs: list[str | Path], out: str | Path = "results") -> int:
    from bench.scale.merge import merge_runs

    s = merge_runs([Path(d) for d in run_dirs], Path(out))
    con = console()
    con.print(f"merged {s.records} record(s) from {len(s.inputs)} run(s)")
    if s.expected is not None and s.records < s.expected:
        con.print(f"[yellow]{s.expected - s.records} of the suite's {s.expected} case × backend "
                  "pairs have no record (a shard missing or unfinished?)[/]")
    con.print(f"results: {safe(s.run_dir)}")
    return 0
