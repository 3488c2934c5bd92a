"""Option groups defined once, for the ``convbench`` CLI and the pytest plugin.

Each ``add_*_options(addoption, prefix)`` takes an ``addoption`` callable with argparse's
signature (``ArgumentParser.add_argument``, an argument group's ``add_argument``, or pytest's
``OptionGroup.addoption``) and a flag prefix: ``""`` gives ``--min-time-s``, ``"convbench-"``
gives ``--convbench-min-time-s``. This is pytest-benchmark's ``add_global_options(addoption,
prefix)`` (src/pytest_benchmark/plugin.py, ``add_display_options`` and friends), which its
``pytest-benchmark`` CLI and its plugin share.

The timing group is generated from the fields of :class:`bench.suite.TimingConfig`: a field
``name`` becomes ``--name`` (underscores as dashes) with the field's type, ``choices`` from a
``Literal``, and the field's description as help. Every flag defaults to ``None``, meaning "the
suite's value". :func:`timing_overrides` reads the given flags back and validates them, so a bad
value is one ``BenchError`` naming the flag.
"""

from __future__ import annotations

import argparse
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Union

from bench.errors import BenchError

if TYPE_CHECKING:
    from pydantic import BaseModel
    from pydantic.fields import FieldInfo

    from bench.suite import TimingConfig

AddOption = Callable[..., Any]


# --- small argument types --------------------------------------------------------------------
def positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard expects I/N, got {text!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise argparse.ArgumentTypeError(f"--shard {text}: needs 0 <= I < N")
    return i, n


def _boolean(text: str) -> bool:
    v = text.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


# --- timing: generated from TimingConfig -----------------------------------------------------
def flag(name: str, prefix: str = "") -> str:
    """``min_time_s`` → ``--min-time-s`` (``--convbench-min-time-s`` with a prefix)."""
    return f"--{prefix}{name.replace('_', '-')}"


def _unwrap_optional(annotation: Any) -> Any:
    """``float | None`` → ``float``: a flag either gives a value or is left out."""
    if typing.get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _timing_option(name: str, info: FieldInfo) -> dict[str, Any]:
    """argparse keywords for one ``TimingConfig`` field."""
    ann = _unwrap_optional(info.annotation)
    kw: dict[str, Any] = {"default": None}
    if typing.get_origin(ann) is Literal:
        choices = typing.get_args(ann)
        if not all(isinstance(c, str) for c in choices):
            raise TypeError(f"TimingConfig.{name}: only Literal[str, ...] becomes a flag")
        kw.update(choices=list(choices), metavar="|".join(choices))
    elif ann is bool:
        kw.update(type=_boolean, metavar="true|false")
    elif ann in (int, float, str):
        kw["type"] = ann
        kw["metavar"] = {int: "N", str: "TEXT"}.get(ann, "S" if name.endswith("_s") else "X")
    else:
        # a new field type needs a decision here; failing at parser build keeps it from being
        # silently left off the command line
        raise TypeError(f"TimingConfig.{name}: no command-line type for {ann!r}")
    default = "" if info.is_required() else f", default {info.get_default()!r}"
    help_text = f"{info.description or name} ([timing] {name}{default})"
    kw["help"] = help_text.replace("%", "%%")  # argparse formats help with %
    return kw


def timing_fields(model: type[BaseModel] | None = None) -> dict[str, FieldInfo]:
    """The fields of ``model`` (default: ``TimingConfig``) that become timing flags."""
    if model is None:
        from bench.suite import TimingConfig

        model = TimingConfig
    return dict(model.model_fields)


def add_timing_options(addoption: AddOption, prefix: str = "",
                       model: type[BaseModel] | None = None) -> None:
    """One flag per ``[timing]`` key (see the module docstring)."""
    for name, info in timing_fields(model).items():
        addoption(flag(name, prefix), dest=f"{prefix.replace('-', '_')}{name}",
                  **_timing_option(name, info))


def add_timing_group(parser: argparse.ArgumentParser,
                     model: type[BaseModel] | None = None) -> None:
    g = parser.add_argument_group("timing (override the suite's [timing])")
    add_timing_options(g.add_argument, model=model)


def effective_timing(base: TimingConfig, overrides: dict[str, Any],
                     prefix: str = "") -> TimingConfig:
    """``base`` (a suite's ``[timing]``) with ``overrides`` applied and validated by the run
    plan's :func:`bench.plan.validate_timing` — the one place that validates timing.

    A bad value is one ``BenchError`` naming the flag (``--min-samples: ...``, or
    ``--convbench-min-samples: ...`` with the pytest prefix).
    """
    from bench.plan import validate_timing

    overrides = {k: v for k, v in overrides.items() if v is not None}  # None: not given
    unknown = sorted(set(overrides) - set(timing_fields()))
    if unknown:
        raise BenchError(f"unknown timing setting {unknown[0]!r} "
                         f"(known: {', '.join(timing_fields())})")
    return validate_timing(base, overrides, prefix=f"--{prefix}")


def timing_overrides(args: argparse.Namespace | dict[str, Any], base: TimingConfig | None = None,
                     prefix: str = "") -> dict[str, Any]:
    """The timing flags given in ``args`` (a parsed namespace or its dict), checked against
    ``base`` (the suite's ``[timing]``; default: the defaults). Returns only the given keys."""
    from bench.suite import TimingConfig

    values = args if isinstance(args, dict) else vars(args)
    given = {n: values[n] for n in timing_fields() if values.get(n) is not None}
    cfg = effective_timing(base if base is not None else TimingConfig(), given, prefix)
    return {n: getattr(cfg, n) for n in given}


# --- where and on what a sweep runs ----------------------------------------------------------
def add_target_options(addoption: AddOption, prefix: str = "") -> None:
    """Backends, results root, caches and device: ``convbench run`` and the pytest plugin."""
    dest = prefix.replace("-", "_")
    addoption(flag("backend", prefix), action="append", dest=f"{dest}backends", default=None,
              metavar="NAME", help="backend to run (repeatable; default: the suite's backends)")
    addoption(flag("out", prefix), type=Path, default=Path("results"), dest=f"{dest}out",
              metavar="DIR", help="results root: runs go to OUT/<suite>/<run-id> "
                                  "(default: results)")
    add_cache_dir_option(addoption, prefix)
    add_device_option(addoption, prefix)


def add_cache_dir_option(addoption: AddOption, prefix: str = "") -> None:
    addoption(flag("cache_dir", prefix), type=Path, default=None,
              dest=f"{prefix.replace('-', '_')}cache_dir", metavar="DIR",
              help="engine/timing caches (default OUT/.cache)")


def add_device_option(addoption: AddOption, prefix: str = "") -> None:
    addoption(flag("device", prefix), type=int, default=0,
              dest=f"{prefix.replace('-', '_')}device", metavar="N",
              help="CUDA device index (default 0)")
