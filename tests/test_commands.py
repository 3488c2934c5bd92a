"""``bench.commands``: one module per subcommand, shared option groups, a broken command that
does not break the others, the entry-point errors of issue 12 as one line, and safe labels."""

from __future__ import annotations

import argparse
import json
import pkgutil
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field

import bench.commands
from bench.cli import main
from bench.commands import COMMANDS, Command, build_parser, common_args
from bench.errors import BenchError
from bench.suite import TimingConfig
from bench.text import plain, safe

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "suites" / "quickstart.toml"
RUN_A = ROOT / "tests" / "data" / "runs" / "quickstart-cpu-a"
MODULES = sorted(f"bench.commands.{m.name}" for m in pkgutil.iter_modules(bench.commands.__path__))


def _py(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], env={**env, "COLUMNS": "200"},
                          capture_output=True, text=True, check=False)


def _cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bench", *args], env={**env, "COLUMNS": "200"},
                          capture_output=True, text=True, check=False, cwd=cwd)


def _one_error_line(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 1, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("convbench: error: "), r.stderr
    return lines[0]


# --- layout: modules, registry, no cycles --------------------------------------------------------
def test_every_command_module_imports_alone_without_bench_cli_or_gpu_libraries(
        cli_env: dict[str, str]) -> None:
    # a fresh interpreter per module: a cycle or a stray `import bench.cli` shows up in the one
    # module that has it, whatever was imported before
    code = textwrap.dedent("""
        import importlib.abc, sys
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split('.')[0] in {'torch', 'tensorrt', 'tensorrt_rtx', 'cuda', 'ray'}:
                    raise ImportError(f'blocked {name}')
        sys.meta_path.insert(0, Block())
        import importlib
        importlib.import_module(sys.argv[1])
        bad = sorted(m for m in sys.modules if m == 'bench.cli'
                     or m.split('.')[0] in {'torch', 'tensorrt', 'cuda', 'pandas'})
        print(' '.join(bad) or 'clean')
    """)
    assert len(MODULES) >= len(COMMANDS) + 2  # every command, common_args, _output
    for module in MODULES:
        r = subprocess.run([sys.executable, "-c", code, module], env=cli_env,
                           capture_output=True, text=True, check=False)
        assert r.returncode == 0, (module, r.stderr)
        assert r.stdout.strip() == "clean", (module, r.stdout)


def test_registry_names_every_command_module_once() -> None:
    registered = [c.module for c in COMMANDS]
    assert len(set(registered)) == len(registered)
    helpers = {"bench.commands.common_args", "bench.commands._output"}
    assert set(registered) == set(MODULES) - helpers
    for c in COMMANDS:  # each has the three layers
        mod = __import__(c.module, fromlist=["run"])
        assert callable(mod.add_arguments) and callable(mod.main) and callable(mod.run), c.name


def test_version(cli_env: dict[str, str], tmp_path: Path) -> None:
    r = _cli(["--version"], cli_env, tmp_path)
    assert r.returncode == 0
    assert r.stdout.strip() == "convbench 0.1.0"


# --- a command that cannot be imported ----------------------------------------------------------
@pytest.fixture
def broken_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Command, ...]:
    (tmp_path / "cb_broken_plain.py").write_text("import cb_no_such_dependency\n")
    (tmp_path / "cb_broken_ray.py").write_text(
        "raise ImportError(\"No module named 'ray'\", name='ray')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    extra = (Command("broken", "cb_broken_plain", "a command whose module cannot import"),
             Command("needs-ray", "cb_broken_ray", "a command whose extra is missing"))
    monkeypatch.setattr(bench.commands, "COMMANDS", COMMANDS + extra)
    return extra


