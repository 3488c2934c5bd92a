"""Run a suite: every case × backend is built, checked, measured, profiled and stored.

A case that fails becomes a record with a status and the sweep goes on; Ctrl-C stops after
closing the current engine, with every finished record kept (``--resume`` continues).
"""

from __future__ import annotations

import contextlib
import math
import shlex
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.markup import escape

from bench.backends.base import Backend, BuildContext, Engine
from bench.backends.registry import get_backend
from bench.env import host_env
from bench.errors import BenchError, BuildFailed, UnsupportedCase
from bench.filter import parse_filter
from bench.precision import TOLERANCE
from bench.reference import check_batch, make_data, reference, rel_l2_error
from bench.stats import summarize
from bench.store import RunStore
from bench.suite import Case, Suite, TimingConfig
from bench.timing import HostSource, Samples, SampleSource, TimingSettings, measure

__all__ = ["RunOptions", "RunSummary", "run_suite", "select_cases", "make_data"]


@dataclass
class RunOptions:
    out: Path = Path("results")
    backends: list[str] | None = None
    resume: Path | None = None
    filter: str | None = None
    shard: tuple[int, int] | None = None  # (index, count): cases with index % count == index
    dry_run: bool = False
    timing: dict[str, Any] = field(default_factory=dict)  # overrides of the suite's [timing]
    cache_dir: Path | None = None
    device_index: int = 0
    progress: bool = True
    argv: list[str] = field(default_factory=lambda: list(sys.argv))


@dataclass
class RunSummary:
    run_dir: Path | None
    cases: list[Case]
    records: list[dict[str, Any]] = field(default_factory=list)
    skipped: int = 0  # already done (resume)
    interrupted: bool = False
    unavailable: dict[str, str] = field(default_factory=dict)


def select_cases(suite: Suite, filter_text: str | None = None,
                 shard: tuple[int, int] | None = None) -> list[Case]:
    cases = list(suite.cases)
    if filter_text:
        pred = parse_filter(filter_text)
        cases = [c for c in cases if pred(c)]
    if shard:
        i, n = shard
        if not (n >= 1 and 0 <= i < n):
            raise BenchError(f"--shard {i}/{n}: needs 0 <= I < N")
        cases = [c for c in cases if c.index % n == i]
    return cases


def check_backend_names(names: list[str] | None) -> None:
    """``--backend`` values: known names, each once (refused before ``--dry-run`` lists cases)."""
    from bench.backends.registry import BACKENDS  # a dict of names; imports no backend

    for i, name in enumerate(names or []):
        if name not in BACKENDS:
            raise BenchError(f"--backend: unknown backend {name!r} (known: {', '.join(BACKENDS)})")
        if name in (names or [])[:i]:
            raise BenchError(f"--backend {name}: given twice")


# --- GPU session ------------------------------------------------------------------------------
class GpuSession:
    """Device, stream and L2 flusher shared by every GPU case of a run."""

    def __init__(self, index: int, cold: bool) -> None:
        from bench.gpu import cuda

        reason = cuda.unavailable_reason()
        if reason:
            raise BenchError(f"CUDA: {reason}")
        self.index = index
        self.device = cuda.Device(index)
        self.info = self.device.info
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


# --- one case ---------------------------------------------------------------------------------
def _source(engine: Engine, mode: str, l2: str, gpu: GpuSession | None,
            settings: TimingSettings) -> SampleSource:
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

    return make_source(engine, gpu.stream, mode, l2, gpu.flusher)


