"""Seeded fault injection against the real CLI (issue 14): hostile suite files, corrupted result
files, hostile names and labels, kills of merge/export/report, a full disk, concurrent writers.

Every trial runs ``python -m bench ...`` in a subprocess, inside its own box directory, with a
timeout. The outcome of a trial is one of:

- ``ok``: exit 0 on valid input (and the trial's own check held: a complete output, no raw
  terminal escape printed, no duplicate record...);
- ``one-line``: exit 1 with exactly one ``convbench: error:`` line and no traceback;
- ``traceback``: a Python traceback on stderr;
- ``hang``: killed at the timeout;
- ``outside``: a file was created or changed outside the folders the command may write;
- ``other``: anything else (exit 0 on invalid input, a multi-line error, a partial output that
  looks complete, a check that failed), with the reason listed below the table.

Usage: python benchmarks/faults.py [--seed N] [--suites 320] [--corrupt 60] [--jobs 2]
       [--md benchmarks/results/faults-cpu.md] [--no-slow]
``--no-slow`` skips the trials that run real sweeps, reports, Ray (the pytest test uses it).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RUN_A = REPO / "tests" / "data" / "runs" / "quickstart-cpu-a"
OUTCOMES = ("ok", "one-line", "traceback", "hang", "outside", "other")

#: issue 14's classes, in its order
CLASSES = {
    "1 concurrent writers": "two `run --resume RUN` at once",
    "2 names and paths": "suite name, stored `suite` field, run dir as paths",
    "3 timing values": "inf / nan / huge / tiny timing values (file and flags)",
    "4 mathtext labels": "`$x_$` and friends in plots",
    "5 partial outputs": "merge / export / report killed midway",
    "6 corrupted results": "corrupted run.json / records.jsonl / layers.jsonl",
    "7 full disk": "report / export / compare --csv / merge with a file size limit",
    "8 suite files": "generated and corrupted suite files, odd file types",
    "9 terminal escapes": "control characters in labels and stored names",
    "10 ray": "local Ray binds 127.0.0.1 only",
    "11 compare / dry-run": "compare of unrelated runs, unknown --backend",
}


@dataclass
class Trial:
    cls: str
    what: str
    argv: list[str]  # after `python -m bench`
    valid: bool  # exit 0 is the right answer
    setup: Callable[[Path], None] | None = None  # called with the box before the run
    allowed: list[str] = field(default_factory=list)  # box-relative folders it may write
    check: Callable[[Path, subprocess.CompletedProcess[str] | None], str | None] | None = None
    timeout: float = 120.0
    preexec: Callable[[], None] | None = None
    kill_after: float | None = None  # SIGKILL after this many seconds (partial outputs)
    runner: Callable[[Trial, Path, dict[str, str]], Result] | None = None  # custom run


@dataclass
class Result:
    outcome: str
    detail: str = ""


# --- running one trial ----------------------------------------------------------------------------
def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            p = os.path.join(dirpath, name)
            try:
                st = os.lstat(p)
            except OSError:
                continue
            out[os.path.relpath(p, root)] = (st.st_size, st.st_mtime_ns)
    return out


def _changed(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> list[str]:
    return sorted(p for p, v in after.items() if before.get(p) != v)


def _classify(t: Trial, rc: int | None, out: str, err: str, box: Path,
              proc: subprocess.CompletedProcess[str] | None) -> Result:
    if rc is None:
        return Result("hang", f"no exit after {t.timeout:g} s")
    if "Traceback (most recent call last)" in err or "Traceback" in out:
        last = [line for line in err.splitlines() if line.strip()][-1:] or ["?"]
        return Result("traceback", last[0][:200])
    lines = [line for line in err.splitlines() if line.strip() and not _is_warning(line)]
    if t.check is not None:
        why = t.check(box, proc)
        if why:
            return Result("other", why)
    if t.kill_after is not None and rc == -signal.SIGKILL:
        return Result("ok", "killed; output not mistaken for complete")
    if rc == 0:
        return Result("ok") if t.valid else Result("other", "exit 0 on invalid input")
    if rc == 1 and len(lines) == 1 and lines[0].startswith("convbench: error: "):
        if t.valid:
            return Result("other", f"refused valid input: {lines[0][:200]}")
        if "\x1b" in err or "\x07" in err:
            return Result("other", "raw control characters in the error line")
        return Result("one-line")
    return Result("other", f"exit {rc}, {len(lines)} stderr line(s): {' | '.join(lines)[:200]}")


def _is_warning(line: str) -> bool:
    # Python warnings (a torn last line is reported, not an error) and their source line
    return bool(re.search(r"(Warning|warn)\b", line)) or line.startswith("  ")


def run_trial(t: Trial, box: Path, env: dict[str, str]) -> Result:
    box.mkdir(parents=True)
    work = box / "box"
    work.mkdir()
    if t.setup:
        t.setup(work)
    if t.runner:
        return t.runner(t, work, env)
    before = _snapshot(box)
    cmd = [sys.executable, "-m", "bench", *t.argv]
    proc = None
    rc: int | None
    try:
        p = subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, errors="replace",
                             preexec_fn=t.preexec, start_new_session=True)
        try:
            out, err = p.communicate(timeout=t.kill_after if t.kill_after else t.timeout)
            rc = p.returncode
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            out, err = p.communicate()
            rc = -signal.SIGKILL if t.kill_after else None
        proc = subprocess.CompletedProcess(cmd, rc if rc is not None else -9, out, err)
    except OSError as e:
        return Result("other", f"cannot start: {e}")
    res = _classify(t, rc, out, err, work, proc)
    outside = [p for p in _changed(before, _snapshot(box))
               if not any(p == a or p.startswith(a.rstrip("/") + "/")
                          for a in ["box/" + x for x in t.allowed])]
    if outside and res.outcome != "hang":
        return Result("outside", ", ".join(outside[:3]))
    return res


# --- suite files (classes 2, 3, 8, 9) -------------------------------------------------------------
def _toml(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and (v != v or v in (float("inf"), float("-inf"))):
        return "nan" if v != v else ("inf" if v > 0 else "-inf")
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=True)
    if isinstance(v, list):
        return "[" + ", ".join(_toml(e) for e in v) + "]"
    raise TypeError(type(v))


def _dump(doc: dict[str, Any]) -> str:
    lines = []
    for k, v in doc.items():
        if not isinstance(v, dict) and not (isinstance(v, list) and v and isinstance(v[0], dict)):
            lines.append(f"{k} = {_toml(v)}")
    for k, v in doc.items():
        if isinstance(v, dict):
            lines.append(f"[{k}]")
            lines += [f"{kk} = {_toml(vv)}" for kk, vv in v.items()]
        elif isinstance(v, list) and v and isinstance(v[0], dict):
            for item in v:
                lines.append(f"[[{k}]]")
                lines += [f"{kk} = {_toml(vv)}" for kk, vv in item.items()]
    return "\n".join(lines) + "\n"


def valid_suite(rng: random.Random) -> dict[str, Any]:
    """A suite that is valid by construction (geometry chosen to fit)."""
    k = rng.choice([1, 3, 5])
    g = rng.choice([1, 1, 2, 4])
    c = g * rng.randint(1, 16)
    doc: dict[str, Any] = {
        "name": rng.choice(["fz", "fuzz-1", "a.b", "x_y", "F9"]),
        "description": rng.choice(["", "a suite", "unicode ok: 3×3 µs"]),
        "backends": ["torch"],
        "defaults": {"batch": rng.randint(1, 8), "in_channels": c,
                     "out_channels": g * rng.randint(1, 16), "height": rng.randint(k, 64),
                     "width": rng.randint(k, 64), "kernel": k, "groups": g},
        "timing": {"warmup_s": rng.choice([0.0, 0.01, 0.2]),
                   "max_time_s": rng.choice([0.1, 1.0, 10.0]),
                   "target_rse": rng.choice([0.5, 0.01, 1e-6])},
    }
    if rng.random() < 0.5:
        doc["sweep"] = {"precision": rng.sample(["fp32", "fp16", "bf16"], rng.randint(1, 3))}
    if rng.random() < 0.4:
        doc["zip"] = [{"batch": [1, 2], "stride": [1, 2]}]
        doc["defaults"].pop("batch")
    if rng.random() < 0.3:
        doc["defaults"]["workspace"] = rng.choice(["256MiB", "1GB", "1.5 KiB", 1 << 20])
    if rng.random() < 0.3:
        doc["cases"] = [{"label": rng.choice(["conv1", "$x_$", "[red]x", "a b"])}]
    return doc


def _set(doc: dict[str, Any], table: str, key: str, value: Any) -> dict[str, Any]:
    doc.setdefault(table, {})[key] = value
    if table == "defaults":  # a swept value would replace the bad default: unsweep the key
        doc.get("sweep", {}).pop(key, None)
        doc["zip"] = [g for g in ({k: v for k, v in g.items() if k != key}
                                  for g in doc.get("zip", [])) if g]
        if not doc["zip"]:
            doc.pop("zip")
    return doc


def _mutations(rng: random.Random) -> list[tuple[str, str, Callable[[dict[str, Any]], Any]]]:
    """(class, what, mutate): mutate returns a dict (dumped as TOML), or a str/bytes (raw file
    text), or a callable(box) -> path for odd file types."""
    f = rng.choice(["batch", "in_channels", "height", "width", "groups"])
    return [
        ("8 suite files", f"{f} = 10**300", lambda d: _set(d, "defaults", f, 10**300)),
        ("8 suite files", f"{f} = 2**64", lambda d: _set(d, "defaults", f, 2**64)),
        ("8 suite files", f"{f} = 2**40", lambda d: _set(d, "defaults", f, 2**40)),
        ("8 suite files", "400-digit workspace",
         lambda d: _set(d, "defaults", "workspace", "9" * 400 + "GB")),
        ("8 suite files", "workspace = 400-digit int",
         lambda d: _dump(d).replace("[defaults]", "[defaults]\nworkspace = " + "9" * 400)),
        ("8 suite files", "workspace in Arabic-Indic digits",
         lambda d: _set(d, "defaults", "workspace", rng.choice(["٤GB", "４GB", "໔MiB", "४KB"]))),
        ("8 suite files", "bare CR line endings", lambda d: _dump(d).replace("\n", "\r")),
        ("8 suite files", "one bare CR", lambda d: _dump(d).replace("\n", "\r", 1)),
        ("8 suite files", "backend listed twice", lambda d: {**d, "backends": ["torch"] * 2}),
        ("8 suite files", "key in [sweep] and [[zip]]",
         lambda d: {**d, "sweep": {"stride": [1, 2]}, "zip": [{"stride": [1, 2]}]}),
        ("8 suite files", "key in two zip groups",
         lambda d: {**d, "zip": [{"padding": [0, 1]}, {"padding": [1, 0]}]}),
        ("8 suite files", "mode host + l2 cold",
         lambda d: {**d, "timing": {"mode": "host", "l2": "cold"}}),
        ("8 suite files", "unknown key", lambda d: _set(d, "defaults", "kernal", 3)),
        ("8 suite files", "string where an int goes", lambda d: _set(d, "defaults", f, "8")),
        ("8 suite files", "zero size", lambda d: _set(d, "defaults", f, 0)),
        ("8 suite files", "negative size", lambda d: _set(d, "defaults", f, -3)),
        ("8 suite files", "kernel larger than input",
         lambda d: _set(d, "defaults", "kernel", 999)),
        ("8 suite files", "sweep of 20 000 cases",
         lambda d: {**d, "sweep": {"batch": list(range(1, 201)), "height": list(range(5, 105))},
                    "defaults": {k: v for k, v in d["defaults"].items() if k != "batch"}}),
        ("8 suite files", "truncated file", lambda d: _dump(d)[:rng.randint(1, 60)] + "= ["),
        ("8 suite files", "random bytes", lambda d: bytes(rng.randrange(256) for _ in range(200))),
        ("8 suite files", "invalid UTF-8", lambda d: _dump(d).encode() + b"\n# \xff\xfe\n"),
        ("8 suite files", "byte-order mark", lambda d: "\ufeff" + _dump(d)),
        ("8 suite files", "arrays nested 10 000 deep",
         lambda d: _dump(d) + "x = " + "[" * 10000 + "]" * 10000 + "\n"),
        ("8 suite files", "empty file", lambda d: ""),
        ("8 suite files", "a FIFO", lambda d: _fifo),
        ("8 suite files", "/dev/zero", lambda d: (lambda box: Path("/dev/zero"))),
        ("8 suite files", "/dev/urandom", lambda d: (lambda box: Path("/dev/urandom"))),
        ("8 suite files", "a symlink to /dev/zero", lambda d: _zero_link),
        ("8 suite files", "a directory", lambda d: (lambda box: box)),
        ("8 suite files", "2 MiB of comments", lambda d: _dump(d) + ("#" * 1000 + "\n") * 2100),
        ("3 timing values", "warmup_s = inf",
         lambda d: _set(d, "timing", "warmup_s", float("inf"))),
        ("3 timing values", "warmup_s = 1e309 (a literal beyond float)",
         lambda d: _raw_timing(d, "warmup_s", "1e309")),
        ("3 timing values", "max_time_s = -inf", lambda d: _raw_timing(d, "max_time_s", "-inf")),
        ("3 timing values", "warmup_s = 2**70", lambda d: _set(d, "timing", "warmup_s", 2**70)),
        ("3 timing values", "max_time_s = nan",
         lambda d: _set(d, "timing", "max_time_s", float("nan"))),
        ("3 timing values", "target_rse = 1e-300",
         lambda d: _set(d, "timing", "target_rse", 1e-300)),
        ("3 timing values", "profile_iters = 2**62",
         lambda d: _set(d, "timing", "profile_iters", 2**62)),
        ("3 timing values", "min_samples = 10**9",
         lambda d: _set(d, "timing", "min_samples", 10**9)),
        ("3 timing values", "case_timeout_s = inf",
         lambda d: _set(d, "timing", "case_timeout_s", float("inf"))),
        ("3 timing values", "case_timeout_s = 1e309",
         lambda d: _raw_timing(d, "case_timeout_s", "1e309")),
        ("3 timing values", "case_timeout_s = 0",
         lambda d: _set(d, "timing", "case_timeout_s", 0)),
        ("2 names and paths", "name = '..'", lambda d: {**d, "name": ".."}),
        ("2 names and paths", "name = '.'", lambda d: {**d, "name": "."}),
        ("2 names and paths", "name with a slash", lambda d: {**d, "name": "../../escape"}),
        ("2 names and paths", "absolute name", lambda d: {**d, "name": "/tmp/escape"}),
        ("2 names and paths", "hidden name", lambda d: {**d, "name": ".hidden"}),
        ("9 terminal escapes", "label with ESC[2J",
         lambda d: {**d, "cases": [{"label": "a\x1b[2Jb"}]}),
        ("9 terminal escapes", "label with an OSC title",
         lambda d: {**d, "cases": [{"label": "\x1b]0;owned\x07x"}]}),
        ("9 terminal escapes", "label with CR", lambda d: {**d, "cases": [{"label": "ok\rbad"}]}),
        ("9 terminal escapes", "label with a bidi override",
         lambda d: {**d, "cases": [{"label": "\u202eevil"}]}),
        ("9 terminal escapes", "description with ESC",
         lambda d: {**d, "description": "x\x1b[31m"}),
    ]


def _raw_timing(d: dict[str, Any], key: str, literal: str) -> str:
    """The suite with ``[timing] key = literal`` written as raw TOML text."""
    timing = {k: v for k, v in d.get("timing", {}).items() if k != key}
    text = _dump({**d, "timing": {**timing, "min_samples": 3}})
    return text.replace("[timing]\n", f"[timing]\n{key} = {literal}\n", 1)


def _fifo(box: Path) -> Path:
    p = box / "fifo.toml"
    os.mkfifo(p)
    return p


def _zero_link(box: Path) -> Path:
    p = box / "zero.toml"
    p.symlink_to("/dev/zero")
    return p


def _write_suite(content: Any) -> Callable[[Path], Path]:
    def setup(box: Path) -> Path:
        if callable(content):
            return content(box)
        p = box / "suite.toml"
        if isinstance(content, dict):
            content_ = _dump(content)
        else:
            content_ = content
        if isinstance(content_, bytes):
            p.write_bytes(content_)
        else:
            p.write_bytes(content_.encode("utf-8", "surrogatepass"))
        return p
    return setup


def suite_trials(rng: random.Random, n: int) -> list[Trial]:
    trials = []
    for i in range(n):
        doc = valid_suite(rng)
        if rng.random() < 0.2:
            cls, what, content = "8 suite files", "valid generated suite", doc
            valid = True
        else:
            cls, what, mutate = rng.choice(_mutations(rng))
            content, valid = mutate(json.loads(json.dumps(doc))), False
        make = _write_suite(content)
        holder: dict[str, Path] = {}

        def setup(box: Path, make: Callable[[Path], Path] = make,
                  holder: dict[str, Path] = holder) -> None:
            holder["path"] = make(box)
            # the path is only known after setup: argv refers to it through a fixed name
            link = box / "the-suite"
            if holder["path"] != link:
                link.symlink_to(holder["path"])

        show = i % 2 == 0
        argv = (["show", "the-suite"] if show else
                ["run", "the-suite", "--dry-run", "--out", "out"])
        if not show and cls == "2 names and paths" and i % 4 == 1:
            argv = ["run", "the-suite", "--out", "out", "--no-progress"]  # a real run
        trials.append(Trial(cls, what, argv, valid, setup, allowed=["out", "the-suite",
                                                                     "suite.toml", "fifo.toml",
                                                                     "zero.toml"],
                            timeout=90))
    return trials


def flag_trials() -> list[Trial]:
    """Timing flags on the command line and unknown backends, through --dry-run."""
    q = str(REPO / "suites" / "quickstart.toml")
    cases = [("3 timing values", ["--warmup-s", "inf"]),
             ("3 timing values", ["--max-time-s", "nan"]),
             ("3 timing values", ["--target-rse", "1e-300"]),
             ("3 timing values", ["--profile-iters", str(2**62)]),
             ("3 timing values", ["--warmup-s", "1e309"]),
             ("3 timing values", ["--case-timeout-s", "inf"]),
             ("3 timing values", ["--case-timeout-s", "-1"]),
             ("11 compare / dry-run", ["--backend", "trt"]),
             ("11 compare / dry-run", ["--backend", "torch", "--backend", "torch"])]
    return [Trial(c, " ".join(f), ["run", q, "--dry-run", "--out", "out", *f], False,
                  allowed=["out"], timeout=90) for c, f in cases]


# --- corrupted result files (class 6, and 9 for stored names) -------------------------------------
def _records() -> list[dict[str, Any]]:
    return [json.loads(x) for x in (RUN_A / "records.jsonl").read_text().splitlines()]


def _lines(rows: list[Any]) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


def _corruptions(rng: random.Random) -> list[tuple[str, str, bool, Callable[[Path], None]]]:
    """(class, what, valid, corrupt(run_dir))."""

    def recs(edit: Callable[[list[dict[str, Any]]], list[Any]]) -> Callable[[Path], None]:
        def apply(d: Path) -> None:
            (d / "records.jsonl").write_text(_lines(edit(_records())))
        return apply

    def one(edit: Callable[[dict[str, Any]], Any]) -> Callable[[Path], None]:
        def apply(d: Path) -> None:
            rows = _records()
            i = rng.randrange(len(rows))
            rows[i] = edit(rows[i])
            (d / "records.jsonl").write_text(_lines(rows))
        return apply

    def info(edit: Callable[[dict[str, Any]], Any]) -> Callable[[Path], None]:
        def apply(d: Path) -> None:
            i = json.loads((d / "run.json").read_text())
            (d / "run.json").write_text(json.dumps(edit(i)))
        return apply

    def raw(name: str, data: bytes) -> Callable[[Path], None]:
        def apply(d: Path) -> None:
            (d / name).write_bytes(data)
        return apply

    def layers(edit: Callable[[dict[str, Any]], Any]) -> Callable[[Path], None]:
        def apply(d: Path) -> None:
            rows = [json.loads(x) for x in (d / "layers.jsonl").read_text().splitlines()]
            rows[0] = edit(rows[0])
            (d / "layers.jsonl").write_text(_lines(rows))
        return apply

    def drop(key: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
        return lambda r: {k: v for k, v in r.items() if k != key}

    def stats(key: str, value: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
        return lambda r: {**r, "stats": {**(r.get("stats") or {}), key: value}}

    def directory(name: str) -> Callable[[Path], None]:
        def apply(d: Path) -> None:
            (d / name).unlink()
            (d / name).mkdir()
        return apply

    c6 = "6 corrupted results"
    return [
        (c6, "record without case_key", False, one(drop("case_key"))),
        (c6, "record without backend", False, one(drop("backend"))),
        (c6, "record without status", False, one(drop("status"))),
        (c6, "record without spec", False, one(drop("spec"))),
        (c6, "record without name", False, one(drop("name"))),
        (c6, "record without case_index", False, one(drop("case_index"))),
        (c6, "median a string", False, one(stats("median", "fast"))),
        (c6, "median = 0", False, one(stats("median", 0))),
        (c6, "median negative", False, one(stats("median", -1.0))),
        (c6, "stats a list", False, one(lambda r: {**r, "stats": [1, 2]})),
        (c6, "NaN samples", False, lambda d: (d / "records.jsonl").write_text(
            (d / "records.jsonl").read_text().replace('"samples_ms": [', '"samples_ms": [NaN, ', 1)
            if '"samples_ms": [' in (d / "records.jsonl").read_text() else
            (d / "records.jsonl").read_text().replace('"samples_ms":[', '"samples_ms":[NaN,', 1))),
        (c6, "samples a string", False, one(lambda r: {**r, "samples_ms": "1,2,3"})),
        (c6, "samples empty on an ok record", False, one(lambda r: {**r, "samples_ms": []})),
        (c6, "case_index a string", False, one(lambda r: {**r, "case_index": "zero"})),
        (c6, "status unknown", False, one(lambda r: {**r, "status": "weird"})),
        (c6, "spec with strings", False, one(lambda r: {**r, "spec": {**r["spec"], "batch": "x"}})),
        (c6, "derived missing", False, one(drop("derived"))),
        (c6, "a record that is a list", False, recs(lambda rs: [*rs, [1, 2, 3]])),
        (c6, "JSON nested 100 000 deep", False,
         recs(lambda rs: [*rs, '{"schema": 1, "x": ' + "[" * 100000 + "]" * 100000 + "}"])),
        (c6, "a 5001-digit integer", False,
         recs(lambda rs: [*rs[:-1], json.dumps(rs[-1]).replace('"case_index": ',
                                                                 '"case_index": ' + "9" * 5001
                                                                 + ", \"x\": ", 1)])),
        (c6, "records.jsonl is a directory", False, directory("records.jsonl")),
        (c6, "run.json is a directory", False, directory("run.json")),
        (c6, "run.json timing = 'fast'", False, info(lambda i: {**i, "timing": "fast"})),
        (c6, "run.json host a string", False, info(lambda i: {**i, "host": "h"})),
        (c6, "run.json gpu a list", False, info(lambda i: {**i, "gpu": [1]})),
        (c6, "run.json schema true", False, info(lambda i: {**i, "schema": True})),
        # schema 2 is the current version and run.json did not change from 1 to 2: a schema-1
        # run resumed by this convbench has exactly this run.json and version-1 records
        (c6, "run.json schema 2 (the current version)", True,
         info(lambda i: {**i, "schema": 2})),
        (c6, "run.json schema 3 (newer than this convbench)", False,
         info(lambda i: {**i, "schema": 3})),
        (c6, "run.json gpu.cc a string", False,
         info(lambda i: {**i, "gpu": {"name": "X", "uuid": "GPU-1", "cc": "abc"}})),
        (c6, "run.json backends a list", False, info(lambda i: {**i, "backends": ["torch"]})),
        (c6, "run.json host.cpu_count a string", False,
         info(lambda i: {**i, "host": {**i["host"], "cpu_count": "2"}})),
        (c6, "run.json timing.target_rse a string", False,
         info(lambda i: {**i, "timing": {**i["timing"], "target_rse": "x"}})),
        (c6, "run.json suite_text a number", False, info(lambda i: {**i, "suite_text": 7})),
        (c6, "run.json schema missing", False, info(drop("schema"))),
        (c6, "run.json a list", False, raw("run.json", b"[1, 2]")),
        (c6, "run.json empty", False, raw("run.json", b"")),
        (c6, "run.json binary", False, raw("run.json", bytes(range(256)))),
        (c6, "records.jsonl binary", False, raw("records.jsonl", bytes(range(256)) * 4)),
        (c6, "records.jsonl invalid UTF-8", False,
         lambda d: (d / "records.jsonl").write_bytes((d / "records.jsonl").read_bytes()
                                                     + b'{"schema": 1, "x": "\xff"}\n')),
        (c6, "record schema true", False, one(lambda r: {**r, "schema": True})),
        (c6, "record schema 99", False, one(lambda r: {**r, "schema": 99})),
        (c6, "torn last line (an interrupted write)", True,
         lambda d: (d / "records.jsonl").write_text((d / "records.jsonl").read_text()
                                                    + '{"schema": 1, "case_')),
        (c6, "a broken line in the middle", False,
         recs(lambda rs: [*rs[:3], '{"schema": 1,,', *rs[3:]])),
        (c6, "layer row without case_key", False, layers(drop("case_key"))),
        (c6, "layer row with layers a string", False, layers(lambda r: {**r, "layers": "x"})),
        (c6, "layer without median_ms", False,
         layers(lambda r: {**r, "layers": [{k: v for k, v in la.items() if k != "median_ms"}
                                           for la in r["layers"]]})),
        (c6, "layers.jsonl binary", False, raw("layers.jsonl", b"\x00\x01\x02\n")),
        (c6, "empty records.jsonl", True, raw("records.jsonl", b"")),
        (c6, "check a string", False, one(lambda r: {**r, "check": "passed"})),
        (c6, "timing a number", False, one(lambda r: {**r, "timing": 5})),
        (c6, "build a list", False, one(lambda r: {**r, "build": [1]})),
        (c6, "clocks a string", False, one(lambda r: {**r, "clocks": "x"})),
        (c6, "duplicate record", False, recs(lambda rs: [*rs, rs[0]])),
        ("9 terminal escapes", "stored name with ESC[2J and an OSC title", True,
         one(lambda r: {**r, "name": "x\x1b[2J\x1b]0;owned\x07y"})),
        ("9 terminal escapes", "stored name with rich markup", True,
         one(lambda r: {**r, "name": "[bold red]x[/]"})),
    ]


def _no_raw_escapes(box: Path, proc: subprocess.CompletedProcess[str] | None) -> str | None:
    if proc is not None and re.search(r"\x1b|\x07", proc.stdout + proc.stderr):
        return "raw terminal control characters printed"
    return None


def corrupt_trials(rng: random.Random, n: int, slow: bool) -> list[Trial]:
    corruptions = _corruptions(rng)
    trials = []
    commands = ["compare", "export", "compare-csv"] + (["report"] if slow else [])
    for i in range(n):
        cls, what, valid, corrupt = corruptions[i % len(corruptions)]
        command = commands[(i // len(corruptions) + i) % len(commands)]
        if what == "empty records.jsonl" and command.startswith("compare"):
            valid = False  # nothing to compare: exit 1 (issue item 11)

        def setup(box: Path, corrupt: Callable[[Path], None] = corrupt) -> None:
            shutil.copytree(RUN_A, box / "run")
            (box / "out").mkdir()
            corrupt(box / "run")

        if command == "compare":
            argv = ["compare", str(RUN_A), "run"]
        elif command == "compare-csv":
            argv = ["compare", "run", str(RUN_A), "--csv", "out/cmp.csv"]
        elif command == "export":
            argv = ["export", "run", "--out", "out/export", "--trtexec"]
        else:
            argv = ["report", "run", "--out", "out/reports"]
        # compare exits 1 on a regression: an unchanged copy compared to itself has none
        trials.append(Trial(cls, f"{what} ({command})", argv, valid, setup,
                            allowed=["out", "run"], check=_no_raw_escapes,
                            timeout=300 if command == "report" else 120))
    return trials


# --- names as paths, stored suite field (class 2) -------------------------------------------------
def stored_suite_trials(slow: bool) -> list[Trial]:
    trials = []
    for bad in ("../../x", "/ABS/x", "..", ".", "a/b", "", 7, None):
        def setup(box: Path, bad: Any = bad) -> None:
            for name in ("s0", "s1"):
                shutil.copytree(RUN_A, box / name)
                i = json.loads((box / name / "run.json").read_text())
                i["suite"] = (bad.replace("/ABS", str(box.parent)) if isinstance(bad, str)
                              else bad)
                (box / name / "run.json").write_text(json.dumps(i))
                rows = (box / name / "records.jsonl").read_text().splitlines()
                (box / name / "records.jsonl").write_text(
                    "".join(x + "\n" for x in rows[name == "s1"::2]))
        trials.append(Trial("2 names and paths", f"stored suite {bad!r} (merge)",
                            ["merge", "s0", "s1", "--out", "out/merged"], False, setup,
                            allowed=["out", "s0", "s1"]))
        if slow:
            trials.append(Trial("2 names and paths", f"stored suite {bad!r} (report)",
                                ["report", "s0", "--out", "out/reports"], False, setup,
                                allowed=["out", "s0", "s1"], timeout=300))
    trials.append(Trial("2 names and paths", "report --out = the results folder",
                        ["report", "results/quickstart/r1", "--out", "results"], False,
                        lambda box: shutil.copytree(RUN_A, box / "results" / "quickstart" / "r1"),
                        allowed=["results"], timeout=300))
    return trials


# --- partial outputs (class 5) --------------------------------------------------------------------
def _big_shards(box: Path, per: int) -> None:
    rows = _records()
    for s in range(2):
        d = box / f"s{s}"
        shutil.copytree(RUN_A, d)
        out = []
        for j in range(per):
            r = dict(rows[j % len(rows)])
            r["case_key"] = f"{s:02x}{j:014x}"
            r["case_index"] = 2 * j + s
            out.append(r)
        (d / "records.jsonl").write_text(_lines(out))


def _shown(root: Path) -> list[Path]:
    """``root/*/*`` without hidden entries (a ``.name.partial-*`` sibling is not an output)."""
    return [d for d in root.glob("*/*") if not d.name.startswith(".")
            and not d.parent.name.startswith(".")]


