"""The TensorRT backend as small parts (Polygraphy's ``backend/trt/loader.py`` is the model):

* ``flavour``  — which module (tensorrt / tensorrt_rtx), version facts, the logger
* ``device``   — the CUDA device of the build context, TensorRT-RTX's build targets
* ``network``  — the network definition (plain, or Q/DQ for int8/fp8)
* ``config``   — the builder config, and what a TensorRT version cannot build
* ``cache``    — engine cache, timing cache, and which of them a build uses
* ``engine``   — runtime, execution context, buffers, IProfiler
* ``inspector``— engine-inspector JSON and profiler reports (pure, no tensorrt)
* ``backend``  — the ``tensorrt`` and ``tensorrt-rtx`` backends that tie them together

Importing this package imports no tensorrt module; the backends do, when first used.
Every TensorRT name these modules use is checked against TensorRT 8.6, 10.0, 10.16 and 11.1
binding sources and the live tensorrt_rtx (tests/test_trt_api_names.py), and the runtime side
against the real TensorRT 11.4 lean bindings (tests/test_trt_lean_runtime.py).
"""

from bench.backends.tensorrt.backend import NoSupportedGpu, TensorRTBackend, TensorRTRTXBackend
from bench.backends.tensorrt.cache import EngineCache, TimingCachePlan
from bench.backends.tensorrt.device import GpuId, current_gpu, rtx_targets
from bench.backends.tensorrt.engine import TensorRTEngine
from bench.backends.tensorrt.flavour import TENSORRT, TENSORRT_RTX, Flavour, import_flavour

__all__ = [
    "TENSORRT", "TENSORRT_RTX", "EngineCache", "Flavour", "GpuId", "NoSupportedGpu",
    "TensorRTBackend", "TensorRTEngine", "TensorRTRTXBackend", "TimingCachePlan",
    "current_gpu", "import_flavour", "rtx_targets",
]
