"""Run a plan: every case × backend is built, checked, measured, profiled and stored.

``measure_case`` is four steps — build, check, time, profile — each returning a typed part of
the :class:`bench.record.Record`. A case that fails becomes a record with a status and the
sweep goes on; Ctrl-C stops after closing the current engine, with every finished record kept
(``--resume`` continues).
"""

from __future__ import annotations

import contextlib
import math
import shlex
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.backends.base import Backend, BuildContext, ConvData, Engine
from bench.deadline import CaseDeadline, CaseTimeout, InterruptGuard, write_lock
from bench.env import host_env
from bench.errors import BenchError, BuildFailed, CaseStuck, UnsupportedCase
from bench.gpu.cuda import GpuStuck
from bench.plan import RunPlan, select_cases
from bench.precision import TOLERANCE
from bench.record import (
    BuildFacts,
    Check,
    Clocks,
    Derived,
    Flag,
    LayerRow,
    Record,
    Stats,
    TimingFacts,
)
from bench.reference import check_batch, make_data, reference, rel_l2_error
from bench.store import RunStore
from bench.suite import Case, Suite, TimingConfig
from bench.text import safe
from bench.timing import HostSource, Samples, SampleSource, TimingSettings

__all__ = ["RunSummary", "run_suite", "select_cases", "make_data", "measure_case"]


@dataclass
class RunSummary:
    run_dir: Path | None
    cases: list[Case]
    records: list[Record] = field(default_factory=list)
    skipped: int = 0  # already done (resume)
    interrupted: bool = False
    unavailable: dict[str, str] = field(default_factory=dict)


# --- GPU session ------------------------------------------------------------------------------
class GpuSession:
    """Device, stream and L2 flusher shared by every GPU case of a run."""

    def __init__(self, index: int, cold: bool, prefix: str = "--") -> None:
        from bench.gpu import cuda

        reason = cuda.unavailable_reason()
        if reason:
            raise BenchError(f"CUDA: {reason}")
        self.index = index
        try:
            self.device = cuda.Device(index)
        except cuda.CudaError as e:
            if e.error == "CUDA_ERROR_INVALID_DEVICE":
                raise BenchError(f"{prefix}device {index}: no such CUDA device "
                                 f"({str(e).split('(')[-1].rstrip(')')})") from None
            raise
        self.info = self.device.info
        from bench.contention import gpu_utilization

        busy = gpu_utilization(self.info.uuid)  # before this process has run anything
        self.busy_at_start = busy if busy is not None and busy > 10 else None
        self.stream = self.device.stream()
        self.flusher = cuda.L2Flusher(self.device) if cold else None

    def clocks(self) -> dict[str, Any] | None:
        from bench.gpu import nvml

        return nvml.clocks(self.info.uuid)

    def close(self) -> None:
        if self.flusher is not None:
            self.flusher.close()
        self.stream.close()


@contextlib.contextmanager
def nvtx_range(message: str, payload: int | None = None) -> Iterator[None]:
    from bench.gpu import nvtx

    with nvtx.annotate(message, payload=payload):
        yield


@contextlib.contextmanager
def _profiler_range(enabled: bool) -> Iterator[None]:
    if not enabled:
        yield
        return
    from bench.gpu import cuda

    cuda.profiler_start()
    try:
        yield
    finally:
        cuda.profiler_stop()


# --- one case: four steps ----------------------------------------------------------------------
def _source(engine: Engine, mode: str, l2: str, gpu: GpuSession | None,
            settings: TimingSettings, iters: int | None = None) -> SampleSource:
    if engine.device == "cpu":
        return HostSource(lambda: engine.enqueue(None), settings.min_sample_s)
    assert gpu is not None
    if mode == "host":
        stream = gpu.stream

        def run() -> None:
            engine.enqueue(stream)
            stream.sync()

        return HostSource(run, settings.min_sample_s)
    from bench.gpu.timers import make_source

    return make_source(engine, gpu.stream, mode, l2, gpu.flusher, iters)


