"""Suite files: load a TOML file, validate it, expand it into cases.

Every problem is a ``SuiteError`` with one line naming the file, the key and the reason, raised
before any work starts.
"""

from __future__ import annotations

import itertools
import os
import re
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bench.errors import SuiteError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib
from bench.spec import ConvSpec
from bench.timing import TimingSettings

SPEC_FIELDS = frozenset(ConvSpec.model_fields)
DEFAULT_MAX_CASES = 10_000
#: a suite file is a few kilobytes; anything larger than this is not one (or is /dev/zero)
MAX_SUITE_BYTES = 1 << 20
#: TOML integers are 64-bit (toml.io/en/v1.0.0#integer); Python's tomllib reads any size
INT64 = (-(2**63), 2**63 - 1)
#: timing values above this are a typo (or inf), not a plan: no case is timed for an hour
MAX_TIMING_S = 3600.0


class TimingConfig(BaseModel):
    """``[timing]``: how cases are measured (CLI flags override)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["auto", "graph", "events", "host"] = "auto"
    l2: Literal["warm", "cold"] = "warm"
    warmup_s: float = Field(0.2, ge=0, le=MAX_TIMING_S, allow_inf_nan=False)
    min_samples: int = Field(10, ge=2, le=1_000_000)
    min_time_s: float = Field(0.5, ge=0, le=MAX_TIMING_S, allow_inf_nan=False)
    max_time_s: float = Field(10.0, gt=0, le=MAX_TIMING_S, allow_inf_nan=False)
    target_rse: float = Field(0.005, ge=1e-6, allow_inf_nan=False)
    profile_iters: int = Field(20, ge=0, le=10_000)

    def settings(self) -> TimingSettings:
        # a --max-time-s below min_time_s caps the minimum too: else no case could converge
        return TimingSettings(warmup_s=self.warmup_s, min_samples=self.min_samples,
                              min_time_s=min(self.min_time_s, self.max_time_s),
                              max_time_s=self.max_time_s,
                              target_rse=self.target_rse)


class SuiteFile(BaseModel):
    """The schema of a suite file. Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # becomes a directory name: bench.paths.NAME_RE (no "..", no leading dot)
    name: str = Field(pattern=r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,79}$")
    description: str = ""
    backends: list[str] = Field(default_factory=lambda: ["torch"], min_length=1)
    defaults: dict[str, Any] = Field(default_factory=dict)
    sweep: dict[str, list[Any]] = Field(default_factory=dict)
    zip: list[dict[str, list[Any]]] = Field(default_factory=list)
    cases: list[dict[str, Any]] = Field(default_factory=list)
    timing: TimingConfig = Field(default_factory=TimingConfig)

    @field_validator("backends")
    @classmethod
    def _known_backends(cls, names: list[str]) -> list[str]:
        from bench.backends.registry import BACKENDS  # a dict of names; imports no backend

        unknown = [n for n in names if n not in BACKENDS]
        if unknown:
            raise ValueError(f"unknown backend {unknown[0]!r} (known: {', '.join(BACKENDS)})")
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:  # each would write its own record of every case
            raise ValueError(f"backend {twice[0]!r} is listed twice")
        return names

    @field_validator("defaults", "sweep")
    @classmethod
    def _spec_keys(cls, v: dict[str, Any]) -> dict[str, Any]:
        _check_keys(v)
        for key, values in v.items():
            if isinstance(values, list) and not values:
                raise ValueError(f"{key}: empty list")
        return v

    @field_validator("zip")
    @classmethod
    def _zip_groups(cls, groups: list[dict[str, list[Any]]]) -> list[dict[str, list[Any]]]:
        for g in groups:
            _check_keys(g)
            lengths = {k: len(v) for k, v in g.items()}
            if len(set(lengths.values())) > 1:
                raise ValueError(f"lists of one group must have equal lengths, got {lengths}")
            if not g or 0 in lengths.values():
                raise ValueError("a zip group needs at least one non-empty list")
        return groups

    @field_validator("cases")
    @classmethod
    def _case_keys(cls, cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for c in cases:
            _check_keys({k: v for k, v in c.items() if k != "label"})
        return cases

    @field_validator("description")
    @classmethod
    def _printable(cls, text: str) -> str:
        _check_printable(text, allow="\n\t")
        return text


def _check_printable(text: str, allow: str = "") -> None:
    """Labels are shown in terminals, tables and plots: no control or format characters."""
    from bench.text import escape_controls

    bad = next((c for c in text if not c.isprintable() and c not in allow), None)
    if bad is not None:
        raise ValueError(f"contains the non-printable character {escape_controls(bad)} "
                         "(terminal escapes are not allowed in names and labels)")


def _check_keys(d: dict[str, Any]) -> None:
    unknown = sorted(set(d) - SPEC_FIELDS)
    if unknown:
        raise ValueError(f"unknown conv field {unknown[0]!r} "
                         f"(known: {', '.join(sorted(SPEC_FIELDS))})")


@dataclass(frozen=True)
class Case:
    """One point of a sweep: its position in the suite, an optional label, the spec."""

    index: int
    spec: ConvSpec
    label: str = ""
    variant: str = ""  # the swept values of a labelled case, e.g. "batch=32"

    @property
    def key(self) -> str:
        return self.spec.key

    @property
    def name(self) -> str:
        """The label (plus the swept values, so each point has its own name), else the
        spec's short name."""
        if not self.label:
            return self.spec.short_name()
        return f"{self.label} {self.variant}" if self.variant else self.label


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    backends: tuple[str, ...]
    timing: TimingConfig
    cases: tuple[Case, ...]
    path: Path | None = None
    text: str = ""


def load_suite(path: str | Path, max_cases: int = DEFAULT_MAX_CASES) -> Suite:
    """Read, validate and expand a suite file; any problem is one ``SuiteError`` line."""
    path = Path(path)
    try:
        text = _read_suite_bytes(path).decode("utf-8")
    except FileNotFoundError:
        raise SuiteError(f"{path}: no such suite file") from None
    except IsADirectoryError:
        raise SuiteError(f"{path}: is a directory, not a suite file") from None
    except UnicodeDecodeError as e:
        raise SuiteError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise SuiteError(f"{path}: cannot read ({e.strerror})") from None
    return parse_suite(text, source=str(path), max_cases=max_cases, path=path)


def _read_suite_bytes(path: Path) -> bytes:
    """The bytes of a regular file of at most ``MAX_SUITE_BYTES``. Opened non-blocking, so a
    FIFO with no writer cannot hang the open; devices and FIFOs are refused by type before any
    read, and the read itself is bounded."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(21, "Is a directory")
        if not stat.S_ISREG(st.st_mode):
            kind = ("a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device"
                    if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "a socket"
                    if stat.S_ISSOCK(st.st_mode) else "not a regular file")
            raise SuiteError(f"{path}: is {kind}, not a suite file (a regular file is needed)")
        chunks, size = [], 0
        while size <= MAX_SUITE_BYTES:
            chunk = os.read(fd, MAX_SUITE_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    if size > MAX_SUITE_BYTES:
        raise SuiteError(f"{path}: larger than {MAX_SUITE_BYTES >> 20} MiB; not a suite file")
    return b"".join(chunks)


def _strict_toml(text: str, source: str) -> None:
    """What Python's tomllib accepts beyond TOML 1.0: a bare CR as a line ending."""
    for m in re.finditer(r"\r(?!\n)", text):
        line = text.count("\n", 0, m.start()) + 1
        raise SuiteError(f"{source}: invalid TOML: a carriage return without a line feed at "
                         f"line {line} (TOML line endings are LF or CRLF)")


def _check_ints(obj: Any, where: str, source: str) -> None:
    """TOML integers are 64-bit; tomllib gives Python ints of any size (10**300)."""
    if isinstance(obj, bool):
        return
    if isinstance(obj, int):
        if not INT64[0] <= obj <= INT64[1]:
            digits = len(str(abs(obj)))
            raise SuiteError(f"{source}: {where}: integer of {digits} digits is beyond 64 bits")
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _check_ints(v, f"{where}.{k}" if where else str(k), source)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            _check_ints(v, f"{where}[{i}]", source)


def _check_axes(model: SuiteFile, source: str) -> None:
    """A key swept in two places would be silently replaced by the later one."""
    where: dict[str, str] = {k: f"sweep.{k}" for k in model.sweep}
    for i, group in enumerate(model.zip):
        for k in group:
            if k in where:
                raise SuiteError(f"{source}: zip[{i}].{k}: also swept in {where[k]}; "
                                 "set it in one place")
            where[k] = f"zip[{i}].{k}"


def _check_timing(model: SuiteFile, source: str) -> None:
    t = model.timing
    if t.mode == "host" and t.l2 == "cold":
        raise SuiteError(f"{source}: timing.l2: 'cold' needs timing.mode 'graph' or 'events' "
                         "(host timing never flushes L2)")


def parse_suite(text: str, source: str = "<suite>", max_cases: int = DEFAULT_MAX_CASES,
                path: Path | None = None) -> Suite:
    _strict_toml(text, source)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        hint = " (the file starts with a byte-order mark; save it without one)" if (
            text.startswith("\ufeff")) else ""
        raise SuiteError(f"{source}: invalid TOML: {_one_line(str(e))}{hint}") from None
    except RecursionError:  # tomllib recurses on nested arrays/inline tables
        raise SuiteError(f"{source}: invalid TOML: arrays or tables nested too deeply") from None
    if not raw:
        raise SuiteError(f"{source}: empty suite (needs at least 'name' and a conv)")
    _check_ints(raw, "", source)
    try:
        # strict: TOML has real types, so batch = "8" or bias = 1 is a mistake, not a number
        model = SuiteFile.model_validate(raw, strict=True)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise SuiteError(f"{source}: {loc}: {_one_line(_pydantic_msg(err))}") from None
    _check_axes(model, source)
    _check_timing(model, source)
    cases = _expand(model, source, max_cases)
    return Suite(name=model.name, description=model.description, backends=tuple(model.backends),
                 timing=model.timing, cases=tuple(cases), path=path, text=text)


def count_cases(model: SuiteFile) -> int:
    n = max(1, len(model.cases))
    for values in model.sweep.values():
        n *= len(values)
    for group in model.zip:
        n *= len(next(iter(group.values())))
    return n


def _expand(model: SuiteFile, source: str, max_cases: int) -> list[Case]:
    n = count_cases(model)
    if n > max_cases:
        raise SuiteError(f"{source}: sweep expands to {n} cases, more than the limit of "
                         f"{max_cases} (raise it with --max-cases)")
    swept = set(model.sweep) | {k for g in model.zip for k in g}
    bases: list[tuple[str, str, dict[str, Any]]] = []
    if model.cases:
        for i, c in enumerate(model.cases):
            clash = sorted(swept & set(c))
            if clash:
                raise SuiteError(f"{source}: cases[{i}].{clash[0]}: also swept in [sweep]/[[zip]]"
                                 "; set it in one place")
            label = c.get("label", "")
            if not isinstance(label, str):
                raise SuiteError(f"{source}: cases[{i}].label: must be a string")
            try:
                _check_printable(label)
            except ValueError as e:
                raise SuiteError(f"{source}: cases[{i}].label: {e}") from None
            bases.append((f"cases[{i}]", label,
                          {**model.defaults, **{k: v for k, v in c.items() if k != "label"}}))
    else:
        bases.append(("defaults", "", dict(model.defaults)))
    axes: list[list[dict[str, Any]]] = [
        [{k: v} for v in values] for k, values in model.sweep.items()
    ]
    for group in model.zip:
        keys = list(group)
        axes.append([dict(zip(keys, vals)) for vals in zip(*group.values())])
    out: list[Case] = []
    seen: dict[str, int] = {}
    for where, label, base in bases:
        for combo in itertools.product(*axes):
            fields = dict(base)
            for part in combo:
                fields.update(part)
            try:
                spec = ConvSpec.model_validate(fields, strict=True)
            except ValidationError as e:
                err = e.errors()[0]
                key = ".".join(str(p) for p in err["loc"]) or _guess_key(err["msg"])
                point = ", ".join(f"{k}={v}" for part in combo for k, v in part.items())
                at = f"{where}" + (f" ({point})" if point else "")
                raise SuiteError(f"{source}: {at}: {key + ': ' if key else ''}"
                                 f"{_one_line(_pydantic_msg(err))}") from None
            if spec.key in seen:
                continue  # the same conv reached twice (e.g. padding 1 and "same"): run it once
            seen[spec.key] = len(out)
            variant = ",".join(f"{k}={_fmt(v)}" for part in combo for k, v in part.items())
            out.append(Case(index=len(out), spec=spec, label=label,
                            variant=variant if label else ""))
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, list):
        return "x".join(str(e) for e in v)
    return str(v)


def _guess_key(msg: str) -> str:
    if "expected bytes" in msg:  # spec.parse_bytes, raised before pydantic knows the field
        return "workspace"
    for name in ("kernel", "padding", "groups", "in_channels", "workspace", "opt_level"):
        if name in msg:
            return name
    return ""


def _pydantic_msg(err: Any) -> str:
    if err.get("type") == "extra_forbidden":
        return "unknown key"
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")


def _one_line(s: str) -> str:
    return re.sub(r"\s+", " ", s).strip()
