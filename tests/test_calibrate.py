"""``convbench calibrate`` on a real GPU: measured ceilings are plausible and reports use them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import bench
from bench.cli import main

SYNTH = Path(__file__).parent / "data" / "runs" / "synthetic-h100"


def test_calibrate_without_a_gpu_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None and torch.cuda.is_available():
        pytest.skip("a GPU is present: the gpu test below covers calibrate")
    assert main(["calibrate", "--out", "/nonexistent-root"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("convbench: error: calibrate needs") and err.count("\n") == 1


@pytest.mark.gpu
def test_calibrate_measures_plausible_ceilings_and_reports_use_them(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch sees no CUDA GPU")
    from bench.calibrate import calibrate
    from bench.roofline import table_peak
    from bench.timing import TimingSettings

    root = tmp_path / "results"
    fast = TimingSettings(warmup_s=0.2, min_samples=10, min_time_s=0.3, max_time_s=3.0,
                          target_rse=0.01)
    path = calibrate(0, root, fast)
    doc = json.loads(path.read_text())
    m = doc["measured"]
    print(json.dumps(m, indent=1))
    assert m["copy_gbps"] > 50
    # tensor cores beat CUDA cores; half precision beats TF32 (CC >= 8.0 GPUs)
    t = m["tflops"]
    assert t["fp16"] > t["fp32"] and t["bf16"] > t["fp32"]
    sheet = table_peak(doc["gpu"]["name"])
    if sheet is not None:
        # a measured ceiling above the datasheet means the measurement is wrong
        assert m["copy_gbps"] <= 1.05 * sheet.bandwidth_gbps
        assert 0.3 * sheet.bandwidth_gbps <= m["copy_gbps"]
        for prec in ("fp32", "tf32", "fp16", "bf16"):
            assert t[prec] <= 1.1 * sheet.tflops[prec], prec
            assert t[prec] >= 0.2 * sheet.tflops[prec], prec
    # a run on this GPU under the same results root now reports against the measured ceilings
    run_dir = root / "synthetic" / "run1"
    shutil.copytree(SYNTH, run_dir)
    info = json.loads((run_dir / "run.json").read_text())
    info["gpu"] = doc["gpu"]
    (run_dir / "run.json").write_text(json.dumps(info))
    run = bench.load(run_dir)
    assert run.peak is not None and run.peak.measured
    assert run.peak.bandwidth_gbps == pytest.approx(m["copy_gbps"])
