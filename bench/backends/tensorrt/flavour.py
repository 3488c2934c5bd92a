"""Which TensorRT module a backend runs on, its version facts, and its logger.

Module selection: ``tensorrt`` if importable, else ``tensorrt_rtx`` (backend ``tensorrt``);
backend ``tensorrt-rtx`` always uses ``tensorrt_rtx``. Both expose the same API family; the
differences are decided here, from the module and its version, never sniffed elsewhere.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from types import ModuleType
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Flavour:
    module: str  # python module name
    label: str  # what users read
    extra: str  # pip extra of trt-convbench that installs it
    rtx: bool


TENSORRT = Flavour("tensorrt", "TensorRT", "tensorrt", rtx=False)
TENSORRT_RTX = Flavour("tensorrt_rtx", "TensorRT-RTX", "tensorrt-rtx", rtx=True)

_imported: dict[str, ModuleType | str] = {}  # module name → module, or why it failed


def import_flavour(flavour: Flavour) -> ModuleType | str:
    """The imported module, or a one-line reason it cannot be imported (cached)."""
    if flavour.module not in _imported:
        try:
            _imported[flavour.module] = importlib.import_module(flavour.module)
        except ImportError as e:
            _imported[flavour.module] = (
                f"not installed — pip install 'trt-convbench[{flavour.extra}]'"
                if getattr(e, "name", None) == flavour.module
                else f"{flavour.module} is installed but does not import: {e}")
        except OSError as e:  # a missing shared library of the wheel
            _imported[flavour.module] = f"{flavour.module} does not load: {e}"
    return _imported[flavour.module]


def major_version(trt: ModuleType) -> int:
    return int(str(trt.__version__).split(".")[0])


def has_weak_typing(trt: ModuleType, flavour: Flavour) -> bool:
    """BuilderFlag FP16/INT8 (weakly typed networks): TensorRT 8.x-10.x. 11.x removed them and
    TensorRT-RTX never had them (both build strongly typed networks only)."""
    return not flavour.rtx and major_version(trt) < 11


def has_strong_typing(trt: ModuleType, flavour: Flavour) -> bool:
    """NetworkDefinitionCreationFlag.STRONGLY_TYPED: TensorRT 10.x; always so in 11.x and RTX."""
    return flavour.rtx or major_version(trt) >= 10


def has_pointer_weights(trt: ModuleType, flavour: Flavour) -> bool:
    """``Weights(type, ptr, count)``: TensorRT 10.0+ and TensorRT-RTX (see network.weights)."""
    return flavour.rtx or major_version(trt) >= 10


def make_logger(trt: ModuleType) -> Any:
    """An ILogger keeping warnings and errors, so a failed build says why."""

    class _Logger(trt.ILogger):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.messages: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            if int(severity) <= int(trt.ILogger.Severity.WARNING):
                self.messages.append(f"[{severity.name}] {msg}")
                log.debug("%s: %s", severity.name, msg)

        def errors(self) -> str:
            errs = [m for m in self.messages if not m.startswith("[WARNING]")]
            return " | ".join(errs or self.messages) or "no message from the TensorRT logger"

    return _Logger()
