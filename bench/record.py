"""The typed result record: one line of ``records.jsonl`` per case × backend.

Every writer builds a :class:`Record` and every reader (tables, compare, export, merge, pytest,
scale-out) reads its fields; nothing indexes result dicts by string. Stored files carry a schema
version; older versions are brought up to date on load by the ``update_to_N`` functions below
(asv's ``results.py`` idiom), so runs already on disk still report, compare and export. A record
that does not validate is refused with its file, line and field.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bench.errors import BenchError, SchemaError
from bench.spec import ConvSpec

#: version 3: records and passes gain selection ``probes`` (optional; ``update_to_3`` only
#: renumbers); version 2: typed records (flags, repeated passes and their aggregate); version 1:
#: the dict records of convbench before 2026-12 (read through ``update_to_2``)
SCHEMA_VERSION = 3

Status = Literal["ok", "check_failed", "build_failed", "unsupported", "error", "timeout"]
#: a finite, non-negative float (times, sizes); NaN and infinities are refused on load
Finite = Annotated[float, Field(ge=0, allow_inf_nan=False)]
#: milliseconds of one sample: finite and positive
SampleMs = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=0, le=2**63 - 1)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


_M = TypeVar("_M", bound=BaseModel)


class _Open(BaseModel):
    """Facts whose detail differs by backend or timer (kept, not interpreted)."""

    model_config = ConfigDict(extra="allow")


class Derived(_Model):
    flops: Count  # the convolution's 2·N·K·(C/g)·R·S·P·Q (bias adds included before 2026-12)
    bias_flops: int | None = None
    activation_flops: int | None = None
    bytes_min: Count
    intensity: Finite
    output_shape: list[Count]


class Check(_Model):
    """Correctness against the float64 reference, on the first ``images`` of the batch."""

    rel_err: Finite | None  # None: the output was not finite
    tol: Finite
    passed: bool
    images: Count
    batch: Count | None = None  # the case's batch, so readers see the coverage


class Stats(_Model):
    """Statistics of one pass's per-inference samples (ms); see ``bench.stats.Summary``.
    With ``[timing] placements`` ≥ 2 the samples are those of every placement and the
    median's interval is widened over the placements (``bench.placements.widen``)."""

    n: Annotated[int, Field(ge=1)]
    min: Finite
    median: SampleMs
    mean: Finite
    p90: Finite
    p95: Finite
    p99: Finite
    max: Finite
    std: Finite
    cov: Finite | None
    rse: Finite | None
    median_ci_low: Finite
    median_ci_high: Finite

    @classmethod
    def of(cls, samples_ms: list[float]) -> Stats:
        from bench.stats import summarize

        d = summarize(samples_ms).to_json()
        return cls.model_validate({k: (None if isinstance(v, float) and math.isinf(v) else v)
                                   for k, v in d.items()})


class Placement(_Model):
    """One buffer placement of a pass's timing (``[timing] placements``, bench.placements):
    the engine's buffers moved to new device memory, a new timer (graph) and its samples."""

    index: Count
    moved: bool  # False for the first placement (where the build put the buffers)
    samples: Count
    median_ms: SampleMs
    iters_per_sample: Annotated[int, Field(ge=1)] = 1
    converged: bool = False


class TimingFacts(_Open):
    """How the samples were taken: timer mode, K, L2, criterion, convergence, the source's
    own facts (blocked or not, probe), and the buffer placements the samples were taken at."""

    mode: str
    iters_per_sample: Annotated[int, Field(ge=1)]
    l2: str
    warmup_s: Finite = 0.0
    wall_s: Finite = 0.0
    rse: Finite | None = None
    converged: bool = False
    source: dict[str, Any] = Field(default_factory=dict)
    #: the placements the samples were taken at, in order (empty: one, where the build put
    #: the buffers, as before ``[timing] placements``)
    placements: list[Placement] = Field(default_factory=list)
    #: why fewer placements were taken than asked for (None: all of them)
    placements_note: str | None = None
    #: relative spread (max − min) / min of the placements' medians, in per cent
    placement_spread_pct: Finite | None = None


