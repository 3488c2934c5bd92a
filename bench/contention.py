"""Is a measurement clean? Flags for contention, low clocks, throttling and profile mismatch.

A flagged record keeps its numbers (they are what was measured) but carries each reason, and
tables, reports and compare show it: a result taken while another process used the GPU, while
the CPU was oversubscribed, below the GPU's maximum clock, or whose per-layer profile disagrees
with its timed median is never presented as a clean ``ok``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from bench.record import Clocks, Flag

if TYPE_CHECKING:
    from bench.record import LayerRow, Record
    from bench.runner import GpuSession
    from bench.timing import Samples

#: SM clock below this share of the maximum during a case is flagged
LOW_CLOCK_SHARE = 0.85
#: summed per-layer profile (per inference) outside [median / F, median * F] is flagged
PROFILE_FACTOR = 3.0
#: a 1-minute load average above cores + this is an oversubscribed CPU
CPU_LOAD_MARGIN = 1.0


def _nvml_query(uuid: str, query: str) -> Any:
    """``pynvml.<query>(handle of the GPU with this UUID)``, or None where NVML cannot tell."""
    from bench.gpu import nvml

    found = nvml.device_handle(uuid)
    if found is None:
        return None
    nv, h = found
    try:
        return getattr(nv, query)(h)
    except Exception:  # noqa: BLE001 - not supported on this GPU/driver
        return None


def other_gpu_processes(uuid: str) -> list[int] | None:
    """PIDs of other compute processes on the GPU (NVML), or None where NVML cannot tell."""
    procs = _nvml_query(uuid, "nvmlDeviceGetComputeRunningProcesses")
    if procs is None:
        return None
    me = os.getpid()
    pids = [int(p.pid) for p in procs]
    others = [p for p in pids if p != me]
    # in a container NVML may report host PIDs, our own included under another number: then
    # only a second process is evidence of contention
    if me in pids or any(os.path.exists(f"/proc/{p}") for p in others):
        return others
    return others[1:] if len(others) >= 1 else []


def gpu_utilization(uuid: str) -> int | None:
    rates = _nvml_query(uuid, "nvmlDeviceGetUtilizationRates")
    return None if rates is None else int(rates.gpu)


def cpu_load_flag(load: float | None = None, cores: int | None = None) -> Flag | None:
    """The 1-minute load average against the cores this process may use."""
    if load is None:
        try:
            load = os.getloadavg()[0]
        except OSError:
            return None
    if cores is None:
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            cores = os.cpu_count() or 1
    if load > cores + CPU_LOAD_MARGIN:
        return Flag(name="cpu-load", reason=f"load average {load:.1f} on {cores} core(s): other "
                                            "processes compete for the CPU")
    return None


def before_case(gpu: GpuSession | None) -> list[Flag]:
    """Flags from the state of the machine before a case is timed."""
    flags = []
    f = cpu_load_flag()
    if f is not None:
        flags.append(f)
    if gpu is not None:
        others = other_gpu_processes(gpu.info.uuid)
        if others:
            flags.append(Flag(name="contention", reason=f"{len(others)} other compute "
                              f"process(es) on this GPU (pid {', '.join(map(str, others[:5]))})"))
        busy = getattr(gpu, "busy_at_start", None)
        if busy:
            flags.append(Flag(name="contention", reason=f"GPU utilization {busy} % before "
                              "convbench started"))
    return flags


def clock_flags(clocks: Clocks) -> list[Flag]:
    flags = []
    reasons = set()
    for c in (clocks.before, clocks.after):
        if c and c.get("throttled"):
            reasons.update(r for r in c.get("clock_event_reasons") or [])
    if reasons:
        flags.append(Flag(name="throttled", reason="clock-event reasons " +
                          ", ".join(sorted(reasons))))
    after = clocks.after or {}
    sm, top = after.get("sm_mhz"), after.get("max_sm_mhz")
    if sm and top and sm < LOW_CLOCK_SHARE * top:
        flags.append(Flag(name="low-clocks", reason=f"SM clock {sm} MHz of {top} MHz maximum"))
    return flags


def after_case(clocks: Clocks, samples: Samples) -> list[Flag]:
    flags = clock_flags(clocks)
    if not samples.converged:
        flags.append(Flag(name="not-converged", reason="the stopping criterion was not met "
                          "before max_time_s"))
    return flags


def profile_flag(rec: Record, layers: LayerRow | None) -> Flag | None:
    """The per-layer profile summed per inference against the timed median: far apart means
    one of them was disturbed (or the profiler's own overhead dominates)."""
    med = rec.stats.median if rec.stats else None
    if not med or layers is None or not layers.layers:
        return None
    total = sum(float(la.median_ms) * int(getattr(la, "calls", 1) or 1) for la in layers.layers)
    if total <= 0:
        return None
    ratio = total / med
    if ratio > PROFILE_FACTOR or ratio < 1 / PROFILE_FACTOR:
        return Flag(name="profile-disagrees", reason=f"per-layer profile sums to {total:.4g} ms "
                    f"per inference, the timed median is {med:.4g} ms ({ratio:.2g}x)")
    return None


def describe(flags: list[Any]) -> str:
    return "; ".join(f"{f.name}: {f.reason}" for f in flags)