def _merge_complete(box: Path, proc: Any) -> str | None:
    for d in _shown(box / "out"):
        n = sum(1 for _ in open(d / "records.jsonl")) if (d / "records.jsonl").exists() else 0
        if n != 2 * 3000:
            return f"a merged run with {n} of 6000 records looks complete"
    return None


def _export_complete(box: Path, proc: Any) -> str | None:
    for name, want in (("records.csv", 12), ("layers.csv", None)):
        p = box / "run" / "export" / name
        if p.exists():
            with open(p, newline="") as f:
                n = sum(1 for _ in csv.reader(f)) - 1
            if want is not None and n != want:
                return f"{name} with {n} of {want} rows"
    return None


def _report_complete(box: Path, proc: Any) -> str | None:
    for d in _shown(box / "out"):
        md = d / "report.md"
        if not md.exists():
            return f"{d.name}: plots without report.md"
        for png in re.findall(r"\]\(([^)]+\.png)\)", md.read_text()):
            if not (d / png).exists():
                return f"report.md names {png}, which is missing"
        if not (d / "report.html").exists():
            return "report.md without report.html"
    return None


def kill_trials(rng: random.Random, slow: bool) -> list[Trial]:
    trials = []
    for _ in range(8):
        trials.append(Trial("5 partial outputs", "merge killed midway",
                            ["merge", "s0", "s1", "--out", "out"], True,
                            lambda box: _big_shards(box, 3000), allowed=["out", "s0", "s1"],
                            check=_merge_complete, kill_after=rng.uniform(1.0, 6.0)))
        trials.append(Trial("5 partial outputs", "export killed midway",
                            ["export", "run"], True,
                            lambda box: shutil.copytree(RUN_A, box / "run"), allowed=["run"],
                            check=_export_complete, kill_after=rng.uniform(1.0, 5.0)))
    if slow:
        for _ in range(3):
            trials.append(Trial("5 partial outputs", "report killed midway",
                                ["report", "run", "--out", "out"], True,
                                lambda box: shutil.copytree(RUN_A, box / "run"),
                                allowed=["out", "run"], check=_report_complete,
                                kill_after=rng.uniform(4.0, 20.0), timeout=300))
    return trials


