"""The measurement loop: warm-up by time, then samples until a stopping criterion is met.

A *stopping criterion* is an object with nvbench's protocol (``nvbench/stopping_criterion.cuh``
lines 82-139, ``stopping_criterion_base``): ``initialize(settings)`` once per measurement,
``add_measurement(ms)`` after every sample, ``is_finished()`` after that. Criteria are registered
by name (nvbench's ``criterion_manager``, ``nvbench/criterion_manager.cxx`` lines 32-37) and one
is chosen by ``TimingSettings.criterion``:

- ``rse`` (the default): stop when the relative standard error of the mean, std/sqrt(n)/mean
  (ddof=1), is at most ``target_rse``, with at least ``min_samples`` samples and at least
  ``min_time_s`` of sampling wall time.
- ``stdrel`` (nvbench's default criterion): the relative standard deviation std/mean is below
  ``max_noise``, or the recent noise values have stopped changing (nvbench's plateau exit), once
  ``min_samples`` samples were taken and their measured time exceeds ``min_time_s``.
- ``fixed`` (trtexec's ``--iterations``/``--duration``): at least ``fixed_samples`` samples and
  at least ``fixed_time_s`` of sampling wall time.

Every criterion is bounded by ``max_time_s`` of sampling: a measurement stopped there is kept
and flagged ``converged=False``. The running statistics are O(1) per sample
(``bench.stats.RunningStats``), so a long measurement costs no more per sample than a short one.

A *sample source* produces one sample: the per-inference time in milliseconds of a batch of
``iters_per_sample`` inferences. The host-clock source lives here; the CUDA-event and CUDA-graph
sources live in ``bench.gpu.timers`` and plug in through the same protocol.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal, Protocol

from bench.deadline import CaseDeadline, CaseTimeout
from bench.errors import BenchError
from bench.stats import RunningStats

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
    criterion: str = "rse"  # a name in CRITERIA
    max_noise: float = 0.005  # stdrel: nvbench's "max-noise" default, 0.5 %
    fixed_time_s: float = 3.0  # fixed: trtexec's --duration default (s); 0 = no time bound
    fixed_samples: int = 10  # fixed: trtexec's --iterations default; 1 = no count bound


# --- stopping criteria ------------------------------------------------------------------------
class StoppingCriterion:
    """nvbench's ``stopping_criterion_base`` (nvbench/stopping_criterion.cuh:82): the public
    methods keep the running statistics and the sampling clock; subclasses fill the hooks.

    ``params`` names the ``TimingSettings`` fields the criterion reads; they are recorded with
    every result (``Samples.criterion``).
    """

    name: ClassVar[str]
    params: ClassVar[tuple[str, ...]]

    def __init__(self) -> None:
        self.settings = TimingSettings()
        self.stats = RunningStats()
        self.iters_per_sample = 1
        self.elapsed_s = 0.0  # sampling wall time when the latest measurement was added
        self.reason = ""  # why is_finished() said yes
        self._clock: Callable[[], float] = time.perf_counter
        self._start = 0.0

    def initialize(self, settings: TimingSettings, *, iters_per_sample: int = 1,
                   clock: Callable[[], float] = time.perf_counter,
                   start: float | None = None) -> None:
        """Once per measurement, before any sample (stopping_criterion.cuh:108). ``start``: the
        clock reading sampling began at (default: now)."""
        self.settings = settings
        self.stats = RunningStats()
        self.iters_per_sample = iters_per_sample
        self.elapsed_s = 0.0
        self.reason = ""
        self._clock = clock
        self._start = clock() if start is None else start
        self._initialize_impl()

    def add_measurement(self, ms: float) -> None:
        """One sample in ms per inference (stopping_criterion.cuh:117). The clock is read here,
        once per sample, and ``elapsed_s`` serves the criterion and ``measure``'s time limit."""
        self.elapsed_s = self._clock() - self._start
        self.stats.add(ms)
        self._add_impl(ms)

    def is_finished(self) -> bool:
        """Whether the criterion holds for the measurements so far (stopping_criterion.cuh:122)."""
        self.reason = self._finished_impl()
        return bool(self.reason)

    def describe(self) -> dict[str, Any]:
        """The name and the parameters in use, as recorded in ``Samples.criterion``."""
        return {"name": self.name, **{p: getattr(self.settings, p) for p in self.params}}

    # hooks
    def _initialize_impl(self) -> None:
        pass

    def _add_impl(self, ms: float) -> None:
        pass

    def _finished_impl(self) -> str:
        """Why the measurement may stop ("" to go on)."""
        raise NotImplementedError


