"""``convbench export``: CSV/Parquet tables and trtexec's files (``--exportTimes``,
``--exportProfile``, ``--exportLayerInfo``), from committed runs, read by the tools that read
trtexec's: NVIDIA's ``samples/trtexec/profiler.py`` and ``tracer.py`` (vendored, unchanged, in
tests/data/trtexec_scripts) and TREx (trt-engine-explorer, when installed)."""

from __future__ import annotations

import contextlib
import json
import shutil
import statistics
import subprocess
import sys
import warnings
from pathlib import Path

import pandas as pd
import pytest

import bench
from bench.cli import main
from bench.export import export_tables, export_trtexec
from bench.store import load_layers, load_records

DATA = Path(__file__).parent / "data"
QUICK = DATA / "runs" / "quickstart-cpu-a"
SYNTH = DATA / "runs" / "synthetic-h100"
#: a real CPU run of quickstart's relu and batch-4 cases whose profile kept per-inference times
PROFILED = DATA / "runs" / "quickstart-cpu-profiled"
SCRIPTS = DATA / "trtexec_scripts"

# trtexec's key order (TensorRT v11.0 samples/common/sampleReporting.cpp, exportJSONTrace,
# lines 369-374 and Profiler::exportJSONProfile, lines 455-460)
TRTEXEC_TIME_KEYS = ["startEnqMs", "endEnqMs", "startH2dMs", "endH2dMs", "startComputeMs",
                     "endComputeMs", "startD2hMs", "endD2hMs", "h2dMs", "computeMs", "d2hMs",
                     "latencyMs"]
TRTEXEC_PROFILE_KEYS = ["name", "timeMs", "averageMs", "medianMs", "percentage"]


def _stem(rec: object) -> str:
    return f"{rec.case_index:04d}-{rec.name}-{rec.backend}"  # type: ignore[attr-defined]


# --- tables ---------------------------------------------------------------------------------------
def test_csv_round_trips_the_records_table_with_missing_values_empty(tmp_path: Path) -> None:
    paths = export_tables(QUICK, tmp_path, "csv")
    assert [p.name for p in paths] == ["records.csv", "layers.csv", "samples.csv"]
    text = (tmp_path / "records.csv").read_text()
    assert "n/a" not in text and "<NA>" not in text and "None" not in text
    back = pd.read_csv(tmp_path / "records.csv", keep_default_na=False, na_values=[""])
    df = bench.load(QUICK).records
    assert len(back) == len(df) == 12
    pd.testing.assert_series_equal(back["median_ms"], df["median_ms"].astype(float),
                                   check_names=False)
    assert back.loc[0, "kernel"] == "[1, 1]"  # pairs are written as JSON lists
    assert back["l2"].isna().all()  # the CPU timer has no L2 setting: an empty cell
    samples = pd.read_csv(tmp_path / "samples.csv")
    assert list(samples.columns) == ["case_key", "name", "backend", "pass_index",
                                     "sample_index", "ms"]
    assert len(samples) == sum(len(r.samples_ms) for r in load_records(QUICK))


