"""Faults a long sweep meets: kills, a full disk, unwritable directories, corrupted caches,
results of another schema version, and code-like data. Each one is a clear one-line error or a
recovered state, and nothing finished is lost."""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import io
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from helpers import record

from bench.cli import main
from bench.errors import BenchError
from bench.store import RunStore, TornRecordWarning, load_records

ROOT = Path(__file__).resolve().parents[1]

FAST_SUITE = """
name = "faults"
backends = ["torch"]
[defaults]
in_channels = 4
out_channels = 4
height = 8
width = 8
padding = "same"
[sweep]
kernel = [1, 3, 5]
precision = ["fp32", "bf16"]
[timing]
warmup_s = 0.005
min_samples = 3
min_time_s = 0.01
max_time_s = 0.05
target_rse = 0.5
profile_iters = 2
"""


def cli(*argv: str) -> tuple[int, str, str]:
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        rc = main(list(argv))
    return rc, out.getvalue(), err.getvalue()


def one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("convbench: error: "), stderr
    return lines[0]


@pytest.fixture
def suite_file(tmp_path: Path) -> Path:
    path = tmp_path / "faults.toml"
    path.write_text(FAST_SUITE)
    return path


# --- 3. killed sweeps --------------------------------------------------------------------------
def _kill_resume_module():  # noqa: ANN202 - a module loaded from a path
    spec = importlib.util.spec_from_file_location("kill_resume",
                                                  ROOT / "benchmarks" / "kill_resume.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["kill_resume"] = module  # dataclasses look their module up while defining
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_three_kills_and_resumes_lose_nothing(tmp_path: Path) -> None:
    """The CI-sized version of benchmarks/kill_resume.py: 3 SIGKILLs, one torn line injected."""
    pytest.importorskip("torch")
    kr = _kill_resume_module()
    res = kr.run_trials(trials=3, n_cases=16, seed=3, workdir=tmp_path, tear_every=1,
                        log=lambda *a: None)
    assert res.final_rc == 0
    assert res.lost == 0 and res.duplicates == 0 and res.missing == 0, res
    assert res.parse_ok and res.final_records == 16
    assert res.torn_real + res.torn_injected >= 1
    assert res.torn_unwarned == 0 and res.torn_warned == res.torn_real + res.torn_injected


def test_torn_last_line_is_dropped_with_a_warning_and_never_merged(tmp_path: Path) -> None:
    store = RunStore.create(tmp_path, "s", {"suite_text": ""})
    a, b = record(0), record(1)
    store.append(a)
    whole = (store.dir / "records.jsonl").read_bytes()
    with open(store.dir / "records.jsonl", "ab") as f:
        f.write(b'{"schema":2,"case_key":"b","backend":"tor')  # killed mid-write
    with pytest.warns(TornRecordWarning, match="partial last line"):
        assert [r.case_key for r in load_records(store.dir)] == [a.case_key]
    with pytest.warns(TornRecordWarning):
        reopened = RunStore.open(store.dir)
    assert (store.dir / "records.jsonl").read_bytes() == whole
    reopened.append(b)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [r.case_key for r in load_records(store.dir)] == [a.case_key, b.case_key]


def test_a_kill_between_layers_and_record_leaves_no_orphan_or_duplicate(tmp_path: Path) -> None:
    """append_result writes the layer profile first: a kill right after it leaves a layers row
    and no record, so --resume re-measures the case and the newer row wins."""
    from bench.record import LayerRow
    from bench.store import load_layers

    def row(name: str) -> LayerRow:
        return LayerRow(case_key=rec.case_key, backend="torch",
                        layers=[{"name": name, "median_ms": 0.5, "share": 1.0}])

    store = RunStore.create(tmp_path, "s", {"suite_text": ""})
    rec = record(0)
    store.append_layers(row("old"))  # then killed
    assert load_records(store.dir) == []  # not done: a resume measures it again
    store.append_result(rec, row("new"))
    assert [[la.name for la in r.layers] for r in load_layers(store.dir)] == [["new"]]
    assert len(load_records(store.dir)) == 1


# --- 4. disk full / not writable ------------------------------------------------------------
def _limit_file_size(limit: int):  # noqa: ANN202 - a preexec_fn
    def apply() -> None:
        # writes past the limit fail with EFBIG instead of killing the process with SIGXFSZ
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


@pytest.mark.slow
def test_disk_full_mid_sweep_stops_with_one_line_and_keeps_records(
        tmp_path: Path, suite_file: Path, cli_env: dict[str, str], python: str) -> None:
    """RLIMIT_FSIZE makes every file of the run 'full' at 5000 bytes: run.json fits, a few
    records fit, then a write fails part-way. The sweep stops, the partial line is taken back."""
    pytest.importorskip("torch")
    out = tmp_path / "results"
    env = {**cli_env, "PYTHONDONTWRITEBYTECODE": "1"}
    res = subprocess.run([python, "-m", "bench", "run", str(suite_file), "--out", str(out),
                          "--no-progress"], env=env, capture_output=True, text=True,
                         preexec_fn=_limit_file_size(5000), timeout=300)
    assert res.returncode == 1, res.stderr
    line = one_error_line(res.stderr)
    assert "disk full (File too large)" in line and "every record written" in line, line
    assert "records.jsonl" in line or "layers.jsonl" in line, line
    run_dir = next(out.glob("faults/*"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no torn line: the failed append was rolled back
        records = load_records(run_dir)
    assert 1 <= len(records) < 6
    assert all(r.status == "ok" for r in records)
    assert (run_dir / "records.jsonl").read_bytes().endswith(b"\n")
    # with space again, --resume finishes the sweep from where it stopped
    res = subprocess.run([python, "-m", "bench", "run", str(suite_file), "--out", str(out),
                          "--no-progress", "--resume", str(run_dir)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    keys = [r.case_key for r in load_records(run_dir)]
    assert len(keys) == len(set(keys)) == 6


def test_disk_full_at_the_start_is_an_error_before_any_case(
        tmp_path: Path, suite_file: Path, cli_env: dict[str, str], python: str) -> None:
    pytest.importorskip("torch")
    out = tmp_path / "results"
    res = subprocess.run([python, "-m", "bench", "run", str(suite_file), "--out", str(out),
                          "--no-progress"], env={**cli_env, "PYTHONDONTWRITEBYTECODE": "1"},
                         capture_output=True, text=True, preexec_fn=_limit_file_size(100),
                         timeout=300)
    assert res.returncode == 1
    line = one_error_line(res.stderr)
    assert "run.json" in line and "disk full" in line, line
    assert not list(out.glob("faults/*/records.jsonl"))
    assert not list(out.glob("faults/*")), "a half-made run directory was left behind"


@pytest.mark.parametrize("where", ["under-a-file", "proc", "sys"])
def test_unwritable_results_directory_is_one_line_before_the_sweep(
        tmp_path: Path, suite_file: Path, where: str) -> None:
    """Tests run as root, so chmod blocks nothing: use paths no one can create."""
    pytest.importorskip("torch")
    if where == "under-a-file":
        (tmp_path / "a-file").write_text("x")
        out = tmp_path / "a-file" / "results"
    elif where == "proc":
        out = Path("/proc/self/convbench-results")
    else:
        out = Path("/sys/convbench-results")
        if not Path("/sys").is_dir():
            pytest.skip("no /sys here")
    rc, stdout, stderr = cli("run", str(suite_file), "--out", str(out), "--no-progress")
    assert rc == 1
    line = one_error_line(stderr)
    assert str(out) in line and ("not writable" in line or "cannot write" in line), line
    assert "results" not in stdout  # no case ran, no summary table


def _can_mount_tmpfs(path: Path) -> bool:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(path)],
                       capture_output=True)
    return r.returncode == 0


@pytest.mark.slow
def test_a_really_full_tmpfs(tmp_path: Path, suite_file: Path, cli_env: dict[str, str],
                             python: str) -> None:
    """Bonus where the sandbox allows mounts: a 64 KiB tmpfs filled up by a real sweep."""
    pytest.importorskip("torch")
    disk = tmp_path / "disk"
    disk.mkdir()
    if not _can_mount_tmpfs(disk):
        pytest.skip("cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN)")
    try:
        (disk / "ballast").write_bytes(b"\0" * (64 * 1024 - 8 * 1024))
        big = suite_file.read_text().replace("kernel = [1, 3, 5]", "kernel = [1, 3, 5, 7]")
        suite_file.write_text(big)
        res = subprocess.run([python, "-m", "bench", "run", str(suite_file), "--out",
                              str(disk / "results"), "--no-progress"], env=cli_env,
                             capture_output=True, text=True, timeout=300)
        assert res.returncode == 1, res.stderr
        assert "disk full" in one_error_line(res.stderr)
        run_dirs = list((disk / "results").glob("faults/*"))
        for run_dir in run_dirs:  # whatever was written reads back whole
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                load_records(run_dir)
    finally:
        subprocess.run(["umount", str(disk)], check=False)


# --- 5. engine-cache corruption ---------------------------------------------------------------
def _rtx_build(cache_dir: Path):  # noqa: ANN202
    """Build one conv through the TensorRT-RTX engine cache (no GPU needed to build)."""
    pytest.importorskip("tensorrt_rtx", reason="tensorrt_rtx is not installed")
    from bench.backends.registry import get_backend
    from bench.backends.tensorrt import EngineCache
    from bench.reference import make_data
    from bench.spec import ConvSpec

    backend = get_backend("tensorrt-rtx")
    spec = ConvSpec(in_channels=8, out_channels=8, height=8, width=8, kernel=3, padding=1)
    data = make_data(spec)
    flavour, trt = backend._module()
    target_label, target = backend.build_target()
    fields = EngineCache.key_fields(spec, data, flavour, str(trt.__version__), target_label)
    cache = EngineCache(cache_dir / "tensorrt" / "engines")

    def build():  # noqa: ANN202
        return backend.build_plan(spec, data, cache_dir, cache, fields, target)

    return build, cache._paths(fields)


@pytest.mark.tensorrt
@pytest.mark.parametrize("damage", ["truncate-plan", "flip-a-byte", "garbage-sidecar",
                                    "sidecar-for-another-build", "no-sidecar"])
def test_corrupted_engine_cache_is_detected_and_rebuilt(tmp_path: Path, damage: str,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    build, (plan_path, meta_path) = _rtx_build(tmp_path)
    plan, info = build()
    assert not info.cache_hit and plan_path.exists() and meta_path.exists()
    assert build()[1].cache_hit  # the intact entry is used
    if damage == "truncate-plan":
        plan_path.write_bytes(plan[: len(plan) // 2])
    elif damage == "flip-a-byte":
        raw = bytearray(plan)
        raw[len(raw) // 2] ^= 0xFF
        plan_path.write_bytes(bytes(raw))
    elif damage == "garbage-sidecar":
        meta_path.write_bytes(b"\x00not json")
    elif damage == "sidecar-for-another-build":
        meta = json.loads(meta_path.read_text())
        meta["fields"]["spec_key"] = "0000000000000000"
        meta_path.write_text(json.dumps(meta))
    else:
        meta_path.unlink()
    with caplog.at_level("WARNING", logger="bench.backends.tensorrt"):
        rebuilt, info = build()
    assert not info.cache_hit, "a damaged cache entry was loaded"
    assert info.extra.get("cache_rejected"), info.extra
    assert any("rebuilding" in r.getMessage() for r in caplog.records)
    assert rebuilt == plan or len(rebuilt) > 0
    assert build()[1].cache_hit  # the rebuilt entry is whole again


# --- 6. results of another schema version --------------------------------------------------------
@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch")
    root = tmp_path_factory.mktemp("schema")
    suite = root / "faults.toml"
    suite.write_text(FAST_SUITE.replace("kernel = [1, 3, 5]", "kernel = [1]"))
    rc, _, stderr = cli("run", str(suite), "--out", str(root / "results"), "--no-progress")
    assert rc == 0, stderr
    return next((root / "results").glob("faults/*"))


def _copy_with_schema(run: Path, dest: Path, run_schema: int, record_schema: int) -> Path:
    shutil.copytree(run, dest)
    info = json.loads((dest / "run.json").read_text())
    info["schema"] = run_schema
    (dest / "run.json").write_text(json.dumps(info))
    lines = (dest / "records.jsonl").read_text().splitlines()
    recs = [json.loads(line) for line in lines]
    for r in recs:
        r["schema"] = record_schema
    (dest / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return dest


def _commands() -> set[str]:
    from bench.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return set(sub.choices)  # type: ignore[arg-type]


@pytest.mark.parametrize(("run_schema", "record_schema", "found"),
                         [(4, 1, "version 4"), (3, 7, "version 7"), (0, 0, "version 0")])
def test_other_schema_versions_are_refused_with_the_version_and_what_to_do(
        real_run: Path, tmp_path: Path, run_schema: int, record_schema: int,
        found: str) -> None:
    other = _copy_with_schema(real_run, tmp_path / "other", run_schema, record_schema)
    commands = _commands()
    attempts = [("report", ["report", str(other), "--out", str(tmp_path / "reports")])]
    if "compare" in commands:
        attempts += [("compare new", ["compare", str(real_run), str(other)]),
                     ("compare base", ["compare", str(other), str(real_run)])]
    if "merge" in commands:
        attempts.append(("merge", ["merge", str(real_run), str(other), "--out",
                                   str(tmp_path / "merged")]))
    if "export" in commands:
        attempts.append(("export", ["export", str(other), "--out", str(tmp_path / "x.csv")]))
    for name, argv in attempts:
        rc, _, stderr = cli(*argv)
        assert rc == 1, (name, stderr)
        line = one_error_line(stderr)
        assert str(other) in line, line
        if "mixed schema versions" in line:  # merge names both versions it found
            assert f"{other} has {found.split()[1]}" in line and "re-run" in line, line
        else:
            assert f"schema {found}" in line, line
            assert "this convbench reads versions 1 to 3" in line, line
            assert "convbench version that wrote it" in line, line
    assert not (tmp_path / "merged").exists()


def test_a_missing_schema_field_is_refused(real_run: Path, tmp_path: Path) -> None:
    other = tmp_path / "noschema"
    shutil.copytree(real_run, other)
    info = json.loads((other / "run.json").read_text())
    del info["schema"]
    (other / "run.json").write_text(json.dumps(info))
    with pytest.raises(BenchError, match="schema version None"):
        RunStore.open(other)


# --- 7. untrusted input: data is parsed, never executed ---------------------------------------
#: (module, attribute) calls that can run code from a file: pickle and friends, yaml.load,
#: torch.load (pickle underneath), numpy/pandas loaders that unpickle
UNSAFE_CALLS = {("pickle", "load"), ("pickle", "loads"), ("pickle", "Unpickler"),
                ("cPickle", "load"), ("marshal", "load"), ("marshal", "loads"),
                ("shelve", "open"), ("dill", "load"), ("dill", "loads"), ("yaml", "load"),
                ("yaml", "unsafe_load"), ("yaml", "full_load"), ("torch", "load"),
                ("pd", "read_pickle"), ("pandas", "read_pickle"), ("jsonpickle", "decode")}
UNSAFE_BUILTINS = {"eval", "exec", "compile", "__import__", "execfile"}
UNSAFE_MODULES = {"pickle", "cPickle", "marshal", "shelve", "dill", "jsonpickle", "yaml"}


def _unsafe_uses(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        name = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        where = f"{name}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            found += [f"{where}: import {a.name}" for a in node.names
                      if a.name.split(".")[0] in UNSAFE_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in \
                UNSAFE_MODULES:
            found.append(f"{where}: from {node.module} import ...")
        elif isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Name) and f.id in UNSAFE_BUILTINS:
                found.append(f"{where}: {f.id}(...)")
            elif isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and (
                    (f.value.id, f.attr) in UNSAFE_CALLS):
                found.append(f"{where}: {f.value.id}.{f.attr}(...)")
            elif isinstance(f, ast.Attribute) and f.attr == "load" and any(
                    k.arg == "allow_pickle" and not (isinstance(k.value, ast.Constant)
                                                     and k.value.value is False)
                    for k in node.keywords):
                found.append(f"{where}: load(allow_pickle=...)")
    return found


def test_bench_never_unpickles_or_evaluates_input() -> None:
    files = sorted((ROOT / "bench").rglob("*.py"))
    assert len(files) > 10
    found = [hit for f in files for hit in _unsafe_uses(f)]
    assert not found, "code that can execute data:\n" + "\n".join(found)


def test_the_scan_finds_what_it_looks_for(tmp_path: Path) -> None:
    # in tmp_path, not in bench/: the scan of bench/ may run at the same time (pytest -n 2)
    bad = tmp_path / "_scan_probe.py"
    bad.write_text("import pickle\nimport yaml\nx = eval('1')\ny = yaml.load(s)\n"
                   "z = torch.load(p)\nw = np.load(p, allow_pickle=True)\n")
    try:
        hits = _unsafe_uses(bad)
    finally:
        bad.unlink()
    assert len(hits) == 6, hits


def test_suite_values_that_look_like_code_stay_data(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    suite = tmp_path / "s.toml"
    suite.write_text(FAST_SUITE.replace(
        'name = "faults"', f'name = "faults"\ndescription = "__import__(\'os\').system('
                           f'\'touch {canary}\')"').replace(
        'precision = ["fp32", "bf16"]', f'precision = ["__import__(\'os\').system(\'touch '
                                        f'{canary}\')"]'))
    rc, _, stderr = cli("show", str(suite))
    assert rc == 1 and "precision" in one_error_line(stderr)
    assert not canary.exists()


def test_shell_metacharacters_in_the_suite_path_are_just_a_name(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    canary = tmp_path / "canary"
    path = tmp_path / "$(touch canary); `touch canary`.toml"
    path.write_text(FAST_SUITE)
    rc, stdout, stderr = cli("show", str(path))
    assert rc == 0, stderr
    assert not canary.exists()


if sys.platform != "linux":  # pragma: no cover
    pytestmark = pytest.mark.skip("RLIMIT_FSIZE, /proc and /sys paths are Linux-specific")
