"""The ``convbench`` entry point: parse arguments, run the subcommand, map ``BenchError`` to one
line and exit 1 (Polygraphy's tools/_main.py). The subcommands live in :mod:`bench.commands`,
one module each; nothing there imports this module.
"""

from __future__ import annotations

import os
import sys
import warnings

from bench.commands import EXIT_INTERRUPTED, EXIT_USER_ERROR, build_parser
from bench.errors import BenchError
from bench.text import plain

__all__ = ["main", "build_parser", "EXIT_USER_ERROR", "EXIT_INTERRUPTED"]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            return int(args.func(args))
    except BenchError as e:
        print(f"convbench: error: {plain(' '.join(str(e).split()))}", file=sys.stderr)
        if getattr(e, "exit_now", False):  # the GPU is stuck: no exit handler may wait for it
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(EXIT_USER_ERROR)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("convbench: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