def measure_case(case: Case, backend: Backend, timing: TimingConfig, gpu: GpuSession | None,
                 cache_dir: Path | None, profiler_range: bool = False,
                 ) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Build, check, time and profile one case; returns (record, layers row or None).

    ``profiler_range``: wrap the timed region in cudaProfilerStart/Stop, so that
    ``nsys --capture-range=cudaProfilerApi`` and ``ncu --profile-from-start off`` see only it.
    """
    spec = case.spec
    rec: dict[str, Any] = {
        "case_index": case.index, "case_key": case.key, "label": case.label, "name": case.name,
        "backend": backend.name, "spec": spec.model_dump(mode="json"),
        "derived": {"flops": spec.flops, "bytes_min": spec.bytes_min,
                    "intensity": spec.intensity, "output_shape": list(spec.output_shape)},
        "device": backend.device, "gpu": gpu.info.to_json() if gpu else None,
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "status": "error", "error": None,
    }
    layers_row = None
    t0 = time.perf_counter()
    stream = gpu.stream if gpu and backend.device == "cuda" else None
    engine: Engine | None = None
    try:
        check_batch(spec)  # a reference over its memory budget: unsupported, before allocating
        data = make_data(spec)
        with nvtx_range("build"):
            engine = backend.build(spec, data, BuildContext(gpu.index if gpu else 0, cache_dir))
        rec["build"] = engine.info.to_json()
        with nvtx_range("check"):
            engine.set_input(data.x)
            engine.enqueue(stream)
            out = engine.output(stream)
            n = check_batch(spec)
            err = rel_l2_error(out, reference(spec, data, n))
        tol = TOLERANCE[spec.precision]
        passed = bool(err <= tol)
        rec["check"] = {"rel_err": None if math.isinf(err) else err, "tol": tol,
                        "passed": passed, "images": n}
        mode = timing.mode
        if mode == "auto":
            mode = "graph" if engine.device == "cuda" else "host"
        elif engine.device == "cpu":
            mode = "host"  # events and graphs need a GPU
        settings = timing.settings()
        clocks_before = gpu.clocks() if gpu and engine.device == "cuda" else None
        source = _source(engine, mode, timing.l2, gpu if engine.device == "cuda" else None,
                         settings)
        try:
            with nvtx_range("measure"), _profiler_range(profiler_range and stream is not None):
                samples: Samples = measure(source, settings)
        finally:
            close = getattr(source, "close", None)
            if close:
                close()
        samples.l2 = timing.l2 if engine.device == "cuda" else "n/a"
        clocks_after = gpu.clocks() if gpu and engine.device == "cuda" else None
        rec["samples_ms"] = samples.ms
        rec["timing"] = {k: v for k, v in samples.to_json().items() if k != "ms"}
        rec["timing"]["source"] = dict(getattr(source, "info", {}) or {})
        rec["stats"] = summarize(samples.ms).to_json()
        rec["clocks"] = {"before": clocks_before, "after": clocks_after}
        rec["throttled"] = any(bool(c and c.get("throttled")) for c in
                               (clocks_before, clocks_after))
        if timing.profile_iters:
            try:  # a failed profile must not throw away a finished measurement
                with nvtx_range("profile"):
                    layers = engine.layer_profile(stream, timing.profile_iters)
            except Exception as e:  # noqa: BLE001
                layers = []
                rec["profile_error"] = f"{type(e).__name__}: {_one_line(e)}"
            if layers:
                layers_row = {"case_key": case.key, "backend": backend.name,
                              "layers": [lt.to_json() for lt in layers]}
        rec["status"] = "ok" if passed else "check_failed"
        if not passed:
            rec["error"] = f"relative L2 error {err:.3g} above the {spec.precision} tolerance {tol}"
    except UnsupportedCase as e:
        rec["status"], rec["error"] = "unsupported", _one_line(e)
        info = getattr(e, "build_info", None)
        if info is not None:
            rec["build"] = info.to_json()
    except BuildFailed as e:
        rec["status"], rec["error"] = "build_failed", _one_line(e)
    except (KeyboardInterrupt, BenchError):
        raise
    except Exception as e:  # noqa: BLE001 - any failure of one case is that case's record
        rec["status"] = "error"
        rec["error"] = f"{type(e).__name__}: {_one_line(e)}"
        rec["traceback"] = traceback.format_exc(limit=8)
    finally:
        if engine is not None:
            engine.close()
        rec["wall_s"] = time.perf_counter() - t0
    return rec, layers_row


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text[:2000] or type(e).__name__


def describe_run(suite_name: str, suite: Suite | None, backends: dict[str, Any],
                 unavailable: dict[str, str], timing: TimingConfig, command: str,
                 gpu: GpuSession | None, filter_text: str | None = None,
                 shard: tuple[int, int] | None = None) -> dict[str, Any]:
    """The ``run.json`` of a run: what was run, how, and on what."""
    return {
        "suite": suite_name, "suite_path": str(suite.path) if suite and suite.path else None,
        "suite_text": suite.text if suite else "", "command": command,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "backends": backends, "unavailable_backends": unavailable,
        "timing": timing.model_dump(), "filter": filter_text,
        "shard": list(shard) if shard else None,
        "host": host_env(), "gpu": gpu.info.to_json() if gpu else None,
        "gpu_clocks_at_start": gpu.clocks() if gpu else None,
    }


# --- the sweep --------------------------------------------------------------------------------
def resolve_backends(suite: Suite, names: list[str] | None) -> tuple[list[Backend],
                                                                      dict[str, str]]:
    chosen = names or list(suite.backends)
    backends, unavailable = [], {}
    for name in chosen:
        b = get_backend(name)
        ok, reason = b.available()
        if ok:
            backends.append(b)
        else:
            unavailable[name] = reason
    if not backends:
        detail = "; ".join(f"{n}: {r}" for n, r in unavailable.items())
        raise BenchError(f"no backend of {chosen} can run here ({detail})")
    return backends, unavailable


def run_suite(suite: Suite, opts: RunOptions,
              on_record: Callable[[dict[str, Any]], None] | None = None) -> RunSummary:
    check_backend_names(opts.backends)
    cases = select_cases(suite, opts.filter, opts.shard)
    if not cases:
        raise BenchError(f"{suite.path or suite.name}: no case left after --filter/--shard")
    timing = suite.timing.model_copy(update=opts.timing) if opts.timing else suite.timing
    if opts.timing:
        try:
            timing = TimingConfig.model_validate(timing.model_dump())
        except ValidationError as e:
            err = e.errors()[0]
            raise BenchError(f"--{str(err['loc'][0]).replace('_', '-')}: "
                             f"{err['msg'].removeprefix('Value error, ')}") from None
    if timing.mode == "host" and timing.l2 == "cold":
        raise BenchError("--l2 cold needs --mode graph or events (host timing never flushes L2)")
    if opts.dry_run:
        return RunSummary(run_dir=None, cases=cases)
    backends, unavailable = resolve_backends(suite, opts.backends)

    gpu = None
    if any(b.device == "cuda" for b in backends):
        gpu = GpuSession(opts.device_index, cold=timing.l2 == "cold")
    info = describe_run(
        suite.name, suite, {b.name: {"device": b.device, "versions": b.versions()}
                            for b in backends},
        unavailable, timing, shlex.join(opts.argv), gpu, opts.filter, opts.shard)
    held = contextlib.ExitStack()  # the run directory's lock, released when the sweep ends
    if opts.resume:
        store = RunStore.open(opts.resume)
        old = store.run_info()
        if old.get("timing") not in (None, timing.model_dump()):
            raise BenchError(f"{opts.resume}: was measured with other timing settings "
                             f"({old.get('timing')}); resume with the same options")
        if old.get("suite_text") != suite.text:
            raise BenchError(f"{opts.resume}: was made from a different suite text than "
                             f"{suite.path}; start a new run instead of --resume")
        held.enter_context(store.lock())  # before reading what is done: one writer at a time
        done = store.done()
    else:
        store = RunStore.create(opts.out, suite.name, info)
        held.enter_context(store.lock())
        done = set()
    cache_dir = opts.cache_dir or (opts.out / ".cache")
    todo = [(c, b) for c in cases for b in backends if (c.key, b.name) not in done]
    summary = RunSummary(run_dir=store.dir, cases=cases, skipped=len(cases) * len(backends)
                         - len(todo), unavailable=unavailable)
    progress = progress_bar(opts.progress)
    try:
        with progress, nvtx_range(f"suite {suite.name}"):
            task = progress.add_task("", total=len(todo))
            for case, backend in todo:
                progress.update(task, description=escape(f"{backend.name} {case.name}"))
                with nvtx_range(f"case {case.index} {backend.name} {case.name}",
                                payload=case.index):
                    rec, layers = measure_case(case, backend, timing, gpu, cache_dir)
                store.append_result(rec, layers)
                summary.records.append(rec)
                if on_record:
                    on_record(rec)
                progress.advance(task)
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        held.close()
        if gpu is not None:
            gpu.close()
    return summary


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
