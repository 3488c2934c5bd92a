"""Suites from the command line: one-off cases (``--case``) and axis overrides (``--set``).

Both produce suite *text* and read it back with ``bench.suite.parse_suite``, so a run made this
way is validated exactly like a file and stores in run.json the text it ran (``--resume`` then
compares that text, as for a file).

``--case "batch=8,in_channels=64,out_channels=64,height=56,width=56,kernel=3,padding=1"``: one
case per flag; pairs as ``3x1``. ``--set precision=fp16,fp32``: nvbench's ``-a axis=values``:
the axis becomes a [sweep] axis with these values and wins over the same key anywhere else in
the suite ([defaults], [[zip]] groups, [[cases]]).
"""

from __future__ import annotations

import re
import sys
from typing import Any

from bench import suite_text
from bench.errors import BenchError, SuiteError
from bench.suite import DEFAULT_MAX_CASES, SPEC_FIELDS, Suite, parse_suite

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ONE_OFF_NAME = "cases"
_INT = re.compile(r"^[+-]?\d+$")
_PAIR = re.compile(r"^(\d+)x(\d+)$")
_FLOAT = re.compile(r"^[+-]?(\d+\.\d*|\.\d+|\d+(\.\d*)?[eE][+-]?\d+)$")


def parse_value(text: str) -> Any:
    """A command-line value as the TOML value it stands for: ``8`` → 8, ``3x1`` → [3, 1],
    ``true`` → True, ``0.5`` → 0.5, anything else a string (``fp16``, ``256MiB``, ``same``)."""
    t = text.strip()
    if _INT.match(t):
        return int(t)
    m = _PAIR.match(t)
    if m:
        return [int(m.group(1)), int(m.group(2))]
    if t in ("true", "false"):
        return t == "true"
    if _FLOAT.match(t):
        return float(t)
    return t


def _known(name: str, flag: str, extra: frozenset[str] = frozenset()) -> None:
    if name not in SPEC_FIELDS | extra:
        raise BenchError(f"{flag}: unknown conv field {name!r} "
                         f"(known: {', '.join(sorted(SPEC_FIELDS))})")


def parse_case(text: str) -> dict[str, Any]:
    """``"batch=8,kernel=3x1,precision=fp16"`` → {"batch": 8, "kernel": [3, 1], ...}."""
    flag = f"--case {text!r}"
    out: dict[str, Any] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        k, sep, v = part.partition("=")
        k = k.strip()
        if not sep or not k or not v.strip():
            raise BenchError(f"{flag}: expected FIELD=VALUE pairs separated by commas, got "
                             f"{part!r}")
        _known(k, flag, frozenset({"label"}))
        if k in out:
            raise BenchError(f"{flag}: {k} given twice")
        out[k] = v.strip() if k == "label" else parse_value(v)
    if not out:
        raise BenchError(f"{flag}: empty case")
    return out


def one_off_suite(case_texts: list[str], backends: list[str] | None = None,
                  name: str = ONE_OFF_NAME, max_cases: int = DEFAULT_MAX_CASES) -> Suite:
    """A suite of the ``--case`` cases (one per text); its text is what run.json stores."""
    if not case_texts:
        raise BenchError("--case: give at least one case")
    doc: dict[str, Any] = {"name": name, "description": "one-off cases from --case"}
    if backends:
        doc["backends"] = list(backends)
    doc["cases"] = [parse_case(t) for t in case_texts]
    text = suite_text.dump(doc, header="made from --case flags")
    try:
        return parse_suite(text, source="--case", max_cases=max_cases)
    except SuiteError as e:
        raise SuiteError(_with_case_text(str(e), case_texts)) from None


def _with_case_text(msg: str, case_texts: list[str]) -> str:
    """``--case: cases[1] (...)`` → ``--case 'batch=...'``: name the flag the user typed."""
    m = re.match(r"^--case: cases\[(\d+)\]", msg)
    if m and int(m.group(1)) < len(case_texts):
        return f"--case {case_texts[int(m.group(1))]!r}" + msg[m.end():]
    return msg


def parse_set(text: str) -> tuple[str, list[Any]]:
    """``"precision=fp16,fp32"`` → ("precision", ["fp16", "fp32"])."""
    k, sep, v = text.partition("=")
    k = k.strip()
    flag = f"--set {text}"
    if not sep or not k:
        raise BenchError(f"{flag}: expected AXIS=V1,V2,..., e.g. --set precision=fp16,fp32")
    _known(k, flag)
    values = [parse_value(p) for p in v.split(",") if p.strip()]
    if not values:
        raise BenchError(f"{flag}: no values")
    if len({suite_text.value(x) for x in values}) != len(values):
        raise BenchError(f"{flag}: a value is given twice")
    return k, values


def apply_sets(suite: Suite, sets: list[str], max_cases: int = DEFAULT_MAX_CASES) -> Suite:
    """``suite`` with each ``--set AXIS=V1,V2`` as a [sweep] axis (replaced or added), the
    same key removed from [defaults], [[zip]] groups and [[cases]]; validated like a file."""
    if not sets:
        return suite
    if not suite.text:
        raise BenchError("--set: the suite has no text to change")
    doc = tomllib.loads(suite.text)
    axes = dict(parse_set(s) for s in sets)
    if len(axes) != len(sets):
        raise BenchError(f"--set: an axis is given twice ({', '.join(sets)})")
    sweep = dict(doc.get("sweep", {}))
    for k, values in axes.items():
        sweep[k] = values
        doc.get("defaults", {}).pop(k, None)
        for c in doc.get("cases", []):
            c.pop(k, None)
        groups = []
        for g in doc.get("zip", []):
            g.pop(k, None)
            if g:
                groups.append(g)
        if "zip" in doc:
            doc["zip"] = groups
    doc["sweep"] = sweep
    if not doc.get("zip"):
        doc.pop("zip", None)
    text = suite_text.dump(doc, header="from " + (str(suite.path) if suite.path else suite.name)
                           + " with " + " ".join(f"--set {s}" for s in sets))
    source = f"{suite.path or suite.name} with {' '.join(f'--set {s}' for s in sets)}"
    return parse_suite(text, source=source, path=suite.path, max_cases=max_cases)
