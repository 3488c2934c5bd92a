"""Buffer placements: ``[timing] placements = K`` times a pass at K places in device memory.

Where a case's buffers sit in device memory moves its time: on the H200, the medians of one
engine at 16 placements in one process spread by up to 8 % (``mobilenetv2-pointwise`` fp16,
7.4 µs, standard deviation 2 %), while the same placement timed again repeated within 0.1 %
(``benchmarks/results/placement-h200.md``); separate processes then disagree by that much
under cuDNN's heuristics, which choose the same kernels every time. One placement is one
draw of that spread, and its within-pass interval does not know it.

With K placements the pass's timing budget is split K ways. Placement 0 is where the build
put the buffers; before each later one ``Engine.relocate(k)`` moves the input, weights and
bias to new device memory after spacers whose sizes follow from k, and a new timer is made
(for the graph timer a new capture, whose output and workspace come from a new pool, of as
many inferences as the first placement's: the replay is sized once). Each
placement is timed with ``warmup_s`` (the first) or ``warmup_s / K`` (the others),
``min_time_s / K``, ``max_time_s / K`` and ``ceil(min_samples / K)`` samples. The samples are
pooled: the pass's median is the median of all of them (so ``median`` is the median of
``samples_ms``, as everywhere), and its within-pass interval is widened to cover the
placements' spread: at least median ± t · s / √K, with s the standard deviation of the K
placement medians (Student t, K − 1 degrees of freedom). The interval covers where buffers
land within this process; on the H200 whole processes also shifted (by 0.4–1 µs in 2 of 24
cases, ``benchmarks/results/reproducibility-heuristic-placements32-h200.md``), which it does
not cover. The record keeps every placement (``TimingFacts.placements``).

An engine that cannot move its buffers (``Engine.movable`` False: the CPU timer, TensorRT)
is timed at one placement with the whole budget and a note; if moving them fails later (out
of device memory, mostly), the placements already timed are kept and the note says so
(``TimingFacts.placements_note``).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from bench.backends.base import Engine
from bench.deadline import CaseDeadline, CaseTimeout
from bench.record import Placement, Stats
from bench.stats import RunningStats, summarize, t95
from bench.timing import Samples, SampleSource, TimingSettings, measure


def placement_settings(settings: TimingSettings, index: int, count: int) -> TimingSettings:
    """The timing of placement ``index`` of ``count``: the pass's budget split between them
    (the first placement keeps the whole warm-up: the GPU's clocks settle there)."""
    if count <= 1:
        return settings
    return replace(settings,
                   warmup_s=settings.warmup_s if index == 0 else settings.warmup_s / count,
                   min_time_s=settings.min_time_s / count,
                   max_time_s=settings.max_time_s / count,
                   min_samples=max(2, math.ceil(settings.min_samples / count)),
                   fixed_time_s=settings.fixed_time_s / count,
                   fixed_samples=max(1, math.ceil(settings.fixed_samples / count)))


@dataclass
class Placed:
    """The pooled samples of every placement, and what each placement was."""

    samples: Samples
    placements: list[Placement]
    note: str | None
    source_info: dict[str, Any]


def measure_placements(engine: Engine, make_source: Callable[[int | None], SampleSource],
                       settings: TimingSettings, count: int,
                       deadline: CaseDeadline | None = None,
                       clock: Callable[[], float] = time.perf_counter) -> Placed:
    """Time ``engine`` at ``count`` placements (see the module doc); ``make_source(iters)``
    makes a timer for the engine's current buffers (closed here after use): ``iters`` is None
    for the first placement, then the first one's inferences per sample, which the later
    timers keep (the graph timer does not size its replay again). Past the deadline the
    ``CaseTimeout`` carries the samples of every placement so far; a stuck GPU
    (``GpuStuck``) always propagates."""
    from bench.gpu.cuda import GpuStuck

    note: str | None = None
    if count > 1 and not engine.movable:
        note = (f"placements: this {engine.device.upper()} engine cannot move its buffers; "
                f"timed at 1 of {count} placements")
        count = 1
    pooled: list[float] = []
    placed: list[Placement] = []
    parts: list[Samples] = []
    info: dict[str, Any] = {}
    t0 = clock()
    for k in range(count):
        try:
            if k:
                engine.relocate(k)
            source = make_source(parts[0].iters_per_sample if parts else None)
        except (GpuStuck, CaseTimeout):
            raise
        except Exception as e:  # noqa: BLE001 - out of memory, mostly: keep what was timed
            if not k:
                raise
            note = _failed(k, count, "moving the buffers for", e)
            break
        try:
            part = measure(source, placement_settings(settings, k, count), clock=clock,
                           deadline=deadline)
        except CaseTimeout as e:
            e.samples = pooled + list(e.samples)
            e.placements = list(placed)
            raise
        except GpuStuck:
            raise
        except Exception as e:  # noqa: BLE001
            if not k:
                raise
            note = _failed(k, count, "timing", e)
            break
        finally:
            close = getattr(source, "close", None)
            if close:
                close()
        if k == 0:
            info = dict(getattr(source, "info", {}) or {})
        parts.append(part)
        pooled += part.ms
        placed.append(Placement(index=k, moved=k > 0, samples=len(part.ms),
                                median_ms=summarize(part.ms).median,
                                iters_per_sample=part.iters_per_sample,
                                converged=part.converged))
    first = parts[0]
    if len(parts) == 1:
        return Placed(first, placed if count > 1 else [], note, info)
    st = RunningStats(pooled)
    reasons = sorted({p.stopped_by for p in parts})
    samples = Samples(ms=pooled, mode=first.mode, iters_per_sample=first.iters_per_sample,
                      l2=first.l2, warmup_s=sum(p.warmup_s for p in parts),
                      wall_s=clock() - t0, rse=st.rse, relstd=st.relstd,
                      converged=all(p.converged for p in parts), criterion=first.criterion,
                      stopped_by="/".join(reasons))
    return Placed(samples, placed, note, info)


def _failed(k: int, count: int, what: str, e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e) else ""
    return (f"placements: {what} placement {k} failed ({type(e).__name__}: {text}); timed at "
            f"{k} of {count} placements")


def spread_pct(medians: Sequence[float]) -> float | None:
    """(max − min) / min of ``medians`` (of placements), in per cent (None below two)."""
    if len(medians) < 2:
        return None
    return (max(medians) - min(medians)) / min(medians) * 100.0


def widen(stats: Stats, placements: list[Placement]) -> Stats:
    """The pooled samples' statistics with the median's interval widened to cover the
    placements: at least median ± t(K − 1) · s / √K (s: the placement medians' standard
    deviation); the pooled samples' own interval is kept where it is wider."""
    k = len(placements)
    if k < 2:
        return stats
    half = t95(k - 1) * statistics.stdev(p.median_ms for p in placements) / math.sqrt(k)
    low = max(min(stats.median_ci_low, stats.median - half), 0.0)
    high = max(stats.median_ci_high, stats.median + half)
    return stats.model_copy(update={"median_ci_low": low, "median_ci_high": high})
