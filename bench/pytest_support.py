"""convbench's state inside one pytest session, and convbench records as pytest-benchmark stats.

Kept apart from ``bench.pytest_plugin`` (the hooks) so the plugin module stays cheap to import:
it loads in every pytest run once convbench is installed, and only this module pulls in the
runner, pydantic and numpy, on the first suite file or ``conv_benchmark`` use.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.backends.base import Backend
from bench.backends.registry import get_backend
from bench.errors import BenchError, CaseStuck
from bench.plan import RunPlan, make_plan, validate_timing
from bench.record import Record
from bench.runner import GpuSession, backend_facts, describe_run, measure_case
from bench.store import RunStore, new_run_id
from bench.suite import Case, Suite, TimingConfig

#: suite name under which ``conv_benchmark`` cases are stored (they belong to no suite file)
FIXTURE_SUITE = "pytest"
PREFIX = "--convbench-"


def effective_timing(base: TimingConfig, overrides: dict[str, Any],
                     source: str | None = None) -> TimingConfig:
    """The suite's ``[timing]`` with the command line's overrides, validated by the run plan
    (errors name the ``--convbench-`` flag)."""
    return validate_timing(base, overrides, PREFIX, source)


@dataclass
class _SuiteRun:
    store: RunStore
    next_index: int = 0  # for conv_benchmark cases, which have no index in a suite


@dataclass
class PytestRun:
    """Result stores (one run directory per suite, one run id per pytest session), backends and
    the GPU session, all created on first use so a pytest run without convbench items does
    nothing at all."""

    out: Path
    cache_dir: Path | None
    timing_overrides: dict[str, Any]
    device_index: int
    command: str
    run_id: str = field(default_factory=new_run_id)
    _backends: dict[str, Backend] = field(default_factory=dict)
    _runs: dict[str, _SuiteRun] = field(default_factory=dict)
    _gpu: GpuSession | None = None
    #: set when a case's GPU work did not finish: no later GPU case runs in this session
    _stuck: str | None = None

    @property
    def stuck(self) -> str | None:
        """Why a case's GPU work did not finish in this session (None: none stuck)."""
        return self._stuck

    # --- plans ------------------------------------------------------------------------------
    def plan(self, suite: Suite, backends: list[str] | None = None,
             base_timing: TimingConfig | None = None) -> RunPlan:
        """The run plan of a suite in this session, built like ``convbench run`` builds it."""
        plan = make_plan(suite, backends=backends, timing=self.timing_overrides,
                         base_timing=base_timing, out=self.out, cache_dir=self.cache_dir,
                         device_index=self.device_index, argv=shlex.split(self.command),
                         progress=False, prefix=PREFIX)
        if plan.repeats > 1:
            # a test runs in this process; passes need fresh processes (cuDNN's autotuner
            # keeps its choice per process)
            raise BenchError(f"{PREFIX}repeats {plan.repeats}: repeated passes need fresh "
                             "processes; use `convbench run SUITE --repeats N`")
        return plan

    # --- backends ------------------------------------------------------------------------------
    def backend(self, name: str) -> Backend:
        if name not in self._backends:
            self._backends[name] = get_backend(name)
        return self._backends[name]

    def backend_state(self, name: str) -> tuple[Backend, str]:
        """(backend, "" or the reason it cannot run here)."""
        b = self.backend(name)
        ok, reason = b.available()
        return b, "" if ok else reason

    # --- GPU ----------------------------------------------------------------------------------
    def gpu(self, plan: RunPlan) -> GpuSession:
        if self._stuck:
            raise BenchError(f"an earlier case's GPU work did not finish ({self._stuck}); no later "
                             "GPU case runs in this pytest session")
        if self._gpu is None:
            self._gpu = plan.gpu_session()
        elif plan.timing.l2 == "cold" and self._gpu.flusher is None:
            from bench.gpu import cuda

            self._gpu.flusher = cuda.L2Flusher(self._gpu.device)
        return self._gpu

    # --- stores ---------------------------------------------------------------------------------
    def _suite_run(self, plan: RunPlan) -> _SuiteRun:
        run = self._runs.get(plan.suite.name)
        if run is not None:
            return run
        # the same run.json as ``convbench run`` writes, so ``convbench report`` reads it
        backends, unavailable = [], {}
        for name in plan.backend_names:
            b, reason = self.backend_state(name)
            if reason:
                unavailable[name] = reason
            else:
                backends.append(b)
        info = describe_run(plan, backend_facts(backends), unavailable, self._gpu, pytest=True,
                            planned=None)  # the session's tests choose the cases
        run = self._runs[plan.suite.name] = _SuiteRun(
            RunStore.create(self.out, plan.suite.name, info, run_id=self.run_id))
        return run

    def run_dirs(self) -> list[Path]:
        return [r.store.dir for r in self._runs.values()]

    # --- one case ---------------------------------------------------------------------------------
    def measure(self, case: Case, backend: Backend, plan: RunPlan) -> Record:
        """Run one case through convbench's runner and append its record (and layer profile) to
        the suite's run directory, exactly as ``convbench run`` does."""
        gpu = self.gpu(plan) if backend.device == "cuda" else None
        run = self._suite_run(plan)
        if plan.suite.name == FIXTURE_SUITE:
            case = Case(index=run.next_index, spec=case.spec, label=case.label)
            run.next_index += 1
        try:
            rec, layers = measure_case(case, backend, plan.timing, gpu, plan.cache_dir)
        except CaseStuck as e:
            # stored like any record; the session's GPU stream may hold the stuck work, so it
            # is never closed and later GPU cases are refused in one line
            run.store.append_result(e.record, None)
            self._stuck, self._gpu = str(e), None
            raise
        run.store.append_result(rec, layers)
        rec.run_dir = str(run.store.dir)
        return rec

    def close(self) -> None:
        if self._gpu is not None:
            self._gpu.close()
            self._gpu = None


