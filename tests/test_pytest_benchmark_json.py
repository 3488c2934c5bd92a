"""What convbench puts into pytest-benchmark's JSON besides the samples: the GPU in
``machine_info`` and convbench's own sampling options under ``options["convbench"]``."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from bench.pytest_support import machine_gpu

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]
SYNTH = ROOT / "tests" / "data" / "runs" / "synthetic-h100"
QUICK = ROOT / "tests" / "data" / "runs" / "quickstart-cpu-a"


def test_machine_gpu_names_the_gpu_of_the_sessions_runs() -> None:
    gpus = machine_gpu([SYNTH, SYNTH])
    assert gpus is not None and len(gpus) == 1
    g = gpus[0]
    assert (g["name"], g["uuid"], g["cc"]) == ("NVIDIA H100 80GB HBM3",
                                               "GPU-00000000-synthetic", "9.0")
    assert "driver" in g  # NVML's driver version, None where NVML is missing
    assert machine_gpu([QUICK]) is None and machine_gpu([]) is None


def test_benchmark_json_has_gpu_machine_info_and_convbench_options(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("pytest_benchmark")
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    # under pytest-xdist the inner run must not look like an xdist worker: pytest-benchmark
    # disables itself (writes no JSON) when it sees PYTEST_XDIST_WORKER
    for var in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH",
                                                                                "")]))
    pytester.makeini("[pytest]\naddopts = --strict-markers\nfilterwarnings = error\n")
    shutil.copy(ROOT / "suites" / "quickstart.toml", pytester.path / "quickstart.toml")
    result = pytester.runpytest_subprocess(
        "-p", "bench.pytest_plugin", "-p", "pytest_benchmark.plugin", "-p", "no:cacheprovider",
        "--convbench-warmup-s=0", "--convbench-min-time-s=0.005",
        "--convbench-max-time-s=0.03", "--convbench-min-samples=3",
        "--convbench-profile-iters=2", "--convbench-out=results", "quickstart.toml",
        "-k", "pointwise", "--benchmark-json=bench.json", timeout=300)
    result.assert_outcomes(passed=1)
    doc = json.loads((pytester.path / "bench.json").read_text())
    assert "gpu" in doc["machine_info"]
    import torch

    if torch.cuda.is_available():
        assert doc["machine_info"]["gpu"][0]["uuid"].startswith("GPU-")
    else:
        assert doc["machine_info"]["gpu"] is None
    opts = doc["benchmarks"][0]["options"]
    assert opts["min_time"] is None and opts["max_time"] is None
    cb = opts["convbench"]
    assert (cb["min_time_s"], cb["max_time_s"], cb["min_samples"]) == (0.005, 0.03, 3)
    assert cb["iters_per_sample"] == doc["benchmarks"][0]["stats"]["iterations"]
