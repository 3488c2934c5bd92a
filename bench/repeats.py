"""Replicated builds: ``repeats = N`` measures every case in N passes, each in a fresh process.

Why: build-time selection is per process (cuDNN's autotuner, ``cudnn.benchmark=True``) or per
build (TensorRT's tactic timing), so one process's median — however small its within-pass
noise — says nothing about the next process. Measured on the H200: medians of five processes
moved by up to 58 % while each reported ±0.01 %.

How: pass ``p`` starts one worker process (the local-worker machinery of ``bench.scale.local``,
pinned to the plan's GPU), measures every unfinished case in it, and exits; the passes run one
after another on the same GPU, never concurrently. Each pass result is appended (fsynced) to
``passes.jsonl`` as it arrives, so an interrupted run keeps it and ``--resume`` goes on from the
next missing pass. When a case has all its passes, its record goes to ``records.jsonl`` with
every pass and the between-pass aggregate (:func:`aggregate`).

Budget: the timing budget is shared, not multiplied: each pass gets ``warmup_s / N``,
``min_time_s / N``, ``max_time_s / N`` (and ``fixed_time_s / N`` for the ``fixed`` criterion) and
``ceil(profile_iters / N)`` profile iterations.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import statistics
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from bench.errors import BenchError
from bench.plan import RunPlan
from bench.probes import kernel_names
from bench.record import (
    SCHEMA_VERSION,
    Aggregate,
    Flag,
    KernelSet,
    LayerRow,
    Pass,
    Probe,
    Record,
    parse_record,
    upgrade,
)
from bench.stats import t95
from bench.suite import Case, TimingConfig

PASSES_FILE = "passes.jsonl"
#: passes that chose different kernels and whose medians differ by more than this (relative
#: to their median) make the case ``selection-unstable``
UNSTABLE_SPREAD = 0.02


class PassLine(BaseModel):
    """One line of ``passes.jsonl``: the full record of one pass of one case."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    schema_version: int = Field(SCHEMA_VERSION, alias="schema")
    pass_index: int = Field(ge=0)
    record: Record
    layers: LayerRow | None = None


def pass_placements(placements: int, passes: int) -> int:
    """Buffer placements per pass: ``ceil(K / N)``, but at least 3 where K is at least 3 (the
    t interval of two placements is ±9 standard deviations)."""
    per = math.ceil(placements / passes)
    return max(per, 3) if placements >= 3 else per


def pass_timing(timing: TimingConfig) -> TimingConfig:
    """The timing of one of ``timing.repeats`` passes: the budget divided between them."""
    n = timing.repeats
    d = timing.model_dump()
    d.update(repeats=1, warmup_s=timing.warmup_s / n, min_time_s=timing.min_time_s / n,
             max_time_s=timing.max_time_s / n,
             fixed_time_s=getattr(timing, "fixed_time_s", 0.0) / n,
             profile_iters=math.ceil(timing.profile_iters / n) if timing.profile_iters else 0,
             placements=pass_placements(timing.placements, n))
    return TimingConfig.model_validate(d)


def kernels_of(rec: Record, layers: LayerRow | None) -> list[str]:
    """What a pass chose: the kernels its profile saw, and tactics/plans its build named."""
    return kernel_names(rec.build, [la.name for la in layers.layers] if layers else [])


def pass_of(index: int, rec: Record, layers: LayerRow | None,
            probes: list[Probe] | None = None) -> Pass:
    """A measured record as pass ``index`` of its case (with its selection probes)."""
    return Pass(index=index, status=rec.status, error=rec.error, worker=rec.worker,
                build=rec.build, samples_ms=rec.samples_ms, stats=rec.stats, timing=rec.timing,
                kernels=kernels_of(rec, layers), flags=rec.flags, wall_s=rec.wall_s,
                probes=list(rec.probes if probes is None else probes))