def build_step(case: Case, backend: Backend, ctx: BuildContext) -> tuple[Engine, ConvData]:
    """Random data for the case and an engine built from it. A case whose float64 reference
    would exceed its memory budget is refused first (``UnsupportedCase``), before anything is
    allocated."""
    check_batch(case.spec)
    data = make_data(case.spec)
    with nvtx_range("build"):
        engine = backend.build(case.spec, data, ctx)
    return engine, data


def check_step(engine: Engine, data: ConvData, stream: Any) -> Check:
    """One inference compared with the float64 reference (on a prefix of the batch)."""
    spec = engine.spec
    with nvtx_range("check"):
        engine.set_input(data.x)
        engine.enqueue(stream)
        out = engine.output(stream)
        n = check_batch(spec)
        err = rel_l2_error(out, reference(spec, data, n))
    tol = TOLERANCE[spec.precision]
    return Check(rel_err=None if math.isinf(err) else err, tol=tol, passed=bool(err <= tol),
                 images=n, batch=spec.batch)


@dataclass
class Timed:
    samples: Samples
    timing: TimingFacts
    stats: Stats
    clocks: Clocks
    flags: list[Flag]


def resolve_mode(timing: TimingConfig, engine: Engine) -> str:
    """The timer a case uses: ``auto`` is graph on a GPU, host on a CPU; events and graphs
    need a GPU."""
    if timing.mode == "auto":
        return "graph" if engine.device == "cuda" else "host"
    return "host" if engine.device == "cpu" else timing.mode


def time_step(engine: Engine, timing: TimingConfig, gpu: GpuSession | None,
              profiler_range: bool = False, deadline: CaseDeadline | None = None) -> Timed:
    """Warm-up and samples until the plan's stopping criterion holds, with clocks around."""
    from bench.contention import after_case, before_case

    if deadline is not None:
        deadline.enter("warm-up")  # the source's own first calls are warm-up too

    on_gpu = engine.device == "cuda" and gpu is not None
    mode = resolve_mode(timing, engine)
    settings = timing.settings()
    flags = before_case(gpu if on_gpu else None)
    clocks_before = gpu.clocks() if on_gpu and gpu else None
    from bench.placements import measure_placements, spread_pct, widen

    with nvtx_range("measure"), _profiler_range(profiler_range and on_gpu):
        placed = measure_placements(
            engine, lambda iters: _source(engine, mode, timing.l2, gpu if on_gpu else None,
                                          settings, iters), settings,
            timing.placements,
            deadline)
    samples: Samples = placed.samples
    samples.l2 = timing.l2 if on_gpu else "n/a"
    clocks_after = gpu.clocks() if on_gpu and gpu else None
    facts = {k: v for k, v in samples.to_json().items() if k != "ms"}
    facts["source"] = placed.source_info
    facts.update(placements=[p.model_dump() for p in placed.placements],
                 placements_note=placed.note,
                 placement_spread_pct=spread_pct([p.median_ms for p in placed.placements]))
    clocks = Clocks(before=clocks_before, after=clocks_after)
    flags += after_case(clocks, samples)
    return Timed(samples=samples, timing=TimingFacts.model_validate(facts),
                 stats=widen(Stats.of(samples.ms), placed.placements), clocks=clocks,
                 flags=flags)


def profile_step(engine: Engine, case: Case, backend: Backend, stream: Any,
                 iters: int) -> tuple[LayerRow | None, str | None]:
    """The per-layer profile, in a run of its own; a failure is kept as text, never allowed
    to throw away the measurement."""
    if not iters:
        return None, None
    try:
        with nvtx_range("profile"):
            layers = engine.layer_profile(stream, iters)
    except GpuStuck:
        raise  # not a profile failure: the case stops (measure_case)
    except Exception as e:  # noqa: BLE001
        return None, f"{type(e).__name__}: {_one_line(e)}"
    if not layers:
        return None, None
    return LayerRow(case_key=case.key, backend=backend.name,
                    layers=[lt.to_json() for lt in layers]), None


