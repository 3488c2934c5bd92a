"""``RunPlan``: everything a sweep needs, validated once, for every way of running one.

``convbench run`` (plain or scaled out), the scale-out workers, the pytest plugin and
``convbench profile`` all build a plan with :func:`make_plan` and hand it to the runner. This is
the only place that validates timing options and checks that a run may be resumed; an error is
one line naming the flag (with the entry point's prefix: ``--min-samples`` for the CLI,
``--convbench-min-samples`` for pytest) or the suite file and key.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from bench.errors import BenchError
from bench.suite import Case, Suite, TimingConfig

if TYPE_CHECKING:
    from bench.backends.base import Backend
    from bench.runner import GpuSession


def validate_timing(base: TimingConfig, overrides: dict[str, Any], prefix: str = "--",
                    source: str | None = None) -> TimingConfig:
    """``base`` with ``overrides`` applied and checked; errors name the flag (``prefix`` +
    the key with dashes) or, without overrides, the suite file and key."""
    try:
        timing = TimingConfig.model_validate({**base.model_dump(), **overrides})
    except ValidationError as e:
        err = e.errors()[0]
        key = str(err["loc"][0]) if err["loc"] else ""
        what = (f"{prefix}{key.replace('_', '-')}" if key in overrides or not source
                else f"{source}: timing.{key}")
        msg = " ".join(str(err["msg"]).split()).removeprefix("Value error, ")
        raise BenchError(f"{what}: {msg}") from None
    if timing.mode == "host" and timing.l2 == "cold":
        if {"mode", "l2"} & set(overrides) or not source:
            raise BenchError(f"{prefix}l2 cold needs {prefix}mode graph or events (host timing "
                             "never flushes L2)")
        raise BenchError(f"{source}: timing.l2: 'cold' needs timing.mode graph or events "
                         "(host timing never flushes L2)")
    return timing


def check_backend_names(names: list[str], prefix: str = "--") -> list[str]:
    from bench.backends.registry import BACKENDS

    unknown = [n for n in names if n not in BACKENDS]
    if unknown:
        raise BenchError(f"{prefix}backend {unknown[0]}: unknown backend (known: "
                         f"{', '.join(BACKENDS)})")
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise BenchError(f"{prefix}backend {dup}: given twice")
    return names


@dataclass(frozen=True)
class RunPlan:
    """A validated sweep: which cases, on which backends, timed how, stored where, on which
    device. Picklable: scale-out workers receive it."""

    suite: Suite
    cases: tuple[Case, ...]
    timing: TimingConfig
    backend_names: tuple[str, ...]
    out: Path = Path("results")
    resume: Path | None = None
    cache_dir: Path = Path("results/.cache")
    device_index: int = 0
    filter: str | None = None
    shard: tuple[int, int] | None = None
    argv: tuple[str, ...] = field(default_factory=lambda: tuple(sys.argv))
    progress: bool = True
    prefix: str = "--"
    #: set by the scale-out driver for the passes of ``repeats``: which pass a worker runs
    pass_index: int | None = None

    # --- what the runner asks for ------------------------------------------------------------
    @property
    def repeats(self) -> int:
        return int(getattr(self.timing, "repeats", 1) or 1)

    def resolve_backends(self) -> tuple[list[Backend], dict[str, str]]:
        """(backends that can run here, {name: reason} of those that cannot); none runnable
        is an error."""
        from bench.backends.registry import get_backend

        backends, unavailable = [], {}
        for name in self.backend_names:
            b = get_backend(name)
            ok, reason = b.available()
            if ok:
                backends.append(b)
            else:
                unavailable[name] = reason
        if not backends:
            detail = "; ".join(f"{n}: {r}" for n, r in unavailable.items())
            raise BenchError(f"no backend of {list(self.backend_names)} can run here ({detail})")
        return backends, unavailable

    def gpu_session(self) -> GpuSession:
        """Device, stream (and L2 flusher for cold timing) on the plan's device."""
        from bench.runner import GpuSession

        return GpuSession(self.device_index, cold=self.timing.l2 == "cold", prefix=self.prefix)

    def for_worker(self, device_index: int = 0, pass_index: int | None = None) -> RunPlan:
        """This plan as a worker process sees it (its GPU is device 0 there)."""
        return replace(self, device_index=device_index, pass_index=pass_index, progress=False)

    def todo(self, done: set[tuple[str, str]], backends: list[str]) -> list[tuple[Case, str]]:
        return [(c, b) for c in self.cases for b in backends if (c.key, b) not in done]


