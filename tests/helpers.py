"""Shared test helpers: typed records built the way the runner builds them, and the one-line
error check of the CLI. (Imported as ``helpers``: pytest puts tests/ on sys.path for the
conftest there.)"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from bench.record import Record, Stats, TimingFacts
from bench.spec import ConvSpec
from bench.suite import Case

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "suites" / "quickstart.toml"


def checkout_env(**extra: str) -> dict[str, str]:
    """A small environment for a child process that imports convbench from this checkout: the
    checkout first on ``PYTHONPATH``, then whatever path the tests run with (on the GPU machine
    pydantic and the other wheels are installed into a --target directory named there), and
    ``PATH=/usr/bin:/bin``; plus ``extra``. Nothing else of the caller's environment (no pytest
    or xdist variables) reaches the child."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return {"PYTHONPATH": path, "PATH": "/usr/bin:/bin", **extra}


def case(index: int = 0, label: str = "", **fields: Any) -> Case:
    """A small case; ``index`` changes the spec (so each index has its own case key)."""
    spec = {"in_channels": 4, "out_channels": 4 + index, "height": 8, "width": 8, "kernel": 1,
            **fields}
    return Case(index=index, spec=ConvSpec(**spec), label=label)


def record(index: int = 0, backend: str = "torch", status: str = "ok",
           samples: list[float] | None = None, **fields: Any) -> Record:
    """A valid stored record of ``case(index)`` on ``backend`` (status ``ok``: with samples,
    stats and timing facts like a host-timed CPU case)."""
    from bench.runner import new_record

    c = case(index)
    rec = new_record(c, backend, "cpu", None, status=status,
                     error=None if status == "ok" else f"{status} (test)")
    if status == "ok":
        rec.samples_ms = list(samples or [1.0, 1.1, 0.9])
        if "stats" not in fields:  # (Stats.of imports scipy)
            rec.stats = Stats.of(rec.samples_ms)
        rec.timing = TimingFacts(mode="host", iters_per_sample=1, l2="n/a")
    for k, v in fields.items():
        setattr(rec, k, v)
    return rec


def one_error_line(stderr: str) -> str:
    """The single ``convbench: error: ...`` line of a refused command (no traceback)."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("convbench: error: "), stderr
    return lines[0]


def load_benchmark(name: str) -> Any:
    """``benchmarks/<name>.py`` loaded as a module (the scripts are not a package)."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"convbench_benchmark_{name}", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