def between_pass_interval(medians: list[float], ci: list[tuple[float, float]]
                          ) -> tuple[float, float, str]:
    """Where the median of another pass is expected: the 95 % prediction interval of one more
    observation from the pass medians (mean ± t·s·√(1 + 1/n)), widened to cover every pass's
    own 95 % CI of its median. With one pass: that pass's CI."""
    n = len(medians)
    lo = min(c[0] for c in ci)
    hi = max(c[1] for c in ci)
    if n < 2:
        return lo, hi, "95 % CI of the median within one pass"
    mean = statistics.fmean(medians)
    half = t95(n - 1) * statistics.stdev(medians) * math.sqrt(1 + 1 / n)
    return (max(min(lo, mean - half), min(medians) * 0.5), max(hi, mean + half),
            f"95 % prediction interval for another pass (t, {n} passes)")


def aggregate(passes: list[Pass]) -> Aggregate | None:
    """Between-pass statistics of the ``ok`` passes (None when none is ok). The selection
    probes of those passes count in the kernel sets (timed or not), and the timed ones widen
    the interval to cover their medians; the headline median is the passes' alone."""
    ok = [p for p in passes if p.status == "ok" and p.stats is not None]
    if not ok:
        return None
    medians = [p.stats.median for p in ok if p.stats]
    ci = [(p.stats.median_ci_low, p.stats.median_ci_high) for p in ok if p.stats]
    med = statistics.median(medians)
    lo, hi, kind = between_pass_interval(medians, ci)
    probes = [pr for p in ok for pr in p.probes if pr.status == "ok"]
    probe_ms = [pr.median_ms for pr in probes if pr.median_ms is not None]
    if probe_ms:
        lo, hi = min(lo, min(probe_ms)), max(hi, max(probe_ms))
        kind += f", widened to cover the medians of {len(probe_ms)} selection probes"
    sets: dict[tuple[str, ...], tuple[list[Pass], list[Probe]]] = {}
    for p in ok:
        sets.setdefault(tuple(p.kernels), ([], []))[0].append(p)
    for pr in probes:
        sets.setdefault(tuple(pr.kernels), ([], []))[1].append(pr)
    kernel_sets = []
    for k, (ps, prs) in sets.items():
        pass_ms = [p.stats.median for p in ps if p.stats]
        pms = [pr.median_ms for pr in prs if pr.median_ms is not None]
        if not pass_ms and not pms:
            continue  # untimed draws of a set nothing timed: not written by convbench
        kernel_sets.append(KernelSet(
            kernels=list(k), passes=[p.index for p in ps],
            median_ms=statistics.median(pass_ms or pms), probes=len(prs),
            probe_median_ms=statistics.median(pms) if pms else None))
    return Aggregate(
        passes=len(passes), ok_passes=len(ok), median_ms=med, low_ms=min(medians),
        high_ms=max(medians), interval_low_ms=lo, interval_high_ms=hi, interval_kind=kind,
        spread_pct=(max(medians) - min(medians)) / med * 100, kernel_sets=kernel_sets,
        probes=len(probes), probe_low_ms=min(probe_ms) if probe_ms else None,
        probe_high_ms=max(probe_ms) if probe_ms else None)


def set_spread_pct(agg: Aggregate) -> float:
    """How far apart the kernel sets time: (slowest - fastest set median) / median * 100."""
    ms = [ks.median_ms for ks in agg.kernel_sets]
    return (max(ms) - min(ms)) / agg.median_ms * 100 if ms else 0.0


def selection_flag(agg: Aggregate) -> Flag | None:
    """``selection-unstable`` when the passes and their probes chose more than one kernel set
    and the sets' medians differ by more than ``UNSTABLE_SPREAD``."""
    spread = set_spread_pct(agg)
    if len(agg.kernel_sets) < 2 or spread <= UNSTABLE_SPREAD * 100:
        return None

    def who(ks: KernelSet) -> str:
        parts = ([f"passes {','.join(map(str, ks.passes))}"] if ks.passes else []) + (
            [f"{ks.probes} probe(s)"] if ks.probes else [])
        return " + ".join(parts)

    parts = [f"{who(ks)}: {ks.median_ms:.4g} ms with {len(ks.kernels)} kernel(s) "
             f"[{'; '.join(k[:80] for k in ks.kernels[:3])}]"
             for ks in sorted(agg.kernel_sets, key=lambda k: k.median_ms)]
    draws = f" ({agg.probes} probes)" if agg.probes else ""
    return Flag(name="selection-unstable",
                reason=f"{len(agg.kernel_sets)} kernel sets{draws}, medians {spread:.1f} % "
                       f"apart: " + " | ".join(parts))


