"""The builder config for a case, and what a TensorRT version cannot build (said up front).

Small functions in the manner of Polygraphy's ``CreateConfig`` (backend/trt/config.py).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from bench.backends.tensorrt.flavour import (
    Flavour,
    has_strong_typing,
    has_weak_typing,
    major_version,
)
from bench.errors import BuildFailed
from bench.precision import needs_cc
from bench.spec import ConvSpec

#: typing = "weak": the BuilderFlag that lets the builder run layers in the case's precision
WEAK_FLAGS = {"fp16": "FP16", "bf16": "BF16", "int8": "INT8", "fp8": "FP8"}


def unsupported_reason(trt: ModuleType, flavour: Flavour, spec: ConvSpec,
                       cc: tuple[int, int] | None, portable: bool) -> str | None:
    """One line saying why this TensorRT cannot build ``spec`` for a target of compute
    capability ``cc`` (None: unknown), or None. ``portable``: a TensorRT-RTX build for its
    portable target (no compute capability chosen), which includes CC 8.0 and 8.6."""
    where = f"{flavour.label} {trt.__version__}"
    if spec.typing == "weak" and not has_weak_typing(trt, flavour):
        return (f"typing = 'weak' needs BuilderFlag {'/'.join(WEAK_FLAGS.values())}, which "
                f"{where} does not have (strongly typed networks only)")
    if spec.typing == "strong" and spec.precision != "fp32" and \
            not has_strong_typing(trt, flavour):
        return (f"{where} has no strongly typed networks (NetworkDefinitionCreationFlag."
                f"STRONGLY_TYPED came in 10.0): use typing = 'weak' for {spec.precision}")
    if spec.typing == "weak" and spec.precision in WEAK_FLAGS and \
            not hasattr(trt.BuilderFlag, WEAK_FLAGS[spec.precision]):
        return f"{where} has no BuilderFlag.{WEAK_FLAGS[spec.precision]} ({spec.precision})"
    if spec.io_precision == "bf16" and not hasattr(trt.DataType, "BF16"):
        return f"{where} has no DataType.BF16"
    if spec.precision == "fp8" and not flavour.rtx and major_version(trt) < 10:
        return f"fp8 quantize/dequantize layers need TensorRT 10.0 or newer, not {where}"
    for p in dict.fromkeys((spec.precision, spec.io_precision)):
        why = needs_cc(p, cc)
        if why:
            return why
    if spec.precision == "fp8" and cc is None and portable:
        return ("fp8 needs an sm_89 or newer build target: TensorRT-RTX's portable target "
                "includes compute capability 8.0 and 8.6")
    return None


def configure(trt: ModuleType, builder: Any, spec: ConvSpec, flavour: Flavour,
              target: Any | None) -> tuple[Any, dict[str, Any]]:
    """A builder config for ``spec``; returns it and what was set, for BuildInfo.extra."""
    config = builder.create_builder_config()
    applied: dict[str, Any] = {}
    if spec.workspace is not None:
        if hasattr(config, "set_memory_pool_limit"):  # TensorRT 8.4 and later
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, spec.workspace)
        else:  # the pre-8.4 attribute, removed in 10.0
            config.max_workspace_size = spec.workspace
        applied["workspace"] = spec.workspace
    if spec.opt_level is not None:
        if hasattr(config, "builder_optimization_level"):  # TensorRT 8.6 and later
            config.builder_optimization_level = spec.opt_level
            applied["opt_level"] = spec.opt_level
        else:
            applied["opt_level"] = None  # this flavour has no optimization levels
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    fp32_layers = spec.precision == "fp32" or spec.typing == "weak"
    if fp32_layers:
        if spec.tf32:
            config.set_flag(trt.BuilderFlag.TF32)
        else:
            config.clear_flag(trt.BuilderFlag.TF32)
    applied["tf32"] = bool(fp32_layers and config.get_flag(trt.BuilderFlag.TF32))
    if spec.typing == "weak" and spec.precision in WEAK_FLAGS:
        config.set_flag(getattr(trt.BuilderFlag, WEAK_FLAGS[spec.precision]))
        applied["builder_flags"] = [WEAK_FLAGS[spec.precision]]
    applied["typing"] = spec.typing
    if flavour.rtx and target is not None:
        # TensorRT-RTX only: build for one compute capability instead of its portable default
        config.num_compute_capabilities = 1
        if not config.set_compute_capability(target, 0):
            raise BuildFailed(f"TensorRT-RTX refused target compute capability {target}")
    return config, applied
