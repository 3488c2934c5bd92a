"""The measurement loop: warm-up by time, then samples until the noise target is met.

The stopping rule is nvbench's: keep sampling until the relative standard error of the mean is
at most ``target_rse`` with at least ``min_samples`` samples and ``min_time_s`` of sampling, or
until ``max_time_s`` (then the result is kept and flagged as not converged).

A *sample source* produces one sample: the per-inference time in milliseconds of a batch of
``iters_per_sample`` inferences. The host-clock source lives here; the CUDA-event and CUDA-graph
sources live in ``bench.gpu.timers`` and plug in through the same protocol.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

from bench.stats import rse

TimerMode = Literal["graph", "events", "host"]
L2Mode = Literal["warm", "cold"]


class SampleSource(Protocol):
    """One call = one sample, in milliseconds per inference."""

    mode: TimerMode
    iters_per_sample: int

    def __call__(self) -> float: ...


@dataclass(frozen=True)
class TimingSettings:
    warmup_s: float = 0.2
    min_samples: int = 10
    min_time_s: float = 0.5
    max_time_s: float = 10.0
    target_rse: float = 0.005
    min_sample_s: float = 1e-3  # a host sample runs the case until at least this long


@dataclass
class Samples:
    """Raw per-sample times and how they were taken."""

    ms: list[float]
    mode: str
    iters_per_sample: int
    l2: str = "warm"
    warmup_s: float = 0.0
    wall_s: float = 0.0
    rse: float = math.inf
    converged: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["rse"] = None if math.isinf(self.rse) else self.rse
        return d


def measure(source: SampleSource, settings: TimingSettings,
            clock: Callable[[], float] = time.perf_counter) -> Samples:
    """Warm up ``source`` for ``settings.warmup_s``, then sample until the stopping rule holds."""
    t0 = clock()
    while clock() - t0 < settings.warmup_s:
        source()
    t1 = clock()
    ms: list[float] = []
    noise = math.inf
    while True:
        ms.append(source())
        elapsed = clock() - t1
        if len(ms) >= 2:
            noise = rse(ms)
        enough = len(ms) >= settings.min_samples and elapsed >= settings.min_time_s
        if enough and noise <= settings.target_rse:
            converged = True
            break
        if elapsed >= settings.max_time_s and len(ms) >= 2:
            converged = False
            break
    return Samples(ms=ms, mode=source.mode, iters_per_sample=source.iters_per_sample,
                   warmup_s=t1 - t0, wall_s=clock() - t0, rse=noise, converged=converged)


class HostSource:
    """Times ``run()`` (one synchronous inference) with ``time.perf_counter``: CPU backends only.

    ``iters_per_sample`` is chosen so one sample lasts at least ``min_sample_s``.
    """

    mode: TimerMode = "host"

    def __init__(self, run: Callable[[], None], min_sample_s: float = 1e-3) -> None:
        self._run = run
        run()  # first call outside any timing: lazy initialisation, allocations
        t = time.perf_counter()
        run()
        once = max(time.perf_counter() - t, 1e-7)
        self.iters_per_sample = max(1, math.ceil(min_sample_s / once))

    def __call__(self) -> float:
        n = self.iters_per_sample
        run = self._run
        t = time.perf_counter()
        for _ in range(n):
            run()
        return (time.perf_counter() - t) * 1e3 / n