# --- full disk (class 7) --------------------------------------------------------------------------
def _fsize(limit: int) -> Callable[[], None]:
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def disk_trials(slow: bool) -> list[Trial]:
    def shards(box: Path) -> None:
        _big_shards(box, 50)

    def copy(box: Path) -> None:
        shutil.copytree(RUN_A, box / "run")

    trials = [
        Trial("7 full disk", "merge, 20 kB file limit", ["merge", "s0", "s1", "--out", "out"],
              False, shards, allowed=["out", "s0", "s1"], preexec=_fsize(20_000)),
        Trial("7 full disk", "export, 3 kB file limit", ["export", "run", "--out", "out"], False,
              copy, allowed=["out", "run"], preexec=_fsize(3_000)),
        Trial("7 full disk", "export --trtexec, 1 kB limit",
              ["export", "run", "--out", "out", "--trtexec"], False, copy,
              allowed=["out", "run"], preexec=_fsize(1_000)),
        Trial("7 full disk", "compare --csv, 500 B limit",
              ["compare", "run", str(RUN_A), "--csv", "out/c.csv"], False,
              lambda box: (copy(box), (box / "out").mkdir()), allowed=["out", "run"],
              preexec=_fsize(500)),
    ]
    if slow:
        trials.append(Trial("7 full disk", "report, 20 kB file limit",
                            ["report", "run", "--out", "out"], False, copy,
                            allowed=["out", "run"], preexec=_fsize(20_000), timeout=300))
    return trials


