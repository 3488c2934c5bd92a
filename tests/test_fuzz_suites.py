"""Property-based tests: broken suite files and hostile ``--filter`` strings.

Every generated suite file is broken in one known way (bad TOML, unknown key, wrong type, zero or
negative size, impossible geometry, huge sweep, unicode, empty). ``convbench run FILE`` must then
exit 1 with exactly one line on stderr that names the file (and the key, where there is one),
print no traceback and create no result directory. Most files go through ``bench.cli.main``
in-process (milliseconds each); a handful go through a real ``python -m bench`` subprocess.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bench.cli import main
from bench.errors import BenchError
from bench.filter import FIELDS, parse_filter
from bench.suite import DEFAULT_MAX_CASES, parse_suite

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

#: examples tried per category; the categories add up to well over 200 files
FUZZ = settings(max_examples=40, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
TRIED: Counter[str] = Counter()

VALID: dict[str, Any] = {
    "name": "fuzz",
    "backends": ["torch"],
    "defaults": {"batch": 1, "in_channels": 8, "out_channels": 8, "height": 12, "width": 12,
                 "kernel": 3, "padding": 1},
    "timing": {"warmup_s": 0.01, "min_time_s": 0.01, "max_time_s": 0.1},
}
INT_FIELDS = ["batch", "in_channels", "out_channels", "height", "width", "groups"]
PAIR_FIELDS = ["kernel", "stride", "dilation", "padding"]
BOOL_FIELDS = ["bias", "tf32"]
SIZE_FIELDS = ["batch", "in_channels", "out_channels", "height", "width", "groups", "kernel",
               "stride", "dilation"]


# --- a minimal TOML writer (inline tables keep it to one line per top-level key) ---------------
def toml_str(s: str) -> str:
    out = json.dumps(s, ensure_ascii=False)
    return out.replace("\x7f", "\\u007f")  # TOML forbids a raw DEL; JSON leaves it alone


def toml_key(k: str) -> str:
    return k if k and all(c.isascii() and (c.isalnum() or c in "_-") for c in k) else toml_str(k)


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return toml_str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(e) for e in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{toml_key(k)} = {toml_value(e)}" for k, e in v.items()) + "}"
    raise TypeError(type(v))


def dump(doc: dict[str, Any]) -> str:
    return "".join(f"{toml_key(k)} = {toml_value(v)}\n" for k, v in doc.items())


def valid_copy() -> dict[str, Any]:
    return json.loads(json.dumps(VALID))


def test_the_base_suite_is_valid() -> None:
    """The generators break a suite that is otherwise fine; make sure it is."""
    assert len(parse_suite(dump(VALID)).cases) == 1


# --- running one broken file ---------------------------------------------------------------------
def run_cli(path: Path, out: Path, command: str = "run") -> tuple[int, str, str]:
    argv = [command, str(path)] + (["--out", str(out), "--no-progress"] if command == "run"
                                   else [])
    err, std = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(std):
        rc = main(argv)
    return rc, std.getvalue(), err.getvalue()


def assert_one_line_error(rc: int, stdout: str, stderr: str, path: Path,
                          key: str | None, out: Path) -> str:
    assert rc == 1, (rc, stderr)
    assert "Traceback" not in stderr and "Traceback" not in stdout
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    line = lines[0]
    assert line.startswith("convbench: error: "), line
    assert str(path) in line, line
    if key is not None:
        assert key in line, (key, line)
    assert not out.exists(), f"a result directory was created: {list(out.rglob('*'))}"
    return line


def check_broken(content: str | bytes, category: str, key: str | None = None,
                 contains: str | None = None) -> str:
    TRIED[category] += 1
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "suite.toml"
        if isinstance(content, str):
            path.write_text(content, encoding="utf-8")
        else:
            path.write_bytes(content)
        out = Path(tmp) / "results"
        rc, stdout, stderr = run_cli(path, out)
        line = assert_one_line_error(rc, stdout, stderr, path, key, out)
        if contains is not None:
            assert contains in line, (contains, line)
        return line


# --- strategies ----------------------------------------------------------------------------------
unknown_names = st.text(
    alphabet=st.sampled_from("abcxyz_-0123456789éü中ß🙂"), min_size=1, max_size=12
).filter(lambda k: k not in VALID and k not in FIELDS and k not in {
    "description", "sweep", "zip", "cases", "label", "mode", "l2", "warmup_s", "min_samples",
    "min_time_s", "max_time_s", "target_rse", "profile_iters"})

# values of the wrong TOML type for an integer field
not_an_int = st.one_of(
    st.text(max_size=8), st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: f != int(f)),
    st.floats(allow_nan=True, allow_infinity=True).filter(lambda f: not math.isfinite(f)),
    st.just({"a": 1}), st.just([[1, 2], [3]]),
)
not_a_bool = st.one_of(st.integers(-5, 5), st.sampled_from(["yes", "no", "true", "false", "1"]),
                       st.floats(allow_nan=False), st.just([True]))
bad_toml_snippets = st.sampled_from([
    "x =", "[defaults", 'x = "unterminated', "= 3", "x = [1, 2", "x = 1 2", 'name = "again"',
    "[defaults]\nbatch = 1", "x = {a = 1,}", "x = 0x", "x = 1979-13-45", "x = \x00", "x = 'a\nb'",
    "[[cases]\nlabel = 'a'", "x = tru", "x = 01", "x = .5", "x = 1__0", "x = [1,,2]",
    "a.b = 1\na = 2", "x = \"\\q\"", "x = \"\"\"", "\"\" = ", "[timing]\n[timing]",
])
placements = st.sampled_from(["defaults", "sweep", "case", "zip"])


def place(doc: dict[str, Any], where: str, key: str, value: Any) -> None:
    """Put ``key = value`` into the suite at one of the places a conv field may be set."""
    if where == "defaults":
        doc["defaults"][key] = value
    elif where == "sweep":
        doc["sweep"] = {key: [doc["defaults"].get(key, 1), value]}
        doc["defaults"].pop(key, None)
    elif where == "case":
        doc["cases"] = [{"label": "ok"}, {"label": "broken", key: value}]
    else:
        doc["zip"] = [{key: [value, value]}]
        doc["defaults"].pop(key, None)


# --- the categories ------------------------------------------------------------------------------
@FUZZ
@given(snippet=bad_toml_snippets, at_end=st.booleans(), noise=st.text(max_size=5))
def test_bad_toml(snippet: str, at_end: bool, noise: str) -> None:
    base = dump(VALID)
    text = base + snippet + noise + "\n" if at_end else snippet + noise + "\n" + base
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        pass
    else:
        assume(False)  # the noise happened to repair it
    check_broken(text, "bad TOML", contains="invalid TOML")


@FUZZ
@given(text=st.text(max_size=200))
def test_random_text(text: str) -> None:
    """Arbitrary text: mostly bad TOML, sometimes a TOML document that is no suite."""
    with contextlib.suppress(tomllib.TOMLDecodeError):
        assume(not tomllib.loads(text).get("name") == "fuzz")
    check_broken(text, "random text")


@FUZZ
@given(key=unknown_names, where=st.sampled_from(["top", "defaults", "timing", "sweep", "case",
                                                 "zip"]))
def test_unknown_keys(key: str, where: str) -> None:
    doc = valid_copy()
    if where == "top":
        doc[key] = 1
    elif where == "timing":
        doc["timing"][key] = 1
    else:
        place(doc, where, key, 1)
    check_broken(dump(doc), "unknown key", key=key)


@FUZZ
@given(data=st.data(), where=placements)
def test_wrong_types(data: st.DataObject, where: str) -> None:
    doc = valid_copy()
    kind = data.draw(st.sampled_from(["int", "pair", "bool", "enum", "name", "timing",
                                      "backends", "table"]))
    if kind == "int":
        key = data.draw(st.sampled_from(INT_FIELDS))
        place(doc, where, key, data.draw(not_an_int))
    elif kind == "pair":
        key = data.draw(st.sampled_from(PAIR_FIELDS))
        bad = data.draw(st.one_of(st.just([1, 2, 3]), st.just([]), st.just(["3", "3"]),
                                  st.just([1.5, 1]), st.just({"h": 3}), st.booleans(),
                                  st.text(max_size=4).filter(lambda s: s != "same")))
        if bad == [] and where != "defaults":
            bad = [[]]  # an empty sweep list is an error of its own, tested elsewhere
        place(doc, where, key, bad)
    elif kind == "bool":
        key = data.draw(st.sampled_from(BOOL_FIELDS))
        place(doc, where, key, data.draw(not_a_bool))
    elif kind == "enum":
        key = data.draw(st.sampled_from(["precision", "activation"]))
        bad = data.draw(st.one_of(st.text(max_size=6).filter(
            lambda s: s not in {"fp32", "fp16", "bf16", "none", "relu"}), st.integers()))
        place(doc, where, key, bad)
    elif kind == "name":
        key = "name"
        doc["name"] = data.draw(st.one_of(
            st.integers(), st.just(""), st.text(min_size=81, max_size=90, alphabet="ab"),
            st.text(min_size=1, max_size=10).filter(lambda s: not all(
                c.isascii() and (c.isalnum() or c in "_.-") for c in s))))
    elif kind == "timing":
        key = data.draw(st.sampled_from(["warmup_s", "min_samples", "max_time_s", "target_rse",
                                         "mode", "l2"]))
        doc["timing"][key] = data.draw(st.one_of(st.text(max_size=5).filter(
            lambda s: s not in {"auto", "graph", "events", "host", "warm", "cold"}),
            st.booleans(), st.just([1])))
    elif kind == "backends":
        key = "backends"
        doc["backends"] = data.draw(st.one_of(
            st.just([]), st.just("torch"), st.lists(st.integers(), min_size=1, max_size=2),
            st.lists(unknown_names, min_size=1, max_size=2)))
    else:
        key = data.draw(st.sampled_from(["defaults", "sweep", "timing", "cases", "zip"]))
        doc[key] = data.draw(st.sampled_from([1, "x", [1], True, [[1]]]))
    check_broken(dump(doc), "wrong type", key=key)


@FUZZ
@given(key=st.sampled_from(SIZE_FIELDS + ["padding", "workspace", "opt_level"]),
       value=st.integers(-2**63, 0), where=placements, as_pair=st.booleans())
def test_zero_or_negative_sizes(key: str, value: int, where: str, as_pair: bool) -> None:
    if key == "padding":
        value = min(value, -1)  # zero padding is fine
    if key == "opt_level":
        value = value if value < 0 else 6
    if key == "workspace":
        value = min(value, -1)
    doc = valid_copy()
    bad: Any = [1, value] if as_pair and key in PAIR_FIELDS else value
    if key == "groups" and value == 0:
        bad = 0
    place(doc, where, key, bad)
    check_broken(dump(doc), "zero/negative size", key=key)


@FUZZ
@given(data=st.data(), where=placements)
def test_impossible_geometry(data: st.DataObject, where: str) -> None:
    doc = valid_copy()
    d = doc["defaults"]
    kind = data.draw(st.sampled_from(["kernel", "dilation", "groups", "same"]))
    size = data.draw(st.integers(1 if kind == "kernel" else 3, 64))  # room for a 3x3
    d.update(height=size, width=size, padding=0)
    if kind == "kernel":
        key, value = "kernel", data.draw(st.integers(size + 1, size + 100))
    elif kind == "dilation":
        d["kernel"] = 3
        key, value = "dilation", data.draw(st.integers(size // 2 + 1, 1000))
    elif kind == "groups":
        ch = data.draw(st.integers(1, 256))
        d.update(in_channels=ch, out_channels=ch)
        key, value = "groups", data.draw(st.integers(1, 512).filter(lambda g: ch % g))
    else:
        d["padding"] = "same"
        key, value = "kernel", data.draw(st.integers(1, 16).map(lambda k: 2 * k))
        d["height"] = d["width"] = 64
    place(doc, where, key, value)
    check_broken(dump(doc), "impossible geometry", key=key)


@FUZZ
@given(lengths=st.lists(st.integers(2, 60), min_size=2, max_size=8), n_cases=st.integers(0, 3))
def test_huge_sweeps(lengths: list[int], n_cases: int) -> None:
    total = math.prod(lengths) * max(1, n_cases)
    assume(total > DEFAULT_MAX_CASES)
    doc = valid_copy()
    axes = ["batch", "in_channels", "out_channels", "height", "width", "kernel", "stride",
            "dilation"]
    doc["sweep"] = {axis: list(range(1, n + 1)) for axis, n in zip(axes, lengths)}
    for axis in doc["sweep"]:
        doc["defaults"].pop(axis, None)
    if n_cases:
        doc["cases"] = [{"label": f"c{i}", "precision": "fp16"} for i in range(n_cases)]
    line = check_broken(dump(doc), "huge sweep", key="--max-cases")
    assert f"expands to {total} cases" in line


@FUZZ
@given(data=st.data())
def test_unicode_and_encoding(data: st.DataObject) -> None:
    kind = data.draw(st.sampled_from(["name", "value", "latin1", "bytes", "bom", "nul"]))
    base = dump(VALID)
    key: str | None = None
    if kind == "name":
        key = "name"
        name = data.draw(st.text(min_size=1, max_size=12).filter(
            lambda s: any(not c.isascii() for c in s)))
        content: str | bytes = base.replace('name = "fuzz"', f"name = {toml_str(name)}")
    elif kind == "value":
        key = data.draw(st.sampled_from(["precision", "activation"]))
        look_alike = data.draw(st.sampled_from(["fp１６", "ｆp32", "relu\u200b", "nöne", "bf16 "]))
        content = base + f"\n[sweep]\n{key} = [{toml_str(look_alike)}]\n"
    elif kind == "latin1":
        content = (base.replace('name = "fuzz"', 'name = "fuzz"\ndescription = "café"')
                   ).encode("latin-1")
    elif kind == "bytes":
        junk = data.draw(st.binary(min_size=1, max_size=20))
        assume(b"\n" not in junk)
        content = base.encode() + b'description = "' + junk + b'\xff"\n'
    elif kind == "bom":
        content = "\ufeff" + base
    else:
        content = base.replace("fuzz", "fu\x00zz")
    check_broken(content, "unicode/encoding", key=key)


@FUZZ
@given(text=st.text(alphabet=" \t\n\r", max_size=20), comment=st.booleans())
def test_empty_files(text: str, comment: bool) -> None:
    content = text + ("# only a comment\n" if comment else "")
    line = check_broken(content, "empty file")
    # the file is read with universal newlines, so a lone \r may become a newline
    assert "empty suite" in line or "invalid TOML" in line, line


@FUZZ
@given(data=st.data())
def test_structural_mistakes(data: st.DataObject) -> None:
    """Mistakes in how sweeps and cases are laid out."""
    doc = valid_copy()
    kind = data.draw(st.sampled_from(["empty_sweep", "zip_lengths", "empty_zip", "clash",
                                      "label", "case_not_table", "missing_field"]))
    if kind == "empty_sweep":
        key = data.draw(st.sampled_from(INT_FIELDS + PAIR_FIELDS))
        doc["sweep"] = {key: []}
    elif kind == "zip_lengths":
        a, b = data.draw(st.integers(1, 4)), data.draw(st.integers(5, 9))
        key = "zip"
        doc["zip"] = [{"height": [16] * a, "width": [16] * b}]
    elif kind == "empty_zip":
        key = "zip"
        doc["zip"] = [data.draw(st.sampled_from([{}, {"height": []}]))]
    elif kind == "clash":
        key = data.draw(st.sampled_from(["batch", "height", "kernel"]))
        doc["sweep"] = {key: [1, 2] if key != "kernel" else [1, 3]}
        doc["cases"] = [{"label": "a", key: 1}]
    elif kind == "label":
        key = "label"
        doc["cases"] = [{"label": data.draw(st.one_of(st.integers(), st.booleans(),
                                                      st.just([1])))}]
    elif kind == "case_not_table":
        key = "cases"
        doc["cases"] = data.draw(st.sampled_from([[1], ["a"], [[1]]]))
    else:
        key = data.draw(st.sampled_from(["in_channels", "out_channels", "height", "width"]))
        del doc["defaults"][key]
    check_broken(dump(doc), "structure", key=key)


def test_at_least_200_files_were_tried() -> None:
    if len(TRIED) < 10:
        pytest.skip("only meaningful when the whole module runs")
    assert sum(TRIED.values()) >= 200, TRIED


# --- files that are not files --------------------------------------------------------------------
def test_missing_file_directory_and_dangling_link(tmp_path: Path) -> None:
    out = tmp_path / "results"
    (tmp_path / "adir.toml").mkdir()
    (tmp_path / "loop.toml").symlink_to(tmp_path / "loop.toml")
    (tmp_path / "dangling.toml").symlink_to(tmp_path / "nowhere.toml")
    for name, says in [("missing.toml", "no such suite file"), ("adir.toml", "is a directory"),
                       ("loop.toml", "cannot read"), ("dangling.toml", "no such suite file")]:
        path = tmp_path / name
        for command in ("run", "show"):
            rc, stdout, stderr = run_cli(path, out, command)
            line = assert_one_line_error(rc, stdout, stderr, path, None, out)
            assert says in line, line


# --- a handful through a real subprocess ---------------------------------------------------------
SUBPROCESS_CASES = [
    ("bad-toml", b"name = \"x\"\n[defaults\n", "invalid TOML"),
    ("unknown-key", dump({**VALID, "colour": "red"}).encode(), "colour"),
    ("wrong-type", dump({**VALID, "defaults": {**VALID["defaults"], "batch": "8"}}).encode(),
     "batch"),
    ("zero-size", dump({**VALID, "defaults": {**VALID["defaults"], "height": 0}}).encode(),
     "height"),
    ("geometry", dump({**VALID, "defaults": {**VALID["defaults"], "kernel": 99}}).encode(),
     "kernel"),
    ("huge", (dump(VALID) + "[sweep]\n" + "".join(
        f"{k} = {list(range(1, 101))}\n" for k in ("batch", "in_channels", "out_channels"))
    ).encode(), "--max-cases"),
    ("unicode", 'name = "résultats"\n'.encode(), "name"),
    ("not-utf8", b'name = "caf\xe9"\n', "not UTF-8"),
    ("empty", b"", "empty suite"),
    ("deep", b"name = \"x\"\nz = " + b"[" * 3000 + b"]" * 3000 + b"\n", "nested too deeply"),
]
IN_SUBPROCESS = {"run": {"bad-toml", "wrong-type", "huge", "not-utf8", "deep"},
                 "show": {"bad-toml", "huge"}}


@pytest.mark.parametrize(("name", "content", "says"), SUBPROCESS_CASES,
                         ids=[c[0] for c in SUBPROCESS_CASES])
def test_named_broken_suites_in_process(name: str, content: bytes, says: str) -> None:
    line = check_broken(content, "named")
    assert says in line, line


def test_broken_suites_through_a_real_process(tmp_path: Path, cli_env: dict[str, str],
                                              python: str) -> None:
    """Every file through ``convbench run``, a few through ``show``: all processes at once,
    since each spends seconds importing numpy/scipy before it can refuse the file."""
    jobs = [(command, name, content, says) for name, content, says in SUBPROCESS_CASES
            for command in ("run", "show") if name in IN_SUBPROCESS[command]]
    procs = []
    for command, name, content, says in jobs:
        path = tmp_path / f"{name}.toml"
        path.write_bytes(content)
        out = tmp_path / f"results-{name}"
        extra = ["--out", str(out)] if command == "run" else []
        procs.append((path, out, says, subprocess.Popen(
            [python, "-m", "bench", command, str(path), *extra], cwd=tmp_path, env=cli_env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
    for path, out, says, proc in procs:
        stdout, stderr = proc.communicate(timeout=180)
        line = assert_one_line_error(proc.returncode, stdout, stderr, path, None, out)
        assert says in line, (path.name, line)
    assert not (tmp_path / "results").exists()


# --- the sweep-size guard ------------------------------------------------------------------------
def test_size_guard_counts_without_expanding(tmp_path: Path) -> None:
    """10^24 cases: refused at once with the count, without building a product in memory."""
    import time
    import tracemalloc

    doc = valid_copy()
    axes = ["batch", "in_channels", "out_channels", "height", "width", "kernel", "stride",
            "dilation", "groups", "padding", "workspace", "opt_level"]
    doc["sweep"] = {a: list(range(1, 101)) for a in axes}
    for a in axes:
        doc["defaults"].pop(a, None)
    text = dump(doc)
    tracemalloc.start()
    t0 = time.perf_counter()
    with pytest.raises(BenchError, match=r"expands to 1000000000000000000000000 cases"):
        parse_suite(text, "huge.toml")
    elapsed = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert elapsed < 2 and peak < 20 * 2**20, (elapsed, peak)


def test_max_cases_raises_the_limit_and_show_gives_the_count_first(tmp_path: Path) -> None:
    doc = valid_copy()
    doc["sweep"] = {"batch": list(range(1, 31)), "height": list(range(8, 28))}
    del doc["defaults"]["batch"], doc["defaults"]["height"]
    path = tmp_path / "six-hundred.toml"
    path.write_text(dump(doc))
    rc, _, stderr = run_cli_args(["show", str(path), "--max-cases", "599"])
    assert rc == 1 and "expands to 600 cases" in stderr and "--max-cases" in stderr
    rc, stdout, stderr = run_cli_args(["show", str(path), "--max-cases", "600"])
    assert rc == 0, stderr
    first = next(line for line in stdout.splitlines() if line.strip())
    assert "600 case(s)" in first, stdout[:300]
    rc, _, stderr = run_cli_args(["run", str(path), "--max-cases", "10", "--out",
                                  str(tmp_path / "r")])
    assert rc == 1 and "expands to 600 cases" in stderr and not (tmp_path / "r").exists()


def run_cli_args(argv: list[str]) -> tuple[int, str, str]:
    err, std = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(std):
        rc = main(argv)
    return rc, std.getvalue(), err.getvalue()


# --- --filter strings ----------------------------------------------------------------------------
FILTER_SUITE = parse_suite(dump({**valid_copy(), "sweep": {"kernel": [1, 3],
                                                           "precision": ["fp32", "bf16"]}}))
TOKENS = st.sampled_from(sorted(FIELDS) + [
    "==", "!=", "<", ">=", " in ", " not in ", " and ", " or ", "not ", "(", ")", "[", "]", ",",
    "'fp16'", "3", "-1", "-'x'", "-None", "None", "True", "1e999", "0x10", "(3, 3)", ".", "()",
    "__import__", "__class__", "lambda: 0", "open", "eval", "exec", "os.system", "[x for x in ()]",
    "f'{1}'", "b'x'", "...", ":=", "**", "+", "@", "if", "else", "yield", "await", "\\", "#",
    "\x00", "\n", "'", '"', "é", "🙂", "1_000", "0.5j", "'a' 'b'", "{}", "{1: 2}", "*",
])
CANARY = "convbench_filter_canary"
ATTACKS = [
    f"__import__('pathlib').Path('{CANARY}').touch()",
    f"batch == __import__('pathlib').Path('{CANARY}').touch()",
    f"batch == 1 or open('{CANARY}', 'w')",
    f"[c for c in ().__class__.__base__.__subclasses__()] == '{CANARY}'",
    f"(lambda: open('{CANARY}', 'w'))() == 1",
    f"batch in {{open('{CANARY}', 'w')}}",
    f"batch == (f := open('{CANARY}', 'w'))",
    f"batch == f\"{{open('{CANARY}', 'w')}}\"",
    "batch == " + "(" * 500 + "1" + ")" * 500,
    "not " * 300 + "batch == 1",
]


def assert_safe_filter(text: str) -> None:
    try:
        pred = parse_filter(text)
    except BenchError as e:
        msg = " ".join(str(e).split())
        assert msg.startswith("--filter:") and "\n" not in str(e), str(e)
        return
    for case in FILTER_SUITE.cases:
        assert isinstance(pred(case), bool)


@settings(max_examples=300, deadline=None, database=None)
@given(text=st.text(max_size=60))
def test_random_filter_text_is_a_filter_or_one_line_error(text: str) -> None:
    assert_safe_filter(text)


@settings(max_examples=400, deadline=None, database=None)
@given(tokens=st.lists(TOKENS, max_size=12))
def test_token_soup_filters_never_crash(tokens: list[str]) -> None:
    assert_safe_filter(" ".join(tokens))


@pytest.mark.parametrize("text", ATTACKS)
def test_malicious_filters_are_refused_without_running(text: str, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(BenchError, match="^--filter: "):
        parse_filter(text)
    assert not (tmp_path / CANARY).exists()


def test_malicious_filter_through_the_cli(tmp_path: Path) -> None:
    path = tmp_path / "ok.toml"
    path.write_text(dump(VALID))
    rc, _, stderr = run_cli_args(["run", str(path), "--out", str(tmp_path / "r"), "--filter",
                                  ATTACKS[0]])
    assert rc == 1 and len(stderr.splitlines()) == 1 and "--filter" in stderr
    assert not (tmp_path / "r").exists() and not Path(CANARY).exists()
