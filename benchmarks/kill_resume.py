"""Kill ``convbench run`` with SIGKILL at random moments, resume it each time, count the damage.

Each trial starts the sweep (the first trial, or any trial before a run directory with a
``run.json`` exists) or resumes it with ``--resume``, then kills it with SIGKILL either after a
random delay or right after ``records.jsonl`` grows (plus 0-3 ms, to land inside the next
write/fsync). After the last kill one more resume runs to the end. Then:

- every (case, backend) must have exactly one record (duplicates = 0, missing = 0);
- every complete record line seen after any kill must still be there, byte for byte
  (records lost = 0);
- the records file must parse, and a torn last line must be reported with a warning and dropped.

A SIGKILL rarely lands inside one small ``write()``, so a real torn line is rare. To exercise the
torn-line path on every run, ``--tear-every K`` cuts the last record line in half after every
K-th kill, or the first later kill that left a new record (what a power cut mid-write leaves).
Those are counted apart from torn lines that real kills left; the cut record is not counted as
finished.

    python benchmarks/kill_resume.py      # 20 kills; writes benchmarks/results/kill_resume.md
    python benchmarks/kill_resume.py --trials 3 --cases 16 --summary ''   # quick check
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))
TORN_MARK = "dropped a partial last line"

SUITE = """\
name = "killresume"
description = "Tiny CPU convolutions for the kill-and-resume fault test."
backends = ["torch"]

[defaults]
batch = 1
height = 10
width = 10
padding = "same"

[sweep]
in_channels = {channels}
out_channels = [4, 8]
kernel = [1, 3]
precision = ["fp32", "bf16"]

[timing]
warmup_s = 0.005
min_samples = 3
min_time_s = 0.02
max_time_s = 0.08
target_rse = 0.5
profile_iters = 2
"""


@dataclass
class Trial:
    n: int
    how: str  # "delay" or "after-growth"
    resumed: bool
    killed: bool = True  # False when the sweep finished before the kill
    seconds: float = 0.0
    records_after: int = 0
    torn_found: bool = False  # a torn last line left by the kill itself
    torn_injected: bool = False
    warned: bool = False  # this trial's resume reported the torn line it found


@dataclass
class Result:
    cases: int
    trials: list[Trial] = field(default_factory=list)
    final_records: int = 0
    finished_seen: int = 0
    lost: int = 0
    duplicates: int = 0
    missing: int = 0
    layers_missing: int = 0  # ok records whose per-layer profile row is absent
    layers_superseded: int = 0  # rows of a case re-measured after a kill (the last one counts)
    torn_real: int = 0
    torn_injected: int = 0
    torn_warned: int = 0
    torn_unwarned: int = 0
    parse_ok: bool = False
    final_rc: int | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return (self.lost == 0 and self.duplicates == 0 and self.missing == 0 and self.parse_ok
                and self.layers_missing == 0
                and self.torn_unwarned == 0 and self.final_rc == 0)


def suite_text(n_cases: int) -> str:
    """A suite of ``n_cases`` (a multiple of 8) distinct tiny convolutions."""
    per = max(1, n_cases // 8)
    return SUITE.format(channels=[4 * (i + 1) for i in range(per)])


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _run_dir(out: Path) -> Path | None:
    found = sorted(p.parent for p in out.glob("killresume/*/run.json"))
    return found[-1] if found else None


def _lines(path: Path) -> tuple[list[bytes], bytes]:
    """Complete lines and the torn tail (b"" when the file ends with a newline)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return [], b""
    parts = raw.split(b"\n")
    tail = parts.pop()
    return [p for p in parts if p.strip()], tail