def test_a_command_that_fails_to_import_is_listed_and_explains_itself(
        broken_commands: tuple[Command, ...], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    listing = " ".join(capsys.readouterr().out.split())  # argparse wraps the help
    assert "broken" in listing and "unavailable: No module named 'cb_no_such_dependency'" \
        in listing
    assert "compare" in listing  # the others are still there

    assert main(["broken", "whatever", "--it-takes"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == ("convbench: error: broken is unavailable (No module named "
                   "'cb_no_such_dependency'): reinstall convbench with its dependencies: "
                   "pip install -e .")
    assert main(["needs-ray"]) == 1
    assert capsys.readouterr().err.strip().endswith(": pip install 'trt-convbench[ray]'")
    # every other command still works
    assert main(["show", str(QUICKSTART)]) == 0
    assert "quickstart: 12 case(s)" in capsys.readouterr().out


def test_a_bug_in_a_command_module_is_not_hidden(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "cb_buggy.py").write_text("1 / 0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ZeroDivisionError):
        build_parser(COMMANDS + (Command("buggy", "cb_buggy", "a bug"),))


# --- the timing group, generated from TimingConfig -----------------------------------------------
def _recorded(prefix: str = "", model: type[BaseModel] | None = None) -> dict[str, dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    common_args.add_timing_options(lambda flag, **kw: seen.setdefault(flag, kw), prefix,
                                   model=model)
    return seen


def _parser_flags(name: str) -> set[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {s for a in sub.choices[name]._actions for s in a.option_strings}


def test_every_timing_field_is_a_flag_of_run_profile_and_the_pytest_plugin() -> None:
    flags = {"--" + n.replace("_", "-") for n in TimingConfig.model_fields}
    assert {"--min-samples", "--target-rse", "--l2", "--mode"} <= flags
    assert flags <= _parser_flags("run")
    assert flags <= _parser_flags("profile")
    pytest_flags = _recorded("convbench-")
    assert set(pytest_flags) == {"--convbench-" + f[2:] for f in flags}
    assert pytest_flags["--convbench-mode"]["choices"] == ["auto", "graph", "events", "host"]
    assert pytest_flags["--convbench-min-samples"]["dest"] == "convbench_min_samples"


def test_a_new_timing_field_becomes_a_flag_with_type_choices_and_help() -> None:
    class Extended(TimingConfig):
        model_config = ConfigDict(extra="forbid", frozen=True)

        criterion: Literal["rse", "stdrel", "fixed"] = Field(
            "rse", description="stopping criterion")
        fixed_time_s: float | None = Field(None, gt=0, description="fixed: sample this long")

    opts = _recorded(model=Extended)
    assert opts["--criterion"]["choices"] == ["rse", "stdrel", "fixed"]
    assert opts["--criterion"]["help"].startswith("stopping criterion")
    assert opts["--fixed-time-s"]["type"] is float
    p = argparse.ArgumentParser()
    common_args.add_timing_group(p, model=Extended)
    ns = p.parse_args(["--criterion", "stdrel", "--fixed-time-s", "2.5"])
    assert (ns.criterion, ns.fixed_time_s, ns.min_samples) == ("stdrel", 2.5, None)
    with pytest.raises(SystemExit):
        p.parse_args(["--criterion", "nvbench"])


def test_timing_overrides_are_validated_naming_the_flag() -> None:
    base = TimingConfig()
    assert common_args.timing_overrides({"min_samples": 3, "mode": None}, base) == \
        {"min_samples": 3}
    with pytest.raises(BenchError, match=r"^--min-samples: Input should be greater than or "
                                         r"equal to 2$"):
        common_args.timing_overrides({"min_samples": 1}, base)
    with pytest.raises(BenchError, match=r"^--convbench-target-rse: "):
        common_args.timing_overrides({"target_rse": 0.0}, prefix="convbench-")
    with pytest.raises(BenchError, match=r"^--l2 cold needs --mode graph or events"):
        common_args.timing_overrides({"l2": "cold"}, TimingConfig(mode="host"))


# --- run(...) without argparse ------------------------------------------------------------------
def test_commands_run_as_plain_functions(capsys: pytest.CaptureFixture[str],
                                         tmp_path: Path) -> None:
    from bench.commands import run, show

    assert show.run(suite=QUICKSTART, filter="precision == 'bf16'") == 0
    assert "quickstart: 1 case(s)" in capsys.readouterr().out
    with pytest.raises(BenchError, match="^--warmup-s: "):
        run.run(suite=QUICKSTART, out=tmp_path, dry_run=True, timing={"warmup_s": -1})
    assert not any(tmp_path.iterdir())


# --- issue 12: entry points that printed a pydantic traceback or ran what `run` refuses ----------
@pytest.mark.parametrize("args,needle", [
    (["profile", str(QUICKSTART), "--case", "3x3", "--min-samples", "1"],
     "convbench: error: --min-samples: Input should be greater than or equal to 2"),
    (["run", str(QUICKSTART), "--workers", "1", "--min-samples", "1"],
     "convbench: error: --min-samples: Input should be greater than or equal to 2"),
    (["run", str(QUICKSTART), "--workers", "1", "--mode", "host", "--l2", "cold"],
     "convbench: error: --l2 cold needs --mode graph or events"),
    (["profile", str(QUICKSTART), "--case", "3x3", "--mode", "host", "--l2", "cold"],
     "convbench: error: --l2 cold needs --mode graph or events"),
])
def test_entry_points_refuse_bad_timing_in_one_line(cli_env: dict[str, str], tmp_path: Path,
                                                    args: list[str], needle: str) -> None:
    r = _cli(args + (["--out", str(tmp_path / "res")] if args[0] == "run" else []), cli_env,
             tmp_path)
    assert _one_error_line(r).startswith(needle)
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "res").exists()


# --- labels that are markup or terminal escapes ---------------------------------------------------
def test_safe_escapes_markup_and_shows_control_characters() -> None:
    assert safe("stem[/x]") == "stem\\[/x]"
    assert safe("[red]r") == "\\[red]r"
    assert plain("a\x1b[2Jb\x07") == "a\\x1b[2Jb\\x07"
    assert safe("a\x1b[2J") == "a\\x1b[2J"  # "[2J" is not a tag: only the ESC changes
    assert plain("tab\there\nnext\u202e") == "tab\\x09here\\x0anext\\u202e"
    assert plain("3x3 résumé × ok") == "3x3 résumé × ok"


def _relabel(src: Path, dest: Path, label: str) -> Path:
    shutil.copytree(src, dest)
    path = dest / "records.jsonl"
    recs = [json.loads(line) for line in path.read_text().splitlines()]
    recs[0]["name"] = recs[0]["label"] = label
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return dest


def test_compare_shows_a_label_that_looks_like_markup(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    # rich raised MarkupError on this label (issue 12); an ESC would reach the terminal
    new = _relabel(RUN_A, tmp_path / "new", "stem[/x] \x1b]0;pwned\x07")
    assert main(["compare", str(RUN_A), str(new)]) == 0
    out = capsys.readouterr().out
    assert "stem[/x] \\x1b]0;pwned\\x07" in out
    assert "\x1b" not in out and "\x07" not in out


def test_run_summary_shows_a_label_that_looks_like_markup(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bench.commands._output import console, print_summary
    from bench.runner import new_record
    from bench.spec import ConvSpec
    from bench.suite import Case

    case = Case(index=0, spec=ConvSpec(in_channels=8, out_channels=8, height=8, width=8),
                label="stem[/x][red]")
    rec = new_record(case, "torch", "cpu", None, status="error", error="boom [/] \x1b[31m")
    print_summary(console(), [rec])
    out = capsys.readouterr().out
    assert "stem[/x][red]" in out and "boom [/] \\x1b[31m" in out and "\x1b" not in out