# --- labels in plots (class 4) --------------------------------------------------------------------
def mathtext_trials() -> list[Trial]:
    out = []
    for label in ("$x_$", "$\\frac{", "a$b$c$", "$$"):
        def setup(box: Path, label: str = label) -> None:
            shutil.copytree(RUN_A, box / "run")
            rows = _records()
            for r in rows:
                r["name"] = r["label"] = f"{label} {r['case_index']}"
            (box / "run" / "records.jsonl").write_text(_lines(rows))
        out.append(Trial("4 mathtext labels", f"label {label!r} (report)",
                         ["report", "run", "--out", "out"], True, setup,
                         allowed=["out", "run"], timeout=300))
    return out


# --- compare / dry-run (class 11) -----------------------------------------------------------------
def compare_trials() -> list[Trial]:
    syn = REPO / "tests" / "data" / "runs" / "synthetic-h100"
    return [Trial("11 compare / dry-run", "compare of two different suites",
                  ["compare", str(RUN_A), str(syn), "--allow-different-gpus"], False)]


# --- concurrent writers (class 1) -----------------------------------------------------------------
LOCK_SUITE = """name = "lock"
backends = ["torch"]
[defaults]
in_channels = 4
out_channels = 4
height = 8
width = 8
[sweep]
batch = [1, 2, 3, 4, 5, 6, 7, 8]
kernel = [1, 3, 5]
[timing]
warmup_s = 0.01
min_samples = 3
min_time_s = 0.1
max_time_s = 0.3
target_rse = 0.5
profile_iters = 0
"""


