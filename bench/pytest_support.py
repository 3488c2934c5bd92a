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
from bench.runner import GpuSession, describe_run, measure_case
from bench.store import RunStore, new_run_id
from bench.suite import Case, Suite, TimingConfig

#: suite name under which ``conv_benchmark`` cases are stored (they belong to no suite file)
FIXTURE_SUITE = "pytest"


def effective_timing(base: TimingConfig, overrides: dict[str, Any]) -> TimingConfig:
    """The suite's ``[timing]`` with the command line's overrides, validated by the CLI's
    function (errors name the ``--convbench-*`` option)."""
    from bench.commands.common_args import effective_timing as _effective

    return _effective(base, overrides, prefix="convbench-")


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
    def gpu(self, timing: TimingConfig) -> GpuSession:
        if self._gpu is None:
            self._gpu = GpuSession(self.device_index, cold=timing.l2 == "cold")
        elif timing.l2 == "cold" and self._gpu.flusher is None:
            from bench.gpu import cuda

            self._gpu.flusher = cuda.L2Flusher(self._gpu.device)
        return self._gpu

    # --- stores ---------------------------------------------------------------------------------
    def _suite_run(self, suite_name: str, suite: Suite | None, backend_names: list[str],
                   timing: TimingConfig) -> _SuiteRun:
        run = self._runs.get(suite_name)
        if run is not None:
            return run
        # the same run.json as ``convbench run`` writes, so ``convbench report`` reads it
        backends, unavailable = {}, {}
        for name in backend_names:
            b, reason = self.backend_state(name)
            if reason:
                unavailable[name] = reason
            else:
                backends[name] = {"device": b.device, "versions": b.versions()}
        info = {**describe_run(suite_name, suite, backends, unavailable, timing, self.command,
                               self._gpu), "pytest": True}
        run = self._runs[suite_name] = _SuiteRun(RunStore.create(self.out, suite_name, info,
                                                                 run_id=self.run_id))
        return run

    def run_dirs(self) -> list[Path]:
        return [r.store.dir for r in self._runs.values()]

    # --- one case ---------------------------------------------------------------------------------
    def measure(self, case: Case, backend: Backend, timing: TimingConfig,
                suite: Suite | None) -> dict[str, Any]:
        """Run one case through convbench's runner and append its record (and layer profile) to
        the suite's run directory, exactly as ``convbench run`` does."""
        gpu = self.gpu(timing) if backend.device == "cuda" else None
        if suite is not None:
            run = self._suite_run(suite.name, suite, list(suite.backends), timing)
        else:
            run = self._suite_run(FIXTURE_SUITE, None, [backend.name], timing)
            case = Case(index=run.next_index, spec=case.spec, label=case.label)
            run.next_index += 1
        cache_dir = self.cache_dir or (self.out / ".cache")
        rec, layers = measure_case(case, backend, timing, gpu, cache_dir)
        run.store.append(rec)
        if layers:
            run.store.append_layers(layers)
        rec["run_dir"] = str(run.store.dir)
        return rec

    def close(self) -> None:
        if self._gpu is not None:
            self._gpu.close()
            self._gpu = None


# --- records → pytest-benchmark -----------------------------------------------------------------
def extra_info(rec: dict[str, Any], suite_name: str) -> dict[str, Any]:
    """What pytest-benchmark stores next to the stats: enough to know what was measured, how,
    how noisy it was, at which clocks, and how close to the roofline."""
    st = rec["stats"]
    med_s = st["median"] / 1e3
    d = rec["derived"]
    info: dict[str, Any] = {
        "convbench": True, "suite": suite_name, "backend": rec["backend"],
        "device": rec["device"], "case": rec["name"], "case_key": rec["case_key"],
        "spec": rec["spec"], "timer": rec["timing"]["mode"],
        "iters_per_sample": rec["timing"]["iters_per_sample"], "l2": rec["timing"].get("l2"),
        "noise_rse": st["rse"], "converged": rec["timing"].get("converged"),
        "median_ci_ms": [st["median_ci_low"], st["median_ci_high"]],
        "clocks": rec.get("clocks"), "throttled": rec.get("throttled"),
        "check": rec.get("check"), "build": rec.get("build"),
        "flops": d["flops"], "bytes_min": d["bytes_min"], "intensity": d["intensity"],
        "tflops": d["flops"] / med_s / 1e12 if med_s > 0 else None,
        "gbps": d["bytes_min"] / med_s / 1e9 if med_s > 0 else None,
        "gpu": (rec.get("gpu") or {}).get("name"), "run_dir": rec.get("run_dir"),
    }
    info.update(_roofline(rec))
    return info


def _roofline(rec: dict[str, Any]) -> dict[str, Any]:
    """% of the roofline bound on a GPU the ceilings table (or a calibration) knows."""
    gpu = rec.get("gpu")
    if not gpu or not rec.get("run_dir"):
        return {}
    from bench import roofline
    peak = roofline.ceilings(rec["run_dir"], gpu)
    if peak is None:
        return {}
    spec = rec["spec"]
    prec = roofline.math_precision(spec["precision"], spec.get("tf32"), gpu)
    if prec not in peak.tflops:
        return {}
    bound, side = roofline.bound_ms(rec["derived"]["flops"], rec["derived"]["bytes_min"],
                                    peak.tflops[prec], peak.bandwidth_gbps)
    return {"roofline_pct": 100.0 * bound / rec["stats"]["median"], "roofline_bound": side,
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
    options = {  # pytest-benchmark's option keys, filled with what convbench used
        "disable_gc": False, "timer": f"convbench:{rec['timing']['mode']}",
        "min_rounds": timing.min_samples, "max_time": timing.max_time_s,
        "min_time": timing.min_time_s, "precision": None, "confidence": None,
        "warmup": timing.warmup_s > 0, "target_rse": timing.target_rse,
    }
    meta = Metadata(source, iterations=rec["timing"]["iters_per_sample"], options=options)
    for ms in rec["samples_ms"]:
        meta.stats.update(ms / 1e3)  # per-inference already: no division by iterations
    return meta


def command_line(args: list[str] | tuple[str, ...]) -> str:
    return shlex.join(["pytest", *args])