def probe_step(case: Case, backend: Backend, data: ConvData, ctx: BuildContext,
               timing: TimingConfig, gpu: GpuSession | None, deadline: CaseDeadline,
               layers_row: LayerRow | None, rec: Record) -> tuple[list[Any], str | None]:
    """``[timing] probes`` more selection draws of the case (``bench.probes``). The record is
    flagged ``selection-unstable`` here when they chose other kernels than the pass and time
    differently; with ``repeats``, ``bench.repeats.combine`` judges all passes and their
    probes together instead."""
    from bench.probes import draw_probes
    from bench.repeats import aggregate, kernels_of, pass_of, selection_flag

    with nvtx_range("probes"):
        probes, note = draw_probes(timing.probes, case, backend, data, ctx, timing, gpu,
                                   deadline, timed=[kernels_of(rec, layers_row)])
    if probes:
        agg = aggregate([pass_of(0, rec, layers_row, probes)])
        flag = selection_flag(agg) if agg is not None else None
        if flag is not None:
            rec.flags.append(flag)
    return probes, note


#: a profiled inference costs about this many timed ones (the profiler records every op)
PROFILE_COST = 4.0


def profile_budget(iters: int, median_ms: float, deadline: CaseDeadline) -> tuple[int, str]:
    """(iterations of the profile that fit in the case's time left, why it was cut or "").
    An iteration is estimated at ``PROFILE_COST`` times the measured per-inference median
    (torch.profiler on a CPU cost 5x in a test); a profile costing more than that may
    overrun the limit by the difference."""
    if not iters or deadline.limit_s is None:
        return iters, ""
    fit = int(deadline.remaining_s() * 1e3 / max(PROFILE_COST * median_ms, 1e-6))
    if fit >= iters:
        return iters, ""
    why = (f"case_timeout_s = {deadline.limit_s:g} s: {deadline.elapsed_s:.1f} s used, time for "
           f"{max(fit, 0)} of {iters} profile iterations")
    return max(fit, 0), (f"profile cut to {fit} iterations ({why})" if fit > 0
                         else f"profile skipped ({why})")


def new_record(case: Case, backend_name: str, device: str | None,
               gpu: dict[str, Any] | None, status: str = "error",
               error: str | None = None) -> Record:
    """A record with what is known before anything runs (status ``error`` until it ends)."""
    spec = case.spec
    return Record(case_index=case.index, case_key=case.key, label=case.label, name=case.name,
                  backend=backend_name, spec=spec,
                  derived=Derived(flops=spec.flops, bias_flops=spec.bias_flops,
                                  activation_flops=spec.activation_flops,
                                  bytes_min=spec.bytes_min,
                                  intensity=spec.intensity, output_shape=list(spec.output_shape)),
                  device=device, gpu=gpu,
                  started=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  status=status, error=error)  # type: ignore[arg-type]


def failure_record(case: Case, backend: str, message: str) -> Record:
    """A record for a case that produced none itself (its worker died while running it)."""
    return new_record(case, backend, None, None, status="error", error=message)


