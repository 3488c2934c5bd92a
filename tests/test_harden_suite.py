"""Hostile suite files (issue 14, items 8 and 9): each is one line naming the file and the key,
never a traceback, a hang or a silently changed sweep."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.errors import BenchError
from bench.spec import parse_bytes
from bench.suite import MAX_SUITE_BYTES, load_suite, parse_suite
from bench.text import safe_label

ROOT = Path(__file__).resolve().parents[1]
BASE = ('name = "x"\n[defaults]\nin_channels = 8\nout_channels = 8\nheight = 8\nwidth = 8\n')


def refused(text: str) -> str:
    with pytest.raises(BenchError) as e:
        parse_suite(text, source="s.toml")
    msg = str(e.value)
    assert msg.startswith("s.toml: ") and "\n" not in msg
    return msg


@pytest.mark.parametrize("line, key", [
    (f"batch = {10**300}", "defaults.batch"),
    (f"batch = {2**63}", "defaults.batch"),
    (f'workspace = "{"9" * 400}GB"', "workspace"),
    (f"workspace = {'9' * 18}", "workspace"),
    ("batch = 2147483649", "batch"),
    ("batch = 1048576\n[sweep]\nheight = [1048576]", "more than 2**40 elements"),
])
def test_huge_integers_are_one_line(line: str, key: str) -> None:
    msg = refused(BASE + line + "\n")
    assert key in msg and len(msg) < 300


def test_workspace_digits_are_ascii() -> None:
    assert parse_bytes("4GB") == 4 * 10**9
    assert parse_bytes("1.5 KiB") == 1536
    with pytest.raises(ValueError):
        parse_bytes("٤GB")  # ARABIC-INDIC DIGIT FOUR
    assert "workspace" in refused(BASE + 'workspace = "٤GB"\n')


def test_bare_carriage_return_is_refused() -> None:
    assert "carriage return" in refused(BASE.replace("\n", "\r"))
    assert len(parse_suite(BASE.replace("\n", "\r\n"), source="s.toml").cases) == 1


def test_backend_listed_twice() -> None:
    assert "backends" in refused('backends = ["torch", "torch"]\n' + BASE)


def test_key_swept_in_two_places_names_both() -> None:
    msg = refused(BASE + "[sweep]\nbatch = [1, 2]\n[[zip]]\nbatch = [1, 2]\n")
    assert "zip[0].batch" in msg and "sweep.batch" in msg
    msg = refused(BASE + "[[zip]]\nbatch = [1, 2]\n[[zip]]\nbatch = [3, 4]\n")
    assert "zip[1].batch" in msg and "zip[0].batch" in msg


def test_host_mode_with_cold_l2_names_the_key() -> None:
    assert "timing.l2" in refused(BASE + '[timing]\nmode = "host"\nl2 = "cold"\n')


@pytest.mark.parametrize("line, key", [
    ("warmup_s = inf", "timing.warmup_s"), ("warmup_s = 1e309", "timing.warmup_s"),
    ("max_time_s = nan", "timing.max_time_s"), ("max_time_s = 1e6", "timing.max_time_s"),
    ("target_rse = 1e-300", "timing.target_rse"),
    (f"profile_iters = {2**62}", "timing.profile_iters"),
])
def test_timing_values_are_finite_and_bounded(line: str, key: str) -> None:
    assert key in refused(BASE + "[timing]\n" + line + "\n")


@pytest.mark.parametrize("name", ["..", ".", ".hidden", "a/b"])
def test_suite_name_that_is_not_a_directory_name(name: str) -> None:
    assert "name" in refused(BASE.replace('"x"', f'"{name}"'))


@pytest.mark.parametrize("label", ["\\u001b[2J", "\\u001b]0;owned\\u0007", "a\\rb", "\\u202e"])
def test_control_characters_in_labels_are_refused(label: str) -> None:
    assert "cases[0].label" in refused(BASE + f'[[cases]]\nlabel = "{label}"\n')


def test_safe_label_escapes_markup_and_controls() -> None:
    import io

    from rich.console import Console

    buf = io.StringIO()
    Console(file=buf, force_terminal=True, color_system=None, width=200).print(
        safe_label("[red]x\x1b[2J\x1b]0;t\x07\r"))
    assert buf.getvalue() == "[red]x\\x1b[2J\\x1b]0;t\\x07\\x0d\n"
    assert safe_label("conv 3×3 ok") == "conv 3×3 ok"


@pytest.mark.parametrize("path", ["/dev/zero", "/dev/urandom", "/dev/null"])
def test_devices_are_refused(path: str) -> None:
    if not os.path.exists(path):
        pytest.skip(f"{path} missing")
    with pytest.raises(BenchError, match="device"):
        load_suite(path)


def test_fifo_and_directory_and_big_file(tmp_path: Path) -> None:
    fifo = tmp_path / "s.toml"
    os.mkfifo(fifo)
    # a subprocess with a timeout: a blocking open() would hang the test run itself
    r = subprocess.run([sys.executable, "-m", "bench", "show", str(fifo)], capture_output=True,
                       text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 1 and "FIFO" in r.stderr and len(r.stderr.splitlines()) == 1
    with pytest.raises(BenchError, match="directory"):
        load_suite(tmp_path)
    big = tmp_path / "big.toml"
    big.write_text(BASE + "#" * MAX_SUITE_BYTES + "\n")
    with pytest.raises(BenchError, match="larger than 1 MiB"):
        load_suite(big)


def test_reference_over_its_memory_budget_is_unsupported_before_allocating(
        tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from bench.plan import make_plan
    from bench.reference import REFERENCE_MAX_BYTES, reference_bytes
    from bench.runner import run_suite
    from bench.spec import ConvSpec

    # one image's float64 windows: 4096 x 510 x 510 x 9 x 8 bytes ~ 72 GiB; the fp32 input
    # alone would be 4 GiB if it were made
    big = {"in_channels": 4096, "out_channels": 8, "height": 512, "width": 512, "kernel": 3}
    assert reference_bytes(ConvSpec(**big), 1) > REFERENCE_MAX_BYTES
    text = ('name = "big"\n[defaults]\n' + "".join(f"{k} = {v}\n" for k, v in big.items())
            + "[timing]\nwarmup_s = 0.0\nmin_time_s = 0.0\nmax_time_s = 0.05\n")
    summary = run_suite(make_plan(parse_suite(text), out=tmp_path, progress=False, argv=["t"]))
    (rec,) = summary.records
    assert rec.status == "unsupported", rec
    assert "float64 reference" in rec.error and "GiB" in rec.error
    assert rec.wall_s < 5