def _concurrent(t: Trial, box: Path, env: dict[str, str]) -> Result:
    (box / "lock.toml").write_text(LOCK_SUITE)
    base = [sys.executable, "-m", "bench", "run", "lock.toml", "--out", "out", "--no-progress"]
    first = subprocess.run(base + ["--filter", "batch == 1"], cwd=box, env=env,
                           capture_output=True, text=True, timeout=300)
    if first.returncode:
        return Result("other", f"first run failed: {first.stderr[-200:]}")
    (run_dir,) = (box / "out" / "lock").iterdir()
    procs = [subprocess.Popen(base + ["--resume", str(run_dir)], cwd=box, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    errs = []
    for p in procs:
        try:
            errs.append(p.communicate(timeout=300)[1])
        except subprocess.TimeoutExpired:
            p.kill()
            return Result("hang", "a resume did not finish")
    keys = [tuple(json.loads(x)[k] for k in ("case_key", "backend"))
            for x in (run_dir / "records.jsonl").read_text().splitlines()]
    if any("Traceback" in e for e in errs):
        return Result("traceback", "a resume printed a traceback")
    if len(keys) != len(set(keys)):
        return Result("other", f"{len(keys) - len(set(keys))} duplicate records")
    if len(set(keys)) != 24:
        return Result("other", f"{len(set(keys))} of 24 cases stored")
    codes = sorted(p.returncode for p in procs)
    if codes == [0, 1]:
        err = [line for line in errs[[p.returncode for p in procs].index(1)].splitlines()
               if line.strip()]
        if len(err) == 1 and "in use by pid" in err[0]:
            return Result("one-line")  # the second writer was refused, naming the holder
        return Result("other", f"second writer: {' | '.join(err)[:200]}")
    return Result("ok" if codes == [0, 0] else "other", f"exit codes {codes}")


def _ray(t: Trial, box: Path, env: dict[str, str]) -> Result:
    probe = REPO / "tests" / "test_harden_ray.py"
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          str(probe)], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=400)
    if res.returncode == 0 and " passed" in res.stdout:
        return Result("ok", "every listening socket on 127.0.0.1")
    if "skipped" in res.stdout:
        return Result("other", "skipped: " + res.stdout.strip().splitlines()[-1])
    return Result("other", res.stdout.strip().splitlines()[-1][:200] if res.stdout else "?")


