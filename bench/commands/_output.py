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


def print_summary(out: Any, records: list[dict[str, Any]]) -> None:
    """The results table of ``run`` and ``profile``, then one line per failed case."""
    from rich.table import Table

    if not records:
        return
    t = Table(title="results")
    for col in ("case", "backend", "status", "median ms", "95% CI", "noise", "TFLOP/s",
                "rel err"):
        t.add_column(col, justify="left" if col in ("case", "backend", "status") else "right")
    for r in records:
        st = r.get("stats") or {}
        med = st.get("median")
        chk = r.get("check") or {}
        status = safe(r["status"])
        t.add_row(
            safe(r["name"]), safe(r["backend"]),
            status if r["status"] == "ok" else f"[red]{status}",
            f"{med:.4f}" if med else "-",
            f"{st['median_ci_low']:.4f}–{st['median_ci_high']:.4f}" if med else "-",
            f"{st['rse'] * 100:.2f}%" if st.get("rse") is not None else "-",
            f"{r['derived']['flops'] / med / 1e9:.3f}" if med else "-",
            f"{chk['rel_err']:.1e}" if chk.get("rel_err") is not None else "-",
        )
    out.print(t)
    bad = [r for r in records if r["status"] != "ok"]
    for r in bad[:20]:
        out.print(f"[red]{safe(r['status'])}[/] {safe(r['backend'])} {safe(r['name'])}: "
                  f"{safe(r.get('error'))}")