def select_cases(suite: Suite, filter_text: str | None = None,
                 shard: tuple[int, int] | None = None) -> list[Case]:
    from bench.filter import parse_filter

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


def planned_results(info: dict[str, Any]) -> int | None:
    """How many results (case × backend) a run was to record, from its run.json: the stored
    ``planned`` count, else (runs made before 2026-12) the stored suite text with the run's
    filter and shard times its backends; None when unknown (a pytest session chooses its
    cases itself, or the suite text does not parse)."""
    from bench.suite import parse_suite

    if info.get("planned") is not None:
        return int(info["planned"])
    if info.get("pytest") or info.get("synthetic") or not info.get("suite_text"):
        return None
    try:
        suite = parse_suite(info["suite_text"], source=str(info.get("suite_path")),
                            max_cases=10**9)
        shard = info.get("shard")
        cases = select_cases(suite, info.get("filter"), tuple(shard) if shard else None)
    except BenchError:
        return None
    return len(cases) * max(1, len(info.get("backends") or {}))


def make_plan(suite: Suite, *, backends: list[str] | None = None,
              timing: dict[str, Any] | None = None, base_timing: TimingConfig | None = None,
              out: Path = Path("results"), resume: Path | None = None,
              cache_dir: Path | None = None, device_index: int = 0,
              filter: str | None = None, shard: tuple[int, int] | None = None,
              argv: list[str] | None = None, progress: bool = True,
              prefix: str = "--") -> RunPlan:
    """The one way to turn a suite plus options into a runnable plan (see the module doc)."""
    source = str(suite.path) if suite.path else None
    cfg = validate_timing(base_timing or suite.timing, dict(timing or {}), prefix, source)
    names = check_backend_names(list(backends or suite.backends), prefix)
    if device_index < 0:
        raise BenchError(f"{prefix}device {device_index}: a CUDA device index is >= 0")
    cases = select_cases(suite, filter, shard)
    if not cases:
        raise BenchError(f"{suite.path or suite.name}: no case left after --filter/--shard")
    plan = RunPlan(suite=suite, cases=tuple(cases), timing=cfg, backend_names=tuple(names),
                   out=Path(out), resume=Path(resume) if resume else None,
                   cache_dir=Path(cache_dir or (Path(out) / ".cache")).absolute(),
                   device_index=device_index, filter=filter, shard=shard,
                   argv=tuple(sys.argv if argv is None else argv), progress=progress,
                   prefix=prefix)
    if plan.resume is not None:
        check_resume(plan)
    return plan


def check_resume(plan: RunPlan) -> None:
    """Refuse to continue a run measured from another suite text, with other timing settings
    or other backends: its records and the new ones would not belong together."""
    from bench.store import read_run_info

    run_dir = plan.resume
    assert run_dir is not None
    old = read_run_info(run_dir)
    if old.get("suite_text") != plan.suite.text:
        raise BenchError(f"{run_dir}: was made from a different suite text than "
                         f"{plan.suite.path}; start a new run instead of --resume")
    before_timing = old.get("timing")
    if isinstance(before_timing, dict):
        # keys added to [timing] since that run was made take their defaults
        try:
            before_timing = TimingConfig.model_validate(before_timing).model_dump()
        except ValidationError:
            pass
    # the case limit bounds a case, it does not change how one is measured: a resume may
    # raise it (cases recorded as timeout stay recorded; a new run measures them again)
    now = {k: v for k, v in plan.timing.model_dump().items() if k != "case_timeout_s"}
    if isinstance(before_timing, dict):
        before_timing = {k: v for k, v in before_timing.items() if k != "case_timeout_s"}
    if before_timing not in (None, now):
        raise BenchError(f"{run_dir}: was measured with other timing settings "
                         f"({old.get('timing')}); resume with the same options")
    before = set(old.get("backends") or {}) | set(old.get("unavailable_backends") or {})
    if before and before != set(plan.backend_names):
        raise BenchError(f"{run_dir}: was run with backends {sorted(before)}, not "
                         f"{sorted(plan.backend_names)}; resume with the same --backend")