def run_trials(trials: int = 20, n_cases: int = 48, seed: int = 0, workdir: Path | None = None,
               tear_every: int = 4, log=print) -> Result:  # noqa: ANN001 - print-like
    rng = random.Random(seed)
    work = Path(workdir or tempfile.mkdtemp(prefix="kill-resume-"))
    work.mkdir(parents=True, exist_ok=True)
    suite_path = work / "killresume.toml"
    suite_path.write_text(suite_text(n_cases))
    out = work / "results"
    base = [sys.executable, "-m", "bench", "run", str(suite_path), "--out", str(out),
            "--no-progress"]
    env = _env()
    res = Result(cases=(n_cases // 8) * 8)
    finished: dict[bytes, int] = {}  # complete record line → trial that first saw it
    t_start = time.perf_counter()
    startup = None  # seconds from launch to the first record, learnt from the first trial
    pending_torn = False  # a torn tail is in the file; the next resume must warn about it
    want_tear = False  # a tear is due and waits for a trial that wrote a new record

    for n in range(1, trials + 1):
        run_dir = _run_dir(out)
        cmd = base + (["--resume", str(run_dir)] if run_dir else [])
        records = run_dir / "records.jsonl" if run_dir else None
        before = len(_lines(records)[0]) if records else 0
        how = rng.choice(["delay", "after-growth"]) if startup else "after-growth"
        trial = Trial(n=n, how=how, resumed=run_dir is not None)
        err_path = work / f"trial{n:02d}.err"
        t0 = time.perf_counter()
        with open(err_path, "wb") as err:
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)
            if how == "delay":
                assert startup is not None
                time.sleep(rng.uniform(0.5 * startup, startup + 1.5))
            else:
                grow = rng.randint(1, 3)  # let a few records land, so more are at stake
                while proc.poll() is None:
                    rd = _run_dir(out)
                    if rd is not None and len(_lines(rd / "records.jsonl")[0]) >= before + grow:
                        if startup is None:
                            startup = time.perf_counter() - t0
                        time.sleep(rng.uniform(0, 0.003))
                        break
                    time.sleep(0.0005)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            else:
                trial.killed = False
            proc.wait()
        trial.seconds = time.perf_counter() - t0
        stderr = err_path.read_text(errors="replace")
        want_tear = want_tear or bool(tear_every and n % tear_every == 0)
        if pending_torn:
            if TORN_MARK in stderr:
                trial.warned, pending_torn = True, False
                res.torn_warned += 1
            elif not _still_torn(out):  # dropped without a word
                res.torn_unwarned += 1
                pending_torn = False
            # else: killed before it opened the run; the next trial must report it
        if not trial.killed and "Traceback" in stderr:
            raise RuntimeError(f"trial {n}: convbench crashed:\n{stderr}")

        rd = _run_dir(out)
        if rd is not None:
            complete, tail = _lines(rd / "records.jsonl")
            if tail and not pending_torn:
                trial.torn_found = True
                res.torn_real += 1
            elif tail:
                pass  # the torn line of an earlier trial, not yet seen by a resume
            elif want_tear and complete and complete[-1] not in finished:
                # only a line this trial wrote: a finished record seen before is never torn
                want_tear = False
                # cut the last record in half, as a write torn by a power cut would leave it
                path = rd / "records.jsonl"
                raw = path.read_bytes()
                last = complete.pop()
                cut = rng.randint(1, len(last) - 1)
                path.write_bytes(raw[: len(raw) - len(last) - 1] + last[:cut])
                trial.torn_injected = True
                res.torn_injected += 1
            for line in complete:
                finished.setdefault(line, n)
            trial.records_after = len(complete)
            pending_torn = pending_torn or trial.torn_found or trial.torn_injected
        res.trials.append(trial)
        log(f"trial {n:2d}: {'resume' if trial.resumed else 'start '} kill={trial.how:12s} "
            f"{'killed' if trial.killed else 'FINISHED'} after {trial.seconds:5.2f} s, "
            f"{trial.records_after:3d} records"
            + (" [torn tail left by the kill]" if trial.torn_found else "")
            + (" [torn tail injected]" if trial.torn_injected else "")
            + (" [resume warned about the torn line]" if trial.warned else ""))

    run_dir = _run_dir(out)
    final = subprocess.run(base + (["--resume", str(run_dir)] if run_dir else []), env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    res.final_rc = final.returncode
    if pending_torn:
        if TORN_MARK in final.stderr:
            res.torn_warned += 1
        else:
            res.torn_unwarned += 1
    if final.returncode != 0:
        log(f"final resume failed (exit {final.returncode}):\n{final.stderr}")
    run_dir = _run_dir(out)
    assert run_dir is not None
    complete, tail = _lines(run_dir / "records.jsonl")
    keys: Counter[tuple[str, str]] = Counter()
    try:
        import warnings

        from bench.store import load_layers, load_records

        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a torn line at the end would be a failure now
            ok = set()
            for r in load_records(run_dir):
                keys[(r.case_key, r.backend)] += 1
                if r.status == "ok":
                    ok.add((r.case_key, r.backend))
            layer_keys = {(r.case_key, r.backend) for r in load_layers(run_dir)}
        res.layers_missing = len(ok - layer_keys)
        raw_rows = len(_lines(run_dir / "layers.jsonl")[0])
        res.layers_superseded = raw_rows - len(layer_keys)
        res.parse_ok = tail == b""
    except Exception as e:  # noqa: BLE001 - reported as a failed check
        log(f"records file does not parse: {e}")
    final_set = set(complete)
    res.final_records = len(complete)
    res.finished_seen = len(finished)
    res.lost = sum(1 for line in finished if line not in final_set)
    res.duplicates = sum(c - 1 for c in keys.values() if c > 1)
    res.missing = res.cases - len(keys)
    res.seconds = time.perf_counter() - t_start
    return res


def _still_torn(out: Path) -> bool:
    rd = _run_dir(out)
    return rd is not None and _lines(rd / "records.jsonl")[1] != b""


def summary_markdown(res: Result, seed: int) -> str:
    killed = sum(t.killed for t in res.trials)
    by_how = Counter(t.how for t in res.trials if t.killed)
    rows = "\n".join(
        f"| {t.n} | {'resume' if t.resumed else 'start'} | {t.how} | "
        f"{'yes' if t.killed else 'finished first'} | {t.seconds:.2f} | {t.records_after} | "
        f"{'left by kill' if t.torn_found else 'injected' if t.torn_injected else ''} |"
        for t in res.trials)
    return f"""# Kill and resume: SIGKILL during `convbench run`, then `--resume`

Script: `python benchmarks/kill_resume.py --trials {len(res.trials)} --cases {res.cases} \
--seed {seed}` (torch backend on the CPU, {res.cases} tiny cases, one process per trial).
Verdict: **{'PASS' if res.ok else 'FAIL'}**

| figure | value |
|---|---|
| trials (process started) | {len(res.trials)} |
| killed with SIGKILL | {killed} ({by_how['delay']} after a random delay, \
{by_how['after-growth']} 0-3 ms after records.jsonl grew by 1-3 lines) |
| cases | {res.cases} |
| records at the end | {res.final_records} |
| finished records seen after kills | {res.finished_seen} |
| **records lost** | **{res.lost}** |
| **duplicates** | **{res.duplicates}** |
| cases missing at the end | {res.missing} |
| ok records without their per-layer profile row (layers.jsonl) | {res.layers_missing} |
| per-layer rows superseded by a re-measurement (load_layers keeps the last) | \
{res.layers_superseded} |
| torn last lines left by real kills | {res.torn_real} |
| torn last lines injected (cut in half after a kill) | {res.torn_injected} |
| torn lines reported by a warning on resume and dropped | {res.torn_warned} |
| torn lines not reported | {res.torn_unwarned} |
| records file parses at the end | {'yes' if res.parse_ok else 'NO'} |
| final resume exit status | {res.final_rc} |
| wall time | {res.seconds:.0f} s |

A SIGKILL lands inside a single small `write()` only rarely, so most torn lines here are
injected: after every few kills the last record line is cut in half, which is what a write torn
by a power cut leaves. The next resume must warn about it, drop it and measure that case again.

| trial | run | kill timing | killed | seconds | complete records | torn tail |
|---|---|---|---|---|---|---|
{rows}
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--cases", type=int, default=48, help="number of cases (multiple of 8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tear-every", type=int, default=4,
                   help="cut the last record line after every K-th kill (0: never)")
    p.add_argument("--workdir", type=Path, help="keep the run here (default: a temp dir)")
    p.add_argument("--summary", default=str(ROOT / "benchmarks/results/kill_resume.md"),
                   help="markdown summary path ('' for none)")
    args = p.parse_args(argv)
    res = run_trials(args.trials, args.cases, args.seed, args.workdir, args.tear_every)
    killed = sum(t.killed for t in res.trials)
    print(f"trials: {len(res.trials)} ({killed} killed)  records lost: {res.lost}  "
          f"duplicates: {res.duplicates}  missing: {res.missing}  layer rows missing: "
          f"{res.layers_missing} (superseded {res.layers_superseded})  torn lines seen: "
          f"{res.torn_real} from kills + {res.torn_injected} injected, "
          f"{res.torn_warned} warned+dropped, {res.torn_unwarned} not warned  "
          f"parses: {res.parse_ok}  -> {'PASS' if res.ok else 'FAIL'}")
    if args.summary:
        path = Path(args.summary)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(summary_markdown(res, args.seed))
        print(f"summary: {path}")
    return 0 if res.ok else 1


if __name__ == "__main__":
    sys.exit(main())