def combine(lines: list[PassLine]) -> tuple[Record, LayerRow | None]:
    """The record of a replicated case from its passes (sorted by pass index)."""
    lines = sorted(lines, key=lambda ln: ln.pass_index)
    passes = [pass_of(ln.pass_index, ln.record, ln.layers) for ln in lines]
    agg = aggregate(passes)
    bad = next((ln for ln in lines if ln.record.status != "ok"), None)
    # the representative pass: the one whose median is the median (its samples, stats and
    # profile are the record's within-pass view)
    rep = lines[0]
    if agg is not None:
        ok = [ln for ln in lines if ln.record.status == "ok" and ln.record.stats]
        rep = min(ok, key=lambda ln: abs(ln.record.stats.median - agg.median_ms)  # type: ignore
                  )
    rec = rep.record.model_copy(deep=True)
    rec.passes, rec.aggregate = passes, agg
    rec.probes = []  # they are in each pass
    notes = sorted({ln.record.probes_note for ln in lines if ln.record.probes_note})
    rec.probes_note = "; ".join(notes) or None
    rec.wall_s = sum(p.wall_s or 0.0 for p in passes)
    by_name: dict[str, list[str]] = {}
    for ln in lines:
        for f in ln.record.flags:
            if f.name == "selection-unstable":
                continue  # one pass and its probes: judged again over all passes below
            by_name.setdefault(f.name, []).append(f"pass {ln.pass_index + 1}: {f.reason}")
    rec.flags = [Flag(name=name, reason=f"in {len(rs)} of {len(lines)} passes; " +  # type: ignore
                      "; ".join(rs)[:600]) for name, rs in by_name.items()]
    if agg is not None:
        f = selection_flag(agg)
        if f is not None:
            rec.flags.append(f)
    if bad is not None:
        rec.status = bad.record.status
        rec.error = f"pass {bad.pass_index + 1} of {len(lines)}: {bad.record.error}"
        rec.traceback = bad.record.traceback
    rec.throttled = any(f.name == "throttled" for f in rec.flags)
    layers = rep.layers
    if layers is not None:
        layers = layers.model_copy(update={"pass_index": rep.pass_index})
    return rec, layers


# --- storage of passes ---------------------------------------------------------------------------
def load_passes(run_dir: Any) -> list[PassLine]:
    from pathlib import Path

    from pydantic import ValidationError

    from bench.record import _invalid
    from bench.store import iter_jsonl

    out = []
    for where, obj in iter_jsonl(Path(run_dir) / PASSES_FILE):
        if not isinstance(obj, dict):
            raise BenchError(f"{where}: not a JSON object")
        obj = upgrade(obj, where)
        if isinstance(obj.get("record"), dict):
            obj["record"] = parse_record(obj["record"], where).model_dump(by_alias=True)
        try:
            out.append(PassLine.model_validate(obj))
        except ValidationError as e:
            raise _invalid(where, e) from None
    return out


# --- running the passes ------------------------------------------------------------------------
@dataclass
class _PassWorker:
    """One fresh worker process for one pass (``bench.scale.local``'s worker body)."""

    plan: RunPlan
    slot: Any
    process: Any = None
    conn: Any = None
    info: dict[str, Any] | None = None

    def start(self) -> None:
        from bench.scale.local import _worker_main

        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker_main, name="convbench-pass",
                                   args=(child, self.slot, self.plan), daemon=True)
        self.process.start()
        child.close()
        self.conn = parent
        kind, info = self._recv()
        if info.get("error"):
            raise BenchError(info["error"])
        self.info = info

    def _recv(self) -> Any:
        try:
            return self.conn.recv()
        except (EOFError, ConnectionResetError, OSError):
            self.process.join(timeout=5)
            raise _Died(self.process.exitcode) from None

    def run(self, task_id: int, case: Case, backend: str) -> tuple[Any, ...]:
        try:
            self.conn.send((task_id, case, backend))
        except (BrokenPipeError, ConnectionResetError, OSError):
            raise _Died(self.process.exitcode) from None
        kind, (tid, reply) = self._recv()
        return reply  # type: ignore[no-any-return]

    def stop(self) -> None:
        if self.process is None:
            return
        try:
            self.conn.send(None)
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()


