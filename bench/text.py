"""Text from results and suites, made safe to show on a terminal.

Case labels, kernel names, error messages and paths come from suite files, backends and result
directories, not from convbench: a label such as ``stem[/x]`` is rich markup (rich raises
``MarkupError`` on the stray closing tag, or silently eats ``[red]``), and a label holding
``\\x1b]0;...\\x07`` would retitle the user's terminal. Every rich table cell and terminal line
that shows such text goes through :func:`safe` (plain ``print`` lines through
:func:`plain`, its first half).
"""

from __future__ import annotations

import re

__all__ = ["safe", "safe_label", "plain", "escape_controls", "has_controls"]

# C0 controls (ESC, BEL, CR, LF, TAB ...), DEL, C1 controls (CSI 0x9b starts an escape sequence
# on some terminals), and the Unicode bidirectional overrides/isolates that reorder what a line
# shows (CVE-2021-42574, "Trojan Source")
_INVISIBLE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _visible(m: re.Match[str]) -> str:
    code = ord(m.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def plain(text: object) -> str:
    """``text`` with control characters shown as ``\\x1b``-style escapes: for plain ``print``
    (one label is one line and never drives the terminal)."""
    return _INVISIBLE.sub(_visible, str(text))


def safe(text: object) -> str:
    """``plain(text)`` as rich markup that prints literally: for rich tables and
    ``Console.print``."""
    from rich.markup import escape

    return escape(plain(text))


safe_label = safe


def escape_controls(text: object) -> str:
    """The same as :func:`plain` (the name the suite loader and the store use)."""
    return plain(text)


def has_controls(text: str) -> bool:
    """Whether ``text`` holds a character :func:`plain` would escape."""
    return plain(text) != text
