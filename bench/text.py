"""Showing user-supplied text (case labels, error messages, reasons) safely.

One helper for every rich table and terminal line: rich markup is escaped (a label such as
``stem[/x]`` must not be read as a closing tag) and control characters — terminal escape
sequences such as ``\\x1b[2J`` or an OSC title, carriage returns, bells — are shown as
``\\x1b``-style escapes instead of being sent to the terminal.
"""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def plain(text: object) -> str:
    """``text`` with every control character except tab and newline made visible."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))


def safe(text: object) -> str:
    """``text`` ready for rich: control characters made visible, markup escaped."""
    from rich.markup import escape

    return escape(plain(text))


safe_label = safe