class BuildFacts(_Open):
    build_s: Finite
    plan_bytes: Count | None = None
    cache_hit: bool = False
    layers: list[dict[str, Any]] = Field(default_factory=list)
    extra: dict[str, Any] = Field(default_factory=dict)


class Clocks(_Model):
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None


class Flag(_Model):
    """Why a result must not be read as a clean measurement."""

    name: Literal["throttled", "contention", "low-clocks", "cpu-load", "not-converged",
                  "profile-disagrees", "selection-unstable"]
    reason: str


class Probe(_Model):
    """One more selection draw (``[timing] probes``): the case built again where the backend's
    selection starts afresh (torch: in a new thread, whose cuDNN benchmark cache is empty),
    its kernels or tactics named, and timed briefly with the same timer unless its pass had
    timed that kernel set already (then ``median_ms`` is None on an ``ok`` probe: a draw of
    that set, no new number; ``bench.probes``)."""

    index: Count
    status: Literal["ok", "error"]
    error: str | None = None
    median_ms: SampleMs | None = None
    rse: Finite | None = None
    samples: Count = 0
    kernels: list[str] = Field(default_factory=list)  # sorted, as a pass's ``kernels``
    build_s: Finite | None = None  # the draw's build (the autotuning itself)
    wall_s: Finite | None = None  # build + timing + naming the kernels


class Pass(_Model):
    """One of ``repeats`` independent builds + measurements of a case (own process)."""

    index: Count
    status: Status
    error: str | None = None
    worker: dict[str, Any] | None = None
    build: BuildFacts | None = None
    samples_ms: list[SampleMs] = Field(default_factory=list)
    stats: Stats | None = None
    timing: TimingFacts | None = None
    kernels: list[str] = Field(default_factory=list)  # sorted kernel / tactic names chosen
    flags: list[Flag] = Field(default_factory=list)
    wall_s: Finite | None = None
    probes: list[Probe] = Field(default_factory=list)


class KernelSet(_Model):
    kernels: list[str]
    passes: list[Count]
    #: median of those passes' medians; of its probes' medians when no pass chose it
    median_ms: SampleMs
    probes: Count = 0  # probes (of all passes) that chose this set, timed or not
    probe_median_ms: SampleMs | None = None  # median of the timed ones' medians


class Aggregate(_Model):
    """Between-pass statistics of a replicated case."""

    passes: Count
    ok_passes: Count
    median_ms: SampleMs  # median of the pass medians: the headline number
    low_ms: SampleMs  # smallest pass median
    high_ms: SampleMs  # largest pass median
    interval_low_ms: SampleMs  # between-pass interval (see bench.repeats.between_pass_interval)
    interval_high_ms: SampleMs
    interval_kind: str  # e.g. "range of 3 pass medians"
    spread_pct: Finite  # (high - low) / median * 100
    kernel_sets: list[KernelSet] = Field(default_factory=list)
    #: ok selection probes of the ok passes (the timed ones' medians widen the interval; a
    #: probe of a set its pass had timed carries no median)
    probes: Count = 0
    probe_low_ms: SampleMs | None = None
    probe_high_ms: SampleMs | None = None


