"""The TensorRT backends: TensorRT 8.5-8.6, 10.x, 11.x and TensorRT-RTX through one code path.

TensorRT-RTX builds engines ahead of time without a GPU (for a target compute capability, or
portable by default) but its runtime does not support every GPU (not Hopper, CC 9.0). So the
build always runs and yields a ``BuildInfo`` (build seconds, plan bytes, layers); when the plan
cannot run here, :class:`NoSupportedGpu` — an ``UnsupportedCase`` carrying that ``BuildInfo`` as
``build_info`` — is raised from :meth:`TensorRTBackend.require_runtime`, after the build.

Builds and engines use the device of the ``BuildContext`` (``ctx.device_index``), made current
before building and deserializing.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import numpy as np

from bench.backends.base import Backend, BuildContext, BuildInfo, ConvData, DeviceKind, Engine
from bench.backends.tensorrt.cache import (
    EngineCache,
    TimingCachePlan,
    load_timing_cache,
    save_timing_cache,
)
from bench.backends.tensorrt.config import configure, unsupported_reason
from bench.backends.tensorrt.device import current_gpu, make_current, rtx_targets
from bench.backends.tensorrt.engine import DeserializeFailed, TensorRTEngine
from bench.backends.tensorrt.flavour import (
    TENSORRT,
    TENSORRT_RTX,
    Flavour,
    import_flavour,
    make_logger,
)
from bench.backends.tensorrt.network import define_network, network_flags, network_layers
from bench.errors import BuildFailed, UnsupportedCase
from bench.spec import ConvSpec

log = logging.getLogger(__name__)


class NoSupportedGpu(UnsupportedCase):
    """The engine was built, but this machine has no GPU its runtime supports.

    ``build_info`` holds the build's record (build seconds, plan bytes, layers), so a run still
    stores what the build cost and chose.
    """

    def __init__(self, reason: str, build_info: BuildInfo) -> None:
        super().__init__(reason)
        self.build_info = build_info


class TensorRTBackend(Backend):
    """TensorRT if installed, else TensorRT-RTX.

    ``rtx_target``: TensorRT-RTX only, build for this compute capability (e.g. ``(8, 9)``)
    instead of this machine's GPU or the portable default.
    """

    name = "tensorrt"
    install_hint = "pip install 'trt-convbench[tensorrt]'"
    flavours: ClassVar[tuple[Flavour, ...]] = (TENSORRT, TENSORRT_RTX)

    def __init__(self, rtx_target: tuple[int, int] | None = None) -> None:
        self._chosen: tuple[Flavour, ModuleType] | None = None
        self._rtx_target = rtx_target

    # flavour ------------------------------------------------------------------------------------
    def _select(self) -> tuple[Flavour, ModuleType] | str:
        if self._chosen is not None:
            return self._chosen
        reasons = []
        for fl in self.flavours:
            mod = import_flavour(fl)
            if isinstance(mod, ModuleType):
                self._chosen = (fl, mod)
                return self._chosen
            reasons.append(f"{fl.label}: {mod}")
        return "; ".join(reasons)

    @property
    def flavour(self) -> Flavour | None:
        sel = self._select()
        return None if isinstance(sel, str) else sel[0]

    def _module(self) -> tuple[Flavour, ModuleType]:
        sel = self._select()
        if isinstance(sel, str):
            from bench.errors import BackendUnavailable

            raise BackendUnavailable(f"{self.name}: {sel}")
        return sel

    def available(self) -> tuple[bool, str]:
        sel = self._select()
        if isinstance(sel, str):
            return False, sel
        flavour, _ = sel
        if not flavour.rtx and current_gpu() is None:
            return False, ("no CUDA GPU: TensorRT's builder needs one (TensorRT-RTX builds "
                           "without one: pip install 'trt-convbench[tensorrt-rtx]')")
        return True, ""

    def probe_reason(self, spec: ConvSpec) -> str | None:
        if spec.timing_cache != "fresh":
            return (f"timing_cache = {spec.timing_cache!r}: another build reads the same cached "
                    "engine and tactic timings, so it chooses the same tactics; probes need "
                    "timing_cache = \"fresh\" (every build times the tactics again)")
        return None

    def runtime_support(self, device_index: int = 0) -> tuple[bool, str]:
        """Whether engines can run here, and if not, why ("no supported GPU: ...")."""
        flavour, trt = self._module()
        gpu = current_gpu(device_index)
        if gpu is None:
            what = "no CUDA GPU found" if device_index == 0 else f"no CUDA device {device_index}"
            return False, (f"no supported GPU: {what} ({flavour.label} builds "
                           "engines without one but cannot run them)")
        if flavour.rtx and gpu.cc not in rtx_targets(trt):
            supported = ", ".join(f"{a}.{b}" for a, b in sorted(rtx_targets(trt)))
            return False, (f"no supported GPU: TensorRT-RTX does not run on compute capability "
                           f"{gpu.cc[0]}.{gpu.cc[1]} ({gpu.name}); it supports {supported}")
        if flavour.rtx and self._rtx_target is not None and self._rtx_target != gpu.cc:
            return False, (f"no supported GPU: engines are built for compute capability "
                           f"{self._rtx_target[0]}.{self._rtx_target[1]}, this GPU is "
                           f"{gpu.cc[0]}.{gpu.cc[1]}")
        return True, ""

    def versions(self) -> dict[str, str]:
        sel = self._select()
        if isinstance(sel, str):
            return {}
        flavour, trt = sel
        out = {flavour.module: str(trt.__version__), "flavour": flavour.label,
               "build_target": self.build_target()[0]}
        ok, why = self.runtime_support()
        out["execution"] = "ok" if ok else why
        return out

    @property
    def device(self) -> DeviceKind:
        # Engines run on the GPU; without one nothing runs (builds still do, for TensorRT-RTX)
        # and the runner must not open a CUDA session.
        return "cuda" if current_gpu() is not None else "cpu"

    def build_target(self, device_index: int = 0) -> tuple[str, Any | None]:
        """(label, ComputeCapability or None) the engines are built for.

        Full TensorRT builds for the GPU it runs on. TensorRT-RTX builds for ``rtx_target``
        when given, else for the GPU when it supports it, else its portable default (CC 8.0,
        8.6, 8.9, 12.0 and later, per NVIDIA's "CPU-Only AOT and TensorRT-RTX Engines").
        """
        flavour, trt = self._module()
        gpu = current_gpu(device_index)
        if not flavour.rtx:
            return (f"{gpu.sm}-{gpu.uuid}" if gpu else "none"), None
        targets = rtx_targets(trt)
        if self._rtx_target is not None:
            cc = tuple(self._rtx_target)
            if cc not in targets:
                raise UnsupportedCase(
                    f"TensorRT-RTX {trt.__version__} has no build target {cc[0]}.{cc[1]} "
                    f"(it has {', '.join(f'{a}.{b}' for a, b in sorted(targets))})")
            return f"sm{cc[0]}{cc[1]}", targets[cc]  # type: ignore[index]
        if gpu is not None and gpu.cc in targets:
            return gpu.sm, targets[gpu.cc]
        return "portable", None

    def require_runtime(self, info: BuildInfo, device_index: int = 0) -> None:
        """Raise :class:`NoSupportedGpu` (carrying ``info``) when the built plan cannot run."""
        ok, why = self.runtime_support(device_index)
        if not ok:
            raise NoSupportedGpu(why, info)

    # build --------------------------------------------------------------------------------------
    def _build_impl(self, spec: ConvSpec, data: ConvData, ctx: BuildContext) -> Engine:
        flavour, trt = self._module()
        index = ctx.device_index
        gpu = current_gpu(index)
        if not flavour.rtx and gpu is None:
            raise UnsupportedCase(f"no CUDA device {index}: TensorRT's builder needs the GPU "
                                  "it builds for")
        target_label, target = self.build_target(index)
        self._check_support(spec, target_label, gpu.cc if gpu else None)
        if gpu is not None:
            make_current(index)  # TensorRT builds for, and deserializes on, the current device
        version = str(trt.__version__)
        caches = TimingCachePlan.for_build(spec, flavour, version, target_label, ctx.cache_dir)
        fields = EngineCache.key_fields(spec, data, flavour, version, target_label)
        for attempt in (1, 2):
            plan, info = self.build_plan(spec, data, ctx.cache_dir, caches.engine_cache,
                                         fields, target)
            info.extra.update(flavour=flavour.label, version=version, target=target_label,
                              device_index=index, **caches.to_json())
            if data.scales is not None:
                info.extra["quantization"] = {"precision": spec.precision,
                                              "io_precision": spec.io_precision,
                                              **data.scales.to_json()}
            self.require_runtime(info, index)
            runtime_cache = (caches.runtime_cache_dir /
                             f"{fields['spec_key']}-{fields['target']}.cache"
                             if caches.runtime_cache_dir else None)
            try:
                return TensorRTEngine(spec, info, trt, plan, flavour, index, runtime_cache)
            except DeserializeFailed as e:
                if not info.cache_hit or caches.engine_cache is None or attempt == 2:
                    raise BuildFailed(str(e)) from None
                log.warning("cached engine for %s does not deserialize (%s): rebuilding it",
                            spec.short_name(), e)
                caches.engine_cache.discard(fields)
        raise AssertionError("unreachable")

    def _check_support(self, spec: ConvSpec, target_label: str,
                       gpu_cc: tuple[int, int] | None) -> None:
        flavour, trt = self._module()
        cc = gpu_cc
        if target_label.startswith("sm") and (cc is None or flavour.rtx):
            digits = target_label[2:].split("-")[0]
            cc = (int(digits[:-1]), int(digits[-1]))
        why = unsupported_reason(trt, flavour, spec, cc, portable=target_label == "portable")
        if why:
            raise UnsupportedCase(why)

    def build_plan(self, spec: ConvSpec, data: ConvData, cache_dir: Path | None,
                   cache: EngineCache | None, fields: dict[str, Any],
                   target: Any | None) -> tuple[bytes, BuildInfo]:
        """The serialized engine for ``spec``, from the engine cache or a fresh build."""
        note = None
        if cache is not None:
            hit = cache.load(fields)
            if hit is not None:
                plan, meta = hit
                old = meta.get("build", {})
                info = BuildInfo(build_s=0.0, plan_bytes=len(plan), cache_hit=True,
                                 layers=list(old.get("layers", [])),
                                 extra={**old.get("extra", {}),
                                        "original_build_s": old.get("build_s")})
                return plan, info
            note = cache.last_rejection
        flavour, trt = self._module()
        caches = TimingCachePlan.for_build(spec, flavour, str(trt.__version__), fields["target"],
                                           cache_dir)
        plan, info = self._build_fresh(trt, flavour, spec, data, caches.timing_cache, target)
        if note:
            info.extra["cache_rejected"] = note
        if cache is not None:
            cache.store(fields, plan, info)
        return plan, info

    def _build_fresh(self, trt: ModuleType, flavour: Flavour, spec: ConvSpec, data: ConvData,
                     timing_cache: Path | None, target: Any | None) -> tuple[bytes, BuildInfo]:
        logger = make_logger(trt)
        keep: list[np.ndarray] = []  # weights must outlive build_serialized_network
        t0 = time.perf_counter()
        builder = trt.Builder(logger)
        network = builder.create_network(network_flags(trt, flavour, spec))
        define_network(trt, flavour, network, spec, data, keep)
        config, applied = configure(trt, builder, spec, flavour, target)
        load_timing_cache(trt, config, timing_cache)
        plan = builder.build_serialized_network(network, config)
        build_s = time.perf_counter() - t0
        if plan is None:
            msg = f"{flavour.label} build failed: {logger.errors()}"
            if spec.workspace is not None and any(
                    w in msg.lower() for w in ("workspace", "scratch", "outofmemory")):
                msg = f"workspace limit {spec.workspace} B too small? {msg}"
            elif flavour.rtx and spec.quantized:
                # what TensorRT-RTX refuses of explicit quantization is a property of the
                # library, not a failed build: record it as unsupported, with its words
                raise UnsupportedCase(f"{flavour.label} {trt.__version__} does not build this "
                                      f"{spec.precision} Q/DQ convolution: {logger.errors()}")
            raise BuildFailed(msg)
        save_timing_cache(config, timing_cache)
        blob = bytes(plan)
        info = BuildInfo(build_s=build_s, plan_bytes=len(blob), cache_hit=False,
                         layers=network_layers(network),
                         extra={**applied, "strongly_typed": spec.typing == "strong",
                                "warnings": [m for m in logger.messages
                                             if m.startswith("[WARNING]")][:20]})
        return blob, info


class TensorRTRTXBackend(TensorRTBackend):
    """Always TensorRT-RTX, even where full TensorRT is installed."""

    name = "tensorrt-rtx"
    install_hint = "pip install 'trt-convbench[tensorrt-rtx]'"
    flavours = (TENSORRT_RTX,)