class _Died(Exception):
    def __init__(self, code: int | None) -> None:
        super().__init__(f"worker exit code {code}")
        self.code = code


def _slot(plan: RunPlan) -> Any:
    """The plan's GPU (pinned by CUDA_VISIBLE_DEVICES) or, without NVML, one CPU worker."""
    from bench.scale.local import cpu_slots, gpu_slots

    try:
        return gpu_slots(str(plan.device_index))[0]
    except BenchError:
        return cpu_slots(1)[0]


def run_repeated(plan: RunPlan, on_record: Callable[[Record], None] | None = None) -> Any:
    """Run ``plan`` with ``plan.repeats`` passes (see the module doc); the summary of a plain
    run, whose records carry ``passes`` and ``aggregate``."""
    from bench.runner import RunSummary, describe_run, failure_record, progress_bar
    from bench.store import RunStore

    n = plan.repeats
    worker_plan = replace(plan.for_worker(), timing=pass_timing(plan.timing))
    slot = _slot(plan)
    summary = RunSummary(run_dir=None, cases=list(plan.cases))
    first = _PassWorker(worker_plan, slot)
    try:
        first.start()  # also tells which backends can run here (before the store exists)
    except BaseException:
        first.stop()
        raise
    info = first.info or {}
    backends = [b for b in plan.backend_names if b in (info.get("backends") or {})]
    summary.unavailable = dict(info.get("unavailable_backends") or {})
    try:
        if plan.resume:
            store = RunStore.open(plan.resume)
        else:
            store = RunStore.create(plan.out, plan.suite.name, describe_run(
                plan, info.get("backends") or {}, summary.unavailable, None, gpu=info.get("gpu"),
                gpu_clocks_at_start=info.get("gpu_clocks_at_start"),
                repeats={"passes": n, "pass_timing": pass_timing(plan.timing).model_dump()}))
        summary.run_dir = store.dir
        with store.lock():
            done = store.done()
            have: dict[tuple[str, str], dict[int, PassLine]] = {}
            for ln in load_passes(store.dir):
                have.setdefault((ln.record.case_key, ln.record.backend), {})[ln.pass_index] = ln
            todo = [(c, b) for c in plan.cases for b in backends if (c.key, b) not in done]
            summary.skipped = len(plan.cases) * len(backends) - len(todo)
            with progress_bar(plan.progress) as progress:
                bar = progress.add_task("", total=len(todo) * n)
                worker: _PassWorker | None = first
                for p in range(n):
                    missing = [(c, b) for c, b in todo if p not in have.get((c.key, b), {})]
                    progress.advance(bar, (len(todo) - len(missing)))
                    if worker is None and missing:
                        worker = _PassWorker(worker_plan, slot)
                        worker.start()
                    for i, (case, backend) in enumerate(missing):
                        progress.update(bar, description=f"pass {p + 1}/{n} {backend} "
                                                         f"{case.name}"[:60])
                        assert worker is not None
                        try:
                            reply = worker.run(i, case, backend)
                        except _Died as e:
                            worker.stop()
                            rec, layers = failure_record(
                                case, backend, f"worker crashed in pass {p + 1} ({e})"), None
                            worker = _PassWorker(worker_plan, slot)
                            worker.start()
                        else:
                            if reply[0] == "fatal":
                                raise BenchError(reply[1])
                            _, rec, layers = reply
                        rec.worker = {**(rec.worker or {}), "executor": "repeats", "pass": p}
                        line = PassLine(pass_index=p, record=rec, layers=layers)
                        store.append_line(PASSES_FILE, line.model_dump(mode="json",
                                                                       by_alias=True))
                        have.setdefault((case.key, backend), {})[p] = line
                        progress.advance(bar)
                    if worker is not None:
                        worker.stop()
                        worker = None
                for case, backend in todo:
                    lines = list(have.get((case.key, backend), {}).values())
                    rec, layers = combine(lines)
                    store.append_result(rec, layers)
                    summary.records.append(rec)
                    if on_record:
                        on_record(rec)
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        first.stop()
    return summary
