from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _cuda_reason() -> str | None:
    try:
        from bench.gpu.cuda import unavailable_reason
    except ImportError as e:  # pragma: no cover
        return f"bench.gpu.cuda not importable: {e}"
    return unavailable_reason()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gpu_items = [i for i in items if i.get_closest_marker("gpu")]
    if not gpu_items:
        return
    reason = _cuda_reason()
    if reason:
        skip = pytest.mark.skip(reason=f"needs a CUDA GPU: {reason}")
        for item in gpu_items:
            item.add_marker(skip)


@pytest.fixture
def cli_env() -> dict[str, str]:
    """Environment for running ``python -m bench`` in a subprocess from the checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def python() -> str:
    return sys.executable


@pytest.fixture(scope="session")
def committed_report(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``committed_report(name)``: report.md of the committed run tests/data/runs/<name>,
    written by ``write_report`` once per session (plots cost seconds to draw) into
    ``<tmp>/<suite>/<run-id>/``. Tests only read it; copy it before changing anything."""
    made: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in made:
            from bench.report import write_report

            made[name] = write_report(ROOT / "tests" / "data" / "runs" / name,
                                      tmp_path_factory.mktemp(f"report-{name}"))
        return made[name]

    return get
