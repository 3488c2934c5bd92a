"""The pytest plugin, run by pytest itself (pytester) on the quickstart suite.

Checks what a pytest-benchmark user sees: items and ids, -k/-m selection, the saved JSON's stats
being convbench's own samples, ``pytest-benchmark compare``, and ``--benchmark-compare-fail``
failing a run whose baseline was faster. Runs on the CPU (torch backend) in a few seconds per
run: timing is cut short with the ``--convbench-*`` options.
"""

from __future__ import annotations

import csv
import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.store import load_layers, load_records, read_run_info

pytest_plugins = ["pytester"]
torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "suites" / "quickstart.toml"
ON_GPU = torch.cuda.is_available()
# plugins named explicitly and autoload off: the same run whether or not convbench's pytest11
# entry point is installed in this environment
PLUGINS = ["-p", "bench.pytest_plugin", "-p", "pytest_benchmark.plugin", "-p", "no:cacheprovider"]
FAST = ["--convbench-warmup-s=0", "--convbench-min-time-s=0.005", "--convbench-max-time-s=0.03",
        "--convbench-min-samples=3", "--convbench-profile-iters=2"]
STAT_KEYS = ("min", "max", "mean", "median", "stddev", "q1", "q3", "iqr", "ops", "total")


# Collection runs in-process (fast); runs that measure go to a subprocess, because pytester's
# in-process runs unload every module first imported inside them, and torch's lazily imported
# modules cannot be loaded twice in one process.
importlib.import_module("bench.pytest_support")


@pytest.fixture
def pt(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    # under pytest-xdist (pytest -n 2) the inner runs must not look like xdist workers:
    # pytest-benchmark disables itself when it sees PYTEST_XDIST_WORKER
    for var in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # steadier CPU timings on a busy machine
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH",
                                                                                "")]))
    pytester.makeini("[pytest]\naddopts = --strict-markers\nfilterwarnings = error\n")
    shutil.copy(QUICKSTART, pytester.path / "quickstart.toml")
    return pytester


