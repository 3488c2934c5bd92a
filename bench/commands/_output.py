"""Terminal output shared by the commands: the console, the case list and the results table.

Every label, name, reason and error shown here passes through :func:`bench.text.safe`.
"""

from __future__ import annotations

import sys
from typing import Any

from bench.text import safe


def console(stderr: bool = False) -> Any:
    """A rich console; a pipe or CI log gets a wide table instead of rich's 80 columns."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else 160
    return Console(stderr=stderr, width=width)


def print_cases(out: Any, suite: Any, cases: list[Any]) -> None:
    from rich.table import Table

    t = Table(title=safe(f"{suite.name}: {len(cases)} case(s) × backends "
                         f"{', '.join(suite.backends)}"))
    for col in ("#", "name", "key", "output", "GFLOP", "FLOP/B"):
        t.add_column(col, justify="right" if col in ("#", "GFLOP", "FLOP/B") else "left")
    for c in cases:
        s = c.spec
        t.add_row(str(c.index), safe(c.name), c.key, "x".join(map(str, s.output_shape)),
                  f"{s.flops / 1e9:.3f}", f"{s.intensity:.1f}")
    out.print(t)


def print_summary(out: Any, records: list[Any]) -> None:
    """The results table of ``run`` and ``profile`` (typed records), then one line per failed
    and per flagged case. The interval column says what it covers."""
    from rich.table import Table

    if not records:
        return
    t = Table(title="results (median per inference; interval: 95 % CI of the median within "
                    "one pass, or where another pass is expected when repeated)")
    for col in ("case", "backend", "status", "median ms", "interval", "covers", "noise",
                "TFLOP/s", "rel err"):
        t.add_column(col, justify="left" if col in ("case", "backend", "status", "covers")
                     else "right")
    for r in records:
        med = r.median_ms
        iv = r.interval
        status = safe(r.status) if r.status == "ok" else f"[red]{safe(r.status)}"
        if r.status == "ok" and r.flags:
            status = f"[yellow]ok, flagged: {safe(', '.join(sorted(set(r.flag_names))))}"
        t.add_row(
            safe(r.name), safe(r.backend), status,
            f"{med:.4f}" if med else "-",
            f"{iv[0]:.4f}–{iv[1]:.4f}" if iv else "-",
            iv[2] if iv else "-",
            f"{r.stats.rse * 100:.2f}%" if r.stats and r.stats.rse is not None else "-",
            f"{r.derived.flops / med / 1e9:.3f}" if med else "-",
            f"{r.check.rel_err:.1e}" if r.check and r.check.rel_err is not None else "-",
        )
    out.print(t)
    bad = [r for r in records if r.status != "ok"]
    for r in bad[:20]:
        out.print(f"[red]{safe(r.status)}[/] {safe(r.backend)} {safe(r.name)}: {safe(r.error)}")
    flagged = [r for r in records if r.status == "ok" and r.flags]
    for r in flagged[:20]:
        out.print(f"[yellow]flagged[/] {safe(r.backend)} {safe(r.name)}: "
                  + safe("; ".join(f"{f.name}: {f.reason}" for f in r.flags)))
