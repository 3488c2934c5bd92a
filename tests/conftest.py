from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# One intra-op thread for torch in this process and in every convbench process the tests start
# (they inherit the environment): the tests' cases are tiny, and on a 2-core machine running
# two test workers (pytest -n 2) two threads per process only make them wait for each other.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def _cuda_reason() -> str | None:
    try:
        from bench.gpu.cuda import unavailable_reason
    except ImportError as e:  # pragma: no cover
        return f"bench.gpu.cuda not importable: {e}"
    return unavailable_reason()


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """``-n N`` (pytest-xdist) only without a GPU: GPU tests time the GPU and flag other GPU
    processes as contention, so where a CUDA GPU is visible every test runs in this process."""
    if getattr(config.option, "numprocesses", None) and _cuda_reason() is None:
        config.option.numprocesses = 0
        config.option.dist = "no"
        print("convbench tests: a CUDA GPU is visible: running in one process (-n ignored)")


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
    written by ``write_report`` once per test session (plots cost seconds to draw) into
    ``<tmp>/report-<name>/<suite>/<run-id>/``. Tests only read it; copy it before changing
    anything. Under pytest-xdist the workers share it: the first one writes it while holding a
    lock, the others wait and read (pytest-xdist's "session-scoped fixtures once" recipe)."""
    import fcntl

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # this session's folder, above every worker's own

    def get(name: str) -> Path:
        from bench.report import write_report

        out = root / f"report-{name}"
        with open(root / f"report-{name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            done = out / "written"
            if not done.exists():
                md = write_report(ROOT / "tests" / "data" / "runs" / name, out)
                done.write_text(str(md.relative_to(out)))
        return out / done.read_text()

    return get
