"""``convbench compare`` from committed result directories (two real CPU quickstart runs)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.cli import main
from bench.compare import compare_runs, kernel_change, parse_threshold, verdict, write_plot
from bench.errors import BenchError, SchemaError
from bench.stats import summarize
from bench.store import load_records

DATA = Path(__file__).parent / "data"
A = DATA / "runs" / "quickstart-cpu-a"
B = DATA / "runs" / "quickstart-cpu-b"
GOLDEN = DATA / "golden"


def _rewrite(run_dir: Path, edit) -> None:  # type: ignore[no-untyped-def]
    path = run_dir / "records.jsonl"
    recs = [json.loads(line) for line in path.read_text().splitlines()]
    for r in recs:
        edit(r)
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))


def _slow_down(r: dict, label: str, factor: float) -> None:
    if r["label"] == label:
        r["samples_ms"] = [v * factor for v in r["samples_ms"]]
        r["stats"] = summarize(r["samples_ms"]).to_json()


# --- the verdict rule ---------------------------------------------------------------------------
def test_verdicts_follow_threshold_and_rank_test() -> None:
    rng = np.random.default_rng(1)
    base = list(1.0 + 0.01 * rng.standard_normal(40))
    assert verdict(base, base)[0] == "SAME"
    assert verdict(base, [v * 1.2 for v in base])[0] == "SLOW"
    assert verdict(base, [v * 0.8 for v in base])[0] == "FAST"
    # real but small: 2 % is below a 5 % threshold
    v, ratio, p = verdict(base, [v * 1.02 for v in base])
    assert v == "SAME" and p < 0.001 and ratio == pytest.approx(1.02)
    # 20 % change of the medians, but noise so large the rank test cannot confirm it
    noisy_a = list(rng.lognormal(0, 0.8, 8))
    noisy_b = [v * 1.2 for v in rng.lognormal(0, 0.8, 8)]
    v, ratio, p = verdict(noisy_a, noisy_b)
    if abs(ratio - 1) > 0.05:
        assert v == "AMBIGUOUS" and p >= 0.001
    # too few samples can never reach p < 0.001
    assert verdict([1.0, 1.01, 0.99], [2.0, 2.01, 1.99])[0] == "AMBIGUOUS"


def test_threshold_parsing() -> None:
    assert parse_threshold("5%") == pytest.approx(0.05)
    assert parse_threshold("0.1") == pytest.approx(0.1)
    import argparse

    with pytest.raises(argparse.ArgumentTypeError):
        parse_threshold("five")


# --- runs -------------------------------------------------------------------------------------
def test_a_run_against_itself_is_all_same() -> None:
    cmp = compare_runs(A, A)
    assert set(cmp.table["verdict"]) == {"SAME"} and len(cmp.table) == 12
    assert (cmp.table["ratio"] == 1.0).all() and not cmp.regressed
    assert main(["compare", str(A), str(A)]) == 0


def test_two_real_runs_match_golden_table() -> None:
    cmp = compare_runs(A, B)
    cols = ["name", "backend", "base_median_ms", "new_median_ms", "ratio", "p_value",
            "verdict"]
    text = cmp.table[cols].to_csv(index=False, float_format="%.6g")
    path = GOLDEN / "compare-quickstart-a-b.csv"
    if os.environ.get("CONVBENCH_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text()
    # the table is ordered worst first
    order = ["FAILED", "SLOW", "AMBIGUOUS", "FAST", "FIXED", "SAME"]
    ranks = [order.index(v) for v in cmp.table["verdict"]]
    assert ranks == sorted(ranks)


def test_a_slowed_case_is_slow_and_fails_ci(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            ) -> None:
    new = tmp_path / "new"
    shutil.copytree(A, new)
    _rewrite(new, lambda r: _slow_down(r, "5x5", 1.5))
    cmp = compare_runs(A, new)
    row = cmp.table.set_index("name").loc["5x5"]
    assert row["verdict"] == "SLOW" and row["ratio"] == pytest.approx(1.5)
    assert set(cmp.table.loc[cmp.table["name"] != "5x5", "verdict"]) == {"SAME"}
    png = tmp_path / "cmp.png"
    assert main(["compare", str(A), str(new), "--plot", str(png),
                 "--csv", str(tmp_path / "cmp.csv")]) == 1
    out = capsys.readouterr().out
    assert "SLOW" in out and "5x5" in out
    assert png.stat().st_size > 5_000 and png.with_suffix(".svg").exists()
    # a 60 % threshold lets it pass
    assert main(["compare", str(A), str(new), "--threshold", "60%"]) == 0


def test_compare_plot_draws_the_ratios(tmp_path: Path) -> None:
    new = tmp_path / "new"
    shutil.copytree(A, new)
    _rewrite(new, lambda r: _slow_down(r, "3x3", 0.5))
    cmp = compare_runs(A, new)
    from bench.report.plots import compare_figure

    fig = compare_figure(cmp.table, cmp.threshold)
    ax = fig.axes[0]
    from matplotlib.container import BarContainer

    bars = next(c for c in ax.containers if isinstance(c, BarContainer))
    widths = [p.get_width() for p in bars.patches]
    np.testing.assert_allclose(sorted(widths), sorted(cmp.table["ratio"] - 1), atol=1e-12)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[0] == "3x3 (torch)"  # FAST first: no SLOW in this comparison
    import matplotlib.pyplot as plt

    plt.close(fig)
    assert write_plot(cmp, tmp_path / "c.png").exists()


def test_a_case_that_breaks_is_a_regression(tmp_path: Path) -> None:
    new = tmp_path / "new"
    shutil.copytree(A, new)

    def brk(r: dict) -> None:
        if r["label"] == "3x3-relu":
            r["status"], r["error"] = "check_failed", "relative L2 error 0.5 above 0.005"

    _rewrite(new, brk)
    cmp = compare_runs(A, new)
    assert cmp.table.iloc[0]["verdict"] == "FAILED" and cmp.regressed
    assert main(["compare", str(A), str(new)]) == 1


def test_different_gpus_are_refused_unless_allowed(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    new = tmp_path / "new"
    shutil.copytree(A, new)
    info = json.loads((new / "run.json").read_text())
    info["gpu"] = {"name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-x"}
    (new / "run.json").write_text(json.dumps(info))
    with pytest.raises(BenchError, match="--allow-different-gpus"):
        compare_runs(A, new)
    assert main(["compare", str(A), str(new)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("convbench: error:") and err.count("\n") == 1
    assert compare_runs(A, new, allow_different_gpus=True).table["verdict"].eq("SAME").all()


def test_unknown_schema_is_refused(tmp_path: Path) -> None:
    new = tmp_path / "new"
    shutil.copytree(A, new)
    info = json.loads((new / "run.json").read_text())
    info["schema"] = 4
    (new / "run.json").write_text(json.dumps(info))
    with pytest.raises(SchemaError, match="schema version 4"):
        compare_runs(A, new)


def test_cli_subprocess_exit_codes(tmp_path: Path, cli_env: dict[str, str], python: str) -> None:
    new = tmp_path / "new"
    shutil.copytree(A, new)
    _rewrite(new, lambda r: _slow_down(r, "7x7-stem", 2.0))
    p = subprocess.run([python, "-m", "bench", "compare", str(A), str(new)], env=cli_env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 1, p.stderr
    assert "SLOW: 1" in p.stdout


# --- which kernels ran ----------------------------------------------------------------------------
CUTLASS = "cutlass_tensorop_s1688fprop_optimized_256x128_32x3_nhwc_align4"
SM90 = "sm90_xmma_fprop_implicit_gemm_tf32f32_tf32f32_f32_nhwckrsc_nhwc_tilesize128x128x32"


def _set_kernel(run_dir: Path, label: str, kernel: str) -> None:
    """Name the one conv layer of case ``label`` ``kernel``, as the torch profiler does on a GPU."""
    key = next(r.case_key for r in load_records(run_dir) if r.label == label)
    path = run_dir / "layers.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for row in rows:
        if row["case_key"] == key:
            row["layers"][0].update(name=kernel, type="kernel")
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_kernel_change_summary() -> None:
    assert kernel_change({"a"}, {"a"}) == ("same", "")
    assert kernel_change(None, {"a"}) == ("", "") and kernel_change({"a"}, set()) == ("", "")
    state, text = kernel_change({CUTLASS, "relu"}, {SM90, "relu"})
    assert state == "changed"
    assert text == "-cutlass_tensorop_s1688fprop… +sm90_xmma_fprop_implicit_ge…"
    _, text = kernel_change({"a", "b", "c", "d"}, {"e"})
    assert text == "-a -b -2 more +e"


def test_a_slow_case_with_other_kernels_says_so(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    base, new = tmp_path / "base", tmp_path / "new"
    shutil.copytree(A, base)
    shutil.copytree(A, new)
    _set_kernel(base, "5x5", SM90)
    _set_kernel(new, "5x5", CUTLASS)
    _rewrite(new, lambda r: _slow_down(r, "5x5", 1.5))
    _rewrite(new, lambda r: _slow_down(r, "3x3", 0.5))  # faster with the same kernels
    cmp = compare_runs(base, new)
    rows = cmp.table.set_index("name")
    assert rows.loc["5x5", "verdict"] == "SLOW" and rows.loc["5x5", "kernels"] == "changed"
    assert rows.loc["5x5", "kernel_diff"] == ("-sm90_xmma_fprop_implicit_ge… "
                                              "+cutlass_tensorop_s1688fprop…")
    assert rows.loc["3x3", "verdict"] == "FAST" and rows.loc["3x3", "kernels"] == "same"
    assert set(rows.drop(index=["5x5", "3x3"])["kernels"]) == {"same"}
    assert cmp.changed_kernels() == 1 and cmp.regressed  # the verdict does not change
    csv = tmp_path / "cmp.csv"
    assert main(["compare", str(base), str(new), "--csv", str(csv)]) == 1
    out = capsys.readouterr().out
    assert "kernels" in out and "+cutlass_tensorop_s1688fprop…" in out
    assert "1 of the 2 FAST/SLOW cases ran different kernels: an algorithm choice changed, " \
           "not the timer" in " ".join(out.split())
    table = pd.read_csv(csv, keep_default_na=False).set_index("name")
    assert table.loc["5x5", "kernels"] == "changed" and table.loc["3x3", "kernels"] == "same"


def test_no_layer_profile_leaves_kernels_empty(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    new = tmp_path / "new"
    shutil.copytree(A, new)
    (new / "layers.jsonl").unlink()
    _rewrite(new, lambda r: _slow_down(r, "5x5", 1.5))
    cmp = compare_runs(A, new)
    assert set(cmp.table["kernels"]) == {""} and cmp.changed_kernels() == 0
    assert main(["compare", str(A), str(new)]) == 1
    assert "ran different kernels" not in capsys.readouterr().out
