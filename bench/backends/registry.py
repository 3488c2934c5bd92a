"""Backend names → classes, imported only when asked for."""

from __future__ import annotations

import importlib

from bench.backends.base import Backend
from bench.errors import BenchError

#: name → "module:Class". The module is imported on first use, never at ``import bench``.
BACKENDS: dict[str, str] = {
    "torch": "bench.backends.torch:TorchBackend",
    "cudnn": "bench.backends.cudnn:CudnnBackend",
    "tensorrt": "bench.backends.tensorrt:TensorRTBackend",
    "tensorrt-rtx": "bench.backends.tensorrt:TensorRTRTXBackend",
}


def get_backend(name: str) -> Backend:
    try:
        target = BACKENDS[name]
    except KeyError:
        raise BenchError(f"unknown backend {name!r} (known: {', '.join(BACKENDS)})") from None
    module, cls = target.split(":")
    try:
        return getattr(importlib.import_module(module), cls)()  # type: ignore[no-any-return]
    except (ImportError, AttributeError) as e:
        raise BenchError(f"backend {name!r} could not be loaded: {e}") from None


def backend_status() -> list[tuple[str, bool, str, dict[str, str]]]:
    """(name, available, reason, versions) for every known backend, for ``convbench doctor``."""
    out = []
    for name in BACKENDS:
        try:
            b = get_backend(name)
            ok, reason = b.available()
            out.append((name, ok, reason, b.versions() if ok else {}))
        except BenchError as e:
            out.append((name, False, str(e), {}))
    return out
