"""Selection probes: more draws of a backend's build-time choice inside one pass.

Why: cuDNN's autotuner (torch ``algo = "autotune"``, the cudnn backend's ``autotune``) and
TensorRT's tactic timing (``timing_cache = "fresh"``) choose per build, and some choices are
rare. On the H200, one process in four chose another kernel for four conv layers (up to 41 %
slower), and three ``repeats`` passes missed it in 4 of 11 such cases
(benchmarks/results/reproducibility-h200.md). Another pass costs a process start and a full
timing budget; a probe costs a build and a short timing.

How: after a pass has measured a case (``bench.runner.measure_case``), its engine is closed
and the case is built ``[timing] probes`` more times, each where the backend's selection starts
afresh (``Backend.fresh_selection``: torch, in a new thread, whose cuDNN benchmark cache is
empty). One inference is profiled first to name the kernels the probe chose (with the tactics
of its build, as a pass's kernel set: :func:`kernel_names`). A probe that chose a kernel set
already timed in its pass (the pass's own, or an earlier probe's) is not timed again: it counts
as a draw of that set, with no median (``median_ms`` None on an ``ok`` probe). A probe that
chose a new set is timed with the pass's timer for a short budget (:func:`probe_settings`).
So a probe costs a build and one profiled inference, and a short timing only where it found
something new. Probes never change the headline median (the passes' medians): they count in
the kernel sets, widen the between-pass interval to cover their medians, and make a case
``selection-unstable`` when they chose other kernels that time differently
(``bench.repeats``).

A backend whose rebuild chooses the same way (heuristics, a reused timing cache, the CPU) draws
no probes; the record says why (``probes_note``).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Iterable, Sequence
from typing import Any

from bench.record import BuildFacts, Probe
from bench.timing import TimingSettings

#: a probe's timing: enough replays of the graph timer (~2 ms each) for a median within about
#: 1 %, far below a pass's budget
PROBE_WARMUP_S = 0.01
PROBE_MIN_TIME_S = 0.02
PROBE_MAX_TIME_S = 0.2
PROBE_MIN_SAMPLES = 5
#: a probe is begun only when the case has at least this many times the last probe's wall
#: time left of its ``case_timeout_s``
PROBE_TIME_MARGIN = 1.5


def is_chosen_kernel(name: str) -> bool:
    """False for memsets and copies: they come and go with allocator state, not with the
    choice of kernel."""
    return not name.startswith(("Memset", "Memcpy", "[memory]"))


def kernel_names(build: BuildFacts | None, profiled: Iterable[str]) -> list[str]:
    """What a build chose, sorted: the kernels its profile saw (memsets and copies left out),
    and the tactics and plans its build named."""
    names = {n for n in profiled if is_chosen_kernel(n)}
    if build is not None:
        for la in build.layers:
            tactic = la.get("tactic") or la.get("TacticName")
            if tactic:
                names.add(f"{la.get('name', '?')}: {tactic}")
        chosen = build.extra.get("chosen_plan") or build.extra.get("plan_name")
        if chosen:
            names.add(f"plan: {chosen}")
    return sorted(names)


def probe_settings(settings: TimingSettings) -> TimingSettings:
    """A probe's timing: the pass's timer and noise target, a short fixed budget."""
    from dataclasses import replace

    return replace(settings, warmup_s=PROBE_WARMUP_S, min_samples=PROBE_MIN_SAMPLES,
                   min_time_s=PROBE_MIN_TIME_S,
                   max_time_s=max(PROBE_MIN_TIME_S, min(PROBE_MAX_TIME_S, settings.max_time_s)),
                   criterion="rse", fixed_time_s=0.0)


def draw_probes(n: int, case: Any, backend: Any, data: Any, ctx: Any, timing: Any,
                gpu: Any, deadline: Any = None,
                timed: Iterable[Sequence[str]] = ()) -> tuple[list[Probe], str | None]:
    """``n`` probes of ``case`` (see the module doc): (probes, note). The note says why none
    were drawn, or why fewer than ``n``; a probe that fails is kept with its error, and the
    pass's own measurement is never touched. ``GpuStuck`` is raised (the case stops).
    ``timed``: kernel sets (as :func:`kernel_names` gives them) already timed in this pass; a
    probe that chose one of them, or the set of an earlier timed probe, is not timed again."""
    if n <= 0:
        return [], None
    why = backend.probe_reason(case.spec)
    if why:
        return [], f"probes = {n} not drawn: {why}"
    probes: list[Probe] = []
    seen = {tuple(k) for k in timed}
    for i in range(n):
        if deadline is not None and deadline.limit_s is not None and probes:
            need = PROBE_TIME_MARGIN * (probes[-1].wall_s or 0.0)
            if deadline.remaining_s() < need:
                return probes, (f"probes cut to {len(probes)} of {n}: case_timeout_s = "
                                f"{deadline.limit_s:g} s leaves {deadline.remaining_s():.1f} s")
        pr = backend.fresh_selection(
            lambda i=i: one_probe(i, case, backend, data, ctx, timing, gpu, frozenset(seen)))
        probes.append(pr)
        if pr.status == "ok" and pr.median_ms is not None:
            seen.add(tuple(pr.kernels))
    return probes, None


def one_probe(index: int, case: Any, backend: Any, data: Any, ctx: Any, timing: Any,
              gpu: Any, timed: frozenset[tuple[str, ...]] = frozenset()) -> Probe:
    """Build, name the kernels, and time briefly unless they are a set in ``timed``; in the
    calling thread."""
    from bench.gpu.cuda import GpuStuck
    from bench.runner import _one_line, _source, resolve_mode
    from bench.timing import measure

    t0 = time.perf_counter()
    engine = None
    build_s = None
    try:
        engine = backend.build(case.spec, data, ctx)
        build_s = time.perf_counter() - t0
        on_gpu = engine.device == "cuda" and gpu is not None
        stream = gpu.stream if on_gpu else None
        kernels = kernel_names(BuildFacts.model_validate(engine.info.to_json()),
                               [lt.name for lt in engine.layer_profile(stream, 1)])
        if tuple(kernels) in timed:  # a draw of a set this pass has timed: no new number
            return Probe(index=index, status="ok", kernels=kernels, build_s=build_s,
                         wall_s=time.perf_counter() - t0)
        settings = probe_settings(timing.settings())
        source = _source(engine, resolve_mode(timing, engine), timing.l2,
                         gpu if on_gpu else None, settings)
        try:
            samples = measure(source, settings)
        finally:
            close = getattr(source, "close", None)
            if close:
                close()
        return Probe(index=index, status="ok", median_ms=statistics.median(samples.ms),
                     rse=samples.rse if math.isfinite(samples.rse) else None,
                     samples=len(samples.ms), kernels=kernels,
                     build_s=build_s, wall_s=time.perf_counter() - t0)
    except GpuStuck:
        engine = None  # the stuck work may still use it: nothing is freed (measure_case)
        raise
    except Exception as e:  # noqa: BLE001 - a failed probe is kept, the pass is not touched
        return Probe(index=index, status="error", error=f"{type(e).__name__}: {_one_line(e)}",
                     build_s=build_s, wall_s=time.perf_counter() - t0)
    finally:
        if engine is not None:
            engine.close()
