"""``convbench suite from-onnx MODEL -o suites/NAME.toml``: a suite of a model's convolutions.

Parser setup (``add_arguments``), ``main(args)``, then ``run(...)`` (plain keywords, what tests
call), then the library: ``bench.onnx_suite.suite_from_onnx``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from bench.commands.common_args import positive_int
from bench.errors import BenchError


def run(model: Path, output: Path | None = None, *, name: str | None = None,
        batch: int | None = None, input_shapes: list[str] | None = None,
        precisions: list[str] | None = None, backends: list[str] | None = None,
        force: bool = False, command: str = "") -> str:
    """Write the suite of ``model``'s convolutions to ``output`` (or return it only); returns
    the suite text."""
    from bench.onnx_suite import _onnx, parse_input_shape, suite_from_onnx

    _onnx()  # without the onnx package, say what to install before looking at the model

    shapes: dict[str, list[int]] = {}
    for text in input_shapes or []:
        n, dims = parse_input_shape(text)
        shapes[n] = dims
    if output is not None and output.exists() and not force:
        raise BenchError(f"{output}: already exists (pass --force to overwrite it)")
    text = suite_from_onnx(model, name=name, batch=batch, input_shapes=shapes,
                           precisions=precisions, backends=backends, command=command)
    if output is not None:
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(text, encoding="utf-8")
        except OSError as e:
            raise BenchError(f"{output}: cannot write ({e.strerror or e})") from None
    return text


def _split(values: list[Any] | None) -> list[str] | None:
    """``--precision fp16 fp32``, ``--precision fp16,fp32`` and repeated flags alike."""
    if not values:
        return None
    flat = [v for item in values for v in ([item] if isinstance(item, str) else item)]
    return [v for item in flat for v in item.split(",") if v]


def cmd_from_onnx(args: argparse.Namespace) -> int:
    from bench.suite import parse_suite

    text = run(args.model, args.output, name=args.name, batch=args.batch,
               input_shapes=args.input_shape, precisions=_split(args.precision),
               backends=_split(args.backends), force=args.force,
               command=shlex.join(["convbench", *sys.argv[1:]]))
    if args.output is None:
        sys.stdout.write(text)
        return 0
    suite = parse_suite(text, source=str(args.output))
    assert suite.model is not None
    print(f"{args.model}: {suite.model.conv_nodes} Conv node(s), "
          f"{len({c.nodes for c in suite.cases})} unique, {len(suite.cases)} case(s) -> "
          f"{args.output}")
    print(f"next: convbench run {shlex.quote(str(args.output))} --report")
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    ssub = p.add_subparsers(dest="suite_command", required=True)
    f = ssub.add_parser("from-onnx", help="a suite of every 2-D convolution of an ONNX model, "
                        "identical layers once with their count")
    f.add_argument("model", type=Path, help="ONNX model file")
    f.add_argument("-o", "--output", type=Path,
                   help="suite file to write (default: print it)")
    f.add_argument("--name", help="suite name (default: the model's file name)")
    f.add_argument("--batch", type=positive_int, help="batch size: the first dimension of every "
                   "model input")
    f.add_argument("--input-shape", action="append", metavar="NAME:1x3x224x224",
                   help="shape of a model input with dynamic dimensions (repeatable)")
    f.add_argument("--precision", action="append", nargs="+", metavar="P",
                   help="precisions to sweep: fp32 fp16 bf16 (default: the model's own)")
    f.add_argument("--backend", action="append", dest="backends", metavar="B",
                   help="backends of the suite (repeatable; default tensorrt and torch)")
    f.add_argument("--force", action="store_true", help="overwrite an existing suite file")
    f.set_defaults(suite_func=cmd_from_onnx)


def main(args: argparse.Namespace) -> int:
    return int(args.suite_func(args))
