"""Outputs (issue 14, items 2, 4, 5): nothing written outside the chosen output folder, labels
drawn as plain text, and an interrupted merge / export / report never looks complete."""

from __future__ import annotations

import json
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import main
from bench.errors import BenchError
from bench.paths import contained
from bench.store import RunStore, load_records

ROOT = Path(__file__).resolve().parents[1]
RUN_A = ROOT / "tests" / "data" / "runs" / "quickstart-cpu-a"


def _copy_run(dst: Path, edit_info: dict | None = None, rename: str | None = None) -> Path:
    shutil.copytree(RUN_A, dst)
    if edit_info:
        info = json.loads((dst / "run.json").read_text())
        info.update(edit_info)
        (dst / "run.json").write_text(json.dumps(info))
    if rename is not None:
        lines = [json.loads(x) for x in (dst / "records.jsonl").read_text().splitlines()]
        for r in lines:
            r["name"] = r["label"] = rename
        (dst / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return dst


def _shards(tmp: Path) -> list[Path]:
    """quickstart-cpu-a split into two disjoint shards of one suite."""
    out = []
    for i in range(2):
        d = _copy_run(tmp / f"shard{i}")
        recs = (d / "records.jsonl").read_text().splitlines()
        (d / "records.jsonl").write_text("".join(x + "\n" for x in recs[i::2]))
        out.append(d)
    return out


def _visible(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if not any(part.startswith(".") for part in p.relative_to(root).parts))


def _everything(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


# --- item 2: names and paths ----------------------------------------------------------------
def test_contained_refuses_paths_leaving_the_root(tmp_path: Path) -> None:
    assert contained(tmp_path, "a", "b") == (tmp_path / "a" / "b").resolve()
    for parts in (("..", "x"), ("/etc",), ("a", "..", ".."), ("a", "..")):
        with pytest.raises(BenchError, match="outside the output folder"):
            contained(tmp_path, *parts)
    (tmp_path / "link").symlink_to(tmp_path.parent)
    with pytest.raises(BenchError):
        contained(tmp_path, "link", "x")


@pytest.mark.parametrize("suite", ["../../x", "/abs/x", "..", ".hidden", "a/b"])
def test_stored_suite_field_cannot_move_report_or_merge(tmp_path: Path, suite: str,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    run = _copy_run(tmp_path / "runs" / "r1", {"suite": suite})
    out = tmp_path / "deep" / "out"
    out.mkdir(parents=True)
    before = _everything(tmp_path)
    assert main(["report", str(run), "--out", str(out)]) == 1
    assert "suite" in capsys.readouterr().err
    shards = _shards(tmp_path / "s")
    for d in shards:
        info = json.loads((d / "run.json").read_text())
        (d / "run.json").write_text(json.dumps({**info, "suite": suite}))
    before = _everything(tmp_path)
    assert main(["merge", *map(str, shards), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "suite" in err[0]
    assert _everything(tmp_path) == before


def test_run_id_and_suite_name_are_checked(tmp_path: Path) -> None:
    for suite, run_id in (("..", "r"), ("s", ".."), ("s", "../x"), ("s", "")):
        with pytest.raises(BenchError):
            RunStore.create(tmp_path, suite, {}, run_id=run_id or "a/b")
    assert _everything(tmp_path) == []


def test_report_into_the_results_folder_is_refused(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    run = _copy_run(tmp_path / "results" / "quickstart" / "quickstart-cpu-a")
    assert main(["report", str(run), "--out", str(tmp_path / "results")]) == 1
    assert "is a run directory" in capsys.readouterr().err
    assert len(load_records(run)) == 12


# --- item 4: labels as plain text in plots ----------------------------------------------------
def test_label_with_mathtext_renders(tmp_path: Path) -> None:
    import warnings

    from bench.report import write_report

    # stored by an older convbench or edited by hand: suites refuse control characters now
    run = _copy_run(tmp_path / "run", rename="$x_$ \x1b[2J")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path = write_report(run, out_root=tmp_path / "reports")
    text = path.read_text()
    assert "$x_$ \\x1b[2J" in text and "\x1b" not in text
    assert "\x1b" not in (path.parent / "report.html").read_text()
    assert (path.parent / "latency_per_case.svg").read_text().count("x_") >= 1
    assert not [w for w in caught if "\x1b" in str(w.message)]  # no missing-glyph warning


# --- item 5: staged outputs ---------------------------------------------------------------------
def test_interrupted_report_keeps_the_old_one(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.report import plots, render, write_report

    run = _copy_run(tmp_path / "run")
    def one_stub_plot(run, out):  # noqa: ANN001, ANN202 - the old report's plot, drawn fast
        png = out / "old-plot.png"
        png.write_bytes(b"\x89PNG old")
        return [(png, "old plot")]

    with monkeypatch.context() as mp:  # real plots cost seconds; one stub stands for them
        mp.setattr(render, "_plots", one_stub_plot)
        path = write_report(run, out_root=tmp_path / "reports")
    assert (path.parent / "old-plot.png").is_file()
    old = {p.name: p.read_bytes() for p in path.parent.iterdir()}
    calls = []

    def dying_save(fig, stem):  # noqa: ANN001, ANN202
        calls.append(stem)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(fig, stem)

    real = plots.save
    monkeypatch.setattr(plots, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        write_report(run, out_root=tmp_path / "reports")
    assert {p.name: p.read_bytes() for p in path.parent.iterdir()} == old
    assert _everything(tmp_path / "reports") == _visible(tmp_path / "reports")  # no leftovers


def test_interrupted_export_leaves_no_truncated_file(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import pandas as pd

    from bench.export import export_tables

    run = _copy_run(tmp_path / "run")
    out = tmp_path / "export"
    real = pd.DataFrame.to_csv

    def dying(self, path, *a, **kw):  # noqa: ANN001, ANN002, ANN003, ANN202
        if "layers" in str(path):
            Path(path).write_text("half a file")
            raise KeyboardInterrupt
        return real(self, path, *a, **kw)

    monkeypatch.setattr(pd.DataFrame, "to_csv", dying)
    with pytest.raises(KeyboardInterrupt):
        export_tables(run, out)
    assert _everything(out) == []  # neither a truncated layers.csv nor a lone records.csv
    monkeypatch.setattr(pd.DataFrame, "to_csv", real)
    written = export_tables(run, out)
    assert sorted(p.name for p in written) == ["layers.csv", "records.csv", "samples.csv"]
    assert _everything(out) == ["layers.csv", "records.csv", "samples.csv"]


def test_interrupted_merge_leaves_no_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.scale.merge import merge_runs

    shards = _shards(tmp_path)
    real, n = RunStore.append, []

    def dying(self, rec):  # noqa: ANN001, ANN202
        n.append(1)
        if len(n) == 5:
            raise KeyboardInterrupt
        return real(self, rec)

    monkeypatch.setattr(RunStore, "append", dying)
    with pytest.raises(KeyboardInterrupt):
        merge_runs(shards, tmp_path / "merged")
    assert _everything(tmp_path / "merged") == ["quickstart"]
    monkeypatch.setattr(RunStore, "append", real)
    summary = merge_runs(shards, tmp_path / "merged")
    assert len(load_records(summary.run_dir)) == 12


def _limit_file_size(limit: int):  # noqa: ANN202 - a preexec_fn
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_merge_on_a_full_disk_keeps_nothing_and_says_so(tmp_path: Path,
                                                         cli_env: dict[str, str]) -> None:
    shards = _shards(tmp_path)
    out = tmp_path / "merged"
    res = subprocess.run([sys.executable, "-m", "bench", "merge", *map(str, shards), "--out",
                          str(out)], env={**cli_env, "PYTHONDONTWRITEBYTECODE": "1"},
                         capture_output=True, text=True, preexec_fn=_limit_file_size(30000),
                         timeout=120, cwd=tmp_path)
    assert res.returncode == 1, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert "disk full" in lines[0] and "not written" in lines[0], lines[0]
    assert "kept" not in lines[0]
    assert _everything(out) in ([], ["quickstart"])


# --- item 11: compare of nothing, unknown backends -------------------------------------------
def test_compare_with_no_case_in_common_is_an_error(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    other = _copy_run(tmp_path / "other")
    recs = [json.loads(x) for x in (other / "records.jsonl").read_text().splitlines()]
    for r in recs:
        r["case_key"] = "f" * 16 if r["case_index"] == 0 else r["case_key"][::-1]
    (other / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    assert main(["compare", str(RUN_A), str(other)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no case and backend in common" in err[0]
    assert main(["compare", str(RUN_A), str(RUN_A)]) == 0


@pytest.mark.parametrize("flags", [["--backend", "trt"], ["--backend", "torch", "--backend",
                                                          "torch"]])
def test_unknown_backend_refused_at_dry_run(flags: list[str],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(ROOT / "suites" / "quickstart.toml"), "--dry-run", *flags]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--backend" in err[0]
