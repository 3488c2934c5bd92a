"""Write suite TOML text from a dict: what ``suite from-onnx``, ``--case`` and ``--set`` store.

A suite holds only TOML's plain values (strings, integers, floats, booleans, arrays, tables), so
a small writer covers it; the text it writes is read back by ``bench.suite.parse_suite`` (tests
check the round trip), so no second parser has to agree with it.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")

#: top-level tables in the order a reader expects them (others follow in their own order)
_TABLE_ORDER = ("model", "defaults", "sweep", "timing")


def key(name: str) -> str:
    return name if _BARE_KEY.match(name) else json.dumps(name)


def value(v: Any) -> str:
    """One TOML value. Strings as basic strings: JSON's escapes (``\\n``, ``\\"``, ``\\uXXXX``)
    are TOML's (toml.io/en/v1.0.0#string)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return ("-" if v < 0 else "") + ("nan" if math.isnan(v) else "inf")
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(value(e) for e in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{key(k)} = {value(e)}" for k, e in v.items()) + " }" if v \
            else "{}"
    raise TypeError(f"cannot write {type(v).__name__} to a suite file: {v!r}")


def _is_table_array(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(e, dict) for e in v)


def dump(doc: dict[str, Any], header: str = "") -> str:
    """``doc`` as TOML text: top-level values, then ``[tables]``, then ``[[arrays]]``."""
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    if lines:
        lines.append("")
    scalars = {k: v for k, v in doc.items() if not isinstance(v, dict) and not _is_table_array(v)}
    tables = {k: v for k, v in doc.items() if isinstance(v, dict)}
    arrays = {k: v for k, v in doc.items() if _is_table_array(v)}
    lines += [f"{key(k)} = {value(v)}" for k, v in scalars.items()]
    order = [k for k in _TABLE_ORDER if k in tables] + [k for k in tables
                                                        if k not in _TABLE_ORDER]
    for name in order:
        lines += ["", f"[{key(name)}]"]
        lines += [f"{key(k)} = {value(v)}" for k, v in tables[name].items()]
    for name, items in arrays.items():
        for item in items:
            lines += ["", f"[[{key(name)}]]"]
            lines += [f"{key(k)} = {value(v)}" for k, v in item.items()]
    return "\n".join(lines) + "\n"