#: criteria by name (nvbench's criterion_manager; register with ``register_criterion``)
CRITERIA: dict[str, type[StoppingCriterion]] = {}


def register_criterion(cls: type[StoppingCriterion]) -> type[StoppingCriterion]:
    """Class decorator adding a criterion to ``CRITERIA`` (nvbench's NVBENCH_REGISTER_CRITERION,
    criterion_manager.cuh:77; a name registered twice is an error, criterion_manager.cxx:72)."""
    if cls.name in CRITERIA:
        raise ValueError(f"stopping criterion {cls.name!r} is already registered")
    CRITERIA[cls.name] = cls
    return cls


def make_criterion(name: str) -> StoppingCriterion:
    """A fresh criterion of that name (criterion_manager.cxx:45 ``get_criterion``)."""
    cls = CRITERIA.get(name)
    if cls is None:
        raise BenchError(f"no stopping criterion named {name!r} (known: {', '.join(CRITERIA)})")
    return cls()


@register_criterion
class RseCriterion(StoppingCriterion):
    """convbench's rule: RSE of the mean std/sqrt(n)/mean <= ``target_rse``, with at least
    ``min_samples`` samples and ``min_time_s`` of sampling wall time."""

    name = "rse"
    params = ("target_rse", "min_samples", "min_time_s")

    def _finished_impl(self) -> str:
        s, st = self.settings, self.stats
        if st.n >= s.min_samples and self.elapsed_s >= s.min_time_s and st.rse <= s.target_rse:
            return "target"
        return ""


#: nvbench/detail/statistics.cuh:55 min_samples_for_noise_estimate
_NOISE_MIN_SAMPLES = 5
#: nvbench/detail/stdrel_criterion.cuh:44, the ring buffer of recent noise values
_NOISE_WINDOW = 512
#: nvbench/detail/stdrel_criterion.cxx:32 invalid_noise_estimate_limit
_INVALID_NOISE_LIMIT = 64
#: stdrel_criterion.cxx:103-104 min_noise_stability_window, noise_stability_check_interval
_PLATEAU_MIN_VALUES = 64
_PLATEAU_INTERVAL = 16
#: stdrel_criterion.cxx:128: the noise values' own relative std under which noise is stable
_PLATEAU_REL = 0.05


@register_criterion
class StdrelCriterion(StoppingCriterion):
    """nvbench's ``stdrel`` (nvbench/detail/stdrel_criterion.cxx, at commit 66212f1 of
    NVIDIA/nvbench), with its parameters "max-noise" = ``max_noise`` and "min-time" =
    ``min_time_s``, plus nvbench's ``--min-samples`` gate (measure_cold.cu:183) =
    ``min_samples``.

    After each sample from the 5th on, the noise std/mean (ddof=1) is appended to a window of the
    last 512 noise values (a non-finite or undefined one, e.g. from a zero mean, counts as
    invalid instead). Finished when: 64 consecutive noise values were invalid; or, with at least
    ``min_samples`` samples, measured time (mean * n, in seconds of timed inferences) above
    ``min_time_s`` and the latest noise valid: the latest noise < ``max_noise``, or (the plateau
    exit) the window holds more than 64 values, n is a multiple of 16, and the window's biased
    variance is below (0.05 * its mean)^2 — its relative std under 5 %.
    """

    name = "stdrel"
    params = ("max_noise", "min_time_s", "min_samples")

    def _initialize_impl(self) -> None:  # stdrel_criterion.cxx:40
        self._invalid = 0
        self._noise: deque[float] = deque(maxlen=_NOISE_WINDOW)

    def _add_impl(self, ms: float) -> None:  # stdrel_criterion.cxx:47-70
        st = self.stats
        if st.n < _NOISE_MIN_SAMPLES:
            return
        std, mean = st.std, st.mean
        # statistics.cuh:368 compute_relative_dispersion: undefined for a mean <= 0 or not
        # finite, or a NaN/negative dispersion; then only finite values count
        noise = std / mean if (mean > 0 and math.isfinite(mean) and std >= 0) else math.nan
        if math.isfinite(noise):
            self._invalid = 0
            self._noise.append(noise)
        else:
            self._invalid += 1

    def _finished_impl(self) -> str:  # stdrel_criterion.cxx:72-139
        s, st = self.settings, self.stats
        if st.n < s.min_samples:  # measure_cold.cu:183: the criterion is asked from then on
            return ""
        if self._invalid >= _INVALID_NOISE_LIMIT:
            return "invalid_noise"
        # nvbench sums the measured (GPU) time of its samples; a convbench sample of k
        # inferences lasted ms * k
        measured_s = st.mean * st.n * self.iters_per_sample / 1e3
        if measured_s <= s.min_time_s or not self._noise or self._invalid != 0:
            return ""
        if self._noise[-1] < s.max_noise:
            return "target"
        if len(self._noise) > _PLATEAU_MIN_VALUES and st.n % _PLATEAU_INTERVAL == 0:
            window = RunningStats(self._noise)  # <= 512 values every 16th sample: O(32)/sample
            var = window.variance(ddof=0)  # nvbench's get_sample_variance() is the biased one
            if math.isfinite(window.mean) and math.isfinite(var) and (
                    var < (window.mean * _PLATEAU_REL) ** 2):
                return "plateau"
        return ""