class Record(_Model):
    """One case × backend: what ran, how it went, the samples and their statistics."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    schema_version: int = Field(SCHEMA_VERSION, alias="schema")
    case_index: Count
    case_key: Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")]
    label: str = ""
    name: str
    backend: Annotated[str, Field(min_length=1, max_length=64)]
    spec: ConvSpec
    derived: Derived
    device: str | None = None
    gpu: dict[str, Any] | None = None
    started: str = ""
    status: Status
    error: str | None = None
    traceback: str | None = None
    build: BuildFacts | None = None
    check: Check | None = None
    samples_ms: list[SampleMs] = Field(default_factory=list)
    timing: TimingFacts | None = None
    stats: Stats | None = None
    clocks: Clocks | None = None
    throttled: bool = False
    flags: list[Flag] = Field(default_factory=list)
    profile_error: str | None = None
    wall_s: Finite | None = None
    worker: dict[str, Any] | None = None
    passes: list[Pass] | None = None
    aggregate: Aggregate | None = None
    #: selection probes of a one-pass run (with ``repeats`` they are in each pass)
    probes: list[Probe] = Field(default_factory=list)
    #: why the probes asked for were not drawn, or were cut short (None: all drawn)
    probes_note: str | None = None
    #: where the record was stored (set by readers and the pytest plugin, never written)
    run_dir: str | None = Field(None, exclude=True)

    # --- derived views ---------------------------------------------------------------------
    @property
    def median_ms(self) -> float | None:
        """The headline per-inference median: between passes when the case was replicated,
        else of the one pass."""
        if self.aggregate is not None:
            return self.aggregate.median_ms
        return self.stats.median if self.stats is not None else None

    @property
    def interval(self) -> tuple[float, float, str] | None:
        """(low, high, what it covers) of the headline median."""
        if self.aggregate is not None:
            a = self.aggregate
            return a.interval_low_ms, a.interval_high_ms, "between passes"
        if self.stats is not None:
            k = len(self.timing.placements) if self.timing is not None else 0
            return (self.stats.median_ci_low, self.stats.median_ci_high,
                    f"within pass, over {k} placements" if k > 1 else "within pass")
        return None

    @property
    def flag_names(self) -> list[str]:
        return [f.name for f in self.flags]

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


class LayerTimeRow(_Open):
    name: str
    median_ms: Finite
    share: Finite


class LayerRow(_Model):
    """One line of ``layers.jsonl``: a case's per-layer (or per-kernel) profile."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    schema_version: int = Field(SCHEMA_VERSION, alias="schema")
    case_key: Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")]
    backend: str
    layers: list[LayerTimeRow]
    pass_index: Count | None = None

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


# --- run.json --------------------------------------------------------------------------------
class _Stored(BaseModel):
    """A run.json part: the fields readers use are typed (strictly: ``"5"`` is no number),
    other keys are kept as they are (each writer and version adds its own facts)."""

    model_config = ConfigDict(extra="allow", strict=True)


class HostInfo(_Stored):
    """``bench.env.host_env``."""

    host: str | None = None
    platform: str | None = None
    cpu: str | None = None
    cpu_count: Count | None = None
    python: str | None = None
    packages: dict[str, str] = Field(default_factory=dict)


class GpuInfo(_Stored):
    """``bench.gpu.cuda.DeviceInfo.to_json`` (+ driver facts where a writer adds them)."""

    index: Count | None = None
    name: str | None = None
    uuid: str | None = None
    cc: Annotated[list[Count], Field(min_length=2, max_length=2)] | None = None
    sm_count: Count | None = None
    l2_bytes: Count | None = None
    total_mem: Count | None = None
    driver: str | None = None
    cuda_driver: str | None = None
    cuda_runtime: str | None = None


class BackendInfo(_Stored):
    device: str | None = None
    versions: dict[str, Any] = Field(default_factory=dict)


class RunTiming(_Stored):
    """``[timing]`` as the run used it. Typed, not a ``TimingConfig``: runs of older convbench
    lack newer keys, and synthetic runs store a few keys only."""

    mode: str | None = None
    l2: str | None = None
    warmup_s: Finite | None = None
    min_samples: Count | None = None
    min_time_s: Finite | None = None
    max_time_s: Finite | None = None
    target_rse: Finite | None = None
    profile_iters: Count | None = None
    repeats: Count | None = None
    probes: Count | None = None
    criterion: str | None = None
    case_timeout_s: Finite | None = None


