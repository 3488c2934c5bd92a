"""Issue 12's reproductions, one test per entry point, through real ``python -m bench`` (and
``python -m pytest``) subprocesses: every way of running a sweep refuses a bad option the way
plain ``convbench run`` does — one line naming the flag, exit 1, no traceback — before anything
runs or is written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import QUICKSTART, ROOT, one_error_line

MIN_SAMPLES = "--min-samples: Input should be greater than or equal to 2"
HOST_COLD = "--l2 cold needs --mode graph or events (host timing never flushes L2)"


def bench(argv: list[str], env: dict[str, str], cwd: Path | None = None,
          ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bench", *argv], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("entry", ["run", "run --workers 1", "profile"])
def test_a_bad_timing_flag_is_one_line_from_every_entry_point(
        entry: str, tmp_path: Path, cli_env: dict[str, str]) -> None:
    if entry == "profile":
        argv = ["profile", str(QUICKSTART), "--case", "3x3", "--min-samples", "1"]
    else:
        argv = [*entry.split()[:1], str(QUICKSTART), *entry.split()[1:], "--min-samples", "1",
                "--out", str(tmp_path / "out")]
    res = bench(argv, cli_env, cwd=tmp_path)
    assert res.returncode == 1, res.stderr
    assert one_error_line(res.stderr) == f"convbench: error: {MIN_SAMPLES}"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("entry", ["run", "run --workers 1", "profile"])
def test_host_timing_with_cold_l2_is_refused_from_every_entry_point(
        entry: str, tmp_path: Path, cli_env: dict[str, str]) -> None:
    flags = ["--mode", "host", "--l2", "cold"]
    if entry == "profile":
        argv = ["profile", str(QUICKSTART), "--case", "3x3", *flags]
    else:
        argv = ["run", str(QUICKSTART), *entry.split()[1:], *flags, "--out",
                str(tmp_path / "out")]
    res = bench(argv, cli_env, cwd=tmp_path)
    assert res.returncode == 1, res.stderr
    assert one_error_line(res.stderr) == f"convbench: error: {HOST_COLD}"
    assert not (tmp_path / "out").exists()


@pytest.fixture
def quickstart_run_dir(tmp_path: Path) -> Path:
    """A quickstart run interrupted before its first record, as ``convbench run`` made it."""
    from bench.plan import make_plan
    from bench.runner import backend_facts, describe_run
    from bench.store import RunStore
    from bench.suite import load_suite

    plan = make_plan(load_suite(QUICKSTART), out=tmp_path / "results")
    backends, unavailable = plan.resolve_backends()
    return RunStore.create(plan.out, plan.suite.name, describe_run(
        plan, backend_facts(backends), unavailable, None)).dir


@pytest.mark.parametrize("entry", ["run", "run --workers 1"])
def test_resume_with_other_timing_is_refused_with_or_without_workers(
        entry: str, quickstart_run_dir: Path, cli_env: dict[str, str]) -> None:
    run_dir = quickstart_run_dir
    before = json.loads((run_dir / "run.json").read_text())
    res = bench(["run", str(QUICKSTART), *entry.split()[1:], "--resume", str(run_dir),
                 "--max-time-s", "0.1"], cli_env)
    assert res.returncode == 1, res.stderr
    line = one_error_line(res.stderr)
    assert line.startswith(f"convbench: error: {run_dir}: was measured with other timing "
                           "settings ("), line
    assert line.endswith("; resume with the same options"), line
    assert not (run_dir / "records.jsonl").exists()  # nothing measured
    assert json.loads((run_dir / "run.json").read_text()) == before  # nor rewritten


def test_the_pytest_plugin_refuses_a_bad_timing_option_with_one_usage_line(
        tmp_path: Path, cli_env: dict[str, str]) -> None:
    (tmp_path / "quickstart.toml").write_text(QUICKSTART.read_text())
    (tmp_path / "test_fixture.py").write_text(
        "def test_c(conv_benchmark):\n"
        "    conv_benchmark({'in_channels': 4, 'out_channels': 4, 'height': 8, 'width': 8})\n")
    env = {**cli_env, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    for target in ("quickstart.toml", "test_fixture.py"):  # a suite file, the fixture
        res = subprocess.run([sys.executable, "-m", "pytest", "-p", "bench.pytest_plugin", "-p",
                              "pytest_benchmark.plugin", "-p", "no:cacheprovider", target,
                              "--convbench-min-samples", "1", "--convbench-out", "results"],
                             env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert res.returncode == pytest.ExitCode.USAGE_ERROR, res.stdout + res.stderr
        out = (res.stdout + res.stderr).strip()
        assert "Traceback" not in out
        assert out.splitlines() == ["ERROR: --convbench-min-samples: Input should be greater "
                                    "than or equal to 2"], out
        assert not (tmp_path / "results").exists()


def test_profile_refuses_an_unknown_backend_like_run(cli_env: dict[str, str],
                                                     tmp_path: Path) -> None:
    for argv in (["profile", str(QUICKSTART), "--case", "3x3", "--backend", "cudnn9"],
                 ["run", str(QUICKSTART), "--backend", "cudnn9", "--out", str(tmp_path)]):
        res = bench(argv, cli_env, cwd=ROOT)
        assert res.returncode == 1, res.stderr
        assert "--backend cudnn9: unknown backend (known: " in one_error_line(res.stderr)