def fixture_suite(case: Case, backend: str, timing: TimingConfig) -> Suite:
    """The one-case suite a ``conv_benchmark`` call is stored under (``results/pytest/``)."""
    return Suite(name=FIXTURE_SUITE, description="conv_benchmark cases", backends=(backend,),
                 timing=timing, cases=(case,))


# --- records → pytest-benchmark -----------------------------------------------------------------
def extra_info(rec: Record, suite_name: str) -> dict[str, Any]:
    """What pytest-benchmark stores next to the stats: enough to know what was measured, how,
    how noisy it was, at which clocks, and how close to the roofline."""
    assert rec.stats is not None and rec.timing is not None
    med = rec.median_ms or rec.stats.median
    med_s = med / 1e3
    d = rec.derived
    iv = rec.interval
    info: dict[str, Any] = {
        "convbench": True, "suite": suite_name, "backend": rec.backend,
        "device": rec.device, "case": rec.name, "case_key": rec.case_key,
        "spec": rec.spec.model_dump(mode="json"), "timer": rec.timing.mode,
        "iters_per_sample": rec.timing.iters_per_sample, "l2": rec.timing.l2,
        "noise_rse": rec.stats.rse, "converged": rec.timing.converged,
        "median_ci_ms": [rec.stats.median_ci_low, rec.stats.median_ci_high],
        "interval_ms": [iv[0], iv[1]] if iv else None,
        "interval_covers": iv[2] if iv else None,
        "flags": [f.model_dump() for f in rec.flags],
        "clocks": rec.clocks.model_dump() if rec.clocks else None, "throttled": rec.throttled,
        "check": rec.check.model_dump() if rec.check else None,
        "build": rec.build.model_dump() if rec.build else None,
        "flops": d.flops, "bias_flops": d.bias_flops, "activation_flops": d.activation_flops,
        "bytes_min": d.bytes_min, "intensity": d.intensity,
        "tflops": d.flops / med_s / 1e12 if med_s > 0 else None,
        "gbps": d.bytes_min / med_s / 1e9 if med_s > 0 else None,
        "gpu": (rec.gpu or {}).get("name"), "run_dir": rec.run_dir,
    }
    info.update(_roofline(rec))
    return info


