"""The ``convbench`` subcommands: one module each, listed here, imported when the parser is built.

Each module has three layers (asv's asv/commands/compare.py: ``setup_arguments``,
``run_from_args``, ``run``):

- ``add_arguments(parser)``: the subcommand's options;
- ``main(args)``: maps the parsed namespace to keywords, nothing else;
- ``run(...)``: a plain function with keyword arguments that tests and notebooks call without
  argparse; it prints and returns the exit code.

A command whose module fails to import (an optional dependency missing, a broken install) still
shows up in ``convbench --help`` and, when called, prints why and the install hint and exits 1,
instead of breaking every other command: Polygraphy's ``MissingTool``
(NVIDIA/TensorRT tools/Polygraphy/polygraphy/tools/registry.py, ``try_register_tool``). Only
``ImportError`` is caught: any other exception in a command module is a bug and keeps its
traceback.

No command module imports ``bench.cli``: the entry point sits on top, commands below it.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass

EXIT_USER_ERROR = 1
EXIT_INTERRUPTED = 130


@dataclass(frozen=True)
class Command:
    name: str
    module: str  # imported when the parser is built, never at ``import bench.commands``
    help: str
    install: str = ""  # what to install when the module cannot be imported


#: in the order ``convbench --help`` lists them (a workflow's order, as asv's command_order)
COMMANDS: tuple[Command, ...] = (
    Command("run", "bench.commands.run", "run a suite and store every result"),
    Command("show", "bench.commands.show",
            "print a suite's expanded cases without running anything"),
    Command("report", "bench.commands.report", "write report.md (+ plots) for a run directory"),
    Command("compare", "bench.commands.compare",
            "compare two runs: FAST / SLOW / SAME / AMBIGUOUS per case; exit 1 if any case got "
            "slower or broke"),
    Command("export", "bench.commands.export",
            "results as CSV/Parquet tables and trtexec-style JSON"),
    Command("merge", "bench.commands.merge", "join shard run directories into one run"),
    Command("profile", "bench.commands.profile",
            "run one case with profiler ranges; print nsys/ncu lines"),
    Command("calibrate", "bench.commands.calibrate",
            "measure this GPU's copy bandwidth and matmul TFLOP/s for the roofline (needs torch "
            "with CUDA)", install="pip install 'trt-convbench[torch]'"),
    Command("doctor", "bench.commands.doctor",
            "which backends and GPUs can run here, and why not"),
    Command("suite", "bench.commands.suite", "make suite files (from an ONNX model)",
            install="pip install 'trt-convbench[onnx]'"),
)

#: top-level package of a missing module → the install command that brings it
INSTALL_HINTS: dict[str, str] = {
    "torch": "pip install 'trt-convbench[torch]'",
    "tensorrt": "pip install 'trt-convbench[tensorrt]'",
    "tensorrt_rtx": "pip install 'trt-convbench[tensorrt-rtx]'",
    "ray": "pip install 'trt-convbench[ray]'",
    "pyarrow": "pip install pyarrow",
}
DEFAULT_HINT = "reinstall convbench with its dependencies: pip install -e ."


def install_hint(command: Command, err: ImportError) -> str:
    top = (err.name or "").split(".")[0]
    return INSTALL_HINTS.get(top) or command.install or DEFAULT_HINT


class MissingCommand:
    """Stands in for a command whose module failed to import: ``main`` says why, exit 1."""

    def __init__(self, command: Command, err: ImportError) -> None:
        self.command = command
        self.err = err

    @property
    def reason(self) -> str:
        return " ".join(str(self.err).split()) or type(self.err).__name__

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        # accept whatever was typed: the point is the message below, not a usage error
        parser.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)

    def main(self, args: argparse.Namespace) -> int:
        print(f"convbench: error: {self.command.name} is unavailable ({self.reason}): "
              f"{install_hint(self.command, self.err)}", file=sys.stderr)
        return EXIT_USER_ERROR


def load(command: Command) -> object:
    """The command's module, or a ``MissingCommand`` when it cannot be imported."""
    try:
        return importlib.import_module(command.module)
    except ImportError as e:
        return MissingCommand(command, e)


def build_parser(commands: Sequence[Command] | None = None) -> argparse.ArgumentParser:
    """The ``convbench`` parser with every command of ``commands`` (default: ``COMMANDS``)."""
    from bench import __version__

    p = argparse.ArgumentParser(prog="convbench",
                                description="Benchmark convolution layers on TensorRT and cuDNN.")
    p.add_argument("--version", action="version", version=f"convbench {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for c in COMMANDS if commands is None else commands:
        mod = load(c)
        missing = isinstance(mod, MissingCommand)
        help_text = f"{c.help} [unavailable: {mod.reason}]" if missing else c.help
        parser = sub.add_parser(c.name, help=help_text, description=help_text)
        mod.add_arguments(parser)  # type: ignore[attr-defined]
        parser.set_defaults(func=mod.main)  # type: ignore[attr-defined]
    return p