def slow_trials() -> list[Trial]:
    return ([Trial("1 concurrent writers", "two --resume of one run at once", [], True,
                   runner=_concurrent) for _ in range(2)]
            + [Trial("10 ray", "local instance, listening sockets", [], True, runner=_ray)])


# --- main -----------------------------------------------------------------------------------------
def build_trials(seed: int, n_suites: int, n_corrupt: int, slow: bool) -> list[Trial]:
    rng = random.Random(seed)
    trials = (suite_trials(rng, n_suites) + flag_trials() + corrupt_trials(rng, n_corrupt, slow)
              + stored_suite_trials(slow) + kill_trials(rng, slow) + disk_trials(slow)
              + compare_trials())
    if slow:
        trials += mathtext_trials() + slow_trials()
    return trials


def quick_trials(seed: int, n_suites: int = 14, n_other: int = 8) -> list[Trial]:
    """A small seeded sample for the pytest test: generated suites plus ``n_other`` of the
    flag, stored-name, full-disk and compare trials (the classes that hold today)."""
    rng = random.Random(seed)
    other = flag_trials() + stored_suite_trials(False) + disk_trials(False) + compare_trials()
    return suite_trials(rng, n_suites) + rng.sample(other, min(n_other, len(other)))


def run_all(trials: list[Trial], jobs: int, root: Path,
            warm_matplotlib: bool = True) -> list[tuple[Trial, Result]]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["MPLCONFIGDIR"] = str(root / "mpl")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.pop("RAY_ADDRESS", None)
    (root / "mpl").mkdir(exist_ok=True)
    if warm_matplotlib:  # the font cache once, before any trial runs under a file size limit
        subprocess.run([sys.executable, "-c", "import matplotlib.pyplot"], env=env, check=True)

    def one(item: tuple[int, Trial]) -> tuple[Trial, Result]:
        i, t = item
        try:
            return t, run_trial(t, root / f"t{i:04d}", env)
        except Exception as e:  # noqa: BLE001 - a harness failure is a result, not a crash
            return t, Result("other", f"harness: {type(e).__name__}: {e}")

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(one, enumerate(trials)))