def measure_case(case: Case, backend: Backend, timing: TimingConfig, gpu: GpuSession | None,
                 cache_dir: Path | None, profiler_range: bool = False,
                 ) -> tuple[Record, LayerRow | None]:
    """Build, check, time and profile one case; returns (record, layers row or None).

    ``profiler_range``: wrap the timed region in cudaProfilerStart/Stop, so that
    ``nsys --capture-range=cudaProfilerApi`` and ``ncu --profile-from-start off`` see only it.

    The case runs under ``timing.case_limit_s()`` (``[timing] case_timeout_s``, see
    ``bench.deadline``): past it in the build, check, warm-up or timing, the record gets
    status ``timeout`` with the step and the elapsed time, and keeps what was measured
    before (build facts, check, the samples taken); a profile gets the time left.
    """
    rec = new_record(case, backend.name, backend.device, gpu.info.to_json() if gpu else None)
    layers_row = None
    t0 = time.perf_counter()
    stream = gpu.stream if gpu and backend.device == "cuda" else None
    engine: Engine | None = None
    deadline = CaseDeadline(timing.case_limit_s())
    try:
        ctx = BuildContext(device_index=gpu.index if gpu else 0, cache_dir=cache_dir)
        engine, data = build_step(case, backend, ctx)
        rec.build = BuildFacts.model_validate(engine.info.to_json())
        deadline.enter("check")
        rec.check = check_step(engine, data, stream)
        timed = time_step(engine, timing, gpu, profiler_range, deadline)
        rec.samples_ms, rec.timing, rec.stats = timed.samples.ms, timed.timing, timed.stats
        rec.clocks, rec.flags = timed.clocks, timed.flags
        rec.throttled = any(f.name == "throttled" for f in timed.flags)
        deadline.step = "profile"  # the timing is complete: past the limit, no profile
        iters, cut = profile_budget(timing.profile_iters, timed.stats.median, deadline)
        layers_row, rec.profile_error = profile_step(engine, case, backend, stream, iters)
        if cut:
            rec.profile_error = "; ".join(filter(None, [cut, rec.profile_error]))
        from bench.contention import profile_flag

        flag = profile_flag(rec, layers_row)
        if flag is not None:
            rec.flags.append(flag)
        passed = rec.check.passed
        rec.status = "ok" if passed else "check_failed"
        if passed and timing.probes:
            engine.close()  # its memory is not needed by the probes' builds
            engine = None
            deadline.step = "probes"
            rec.probes, rec.probes_note = probe_step(case, backend, data, ctx, timing, gpu,
                                                     deadline, layers_row, rec)
        if not passed:
            err = rec.check.rel_err
            rec.error = (f"relative L2 error {'inf' if err is None else f'{err:.3g}'} above the "
                         f"{case.spec.precision} tolerance {rec.check.tol}")
    except UnsupportedCase as e:
        rec.status, rec.error = "unsupported", _one_line(e)
        info = getattr(e, "build_info", None)
        if info is not None:
            rec.build = BuildFacts.model_validate(info.to_json())
    except BuildFailed as e:
        rec.status, rec.error = "build_failed", _one_line(e)
    except GpuStuck as e:
        # nothing of this case is closed or freed (the stuck work may still use it), and the
        # caller stops: later work on this GPU context cannot be trusted
        engine = None
        rec.status = "error"
        rec.error = (f"GPU work did not finish: {_one_line(e)}; the sweep stops here (the GPU "
                     "may still be busy with it)")
        rec.wall_s = time.perf_counter() - t0
        raise CaseStuck(rec) from None
    except CaseTimeout as e:
        rec.status = "timeout"
        if e.samples and not rec.samples_ms:  # the samples taken before the limit
            rec.samples_ms = list(e.samples)
            rec.stats = Stats.of(rec.samples_ms) if len(rec.samples_ms) >= 2 else None
        # the placements timed in full, and the one the limit cut short if it had samples
        n = len(e.placements) + (len(rec.samples_ms) > sum(p.samples for p in e.placements))
        since = f", from {n} buffer placements" if n > 1 else ""
        kept = (f"; its {len(rec.samples_ms)} sample(s){since} are kept" if rec.samples_ms
                else "")
        rec.error = f"{e}{kept}"
    except (KeyboardInterrupt, BenchError):
        raise
    except Exception as e:  # noqa: BLE001 - any failure of one case is that case's record
        rec.status = "error"
        rec.error = f"{type(e).__name__}: {_one_line(e)}"
        rec.traceback = traceback.format_exc(limit=8)
    finally:
        if engine is not None:
            engine.close()
        rec.wall_s = time.perf_counter() - t0
    return rec, layers_row


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text[:2000] or type(e).__name__


def describe_run(plan: RunPlan, backends: dict[str, Any], unavailable: dict[str, str],
                 session: GpuSession | None, suite: Suite | None = None,
                 **extra: Any) -> dict[str, Any]:
    """The ``run.json`` of a run: what was run, how, and on what (``extra`` keys override, e.g.
    the GPU as a worker process reported it)."""
    gpu = session
    suite = plan.suite if suite is None else suite
    return {
        "suite": suite.name, "suite_path": str(suite.path) if suite.path else None,
        "suite_text": suite.text, "command": shlex.join(plan.argv),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "backends": backends, "unavailable_backends": unavailable,
        "timing": plan.timing.model_dump(), "filter": plan.filter,
        "shard": list(plan.shard) if plan.shard else None, "device_index": plan.device_index,
        "host": host_env(), "gpu": gpu.info.to_json() if gpu else None,
        "gpu_clocks_at_start": gpu.clocks() if gpu else None,
        # so a report can tell an interrupted run from a finished one
        "planned": len(plan.cases) * len(backends), **extra,
    }


