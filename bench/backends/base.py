"""The backend contract. The base classes check state and call ``*_impl`` hooks; subclasses
fill the hooks (the shape of Polygraphy's runners). Nothing here imports torch, tensorrt or CUDA.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, TypeVar

import numpy as np

from bench.spec import ConvSpec

DeviceKind = Literal["cuda", "cpu"]
T = TypeVar("T")


class StreamLike(Protocol):
    """What an engine needs of convbench's stream: the raw ``cudaStream_t`` as an int."""

    @property
    def handle(self) -> int: ...


@dataclass(frozen=True)
class QuantScales:
    """Scales of an int8/fp8 case: one for the input (a scalar, as the network's quantize layer
    takes it) and one per output channel for the weights (axis 0)."""

    input: float
    weights: np.ndarray

    def to_json(self) -> dict[str, Any]:
        return {"input_scale": float(self.input),
                "weight_scales": [float(v) for v in np.asarray(self.weights).ravel()],
                "weight_axis": 0}


@dataclass(frozen=True)
class ConvData:
    """Host tensors of one case in float32 (already rounded to the case's precision; for
    int8/fp8 the dequantized values of the quantization grid, with their ``scales``).

    Every backend gets the same numbers; the float64 reference is computed from them too, so a
    check measures the arithmetic, not the rounding of the inputs.
    """

    x: np.ndarray
    w: np.ndarray
    b: np.ndarray | None
    scales: QuantScales | None = None
    #: float64 references already computed from these tensors, by (case key, images): the
    #: cudnn backend checks every plan against the reference and the check step checks the
    #: chosen engine, and both get the one computation
    refs: dict[tuple[str, int], np.ndarray] = field(default_factory=dict, repr=False,
                                                    compare=False)


@dataclass(frozen=True)
class BuildContext:
    """Where and with what an engine is built: the CUDA device the run plan chose (an index as
    CUDA counts them in this process) and the cache directory (engines, timing caches)."""

    device_index: int = 0
    cache_dir: Path | None = None


@dataclass
class BuildInfo:
    """What building an engine cost and chose."""

    build_s: float
    plan_bytes: int | None = None
    cache_hit: bool = False
    layers: list[dict[str, Any]] = field(default_factory=list)  # name, type, tactic, formats...
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LayerTime:
    """One layer (TensorRT) or kernel (torch) of a per-layer profile.

    ``times_ms`` keeps what was measured, as trtexec's ``LayerProfile.timeMs`` does (TensorRT
    samples/common/sampleReporting.h, v11.0, lines 187-191): the layer's time in each profiled
    inference (all its calls summed); ``total_ms`` is their sum and ``iterations`` their count,
    so exports give trtexec's totals, averages and medians. Profiles stored before these fields
    have them empty/None."""

    name: str
    median_ms: float
    share: float  # of the summed medians, 0..1
    calls: int = 1
    type: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    total_ms: float | None = None  # summed over every profiled inference
    iterations: int | None = None  # profiled inferences actually measured
    times_ms: list[float] = field(default_factory=list)  # per inference, in order

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Graph(Protocol):
    """A captured CUDA graph of several enqueues, replayed on a stream."""

    def launch(self, stream: StreamLike) -> None: ...

    def close(self) -> None: ...


