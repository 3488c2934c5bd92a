"""Reports from committed result directories: tables (golden), roofline, plots, findings.

Golden files live in tests/data/golden; after an intended change regenerate them with
CONVBENCH_UPDATE_GOLDEN=1 python -m pytest tests/test_report.py and review the diff.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bench
from bench.report import plots
from bench.report.findings import findings
from bench.report.render import (
    TIMING_DEFINITION,
    least_efficient_table,
    slowest_table,
    summary_table,
    write_report,
)
from bench.roofline import bound_ms, calibration_path, math_precision, table_peak

DATA = Path(__file__).parent / "data"
QUICK = DATA / "runs" / "quickstart-cpu-a"
SYNTH = DATA / "runs" / "synthetic-h100"  # synthetic GPU-like run (make_synthetic_run.py)
GOLDEN = DATA / "golden"


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("CONVBENCH_UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path} missing: run with CONVBENCH_UPDATE_GOLDEN=1 once"
    assert text == path.read_text(), f"{name} differs from the golden file {path}"


# --- tables -----------------------------------------------------------------------------------
def test_load_cpu_run_gives_one_row_per_case_and_no_roofline() -> None:
    run = bench.load(QUICK)
    df = run.records
    assert len(df) == 12 and set(df["status"]) == {"ok"}
    assert list(df["case_index"]) == list(range(12))
    assert run.peak is None and df["bound_pct"].isna().all()
    # achieved rates follow from the stored FLOPs, bytes and median
    r = df.iloc[3]
    assert r["tflops"] == pytest.approx(r["flops"] / r["median_ms"] / 1e9)
    assert r["gbps"] == pytest.approx(r["bytes_min"] / r["median_ms"] / 1e6)
    assert set(run.layers["kind"]) <= {"convolution", "activation", "other"}


@pytest.mark.parametrize("run_dir", [QUICK, SYNTH], ids=["quickstart", "synthetic"])
def test_summary_tables_match_golden(run_dir: Path) -> None:
    df = bench.load(run_dir).records
    text = "\n\n".join(t.to_csv(index=False, float_format="%.6g") for t in
                       (summary_table(df), slowest_table(df), least_efficient_table(df)))
    check_golden(f"{run_dir.name}.tables.csv", text)


def test_findings_match_golden() -> None:
    run = bench.load(SYNTH)
    check_golden("synthetic-h100.findings.txt",
                 "\n".join(f"{f.rule}: {f.text}" for f in findings(run.records, run.layers))
                 + "\n")


# --- roofline ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name,expected", [
    ("NVIDIA H100 80GB HBM3", "H100 SXM"), ("NVIDIA H100 PCIe", "H100 PCIe"),
    ("NVIDIA H100 NVL", "H100 NVL"), ("NVIDIA H200", "H200 SXM"),
    ("NVIDIA H200 NVL", "H200 NVL"), ("NVIDIA A100-SXM4-80GB", "A100 80GB SXM"),
    ("NVIDIA A100 80GB PCIe", "A100 80GB PCIe"), ("NVIDIA A100-PCIE-40GB", "A100 40GB"),
    ("NVIDIA L40S", "L40S"), ("NVIDIA L4", "L4"), ("NVIDIA GeForce RTX 4090", "RTX 4090"),
    ("NVIDIA GeForce RTX 5090", "RTX 5090"), ("NVIDIA L40", None), ("Tesla T4", None),
    (None, None)])
def test_datasheet_table_matches_device_names(name: str | None, expected: str | None) -> None:
    peak = table_peak(name)
    assert (peak.name if peak else None) == expected
    if peak:
        assert set(peak.tflops) == {"fp32", "tf32", "fp16", "bf16"}
        assert peak.source.startswith("https://")


def test_bound_is_the_slower_of_compute_and_memory() -> None:
    # 1 TFLOP at 100 TFLOP/s = 10 ms; 1 GB at 1000 GB/s = 1 ms → compute-bound, 10 ms
    assert bound_ms(1e12, 1e9, 100.0, 1000.0) == (pytest.approx(10.0), "compute")
    assert bound_ms(1e9, 1e10, 100.0, 1000.0) == (pytest.approx(10.0), "memory")
    assert math_precision("fp32", True, {"cc": [9, 0]}) == "tf32"
    assert math_precision("fp32", False, {"cc": [9, 0]}) == "fp32"
    assert math_precision("fp32", True, {"cc": [7, 5]}) == "fp32"
    assert math_precision("fp16", True, {"cc": "9.0"}) == "fp16"


def test_percent_of_bound_uses_the_precision_ceiling() -> None:
    run = bench.load(SYNTH)
    peak = table_peak("NVIDIA H100 80GB HBM3")
    assert run.peak == peak
    for r in run.records[run.records["status"] == "ok"].itertuples():
        ceiling = "tf32" if r.precision == "fp32" else r.precision
        assert r.ceiling == ceiling
        b, side = bound_ms(r.flops, r.bytes_min, peak.tflops[ceiling], peak.bandwidth_gbps)
        assert r.bound_by == side
        assert r.bound_pct == pytest.approx(100 * b / r.median_ms)


def test_a_calibration_file_replaces_the_datasheet(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "results"
    run_dir = root / "synthetic" / "run1"
    shutil.copytree(SYNTH, run_dir)
    info = json.loads((run_dir / "run.json").read_text())
    cal = {"schema": 1, "gpu": info["gpu"], "created": "2026-01-02T00:00:00+00:00",
           "measured": {"copy_gbps": 2900.0,
                        "tflops": {"fp32": 50.0, "tf32": 300.0, "fp16": 600.0, "bf16": 600.0}}}
    path = calibration_path(root, info["gpu"]["uuid"])
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(cal))
    run = bench.load(run_dir)
    assert run.peak is not None and run.peak.measured
    assert run.peak.bandwidth_gbps == 2900.0
    r = run.records[run.records["status"] == "ok"].iloc[-1]
    b, _ = bound_ms(r["flops"], r["bytes_min"], 600.0, 2900.0)
    assert r["bound_pct"] == pytest.approx(100 * b / r["median_ms"])
    # the report's text is what this checks; its plots (drawn from the same table) are
    # checked above and in test_report_of_a_synthetic_gpu_run, and cost seconds to draw
    from bench.report import render

    monkeypatch.setattr(render, "_plots", lambda run, out: [])
    report = write_report(run_dir, tmp_path / "reports").read_text()
    assert "measured" in report and "2900 GB/s" in report


# --- plots drawn from the right data -----------------------------------------------------------
def test_latency_axis_plot_draws_the_medians_of_the_held_slice() -> None:
    df = bench.load(SYNTH).records
    assert plots.varying_axes(df) == ["in_channels", "out_channels", "workspace"]
    fig = plots.latency_axis_figure(df, "in_channels")
    ax = fig.axes[0]
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert set(lines) == {"tensorrt fp16", "tensorrt fp32", "torch fp16", "torch fp32"}
    held = "K=256"
    assert held in ax.get_title()
    ok = df[(df["status"] == "ok") & (df["out_channels"] == 256) & df["workspace"].isna()]
    for label, line in lines.items():
        backend, prec = label.split()
        want = ok[(ok["backend"] == backend) & (ok["precision"] == prec)].sort_values(
            "in_channels")
        np.testing.assert_allclose(line.get_xdata(), want["in_channels"])
        np.testing.assert_allclose(line.get_ydata(), want["median_ms"])
    # one CI band per line
    assert len(ax.collections) == 4
    plots._plt().close(fig)


def test_speedup_heatmap_cells_are_fp32_over_fp16() -> None:
    df = bench.load(SYNTH).records
    fig = plots.speedup_figure(df, "precision", "fp32", "fp16", "t")
    ax = fig.axes[0]  # backend tensorrt
    assert "tensorrt" in ax.get_title()
    grid = ax.images[0].get_array()
    ok = df[(df["status"] == "ok") & (df["backend"] == "tensorrt") & df["workspace"].isna()]
    med = ok.set_index(["in_channels", "out_channels", "precision"])["median_ms"]
    xs = [int(t.get_text()) for t in ax.get_xticklabels()]
    ys = [int(t.get_text()) for t in ax.get_yticklabels()]
    assert xs == [3, 8, 12, 16, 64, 128] and ys == [64, 256]
    for yi, k in enumerate(ys):
        for xi, c in enumerate(xs):
            assert grid[yi, xi] == pytest.approx(med[(c, k, "fp32")] / med[(c, k, "fp16")])
    plots._plt().close(fig)


def test_roofline_points_are_intensity_and_tflops() -> None:
    run = bench.load(SYNTH)
    fig = plots.roofline_figure(run.records, run.peak)
    ax = fig.axes[0]
    ok = run.records[run.records["status"] == "ok"]
    pts = np.concatenate([c.get_offsets() for c in ax.collections])
    want = ok[["intensity", "tflops"]].to_numpy(dtype=float)
    assert sorted(map(tuple, pts.round(6))) == sorted(map(tuple, want.round(6)))
    roofs = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert sorted(max(ln.get_ydata()) for ln in roofs) == [494.5, 989.5]
    plots._plt().close(fig)


def test_layer_bars_keep_reformat_layers_apart() -> None:
    run = bench.load(SYNTH)
    fig = plots.layers_figure(run.records, run.layers, limit=1000)
    ax = fig.axes[0]
    bars = {c.get_label(): [p.get_height() for p in c.patches] for c in ax.containers}
    assert set(bars) == {"convolution", "reformat"}
    lay = run.layers
    assert sum(bars["reformat"]) == pytest.approx(
        lay.loc[lay["kind"] == "reformat", "median_ms"].sum())
    reformat_patches = ax.containers[list(bars).index("reformat")].patches
    assert all(p.get_hatch() == "//" for p in reformat_patches)
    plots._plt().close(fig)


def test_noise_plot_flags_unconverged_and_throttled() -> None:
    df = bench.load(SYNTH).records
    fig = plots.noise_figure(df)
    ax = fig.axes[0]
    ok = df[df["status"] == "ok"].sort_values(["case_index", "backend"])
    heights = [p.get_height() for p in ax.patches]
    np.testing.assert_allclose(heights, ok["cov_frac"] * 100)
    red = [p for p in ax.patches if p.get_facecolor()[:3] != ax.patches[0].get_facecolor()[:3]]
    assert len(red) == 2  # the noisy torch case and the throttled tensorrt case
    plots._plt().close(fig)


# --- the report -------------------------------------------------------------------------------
def test_report_of_a_synthetic_gpu_run(committed_report: Callable[[str], Path]) -> None:
    md_path = committed_report(SYNTH.name)  # write_report(SYNTH, <tmp>), shared
    out = md_path.parent
    assert out.parts[-2:] == ("synthetic", "synthetic-h100")  # <out>/<suite>/<run-id>
    md = md_path.read_text()
    assert TIMING_DEFINITION["graph"] in md
    assert "synthetic data" in md
    for stem in ("latency_vs_in_channels", "speedup_fp16_fp32", "speedup_tensorrt_torch",
                 "roofline", "layers", "build", "noise"):
        png, svg = out / f"{stem}.png", out / f"{stem}.svg"
        assert png.stat().st_size > 10_000 and svg.stat().st_size > 10_000, stem
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({stem}.png)" in md
    assert "fp16 is slower than fp32 for C=3, K=64" in md
    assert "reformat layers take 62 % of its time" in md
    assert "channels not a multiple of 8 cost" in md
    assert "workspace above 64 MiB changes nothing" in md
    assert "build_failed: `tensorrt` bf16-n32-c64-k64-28x28-r3-s1-p1-g64: TensorRT could not" in md
    assert "check_failed: `torch`" in md
    # the throttled case is named with why and at which clock (schema 1: the flag is made
    # from the record's throttled bit on load)
    assert ("`tensorrt` fp32-n32-c16-k256-28x28-r3-s1-p1: throttled: clock-event reasons at "
            "the start or end of the case (schema 1); SM clock 1755 MHz") in md
    assert "noise target not met" in md
    assert (out / "report.html").stat().st_size > 100_000


def test_report_of_a_cpu_run_states_no_unsupported_finding(
        committed_report: Callable[[str], Path]) -> None:
    md_path = committed_report(QUICK.name)  # write_report(QUICK, <tmp>), shared
    md = md_path.read_text()
    assert TIMING_DEFINITION["host"] in md
    assert "GPU: none (CPU run)" in md
    assert "## Summary" in md and "## Slowest cases" in md
    # one bf16 case vs one fp32 case: too little for a summary, and no rule may invent one
    for phrase in ("channels not a multiple of 8", "workspace", "is faster than `"):
        assert phrase not in md.split("## Findings")[1].split("## Summary")[0]
    assert "no roofs" not in md  # the roofline plot explains itself; no ceilings claimed
    assert md_path.parent.parts[-2:] == ("quickstart", "quickstart-cpu-a")
    assert (md_path.parent / "roofline.png").exists()


def test_findings_stay_silent_when_the_difference_is_noise(tmp_path: Path) -> None:
    """Make every fp16 result a 2 % jittered copy of its fp32 twin: no precision finding."""
    run_dir = tmp_path / "run"
    shutil.copytree(SYNTH, run_dir)
    recs = [json.loads(line) for line in (run_dir / "records.jsonl").read_text().splitlines()]
    by_spec = {}
    for r in recs:
        spec = {k: v for k, v in r["spec"].items() if k != "precision"}
        if r["spec"]["precision"] == "fp32":
            by_spec[(json.dumps(spec, sort_keys=True), r["backend"])] = r
    for r in recs:
        spec = {k: v for k, v in r["spec"].items() if k != "precision"}
        twin = by_spec.get((json.dumps(spec, sort_keys=True), r["backend"]))
        if r["spec"]["precision"] == "fp16" and twin and r["status"] == "ok":
            r["stats"] = {**twin["stats"], "median": twin["stats"]["median"] * 1.02,
                          "median_ci_low": twin["stats"]["median_ci_low"] * 1.02,
                          "median_ci_high": twin["stats"]["median_ci_high"] * 1.02}
    (run_dir / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    run = bench.load(run_dir)
    texts = [f.text for f in findings(run.records, run.layers) if f.rule == "precision"]
    assert texts and all("faster than fp32 in 0 of" in t and "slower in 0" in t for t in texts)
    # the count says where the other cases went: all of them are ties
    assert all(re.search(r"in 0 of (\d+) matched cases, slower in 0, the other \1 within 10 % "
                         r"or inside the noise", t) for t in texts), texts
    assert isinstance(run.records, pd.DataFrame)
