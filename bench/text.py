"""User text (labels, suite names, error text from stored files) made safe to print.

A label is data, not markup and not terminal control: ``safe_label`` shows it as the characters
it holds, so ``[red]`` stays literal in rich output and an escape sequence (``\\x1b[2J``, an OSC
title) is printed as ``\\x1b[2J`` instead of acting on the terminal.
"""

from __future__ import annotations

from rich.markup import escape


def escape_controls(text: str) -> str:
    """Every non-printable character (C0/C1 controls, DEL, bidi and other format characters,
    line and paragraph separators) as a Python-style escape; a plain space stays a space."""
    return "".join(c if c.isprintable() else _escaped(c) for c in str(text))


def _escaped(c: str) -> str:
    n = ord(c)
    if n <= 0xFF:
        return f"\\x{n:02x}"
    return f"\\u{n:04x}" if n <= 0xFFFF else f"\\U{n:08x}"


def safe_label(text: object) -> str:
    """``text`` for a rich console: control characters escaped, rich markup escaped."""
    return escape(escape_controls(str(text)))


def has_controls(text: str) -> bool:
    return any(not c.isprintable() for c in text)
