"""``latest`` / ``latest~N``: the newest run directories under a results root, across suites.

Run ids start with their local-time timestamp (``store.new_run_id``: YYYYmmdd-HHMMSS-xxxx):
a run is ordered by that time (by its run.json's mtime when the id has none, e.g. a merged run
named by hand), and runs of the same second by the mtime of their run.json.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from bench.errors import BenchError
from bench.store import RUN_FILE

_LATEST = re.compile(r"^latest(?:~(\d+))?$")
_RUN_ID = re.compile(r"^(\d{8}-\d{6})")


def run_dirs(results_root: Path) -> list[Path]:
    """Every run directory (``<root>/<suite>/<run-id>/run.json``), newest first."""
    root = Path(results_root)
    found = [p.parent for p in root.glob(f"*/*/{RUN_FILE}") if p.is_file()]

    def order(d: Path) -> tuple[float, float, str]:
        mtime = (d / RUN_FILE).stat().st_mtime
        m = _RUN_ID.match(d.name)
        try:
            started = time.mktime(time.strptime(m.group(1), "%Y%m%d-%H%M%S")) if m else mtime
        except ValueError:  # eight digits that are no date
            started = mtime
        return (started, mtime, str(d))

    return sorted(found, key=order, reverse=True)


def resolve_run_dir(arg: str | Path, results_root: Path = Path("results")) -> Path:
    """``latest`` → the newest run under ``results_root``, ``latest~1`` the one before; an
    existing path (even one named ``latest``) and anything else are returned as paths."""
    m = _LATEST.match(str(arg))
    if m is None or Path(arg).exists():
        return Path(arg)
    back = int(m.group(1) or 0)
    runs = run_dirs(results_root)
    if not runs:
        raise BenchError(f"{arg}: no run directories under {results_root} "
                         "(give the results root with --out, or a run directory)")
    if back >= len(runs):
        raise BenchError(f"{arg}: only {len(runs)} run(s) under {results_root} "
                         f"(latest~{len(runs) - 1} is the oldest)")
    return runs[back]