def backend_facts(backends: list[Backend]) -> dict[str, Any]:
    return {b.name: {"device": b.device, "versions": b.versions()} for b in backends}


# --- the sweep --------------------------------------------------------------------------------
def run_suite(plan: RunPlan, on_record: Callable[[Record], None] | None = None,
              interrupt_line: Callable[[RunSummary], str] | None = None) -> RunSummary:
    """Run ``plan`` in this process (``repeats > 1``: in fresh processes, one per pass).

    ``interrupt_line``: Ctrl-C ends the sweep within about a second even inside a long native
    call (``bench.deadline.InterruptGuard``), printing this line; without it, Ctrl-C acts when
    the running call returns (the caller catches nothing: ``summary.interrupted`` is set)."""
    if plan.repeats > 1:
        from bench.repeats import run_repeated

        return run_repeated(plan, on_record=on_record)
    backends, unavailable = plan.resolve_backends()
    summary = RunSummary(run_dir=None, cases=list(plan.cases), unavailable=unavailable)
    gpu = plan.gpu_session() if any(b.device == "cuda" for b in backends) else None
    try:
        if plan.resume:
            store = RunStore.open(plan.resume)
        else:
            info = describe_run(plan, backend_facts(backends), unavailable, gpu)
            store = RunStore.create(plan.out, plan.suite.name, info)
        summary.run_dir = store.dir
        guard: Any = (InterruptGuard(lambda: interrupt_line(summary)) if interrupt_line
                      else contextlib.nullcontext())
        with store.lock(), guard, nvtx_range(f"suite {plan.suite.name}"):
            done = store.done()  # under the lock: a concurrent --resume cannot duplicate
            todo = [(c, b) for c in plan.cases for b in backends if (c.key, b.name) not in done]
            summary.skipped = len(plan.cases) * len(backends) - len(todo)
            with progress_bar(plan.progress) as progress:
                task = progress.add_task("", total=len(todo))
                for case, backend in todo:
                    progress.update(task, description=safe(f"{backend.name} {case.name}"))
                    with nvtx_range(f"case {case.index} {backend.name} {case.name}",
                                    payload=case.index):
                        try:
                            rec, layers = measure_case(case, backend, plan.timing, gpu,
                                                       plan.cache_dir)
                        except CaseStuck as e:
                            with write_lock:
                                store.append_result(e.record, None)
                                summary.records.append(e.record)
                            gpu = None  # its stream may hold the stuck work: not closed
                            raise stuck_stop(e.record, backend.name, case, plan,
                                             store.dir) from None
                    with write_lock:  # a forced exit on Ctrl-C waits for a record being written
                        store.append_result(rec, layers)
                        summary.records.append(rec)
                    if on_record:
                        on_record(rec)
                    progress.advance(task)
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        if gpu is not None:
            gpu.close()
    return summary


def stuck_stop(rec: Record, backend: str, case: Case, plan: RunPlan,
               run_dir: Path | str) -> CaseStuck:
    """The error that ends a sweep after a stuck case's record was stored: one line naming the
    case and the ``--resume`` command that goes on with the next one."""
    return CaseStuck(rec, f"{backend} {case.name}: {rec.error}; every record so far is kept: "
                          f"`{resume_command(plan, run_dir)}` goes on with the next case")


def resume_command(plan: RunPlan, run_dir: Path | str) -> str:
    """The command that continues ``run_dir``: the plan's own command line (suite or
    ``--case``, backends, ``--set``, timing flags) with ``--resume run_dir`` in place of any
    ``--resume`` it had."""
    args = list(plan.argv[1:])
    if args and args[0] == "run":
        args = args[1:]
    kept: list[str] = []
    skip = False
    for a in args:
        if skip:
            skip = False
            continue
        if a == "--resume":
            skip = True
            continue
        if a.startswith("--resume="):
            continue
        kept.append(a)
    return shlex.join(["convbench", "run", *kept, "--resume", str(run_dir)])


def progress_bar(enabled: bool) -> Any:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn("[bold]{task.description}", justify="left"), BarColumn(),
                    MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("ETA"),
                    TimeRemainingColumn(), console=Console(stderr=True), transient=True,
                    disable=not enabled)