@register_criterion
class FixedCriterion(StoppingCriterion):
    """trtexec's rule: at least ``fixed_samples`` samples and at least ``fixed_time_s`` of
    sampling wall time (NVIDIA/TensorRT samples/common/sampleInference.cpp, ``inferenceLoop``:
    ``for (i = 0; i < iterations + skip || durationMs < maxDurationMs; ++i)``). A convbench
    sample is ``iters_per_sample`` inferences, so the count is of samples, not inferences."""

    name = "fixed"
    params = ("fixed_samples", "fixed_time_s")

    def _finished_impl(self) -> str:
        s = self.settings
        if self.stats.n >= s.fixed_samples and self.elapsed_s >= s.fixed_time_s:
            return "fixed"
        return ""


# --- the loop ---------------------------------------------------------------------------------
@dataclass
class Samples:
    """Raw per-sample times and how they were taken."""

    ms: list[float]
    mode: str
    iters_per_sample: int
    l2: str = "warm"
    warmup_s: float = 0.0
    wall_s: float = 0.0
    rse: float = math.inf  # achieved std/sqrt(n)/mean
    converged: bool = False  # the criterion finished (False: stopped by max_time_s)
    extra: dict[str, Any] = field(default_factory=dict)
    relstd: float = math.inf  # achieved std/mean
    criterion: dict[str, Any] = field(default_factory=dict)  # name and parameters
    stopped_by: str = ""  # the criterion's reason ("target", "plateau", ...) or "max_time"

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("rse", "relstd"):
            d[k] = None if math.isinf(d[k]) or math.isnan(d[k]) else d[k]
        return d


def measure(source: SampleSource, settings: TimingSettings,
            clock: Callable[[], float] = time.perf_counter,
            deadline: CaseDeadline | None = None) -> Samples:
    """Warm up ``source`` for ``settings.warmup_s``, then sample until the criterion named by
    ``settings.criterion`` is finished or ``settings.max_time_s`` of sampling has passed (then
    the samples are kept and ``converged`` is False; at least two samples are always taken).
    ``deadline`` (the case's ``case_timeout_s``) is checked before every call of ``source``:
    past it, ``bench.deadline.CaseTimeout`` is raised (in any thread; see bench.deadline)."""
    criterion = make_criterion(settings.criterion)
    if deadline is not None:
        deadline.enter("warm-up")
    t0 = clock()
    while clock() - t0 < settings.warmup_s:
        if deadline is not None:
            deadline.check()
        source()
    t1 = clock()
    if deadline is not None:
        deadline.enter("timing")
    criterion.initialize(settings, iters_per_sample=source.iters_per_sample, clock=clock,
                         start=t1)
    ms: list[float] = []
    while True:
        if deadline is not None:
            try:
                deadline.check()
            except CaseTimeout as e:  # hand over what was measured
                e.samples = list(ms)
                raise
        x = source()
        ms.append(x)
        criterion.add_measurement(x)
        # nvbench's order (measure_cold.cu:175-200): the criterion first, then the time limit
        if criterion.is_finished():
            converged, stopped_by = True, criterion.reason
            break
        if criterion.elapsed_s >= settings.max_time_s and len(ms) >= 2:
            converged, stopped_by = False, "max_time"
            break
    st = criterion.stats
    return Samples(ms=ms, mode=source.mode, iters_per_sample=source.iters_per_sample,
                   warmup_s=t1 - t0, wall_s=clock() - t0, rse=st.rse, relstd=st.relstd,
                   converged=converged, criterion=criterion.describe(), stopped_by=stopped_by)


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