class Engine(ABC):
    """A built convolution, ready to run. Owns every buffer it made; a context manager."""

    device: DeviceKind

    def __init__(self, spec: ConvSpec, info: BuildInfo) -> None:
        self.spec = spec
        self.info = info
        self._closed = False

    # public API: checks, then hooks ---------------------------------------------------------
    def set_input(self, x: np.ndarray) -> None:
        """Copy a host array of ``spec.input_shape`` into the engine's input buffer."""
        self._check_open()
        if tuple(x.shape) != self.spec.input_shape:
            raise ValueError(f"input shape {x.shape} != {self.spec.input_shape}")
        self._set_input_impl(x)

    def enqueue(self, stream: StreamLike | None) -> None:
        """Launch one inference on ``stream`` (None on the CPU). Must not synchronize."""
        self._check_open()
        self._enqueue_impl(stream)

    def output(self, stream: StreamLike | None = None) -> np.ndarray:
        """Wait for ``stream`` and return the last output as a float32 host array."""
        self._check_open()
        return self._output_impl(stream)

    def capture(self, stream: StreamLike, iters: int) -> Graph | None:
        """A CUDA graph of ``iters`` back-to-back enqueues, or None: then the GPU timers capture
        ``enqueue`` with plain stream capture. Engines whose library must own the capture
        (torch's caching allocator) override ``_capture_impl``."""
        self._check_open()
        return self._capture_impl(stream, iters)

    def layer_profile(self, stream: StreamLike | None, iters: int) -> list[LayerTime]:
        """Per-layer times over ``iters`` runs, in a run separate from the timed one."""
        self._check_open()
        return self._layer_profile_impl(stream, iters)

    @property
    def movable(self) -> bool:
        """Whether ``relocate`` can move this engine's buffers (False: ``[timing] placements``
        times it at one placement, with the whole budget)."""
        return False

    def relocate(self, draw: int) -> None:
        """Move the engine's device buffers (input, weights, bias; output and workspace where
        the engine owns them) to device memory this engine has not used, after spacers whose
        sizes follow from ``draw``; the next enqueue or capture uses them. The buffers left
        behind are kept until ``close``, so a new one cannot land where an old one was. Only
        for a ``movable`` engine. Where a small case's buffers sit in device memory moves its
        time by a few per cent (H200, benchmarks/results/placement-h200.md);
        ``[timing] placements`` samples several."""
        self._check_open()
        if not self.movable:
            raise RuntimeError(f"this {self.device.upper()} engine cannot move its buffers")
        self._relocate_impl(draw)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._close_impl()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("engine is closed")

    # hooks ------------------------------------------------------------------------------------
    @abstractmethod
    def _set_input_impl(self, x: np.ndarray) -> None: ...

    @abstractmethod
    def _enqueue_impl(self, stream: StreamLike | None) -> None: ...

    @abstractmethod
    def _output_impl(self, stream: StreamLike | None) -> np.ndarray: ...

    def _capture_impl(self, stream: StreamLike, iters: int) -> Graph | None:
        return None

    def _layer_profile_impl(self, stream: StreamLike | None, iters: int) -> list[LayerTime]:
        return []

    def _relocate_impl(self, draw: int) -> None:
        """Engines whose ``movable`` is True implement this."""
        raise NotImplementedError

    def _close_impl(self) -> None:
        return None


class Backend(ABC):
    """A way to build and run convolutions (torch/cuDNN, TensorRT, ...)."""

    name: ClassVar[str]
    install_hint: ClassVar[str] = ""

    @abstractmethod
    def available(self) -> tuple[bool, str]:
        """(True, "") or (False, one-line reason, with the install command if that helps)."""

    @abstractmethod
    def versions(self) -> dict[str, str]:
        """Versions of what this backend runs on (library, cuDNN, ...); {} if unavailable."""

    @property
    @abstractmethod
    def device(self) -> DeviceKind:
        """Where engines of this backend run on this machine."""

    def build(self, spec: ConvSpec, data: ConvData, ctx: BuildContext | None = None) -> Engine:
        """Build an engine for ``spec`` with the weights in ``data``, on ``ctx``'s device.

        Raises ``UnsupportedCase`` when the case cannot run here and ``BuildFailed`` when the
        build itself fails; both become records with a status, and the sweep goes on.
        """
        ok, reason = self.available()
        if not ok:
            from bench.errors import BackendUnavailable

            raise BackendUnavailable(f"{self.name}: {reason}")
        return self._build_impl(spec, data, ctx or BuildContext())

    @abstractmethod
    def _build_impl(self, spec: ConvSpec, data: ConvData, ctx: BuildContext) -> Engine: ...

    # --- selection probes (``[timing] probes``, bench.probes) ---------------------------------
    def probe_reason(self, spec: ConvSpec) -> str | None:
        """None when another build of ``spec`` chooses its kernels or tactics anew, so that a
        probe is a fresh draw of the selection; else why it is not (the probes are skipped
        and the record says so)."""
        return f"{self.name} chooses the same way in every build"

    def fresh_selection(self, fn: Callable[[], T]) -> T:
        """``fn()`` where the backend's selection starts afresh (default: here; torch: in a new
        thread, whose cuDNN benchmark cache is empty)."""
        return fn()