class RunInfo(_Stored):
    """``run.json``: what was run, how, and on what (``bench.runner.describe_run``). Every key
    a reader uses is typed here, so a corrupted file is one line naming the file and key, never
    an AttributeError in a report."""

    schema_version: int = Field(SCHEMA_VERSION, alias="schema")
    suite: str | None = None
    suite_path: str | None = None
    suite_text: str | None = None
    command: str | None = None
    created: str | None = None
    synthetic: bool = False
    pytest: bool = False
    backends: dict[str, BackendInfo] = Field(default_factory=dict)
    unavailable_backends: dict[str, str] = Field(default_factory=dict)
    timing: RunTiming | None = None
    filter: str | None = None
    shard: Annotated[list[Count], Field(min_length=2, max_length=2)] | None = None
    device_index: Count | None = None
    host: HostInfo | None = None
    gpu: GpuInfo | None = None
    gpu_clocks_at_start: dict[str, Any] | None = None
    executors: list[dict[str, Any]] | None = None
    #: cases × backends the run was to measure (written since 2026-12; older runs: None)
    planned: Count | None = None


def parse_run_info(obj: Any, where: str) -> dict[str, Any]:
    """A stored run.json (any known schema), validated by :class:`RunInfo`, as the dict it
    is (readers and the scale-out driver, which rewrites it, use it as one)."""
    _parse(RunInfo, obj, where)
    return upgrade(obj, where)


# --- schema upgrades -------------------------------------------------------------------------
def update_to_2(obj: dict[str, Any]) -> dict[str, Any]:
    """Version 1 → 2: records gain ``flags`` (throttling becomes a flag); stats' infinities
    were never stored; layer rows and run.json are unchanged."""
    obj = dict(obj)
    if "status" in obj and "flags" not in obj:  # a record (not a layer row / run.json)
        obj["flags"] = ([{"name": "throttled", "reason": "clock-event reasons at the start or "
                          "end of the case (schema 1)"}] if obj.get("throttled") else [])
    obj["schema"] = 2
    return obj


def update_to_3(obj: dict[str, Any]) -> dict[str, Any]:
    """Version 2 → 3: records and passes may carry selection probes (new optional fields):
    a version-2 file is read as it is."""
    return {**obj, "schema": 3}


UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: update_to_2,
                                                                   2: update_to_3}


def upgrade(obj: dict[str, Any], where: str) -> dict[str, Any]:
    """``obj`` brought to ``SCHEMA_VERSION``; an unknown or newer version is a SchemaError."""
    found = obj.get("schema")
    if type(found) is not int or not 1 <= found <= SCHEMA_VERSION:
        raise SchemaError(f"{where}: schema version {found!r}, this convbench reads versions 1 "
                          f"to {SCHEMA_VERSION}; use the convbench version that wrote it")
    while found < SCHEMA_VERSION:
        obj = UPGRADES[found](obj)
        found = obj["schema"]
    return obj


def _invalid(where: str, e: ValidationError) -> BenchError:
    err = e.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "record"
    msg = " ".join(str(err["msg"]).split()).removeprefix("Value error, ")
    return BenchError(f"{where}: {loc}: {msg[:300]}; the file is corrupted or was edited")


def _parse(model: type[_M], obj: Any, where: str) -> _M:
    if not isinstance(obj, dict):
        raise BenchError(f"{where}: not a JSON object")
    try:
        return model.model_validate(upgrade(obj, where))
    except ValidationError as e:
        raise _invalid(where, e) from None


def parse_record(obj: Any, where: str) -> Record:
    """A stored record (any known schema) as a :class:`Record`, or one BenchError line. A
    stored ``ok`` record holds what made it ok: its samples and their statistics (every
    writer stores both; readers compare and plot them)."""
    rec = _parse(Record, obj, where)
    if rec.status == "ok":
        missing = "samples_ms" if not rec.samples_ms else "stats" if rec.stats is None else None
        if missing:
            raise BenchError(f"{where}: {missing}: empty on a record with status ok; the file "
                             "is corrupted or was edited")
    return rec


def parse_layer_row(obj: Any, where: str) -> LayerRow:
    return _parse(LayerRow, obj, where)