def collect(pt: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pt.runpytest_inprocess(*PLUGINS, *FAST, "--convbench-out=results", *args)


def run(pt: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pt.runpytest_subprocess(*PLUGINS, *FAST, "--convbench-out=results", *args,
                                   timeout=300)


def run_dir(pt: pytest.Pytester, suite: str = "quickstart") -> Path:
    dirs = sorted((pt.path / "results" / suite).iterdir())
    assert len(dirs) == 1, dirs
    return dirs[0]


def collected(result: pytest.RunResult) -> list[str]:
    return [ln for ln in result.outlines if "::" in ln]


def test_one_item_per_case_and_backend_with_readable_ids(pt: pytest.Pytester) -> None:
    result = collect(pt, "quickstart.toml", "--collect-only", "-q")
    ids = collected(result)
    assert len(ids) == 12
    assert "quickstart.toml::conv[torch-3x3-relu]" in ids
    assert "quickstart.toml::conv[torch-7x7-stem]" in ids
    # -k matches the label, and the spec's short name / precision of labelled cases
    assert collected(collect(pt, "quickstart.toml", "--co", "-q", "-k", "7x7 or relu")) == [
        "quickstart.toml::conv[torch-3x3-relu]", "quickstart.toml::conv[torch-7x7-stem]"]
    assert collected(collect(pt, "quickstart.toml", "--co", "-q", "-k", "bf16")) == [
        "quickstart.toml::conv[torch-3x3-bf16]"]
    assert len(collected(collect(pt, "quickstart.toml", "--co", "-q", "-k", "28x28-r5"))) == 1
    # marks: the backend's name, convbench, and gpu exactly when torch runs on CUDA
    assert len(collected(collect(pt, "quickstart.toml", "--co", "-q", "-m", "torch"))) == 12
    assert len(collected(collect(pt, "quickstart.toml", "--co", "-q", "-m", "convbench"))) == 12
    on_gpu = collected(collect(pt, "quickstart.toml", "--co", "-q", "-m", "gpu"))
    assert len(on_gpu) == (12 if ON_GPU else 0)
    assert not (pt.path / "results").exists()  # collecting measures nothing, writes nothing


def test_suite_option_adds_the_suite_to_the_other_tests(pt: pytest.Pytester) -> None:
    pt.makepyfile(test_plain="def test_plain():\n    pass\n")
    ids = collected(collect(pt, "--convbench-suite", "quickstart.toml", "test_plain.py", "--co",
                            "-q"))
    assert len(ids) == 13 and "test_plain.py::test_plain" in ids


def test_inert_without_suite_files(pt: pytest.Pytester) -> None:
    """With the plugin loaded, a project's own tests run as before: a pyproject.toml is not a
    suite, nothing is measured or written, no warning is raised (filterwarnings = error)."""
    pt.makepyfile(test_plain="def test_plain():\n    pass\n")
    (pt.path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    result = collect(pt)
    result.assert_outcomes(passed=1)
    assert not (pt.path / "results").exists()
    assert "convbench" not in result.stdout.str()
    markers = collect(pt, "--markers").stdout.str()
    assert "@pytest.mark.convbench" in markers and "@pytest.mark.gpu" in markers


@pytest.mark.slow
def test_benchmark_json_holds_convbench_samples_and_records(pt: pytest.Pytester) -> None:
    result = run(pt, "quickstart.toml", "--benchmark-json=bench.json")
    result.assert_outcomes(passed=12)
    rd = run_dir(pt)
    result.stdout.fnmatch_lines([f"results: {rd}*"])
    records = {r.case_key: r for r in load_records(rd)}
    assert len(records) == 12 and all(r.status == "ok" for r in records.values())
    benches = json.loads((pt.path / "bench.json").read_text())["benchmarks"]
    assert len(benches) == 12
    for b in benches:
        info = b["extra_info"]
        rec = records[info["case_key"]]
        st = b["stats"]
        # pytest-benchmark's rounds are convbench's samples, in seconds per inference
        assert st["data"] == [ms / 1e3 for ms in rec.samples_ms]
        assert st["rounds"] == rec.stats.n
        assert st["iterations"] == rec.timing.iters_per_sample
        for key in ("min", "max", "mean", "median", "std"):
            ours = key if key != "std" else "stddev"
            assert st[ours] == pytest.approx(getattr(rec.stats, key) / 1e3, rel=1e-9), key
        assert b["name"] == f"conv[torch-{rec.name}]"
        assert b["group"] == "quickstart" and b["params"] == {"backend": "torch",
                                                              "case": rec.name}
        assert info["timer"] == ("graph" if ON_GPU else "host")
        assert b["options"]["timer"] == f"convbench:{info['timer']}"
        assert info["spec"] == rec.spec.model_dump(mode="json")
        assert info["noise_rse"] == rec.stats.rse
        assert info["flops"] == rec.derived.flops > 0
        assert info["tflops"] == pytest.approx(rec.derived.flops / st["median"] / 1e12)
        assert info["check"]["passed"] and "clocks" in info
    assert len(load_layers(rd)) == 12  # the per-layer profile is stored too

    # the run directory holds the same records and run.json fields as ``convbench run``
    from bench.plan import make_plan
    from bench.runner import run_suite
    from bench.suite import load_suite

    ours = [r.to_json() for r in load_records(rd)]
    timing = {"warmup_s": 0.0, "min_time_s": 0.005, "max_time_s": 0.03, "min_samples": 3,
              "profile_iters": 2}
    summary = run_suite(make_plan(load_suite(QUICKSTART), out=pt.path / "cli", timing=timing,
                                  filter="label == 'pointwise-1x1'", progress=False))
    cli = [r.to_json() for r in load_records(summary.run_dir)]
    # the same fields set (not only the same model): nothing the CLI fills stays empty here
    assert {tuple(sorted(k for k, v in r.items() if v is not None)) for r in ours} == \
        {tuple(sorted(k for k, v in cli[0].items() if v is not None))}
    assert ours[0]["timing"].keys() == cli[0]["timing"].keys()
    ours_info, cli_info = read_run_info(rd), read_run_info(summary.run_dir)
    assert set(cli_info) <= set(ours_info)
    assert ours_info["timing"] == cli_info["timing"]
    assert ours_info["suite_text"] == QUICKSTART.read_text()
    import bench

    assert len(bench.load(rd).records) == 12  # what `convbench report` reads
    from bench.report import render, write_report

    # the report's tables load this run; its plots (drawn from the same table, seconds each)
    # are checked in tests/test_report.py
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(render, "_plots", lambda run, out: [])
        assert write_report(rd, out_root=pt.path / "reports").is_file()


def _saved(pt: pytest.Pytester) -> list[Path]:
    return sorted((pt.path / ".benchmarks").glob("*/*.json"))


def _scale(bench: dict[str, Any], factor: float) -> None:
    st = bench["stats"]
    for k in STAT_KEYS:
        st[k] = st[k] / factor if k == "ops" else st[k] * factor
    if st.get("data"):
        st["data"] = [v * factor for v in st["data"]]


@pytest.mark.slow
def test_compare_and_compare_fail(pt: pytest.Pytester) -> None:
    """Two pytest runs: the first saves its convbench numbers (0001). Its baseline is then
    edited: one case to 1/100 of what was measured, the other 100x slower (large factors: a
    shared CPU can swing timings several-fold between two runs). The second run compares with
    it, fails on the regression only, and saves itself (0002); `pytest-benchmark compare` then
    shows both saved runs with the saved numbers."""
    run(pt, "quickstart.toml", "-k", "relu or stem", "--benchmark-autosave"
        ).assert_outcomes(passed=2)
    (first,) = _saved(pt)
    assert first.name[:4] == "0001"
    data = json.loads(first.read_text())
    for b in data["benchmarks"]:
        _scale(b, 0.01 if "relu" in b["name"] else 100.0)
    first.write_text(json.dumps(data))
    result = run(pt, "quickstart.toml", "-k", "relu or stem", "--benchmark-autosave",
                 "--benchmark-compare=0001", "--benchmark-compare-fail=median:5%")
    assert result.ret != 0
    out = result.stdout.str() + result.stderr.str()
    assert "Performance has regressed" in out
    regressed = out[out.index("Performance has regressed"):]
    assert "conv[torch-3x3-relu]" in regressed and "Field 'median'" in regressed
    assert "7x7-stem" not in regressed  # faster than its baseline: no regression

    saved = _saved(pt)
    assert [p.name[:4] for p in saved] == ["0001", "0002"]  # the failing run saved itself
    proc = subprocess.run([sys.executable, "-m", "pytest_benchmark", "compare", "0001", "0002",
                           "--columns=median,rounds", "--csv=cmp.csv", "--time-unit=ms"],
                          cwd=pt.path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout + proc.stderr
    for name in ("conv[torch-3x3-relu]", "conv[torch-7x7-stem]"):
        assert out.count(name) == 2, out  # one line per saved run
    medians = [b["stats"]["median"] for p in saved
               for b in json.loads(p.read_text())["benchmarks"]]
    with open(pt.path / "cmp.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted(float(r["median"]) for r in rows) == pytest.approx(sorted(medians), rel=1e-9)


CONV_TEST = """
import pytest
from bench.spec import ConvSpec

@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_conv(conv_benchmark, precision):
    spec = ConvSpec(batch=1, in_channels=16, out_channels=16, height=14, width=14, kernel=3,
                    padding="same", precision=precision)
    rec = conv_benchmark(spec, "torch", min_samples=3)
    assert rec.status == "ok" and rec.stats.median > 0
    assert rec.spec.precision == precision

def test_twice(conv_benchmark):
    spec = {"in_channels": 8, "out_channels": 8, "height": 8, "width": 8, "kernel": 1}
    conv_benchmark(spec)
    conv_benchmark(spec)
"""


@pytest.mark.slow
def test_conv_benchmark_fixture(pt: pytest.Pytester) -> None:
    pt.makepyfile(test_conv=CONV_TEST)
    result = run(pt, "test_conv.py", "--benchmark-json=bench.json")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*RuntimeError: conv_benchmark can be called once per test*"])
    records = load_records(run_dir(pt, "pytest"))
    assert [r.name for r in records] == ["test_conv[fp32]", "test_conv[bf16]", "test_twice"]
    benches = {b["name"]: b for b in json.loads((pt.path / "bench.json").read_text())
               ["benchmarks"]}
    assert set(benches) == {"test_conv[fp32]", "test_conv[bf16]"}  # the failed test is left out
    for rec in records[:2]:
        b = benches[rec.name]
        assert b["stats"]["data"] == [ms / 1e3 for ms in rec.samples_ms]
        assert b["params"] == {"precision": rec.spec.precision}
        assert b["extra_info"]["case_key"] == rec.case_key


def test_bad_suite_is_one_line_collection_error(pt: pytest.Pytester) -> None:
    (pt.path / "bad.toml").write_text('name = "bad"\n[defaults]\nkernal = 3\n')
    result = collect(pt, "bad.toml")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*bad.toml: defaults: unknown conv field 'kernal'*"])
    assert "Traceback" not in result.stdout.str()


@pytest.mark.parametrize(("args", "message"), [
    (["--convbench-min-samples=1"], "--convbench-min-samples: Input should be greater than or "
                                    "equal to 2"),
    (["--convbench-mode=host", "--convbench-l2=cold"],
     "--convbench-l2 cold needs --convbench-mode graph or events"),
])
def test_bad_timing_option_is_one_usage_error_naming_it(pt: pytest.Pytester, args: list[str],
                                                        message: str) -> None:
    # the same check as `convbench run` (issue 12: the plugin validated differently)
    result = collect(pt, "quickstart.toml", "--co", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"ERROR: {message}" in result.stderr.str()
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


def test_every_timing_setting_is_an_option(pt: pytest.Pytester) -> None:
    from bench.suite import TimingConfig

    out = collect(pt, "--help").stdout.str()
    for name in TimingConfig.model_fields:
        assert f"--convbench-{name.replace('_', '-')}" in out, name


def test_unavailable_or_unknown_backend(pt: pytest.Pytester) -> None:
    result = collect(pt, "quickstart.toml", "--convbench-backend=nosuch", "--co")
    result.stdout.fnmatch_lines(["*--convbench-backend nosuch: unknown backend*"])


@pytest.mark.parametrize(("status", "outcome"), [("check_failed", "failed"),
                                                 ("build_failed", "failed"),
                                                 ("error", "failed"),
                                                 ("unsupported", "skipped")])
def test_record_status_sets_the_outcome(status: str, outcome: str) -> None:
    from helpers import record

    from bench.pytest_plugin import _check

    rec = record(0, status=status, error="reason given by the backend")
    exc = pytest.fail.Exception if outcome == "failed" else pytest.skip.Exception
    with pytest.raises(exc, match="reason given by the backend"):
        _check(rec)


def test_extra_info_has_roofline_percent_on_a_known_gpu(tmp_path: Path) -> None:
    from helpers import record

    from bench.pytest_support import extra_info
    from bench.record import Check, Clocks, Derived, Stats, TimingFacts

    # built field by field: Stats.of would import scipy inside this module's in-process pytest
    # runs, which unload it again (numpy.fft cannot be loaded twice in one process)
    stats = Stats(n=20, min=0.48, median=0.5, mean=0.5, p90=0.51, p95=0.51, p99=0.52,
                  max=0.52, std=0.01, cov=0.02, rse=0.001, median_ci_low=0.49,
                  median_ci_high=0.51)
    rec = record(0, device="cuda", stats=stats,
                 check=Check(rel_err=1e-4, tol=1e-2, passed=True, images=1),
                 timing=TimingFacts(mode="graph", iters_per_sample=10, l2="warm",
                                    converged=True),
                 derived=Derived(flops=200_000_000_000, bytes_min=100_000_000,
                                 intensity=2000.0, output_shape=[1, 8, 8, 8]),
                 gpu={"name": "NVIDIA H100 80GB HBM3", "cc": [9, 0], "uuid": "GPU-x"},
                 clocks=Clocks(), run_dir=str(tmp_path))
    rec.spec = rec.spec.model_copy(update={"precision": "fp16", "tf32": True})
    info = extra_info(rec, "s")
    assert info["tflops"] == pytest.approx(2e11 / 0.5e-3 / 1e12)  # 400 TFLOP/s
    assert info["roofline_bound"] == "compute"
    assert info["roofline_pct"] == pytest.approx(100 * 400 / info["roofline_peak"]["tflops"])