def table(results: list[tuple[Trial, Result]]) -> str:
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for t, r in results:
        counts[t.cls][r.outcome] += 1
    head = ("| class | what | tried | ok (exit 0, valid) | one-line errors | tracebacks | hangs "
            "| writes outside | other |")
    lines = [head, "|" + "---|" * 9]
    for cls, what in CLASSES.items():
        c = counts.get(cls, Counter())
        tried = sum(c.values())
        lines.append(f"| {cls} | {what} | {tried} | " + " | ".join(
            str(c[o]) if tried else "-" for o in OUTCOMES) + " |")
    total = Counter()
    for c in counts.values():
        total.update(c)
    lines.append("| **all** | | " + str(sum(total.values())) + " | "
                 + " | ".join(str(total[o]) for o in OUTCOMES) + " |")
    return "\n".join(lines)


def details(results: list[tuple[Trial, Result]]) -> str:
    bad: dict[tuple[str, str, str], int] = Counter()
    for t, r in results:
        if r.outcome in ("traceback", "hang", "outside", "other"):
            bad[(t.cls, r.outcome, f"{t.what}: {r.detail}")] += 1
    if not bad:
        return "No trial ended in a traceback, a hang, a write outside its folder or another " \
               "failure."
    return "\n".join(f"- [{cls}] **{outcome}** ×{n}: {text.replace('|', '/')}"
                     for (cls, outcome, text), n in sorted(bad.items()))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--suites", type=int, default=320)
    p.add_argument("--corrupt", type=int, default=60)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--no-slow", action="store_true")
    p.add_argument("--md", type=Path, help="also write the result as Markdown here")
    p.add_argument("--keep", action="store_true", help="keep the trial directories")
    args = p.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    print(f"seed {seed}", flush=True)
    trials = build_trials(seed, args.suites, args.corrupt, not args.no_slow)
    root = Path(tempfile.mkdtemp(prefix="convbench-faults-"))
    t0 = time.time()
    try:
        results = run_all(trials, args.jobs, root)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    text = (f"seed {seed}; {len(trials)} trials ({args.suites} generated suite files, "
            f"{args.corrupt} corrupted result files) in {time.time() - t0:.0f} s, "
            f"{args.jobs} at a time\n\n{table(results)}\n\n{details(results)}\n")
    print(text)
    if args.md:
        import platform

        header = (f"# convbench fault injection (benchmarks/faults.py)\n\n"
                  f"`python benchmarks/faults.py --seed {seed} --suites {args.suites} "
                  f"--corrupt {args.corrupt}{' --no-slow' if args.no_slow else ''}` on "
                  f"{platform.node()} ({os.cpu_count()} CPUs, no GPU), "
                  f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.\n\n")
        args.md.write_text(header + text)
    bad = sum(r.outcome in ("traceback", "hang", "outside", "other") for _, r in results)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
