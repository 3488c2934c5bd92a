"""Suite files: load a TOML file, validate it, expand it into cases.

Every problem is a ``SuiteError`` with one line naming the file, the key and the reason, raised
before any work starts.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
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
#: keys of a ``[[cases]]`` entry that describe the case, not the conv: kept out of ConvSpec and
#: so out of the case key. ``count``/``nodes``: how often and where a model holds the layer
CASE_META = frozenset({"label", "count", "nodes"})
DEFAULT_MAX_CASES = 10_000


class TimingConfig(BaseModel):
    """``[timing]``: how cases are measured (CLI flags override)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["auto", "graph", "events", "host"] = "auto"
    l2: Literal["warm", "cold"] = "warm"
    warmup_s: float = Field(0.2, ge=0)
    min_samples: int = Field(10, ge=2)
    min_time_s: float = Field(0.5, ge=0)
    max_time_s: float = Field(10.0, gt=0)
    target_rse: float = Field(0.005, gt=0)
    profile_iters: int = Field(20, ge=0)

    def settings(self) -> TimingSettings:
        # a --max-time-s below min_time_s caps the minimum too: else no case could converge
        return TimingSettings(warmup_s=self.warmup_s, min_samples=self.min_samples,
                              min_time_s=min(self.min_time_s, self.max_time_s),
                              max_time_s=self.max_time_s,
                              target_rse=self.target_rse)


class ModelInfo(BaseModel):
    """``[model]``: the model a suite was made from (``convbench suite from-onnx``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str = Field(min_length=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    inputs: dict[str, list[int]] = Field(default_factory=dict)  # the shapes it was read with
    conv_nodes: int = Field(0, ge=0)  # 2-D Conv nodes in the model (sum of the cases' counts)


class SuiteFile(BaseModel):
    """The schema of a suite file. Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,80}$")
    description: str = ""
    backends: list[str] = Field(default_factory=lambda: ["torch"], min_length=1)
    defaults: dict[str, Any] = Field(default_factory=dict)
    sweep: dict[str, list[Any]] = Field(default_factory=dict)
    zip: list[dict[str, list[Any]]] = Field(default_factory=list)
    cases: list[dict[str, Any]] = Field(default_factory=list)
    timing: TimingConfig = Field(default_factory=TimingConfig)
    model: ModelInfo | None = None

    @field_validator("backends")
    @classmethod
    def _known_backends(cls, names: list[str]) -> list[str]:
        from bench.backends.registry import BACKENDS  # a dict of names; imports no backend

        unknown = [n for n in names if n not in BACKENDS]
        if unknown:
            raise ValueError(f"unknown backend {unknown[0]!r} (known: {', '.join(BACKENDS)})")
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
        for i, c in enumerate(cases):
            _check_keys({k: v for k, v in c.items() if k not in CASE_META})
            count = c.get("count", 1)
            if not isinstance(count, int) or isinstance(count, bool) or count < 1:
                raise ValueError(f"cases[{i}].count: must be a positive integer, got {count!r}")
            nodes = c.get("nodes", [])
            if not isinstance(nodes, list) or not all(isinstance(n, str) for n in nodes):
                raise ValueError(f"cases[{i}].nodes: must be a list of strings")
        return cases


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
    count: int = 1  # occurrences of this layer in the model the suite came from
    nodes: tuple[str, ...] = ()  # the model's node names of those occurrences

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
    model: ModelInfo | None = None  # set when the suite was made from a model


def load_suite(path: str | Path, max_cases: int = DEFAULT_MAX_CASES) -> Suite:
    """Read, validate and expand a suite file; any problem is one ``SuiteError`` line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SuiteError(f"{path}: no such suite file") from None
    except IsADirectoryError:
        raise SuiteError(f"{path}: is a directory, not a suite file") from None
    except UnicodeDecodeError as e:
        raise SuiteError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise SuiteError(f"{path}: cannot read ({e.strerror})") from None
    return parse_suite(text, source=str(path), max_cases=max_cases, path=path)


def parse_suite(text: str, source: str = "<suite>", max_cases: int = DEFAULT_MAX_CASES,
                path: Path | None = None) -> Suite:
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
    try:
        # strict: TOML has real types, so batch = "8" or bias = 1 is a mistake, not a number
        model = SuiteFile.model_validate(raw, strict=True)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise SuiteError(f"{source}: {loc}: {_one_line(_pydantic_msg(err))}") from None
    cases = _expand(model, source, max_cases)
    return Suite(name=model.name, description=model.description, backends=tuple(model.backends),
                 timing=model.timing, cases=tuple(cases), path=path, text=text,
                 model=model.model)


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
    bases: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = []
    if model.cases:
        for i, c in enumerate(model.cases):
            clash = sorted(swept & set(c))
            if clash:
                raise SuiteError(f"{source}: cases[{i}].{clash[0]}: also swept in [sweep]/[[zip]]"
                                 "; set it in one place")
            label = c.get("label", "")
            if not isinstance(label, str):
                raise SuiteError(f"{source}: cases[{i}].label: must be a string")
            meta = {"count": c.get("count", 1), "nodes": tuple(c.get("nodes", ()))}
            bases.append((f"cases[{i}]", label, {**model.defaults, **{
                k: v for k, v in c.items() if k not in CASE_META}}, meta))
    else:
        bases.append(("defaults", "", dict(model.defaults), {}))
    axes: list[list[dict[str, Any]]] = [
        [{k: v} for v in values] for k, values in model.sweep.items()
    ]
    for group in model.zip:
        keys = list(group)
        axes.append([dict(zip(keys, vals)) for vals in zip(*group.values())])
    out: list[Case] = []
    seen: dict[str, tuple[int, str]] = {}
    for where, label, base, meta in bases:
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
                # the same conv reached twice (e.g. padding 1 and "same"): run it once; two
                # listed model layers that are the same conv add up their occurrences
                at, first_where = seen[spec.key]
                if meta and first_where != where:
                    prev = out[at]
                    out[at] = dataclasses.replace(prev, count=prev.count + meta["count"],
                                                  nodes=prev.nodes + meta["nodes"])
                continue
            seen[spec.key] = (len(out), where)
            variant = ",".join(f"{k}={_fmt(v)}" for part in combo for k, v in part.items())
            out.append(Case(index=len(out), spec=spec, label=label,
                            variant=variant if label else "", **meta))
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
