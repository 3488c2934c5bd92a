"""``convbench show SUITE``: the expanded cases of a suite; nothing runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.commands import common_args
from bench.commands._output import console, print_cases


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("suite", type=Path)
    p.add_argument("--filter", metavar="EXPR")
    p.add_argument("--max-cases", type=common_args.positive_int, default=None)


def main(args: argparse.Namespace) -> int:
    return run(suite=args.suite, filter=args.filter, max_cases=args.max_cases)


def run(*, suite: str | Path, filter: str | None = None, max_cases: int | None = None) -> int:
    from bench.plan import select_cases
    from bench.suite import DEFAULT_MAX_CASES, load_suite

    the_suite = load_suite(suite, max_cases=max_cases or DEFAULT_MAX_CASES)
    print_cases(console(), the_suite, select_cases(the_suite, filter, None))
    return 0