def _roofline(rec: Record) -> dict[str, Any]:
    """% of the roofline bound on a GPU the ceilings table (or a calibration) knows."""
    gpu = rec.gpu
    if not gpu or not rec.run_dir or not rec.median_ms:
        return {}
    from bench import roofline
    peak = roofline.ceilings(rec.run_dir, gpu)
    if peak is None:
        return {}
    prec = roofline.math_precision(rec.spec.precision, rec.spec.tf32, gpu)
    if prec not in peak.tflops:
        return {}
    bound, side = roofline.bound_ms(rec.derived.flops, rec.derived.bytes_min,
                                    peak.tflops[prec], peak.bandwidth_gbps)
    return {"roofline_pct": 100.0 * bound / rec.median_ms, "roofline_bound": side,
            "roofline_peak": {"name": peak.name, "tflops": peak.tflops[prec],
                              "gbps": peak.bandwidth_gbps, "measured": peak.measured}}


@dataclass
class BenchSource:
    """The attributes pytest-benchmark's ``Metadata`` reads from its fixture (a suite item has
    no ``BenchmarkFixture``; a ``conv_benchmark`` test passes its real one instead)."""

    name: str
    fullname: str
    group: str | None
    param: str | None
    params: dict[str, Any] | None
    extra_info: dict[str, Any] = field(default_factory=dict)
    cprofile_stats: Any = None
    has_error: bool = False


def benchmark_entry(rec: dict[str, Any], source: Any, suite_name: str,
                    timing: TimingConfig) -> Any:
    """A pytest-benchmark ``Metadata`` whose samples are convbench's, in seconds per inference.

    One convbench sample (``iters_per_sample`` inferences, timed by CUDA events on a GPU or the
    host clock on a CPU) is one pytest-benchmark round; pytest-benchmark computes min, median,
    mean, stddev, IQR, outliers and ops from those rounds, so what it shows, saves and compares
    is convbench's timing, not a host timing of its own. ``source.extra_info`` gets convbench's
    details; keys the test set itself win.
    """
    from pytest_benchmark.stats import Metadata

    source.extra_info = {**extra_info(rec, suite_name), **source.extra_info}
    # pytest-benchmark's own option keys say what pytest-benchmark did: nothing here (its
    # min_time/max_time/min_rounds/warmup did not choose these samples: convbench's did), so
    # they are None; convbench's sampling options are under "convbench"
    # (pytest_benchmark/stats.py Metadata.as_dict writes ``options`` as given)
    options = {
        "disable_gc": False, "timer": f"convbench:{rec.timing.mode if rec.timing else '?'}",
        "min_rounds": None, "max_time": None, "min_time": None, "warmup": None,
        "convbench": {**timing.model_dump(mode="json"),
                      "timer_mode": rec.timing.mode if rec.timing else None,
                      "iters_per_sample": rec.timing.iters_per_sample if rec.timing else None},
    }
    meta = Metadata(source, iterations=rec.timing.iters_per_sample if rec.timing else 1,
                    options=options)
    for ms in rec.samples_ms:
        meta.stats.update(ms / 1e3)  # per-inference already: no division by iterations
    return meta


def machine_gpu(run_dirs: list[Any]) -> list[dict[str, Any]] | None:
    """The GPUs convbench ran on this session, for pytest-benchmark's ``machine_info``: name,
    UUID, compute capability (from each run's run.json) and the driver version (NVML); None
    for a CPU-only session. pytest-benchmark warns when compared runs differ in machine_info
    (pytest_benchmark/hookspec.py, ``pytest_benchmark_update_machine_info``)."""
    from bench.gpu import nvml
    from bench.store import read_run_info

    gpus: list[dict[str, Any]] = []
    for d in run_dirs:
        try:
            gpu = read_run_info(d).get("gpu")
        except BenchError:
            continue
        if gpu and not any(g["uuid"] == gpu.get("uuid") for g in gpus):
            gpus.append({"name": gpu.get("name"), "uuid": gpu.get("uuid"),
                         "cc": ".".join(map(str, gpu["cc"])) if gpu.get("cc") else None,
                         "driver": None})
    if not gpus:
        return None
    nv = nvml._nvml()
    driver = None
    if nv is not None:
        try:
            v = nv.nvmlSystemGetDriverVersion()
            driver = v.decode() if isinstance(v, bytes) else str(v)
        except Exception:  # noqa: BLE001 - NVML errors: the driver stays unknown
            driver = None
    for g in gpus:
        g["driver"] = driver
    return gpus


def command_line(args: list[str] | tuple[str, ...]) -> str:
    return shlex.join(["pytest", *args])
