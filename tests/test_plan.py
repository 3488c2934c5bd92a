"""``make_plan``: the one place that validates timing options, backends, the device and
whether a run may be resumed. Errors are one line naming the flag (with the entry point's
prefix) or the suite file and key; everything is refused before anything runs."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest
from helpers import one_error_line

from bench.cli import main
from bench.errors import BenchError
from bench.plan import make_plan, validate_timing
from bench.pytest_support import effective_timing
from bench.store import RunStore
from bench.suite import TimingConfig, load_suite, parse_suite

SUITE = """
name = "plan"
backends = ["torch"]
[defaults]
in_channels = 4
out_channels = 4
height = 8
width = 8
[sweep]
kernel = [1, 3]
[timing]
warmup_s = 0.0
min_samples = 3
min_time_s = 0.0
max_time_s = 0.05
target_rse = 0.5
profile_iters = 0
"""


def _suite_file(tmp_path: Path, text: str = SUITE, name: str = "plan.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def cli(*argv: str) -> tuple[int, str, str]:
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        rc = main(list(argv))
    return rc, out.getvalue(), err.getvalue()


# --- timing -----------------------------------------------------------------------------------
def test_a_bad_timing_flag_names_the_flag_with_the_entry_points_prefix() -> None:
    suite = parse_suite(SUITE)
    with pytest.raises(BenchError, match=r"^--min-samples: Input should be greater than or "
                                         r"equal to 2$"):
        make_plan(suite, timing={"min_samples": 1})
    with pytest.raises(BenchError, match=r"^--convbench-min-samples: Input should be greater "
                                         r"than or equal to 2$"):
        make_plan(suite, timing={"min_samples": 1}, prefix="--convbench-")
    with pytest.raises(BenchError, match=r"^--convbench-max-time-s: "):
        effective_timing(suite.timing, {"max_time_s": 0})
    # the flag names the key with dashes, whatever the key
    with pytest.raises(BenchError, match=r"^--warmup-s: "):
        validate_timing(TimingConfig(), {"warmup_s": -1.0})
    with pytest.raises(BenchError, match=r"^--repeats: "):
        validate_timing(TimingConfig(), {"repeats": 0})


def test_the_plan_holds_the_validated_timing(tmp_path: Path) -> None:
    plan = make_plan(parse_suite(SUITE), timing={"min_samples": 7, "mode": "host"})
    assert plan.timing.min_samples == 7 and plan.timing.mode == "host"
    assert plan.timing.max_time_s == 0.05  # the suite's own [timing] under the flags
    assert plan.repeats == 1
    assert [c.index for c in plan.cases] == [0, 1] and plan.backend_names == ("torch",)


def test_a_bad_suite_timing_names_the_suite_file_and_key(tmp_path: Path) -> None:
    """host + cold in the file is refused when the file is read, naming file and key; host +
    cold from flags is named as the flags (the file cannot be what is wrong)."""
    bad = _suite_file(tmp_path, SUITE.replace('profile_iters = 0',
                                              'profile_iters = 0\nmode = "host"\nl2 = "cold"'))
    with pytest.raises(BenchError, match=rf"^{bad}: timing.l2: 'cold' needs timing.mode "):
        load_suite(bad)
    good = _suite_file(tmp_path, SUITE, name="good.toml")
    with pytest.raises(BenchError, match=r"^--l2 cold needs --mode graph or events"):
        make_plan(load_suite(good), timing={"l2": "cold", "mode": "host"})
    rc, _, err = cli("run", str(bad), "--dry-run", "--out", str(tmp_path / "out"))
    assert rc == 1 and f"{bad}: timing.l2:" in one_error_line(err)


def test_a_bad_value_in_the_suites_timing_names_the_file_even_with_flags(
        tmp_path: Path) -> None:
    """The suite's own bad value is blamed on the file and key, also when other timing flags
    are given (they cannot be what is wrong)."""
    bad = _suite_file(tmp_path, SUITE.replace("target_rse = 0.5", "target_rse = 0"))
    for flags in ([], ["--min-samples", "4"]):
        rc, out, err = cli("run", str(bad), "--dry-run", *flags)
        line = one_error_line(err)
        assert rc == 1 and line.startswith(f"convbench: error: {bad}: timing.target_rse: "), line
        assert out == ""


@pytest.mark.parametrize("argv", [["--mode", "host", "--l2", "cold"], ["--l2", "cold",
                                                                        "--mode", "host"]])
def test_host_timing_with_cold_l2_is_refused(argv: list[str], tmp_path: Path) -> None:
    with pytest.raises(BenchError, match=r"^--l2 cold needs --mode graph or events \(host "
                                         r"timing never flushes L2\)$"):
        make_plan(parse_suite(SUITE), timing={"mode": "host", "l2": "cold"})
    rc, out, err = cli("run", str(_suite_file(tmp_path)), "--dry-run", *argv)
    assert rc == 1 and "--l2 cold needs --mode graph or events" in one_error_line(err)
    assert out == ""  # refused before the dry run listed anything


# --- backends and device ------------------------------------------------------------------------
@pytest.mark.parametrize(("backends", "message"), [
    (["cudnn9"], "--backend cudnn9: unknown backend (known: "),
    (["torch", "torch"], "--backend torch: given twice"),
])
def test_unknown_or_duplicate_backend_is_refused_at_plan_time(
        backends: list[str], message: str, tmp_path: Path) -> None:
    with pytest.raises(BenchError, match=rf"^{message.replace('(', '[(]')}"):
        make_plan(parse_suite(SUITE), backends=backends)
    argv = [a for b in backends for a in ("--backend", b)]
    rc, out, err = cli("run", str(_suite_file(tmp_path)), "--dry-run", *argv, "--out",
                       str(tmp_path / "out"))
    assert rc == 1 and message in one_error_line(err)
    assert out == "" and not (tmp_path / "out").exists()


def test_a_negative_device_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match=r"^--device -1: a CUDA device index is >= 0$"):
        make_plan(parse_suite(SUITE), device_index=-1)
    with pytest.raises(BenchError, match=r"^--convbench-device -1: "):
        make_plan(parse_suite(SUITE), device_index=-1, prefix="--convbench-")
    rc, out, err = cli("run", str(_suite_file(tmp_path)), "--dry-run", "--device", "-1")
    assert rc == 1 and "--device -1: a CUDA device index is >= 0" in one_error_line(err)


def test_filter_that_leaves_nothing_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="no case left after --filter/--shard"):
        make_plan(parse_suite(SUITE), filter="kernel == 7")


# --- resume ------------------------------------------------------------------------------------
@pytest.fixture
def empty_run(tmp_path: Path) -> tuple[Path, Path]:
    """(suite file, a run of it that was interrupted before its first record)."""
    from bench.runner import backend_facts, describe_run

    path = _suite_file(tmp_path)
    plan = make_plan(load_suite(path), out=tmp_path / "results")
    backends, unavailable = plan.resolve_backends()
    store = RunStore.create(plan.out, plan.suite.name,
                            describe_run(plan, backend_facts(backends), unavailable, None))
    return path, store.dir


def test_resume_of_the_same_plan_is_accepted(empty_run: tuple[Path, Path]) -> None:
    path, run_dir = empty_run
    plan = make_plan(load_suite(path), resume=run_dir)
    assert plan.resume == run_dir


def test_resume_refuses_another_suite_text(empty_run: tuple[Path, Path],
                                           tmp_path: Path) -> None:
    path, run_dir = empty_run
    other = _suite_file(tmp_path, SUITE.replace("kernel = [1, 3]", "kernel = [1, 5]"),
                        "other.toml")
    with pytest.raises(BenchError, match=rf"^{run_dir}: was made from a different suite text "
                                         rf"than {other}; start a new run"):
        make_plan(load_suite(other), resume=run_dir)
    rc, out, err = cli("run", str(other), "--resume", str(run_dir), "--dry-run")
    assert rc == 1 and "different suite text" in one_error_line(err) and out == ""


def test_resume_refuses_other_timing(empty_run: tuple[Path, Path]) -> None:
    path, run_dir = empty_run
    with pytest.raises(BenchError, match=rf"^{run_dir}: was measured with other timing "
                                         r"settings .*; resume with the same options$"):
        make_plan(load_suite(path), resume=run_dir, timing={"max_time_s": 0.06})
    rc, _, err = cli("run", str(path), "--resume", str(run_dir), "--max-time-s", "0.06")
    assert rc == 1 and "other timing settings" in one_error_line(err)
    assert not (run_dir / "records.jsonl").exists()  # nothing ran


def test_resume_refuses_other_backends(empty_run: tuple[Path, Path]) -> None:
    path, run_dir = empty_run
    with pytest.raises(BenchError, match=rf"^{run_dir}: was run with backends \['torch'\], not "
                                         r"\['tensorrt', 'torch'\]; resume with the same "
                                         r"--backend$"):
        make_plan(load_suite(path), resume=run_dir, backends=["torch", "tensorrt"])


def test_resume_of_something_that_is_not_a_run(tmp_path: Path) -> None:
    path = _suite_file(tmp_path)
    with pytest.raises(BenchError, match=r"run.json: not found; is .* a convbench run "
                                         r"directory\?"):
        make_plan(load_suite(path), resume=tmp_path / "nothing")




def test_resume_of_a_schema_1_run_is_checked_like_any_other(tmp_path: Path) -> None:
    """A run written by yesterday's main (schema 1) resumes with the same suite and timing
    options, and is refused with other timing."""
    run = tmp_path / "run"
    shutil.copytree(Path(__file__).parent / "data" / "runs" / "quickstart-cpu-a", run)
    info = json.loads((run / "run.json").read_text())
    assert info["schema"] == 1
    path = _suite_file(tmp_path, info["suite_text"], "quickstart.toml")
    plan = make_plan(load_suite(path), resume=run, timing=info["timing"])
    assert plan.resume == run
    with pytest.raises(BenchError, match="other timing settings"):
        make_plan(load_suite(path), resume=run, timing={**info["timing"], "min_samples": 99})
