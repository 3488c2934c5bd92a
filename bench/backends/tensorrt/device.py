"""The CUDA device an engine is built for and runs on, as the run plan names it."""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any


@dataclass(frozen=True)
class GpuId:
    name: str
    uuid: str
    cc: tuple[int, int]

    @property
    def sm(self) -> str:
        return f"sm{self.cc[0]}{self.cc[1]}"


_gpu_cache: dict[int, GpuId | None] = {}


def current_gpu(index: int = 0) -> GpuId | None:
    """Name, UUID and compute capability of CUDA device ``index`` (as bench.gpu.cuda reports
    them), or None without a usable GPU of that index."""
    if index not in _gpu_cache:
        _gpu_cache[index] = _query_gpu(index)
    return _gpu_cache[index]


def _query_gpu(index: int) -> GpuId | None:
    try:
        from bench.gpu import cuda

        if cuda.unavailable_reason():
            return None
        info = cuda.Device(index).info
        return GpuId(name=info.name, uuid=info.uuid, cc=tuple(info.cc))  # type: ignore[arg-type]
    except Exception:  # noqa: BLE001 - no driver, no such device: both mean "no GPU" here
        return None


def make_current(index: int) -> Any:
    """Make device ``index``'s primary context current on this thread (TensorRT builds and
    deserializes on the current device) and return the ``bench.gpu.cuda.Device``."""
    from bench.gpu import cuda

    return cuda.Device(index)


def rtx_targets(trt: ModuleType) -> dict[tuple[int, int], Any]:
    """Compute capabilities TensorRT-RTX builds for and runs on → its ComputeCapability value."""
    out = {}
    for name, value in trt.ComputeCapability.__members__.items():
        if name.startswith("SM") and name[2:].isdigit():
            digits = name[2:]
            out[(int(digits[:-1]), int(digits[-1]))] = value
    return out