def test_parquet_keeps_pairs_as_lists_and_nullable_dtypes(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow", reason="Parquet export needs pyarrow (pip install pyarrow)")
    export_tables(SYNTH, tmp_path, "parquet")
    back = pd.read_parquet(tmp_path / "records.parquet")
    df = bench.load(SYNTH).records
    assert len(back) == len(df)
    assert [list(v) for v in back["kernel"]] == [list(v) for v in df["kernel"]]
    assert list(back["stride"].iloc[0]) == [1, 1]
    assert back["bound_pct"].astype(float).tolist() == pytest.approx(
        df["bound_pct"].astype(float).tolist(), nan_ok=True)
    for col, dtype in (("batch", "Int64"), ("workspace", "Int64"), ("median_ms", "Float64"),
                       ("converged", "boolean"), ("error", "string")):
        assert str(back[col].dtype) == dtype, col
    lay = pd.read_parquet(tmp_path / "layers.parquet")
    assert str(lay["share_frac"].dtype) == "Float64"


# --- pandas API ---------------------------------------------------------------------------------
def test_frames_have_no_column_named_after_a_dataframe_attribute() -> None:
    run = bench.load(SYNTH)
    for df in (run.records, run.layers, run.samples):
        assert isinstance(df, pd.DataFrame)
        assert [c for c in df.columns if hasattr(pd.DataFrame, c)] == []
    df = run.records
    timed = df[df["status"] == "ok"]
    assert timed["timer_mode"].tolist() == ["graph"] * len(timed)  # `df.mode` is a method
    assert df["cov_frac"].dropna().between(0, 1).all()
    units = ("_ms", "_s", "_pct", "_frac", "flops", "_bytes", "tflops", "gbps", "_mhz")
    numeric = [c for c in df.columns if str(df[c].dtype) == "Float64"]
    assert [c for c in numeric if not c.endswith(units) and c not in
            ("intensity", "rel_err")] == []


def test_frames_use_nullable_dtypes() -> None:
    run = bench.load(SYNTH)
    df = run.records
    assert str(df["workspace"].dtype) == "Int64" and df["workspace"].isna().any()
    assert str(df["median_ms"].dtype) == "Float64" and df["median_ms"].isna().any()
    assert str(df["check_passed"].dtype) == "boolean"
    assert str(df["error"].dtype) == "string"
    assert not [c for c in df.columns if df[c].dtype == object
                and c not in ("kernel", "stride", "padding", "dilation")]
    failed = df[df["status"] == "build_failed"].iloc[0]
    assert failed["median_ms"] is pd.NA and failed["n_samples"] is pd.NA
    assert str(run.layers["calls"].dtype) == "Int64"


def test_samples_frame_is_long_format_of_every_sample() -> None:
    run = bench.load(SYNTH)
    s = run.samples
    recs = {(r.case_key, r.backend): r for r in load_records(SYNTH)}
    assert len(s) == sum(len(r.samples_ms) for r in recs.values())
    g = s.groupby(["case_key", "backend"])["ms"]
    for (key, backend), med in g.median().items():
        assert med == pytest.approx(statistics.median(recs[(key, backend)].samples_ms))
    first = s[s["sample_index"] == 0].iloc[0]
    assert first["ms"] == recs[(first["case_key"], first["backend"])].samples_ms[0]
    assert set(s["pass_index"]) == {0}


def test_flops_count_the_convolution_only_and_coverage_is_shown() -> None:
    df = bench.load(QUICK).records.set_index("label")
    r = df.loc["3x3-depthwise"]  # N=1, C=K=32, g=32, 3x3 over 28x28, bias
    assert r["flops"] == 2 * 1 * 32 * 1 * 3 * 3 * 28 * 28
    assert r["bias_flops"] == 32 * 28 * 28 and r["activation_flops"] == 0
    assert df.loc["3x3-relu", "activation_flops"] == 32 * 28 * 28
    b4 = df.loc["3x3-batch4"]
    assert (b4["check_images"], b4["check_batch"]) == (4, 4)
    assert b4["check_coverage_frac"] == 1.0


# --- trtexec --exportTimes ------------------------------------------------------------------------
def test_trtexec_times_split_each_sample_into_its_inferences(tmp_path: Path) -> None:
    paths = export_trtexec(QUICK, tmp_path)
    rec = load_records(QUICK)[4]
    k = rec.timing.iters_per_sample
    times = json.loads((tmp_path / f"{_stem(rec)}.times.json").read_text())
    assert len(times) == len(rec.samples_ms) * k
    for i, entry in enumerate(times):
        ms = rec.samples_ms[i // k]
        assert list(entry) == TRTEXEC_TIME_KEYS
        assert entry["computeMs"] == entry["latencyMs"] == ms
        assert entry["endComputeMs"] - entry["startComputeMs"] == pytest.approx(ms)
    # NVIDIA's tracer.py --avg K gives back convbench's samples
    out = subprocess.run([sys.executable, str(SCRIPTS / "tracer.py"), "--metrics=computeMs",
                          f"--avg={k}", "--no-header", str(tmp_path / f"{_stem(rec)}.times.json")],
                         capture_output=True, text=True, check=True).stdout.split()
    assert [float(v) for v in out] == pytest.approx(rec.samples_ms, rel=1e-5)
    note = (tmp_path / f"{_stem(rec)}.note.txt").read_text()
    assert f"K={k} inferences" in note and "split into its K inferences" in note
    assert len([p for p in paths if p.name.endswith(".times.json")]) == 12


# --- trtexec --exportProfile ----------------------------------------------------------------------
def _hand_profile(run_dir: Path, rec: object) -> tuple[int, list[tuple[str, float, float, float,
                                                                        float]]]:
    """trtexec's arithmetic (sampleReporting.h lines 211-267) done by hand on layers.jsonl."""
    row = next(r for r in (json.loads(ln) for ln in
                           (run_dir / "layers.jsonl").read_text().splitlines())
               if r["case_key"] == rec.case_key)  # type: ignore[attr-defined]
    count = max(la["iterations"] for la in row["layers"])
    totals = [sum(la["times_ms"]) for la in row["layers"]]
    grand = sum(totals)
    return count, [(la["name"], t, t / len(la["times_ms"]), statistics.median(la["times_ms"]),
                    t / grand * 100) for la, t in zip(row["layers"], totals)]


def test_trtexec_profile_is_trtexecs_arithmetic_on_the_measured_times(tmp_path: Path) -> None:
    export_trtexec(PROFILED, tmp_path)
    rec = next(r for r in load_records(PROFILED) if r.spec.activation == "relu")
    prof = json.loads((tmp_path / f"{_stem(rec)}.profile.json").read_text())
    count, want = _hand_profile(PROFILED, rec)
    assert prof[0] == {"count": count} and count == 5
    assert [list(la) for la in prof[1:]] == [TRTEXEC_PROFILE_KEYS] * len(want)
    for la, (name, total, avg, med, pct) in zip(prof[1:], want):
        assert la["name"] == name
        assert la["timeMs"] == pytest.approx(total) and la["averageMs"] == pytest.approx(avg)
        assert la["medianMs"] == pytest.approx(med) and la["percentage"] == pytest.approx(pct)
    # the average is total / count, not the median (as convbench wrote before)
    assert prof[1]["averageMs"] != pytest.approx(prof[1]["medianMs"], rel=1e-6)


def test_nvidia_profiler_py_prints_the_hand_computed_profile(tmp_path: Path) -> None:
    export_trtexec(PROFILED, tmp_path)
    rec = next(r for r in load_records(PROFILED) if r.spec.activation == "relu")
    path = tmp_path / f"{_stem(rec)}.profile.json"
    out = subprocess.run([sys.executable, str(SCRIPTS / "profiler.py"), "--total", str(path)],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    _, want = _hand_profile(PROFILED, rec)
    rows = [(n, t, a, p) for n, t, a, _, p in want]
    rows.append(("total", sum(r[1] for r in rows), sum(r[2] for r in rows),
                 sum(r[3] for r in rows)))
    # prn_utils.printCsv formats numbers with "{:.6}"
    expect = ["name, timeMs, averageMs, percentage"] + [
        f"{n}, {t:.6}, {a:.6}, {p:.6}" for n, t, a, p in rows]
    assert out == expect


def test_old_profiles_without_times_say_how_the_export_was_made(tmp_path: Path) -> None:
    export_trtexec(SYNTH, tmp_path)
    stem = "0001-fp16-n32-c3-k64-28x28-r3-s1-p1-tensorrt"
    prof = json.loads((tmp_path / f"{stem}.profile.json").read_text())
    assert list(prof[0]) == ["count"]
    layers = prof[1:]
    assert all(list(la) == TRTEXEC_PROFILE_KEYS for la in layers)
    assert layers[0]["name"].startswith("Reformatting CopyNode")
    assert sum(la["percentage"] for la in layers) == pytest.approx(100.0)
    for la in layers:
        assert la["timeMs"] == pytest.approx(la["averageMs"] * prof[0]["count"])
    assert "stored before convbench kept per-inference layer times" in (
        tmp_path / f"{stem}.note.txt").read_text()


# --- --exportLayerInfo and TREx -------------------------------------------------------------------
def _check_trex_keys(graph: dict, profile: list) -> None:
    """What TREx v11.0 reads, and the types it needs (tools/experimental/trt-engine-explorer)."""
    # trex/parser.py lines 38-51: a dict with a 'Layers' list of dicts, and 'Bindings'
    assert isinstance(graph, dict) and isinstance(graph["Layers"], list)
    assert all(isinstance(la, dict) for la in graph["Layers"])
    # parser.py lines 144-149: at least one binding must survive the profile filter
    assert isinstance(graph["Bindings"], list) and graph["Bindings"]
    assert all(isinstance(b, str) for b in graph["Bindings"])
    for la in graph["Layers"]:
        # parser.py line 137 (Name), engine_plan.py line 125 / layer.py lines 32-41
        assert isinstance(la["Name"], str) and isinstance(la["LayerType"], str)
        assert isinstance(la["Inputs"], list) and isinstance(la["Outputs"], list)
        for t in la["Inputs"] + la["Outputs"]:
            # activations.py lines 134-139: Name, Dimensions (np.prod), Format/Datatype (str)
            assert isinstance(t["Name"], str) and isinstance(t["Format/Datatype"], str)
            assert all(isinstance(d, int) for d in t["Dimensions"])
        for key in ("Weights", "Bias"):  # layer.py lines 43-53: {'Count', 'Type'}
            if key in la:
                assert isinstance(la[key]["Count"], int) and isinstance(la[key]["Type"], str)
    # parser.py line 61: profile records with 4 or 5 keys are kept ({"count"} is dropped)
    kept = [r for r in profile if len(r) in (4, 5)]
    assert len(kept) == len(profile) - 1
    # engine_plan.py lines 73-78: the keys it renames to latency.*
    assert all({"name", "timeMs", "averageMs", "medianMs", "percentage"} <= set(r) for r in kept)
    # engine_plan.py lines 79-89: joined by position when the counts match (so the orders must
    # agree), else by Name
    names = [la["Name"] for la in graph["Layers"]]
    if len(kept) == len(names):
        assert [r["name"] for r in kept] == names
    else:
        assert {r["name"] for r in kept} <= set(names)


def test_torch_layer_info_has_the_inspector_layout_trex_reads(tmp_path: Path) -> None:
    export_trtexec(PROFILED, tmp_path)
    for rec in load_records(PROFILED):
        graph = json.loads((tmp_path / f"{_stem(rec)}.graph.json").read_text())
        profile = json.loads((tmp_path / f"{_stem(rec)}.profile.json").read_text())
        _check_trex_keys(graph, profile)
        conv = next(la for la in graph["Layers"] if la.get("ParameterType") == "Convolution")
        s = rec.spec
        assert conv["Kernel"] == list(s.kernel) and conv["Groups"] == s.groups
        assert conv["Weights"]["Count"] == s.out_channels * s.in_channels // s.groups * 9
        assert graph["Layers"][0]["Inputs"][0]["Dimensions"] == list(s.input_shape)
        assert graph["Layers"][-1]["Outputs"][0]["Dimensions"] == list(s.output_shape)
        assert all(la["TacticName"] == la["Name"] for la in graph["Layers"])


def test_tensorrt_layer_info_is_the_inspector_json_as_written(tmp_path: Path) -> None:
    """A TensorRT record keeps the inspector's JSON: the export writes it back byte for byte,
    plus (11.x layout) a copy with the 'Bindings' TREx v11.0 needs."""
    run = tmp_path / "run"
    shutil.copytree(SYNTH, run)
    raw = (DATA / "trt" / "inspector_11x.json").read_text()
    lines = (run / "records.jsonl").read_text().splitlines()
    recs = [json.loads(ln) for ln in lines]
    i = next(i for i, r in enumerate(recs) if r["backend"] == "tensorrt" and r["status"] == "ok")
    recs[i]["build"].setdefault("extra", {})["inspector_json"] = raw
    (run / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    rows = [json.loads(ln) for ln in (run / "layers.jsonl").read_text().splitlines()]
    for row in rows:  # the profile of that case: the inspector's one layer, measured 4 times
        if row["case_key"] == recs[i]["case_key"] and row["backend"] == "tensorrt":
            row["layers"] = [{"name": "conv", "median_ms": 0.02, "share": 1.0, "calls": 1,
                              "type": "CaskConvolution", "extra": {}, "total_ms": 0.081,
                              "iterations": 4, "times_ms": [0.02, 0.021, 0.02, 0.02]}]
    (run / "layers.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    export_trtexec(run, tmp_path / "out")
    rec = load_records(run)[i]
    out = tmp_path / "out"
    assert (out / f"{_stem(rec)}.graph.json").read_text() == raw
    trex_doc = json.loads((out / f"{_stem(rec)}.graph.trex.json").read_text())
    assert trex_doc["Bindings"] == ["input", "output"]
    assert {k: v for k, v in trex_doc.items() if k != "Bindings"} == json.loads(raw)
    profile = json.loads((out / f"{_stem(rec)}.profile.json").read_text())
    assert profile[0] == {"count": 4} and profile[1]["timeMs"] == pytest.approx(0.081)
    assert profile[1]["averageMs"] == pytest.approx(0.081 / 4)
    _check_trex_keys(trex_doc, profile)
    assert "'I/O Tensors'" in (out / f"{_stem(rec)}.note.txt").read_text()


def test_trex_loads_a_convbench_export(tmp_path: Path) -> None:
    """The real TREx (NVIDIA/TensorRT v11.0 tools/experimental/trt-engine-explorer), installed
    with ``pip install --no-deps <checkout>/tools/experimental/trt-engine-explorer``."""
    trex = pytest.importorskip("trex", reason="TREx is not installed: pip install --no-deps "
                               "<TensorRT checkout>/tools/experimental/trt-engine-explorer")
    export_trtexec(PROFILED, tmp_path)
    rec = next(r for r in load_records(PROFILED) if r.spec.activation == "relu")
    stem = tmp_path / _stem(rec)
    # TREx 0.2.1 is written for pandas 2.2 (its requirements.txt pins pandas==2.2.1): under
    # pandas 3 its df.fillna(0) (trex/df_preprocessing.py line 160) fails on the new str columns
    # unless str inference is off, and DataFrame.from_dict(list) warns; pandas 2 needs neither
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with (contextlib.nullcontext() if pd.__version__ < "3"
              else pd.option_context("future.infer_string", False)):
            plan = trex.EnginePlan(f"{stem}.graph.json", f"{stem}.profile.json")
            conv = trex.filter_by_layer(plan.df, "Convolution")
    row = load_layers(PROFILED)[0]
    assert [la.name for la in plan.layers] == ["aten::conv2d", "aten::relu_"]
    assert plan.df["latency.avg_time"].tolist() == pytest.approx(
        [la.total_ms / la.iterations for la in row.layers])
    assert plan.total_runtime == pytest.approx(sum(la.total_ms / la.iterations
                                                   for la in row.layers))
    assert conv["attr.kernel"].tolist() == [[3, 3]] and conv["attr.groups"].tolist() == [1]
    assert plan.df["precision"].tolist() == ["FP32", "FP32"]


def test_cli_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(QUICK), "--out", str(tmp_path), "--trtexec"]) == 0
    assert (tmp_path / "records.csv").exists() and (tmp_path / "samples.csv").exists()
    assert len(list((tmp_path / "trtexec").glob("*.profile.json"))) == 12
    assert len(list((tmp_path / "trtexec").glob("*.graph.json"))) == 12
    # 3 tables + per case times, profile, graph and note
    assert "wrote 51 file(s)" in capsys.readouterr().out


def test_unknown_schema_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                         ) -> None:
    run = tmp_path / "run"
    shutil.copytree(QUICK, run)
    lines = (run / "records.jsonl").read_text().splitlines()
    lines[0] = lines[0].replace('"schema":1', '"schema":99', 1)
    (run / "records.jsonl").write_text("\n".join(lines) + "\n")
    assert main(["export", str(run), "--out", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err
    assert "schema version 99" in err and err.count("\n") == 1


def test_profile_and_graph_list_kernels_in_launch_order(tmp_path: Path) -> None:
    """torch's profile lists kernels by share; trtexec and TREx's positional join need the
    execution order in both files."""
    run = tmp_path / "run"
    shutil.copytree(PROFILED, run)
    rows = [json.loads(ln) for ln in (run / "layers.jsonl").read_text().splitlines()]
    la = rows[0]["layers"]
    la[0]["extra"]["launch_order"], la[1]["extra"]["launch_order"] = 1, 0  # relu first
    (run / "layers.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    export_trtexec(run, tmp_path / "out")
    rec = next(r for r in load_records(run) if r.case_key == rows[0]["case_key"])
    stem = tmp_path / "out" / _stem(rec)
    graph = json.loads(Path(f"{stem}.graph.json").read_text())
    profile = json.loads(Path(f"{stem}.profile.json").read_text())
    assert [la["Name"] for la in graph["Layers"]] == ["aten::relu_", "aten::conv2d"]
    _check_trex_keys(graph, profile)


def test_torch_kernel_calls_split_into_inferences() -> None:
    from bench.backends.torch import _per_inference

    assert _per_inference([1.0, 2.0, 3.0, 4.0], 2) == [3.0, 7.0]  # two calls per inference
    assert _per_inference([1.0, 2.0, 3.0], 2) == []  # uneven: no guess
