"""CLI exit codes and one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(args: list[str], env: dict[str, str],
         cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", *args], env={**env, "COLUMNS": "200"},
                          capture_output=True, text=True, check=False, cwd=cwd)


def test_show_prints_expanded_cases(cli_env: dict[str, str]) -> None:
    r = _run(["show", str(ROOT / "suites" / "quickstart.toml")], cli_env)
    assert r.returncode == 0, r.stderr
    assert "quickstart: 12 case(s)" in r.stdout
    assert "3x3-depthwise" in r.stdout


@pytest.mark.parametrize("args,needle", [
    (["show", "nope.toml"], "nope.toml: no such suite file"),
    (["run", "nope.toml"], "nope.toml: no such suite file"),
    (["run", str(ROOT / "suites" / "quickstart.toml"), "--backend", "cudnn9"],
     "--backend cudnn9: unknown backend (known: "),
    (["run", str(ROOT / "suites" / "quickstart.toml"), "--filter", "os.system('x')"],
     "--filter"),
    (["report", "/nonexistent/run"], "run.json: not found"),
    (["report", str(ROOT / "suites" / "quickstart.toml")], "run.json: not found"),
    (["run", str(ROOT / "suites" / "quickstart.toml"), "--warmup-s", "-1"], "--warmup-s: "),
    (["run", str(ROOT / "suites" / "quickstart.toml"), "--mode", "host", "--l2", "cold"],
     "--l2 cold needs --mode graph or events"),
])
def test_user_errors_exit_1_with_one_line(cli_env: dict[str, str], tmp_path: Path,
                                          args: list[str], needle: str) -> None:
    r = _run(args + (["--out", str(tmp_path)] if args[0] == "run" else []), cli_env,
             cwd=tmp_path)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("convbench: error: "), r.stderr
    assert needle in lines[0]
    assert "Traceback" not in r.stderr
    assert not list(tmp_path.glob("*/*/records.jsonl"))


def test_bad_suite_creates_no_result_dir(cli_env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\n[defaults]\nin_channels = 3\nout_channels = 4\nheight = 4\n'
                   'width = 4\ngroups = 2\n')
    r = _run(["run", str(bad), "--out", str(tmp_path / "res")], cli_env)
    assert r.returncode == 1
    assert f"{bad}: defaults: " in r.stderr and "divisible by groups" in r.stderr
    assert not (tmp_path / "res").exists()


def test_dry_run_lists_cases_without_running(cli_env: dict[str, str], tmp_path: Path) -> None:
    r = _run(["run", str(ROOT / "suites" / "quickstart.toml"), "--dry-run", "--filter",
              "precision == 'bf16'", "--out", str(tmp_path)], cli_env)
    assert r.returncode == 0, r.stderr
    assert "1 case(s)" in r.stdout
    assert not any(tmp_path.iterdir())


def test_argparse_errors_exit_2(cli_env: dict[str, str]) -> None:
    r = _run(["run", "--no-such-flag"], cli_env)
    assert r.returncode == 2
    # a run with neither a suite file nor --case is a user error: one line, exit 1
    r = _run(["run"], cli_env)
    assert r.returncode == 1 and "give a suite file or --case" in r.stderr
