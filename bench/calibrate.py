"""``convbench calibrate``: measure this GPU's ceilings for the roofline.

Datasheet peaks are rarely reached (clocks under load, power limits, memory efficiency), so
"% of the roofline bound" is more honest against what this GPU actually does: a device-to-device
copy for DRAM bandwidth, and large dense matmuls (torch → cuBLAS) for fp32, tf32, fp16 and bf16
FLOP/s. Timing uses convbench's own loop (``bench.timing.measure``: warm-up, nvbench stopping
rule) with CUDA events around back-to-back launches on one stream.

The result goes to ``<results root>/calibration/<gpu-uuid>.json``; reports of runs under that
root on the same GPU pick it up (``bench.roofline.ceilings``) instead of the datasheet table.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.roofline import CALIBRATION_SCHEMA, calibration_path, table_peak

MATMUL_N = {"fp32": 8192, "tf32": 8192, "fp16": 8192, "bf16": 8192}


class TorchEventSource:
    """One sample = ``iters_per_sample`` back-to-back launches between two CUDA events on the
    current torch stream; returns ms per launch. Sized so one sample lasts >= ``min_sample_ms``."""

    mode = "events"

    def __init__(self, fn: Callable[[], Any], min_sample_ms: float = 2.0) -> None:
        import torch

        self._torch = torch
        self._fn = fn
        self._start = torch.cuda.Event(enable_timing=True)
        self._end = torch.cuda.Event(enable_timing=True)
        self.iters_per_sample = 1
        once = self()  # also the first, untimed-for-the-result launch (lazy init)
        once = self()
        self.iters_per_sample = max(1, math.ceil(min_sample_ms / max(once, 1e-4)))

    def __call__(self) -> float:
        self._start.record()
        for _ in range(self.iters_per_sample):
            self._fn()
        self._end.record()
        self._end.synchronize()
        return float(self._start.elapsed_time(self._end)) / self.iters_per_sample


def _measure(fn: Callable[[], Any], settings: Any) -> dict[str, float]:
    from bench.stats import summarize
    from bench.timing import measure

    samples = measure(TorchEventSource(fn), settings)
    st = summarize(samples.ms)
    return {"median_ms": st.median, "min_ms": st.min, "rse": st.rse, "n": st.n,
            "iters_per_sample": samples.iters_per_sample}


def _copy(torch: Any, nbytes: int, settings: Any) -> dict[str, float]:
    """Device-to-device copy of ``nbytes`` (>= 4x L2, so it streams through DRAM)."""
    src = torch.randn(nbytes // 4, device="cuda")
    dst = torch.empty_like(src)
    m = _measure(lambda: dst.copy_(src), settings)
    moved = 2 * nbytes  # read + write
    m.update(bytes=moved, gbps=moved / (m["median_ms"] * 1e6),
             gbps_best=moved / (m["min_ms"] * 1e6))
    return m


def _gpu_info(index: int) -> dict[str, Any]:
    try:
        from bench.gpu import cuda

        if cuda.unavailable_reason() is None:
            return dict(cuda.Device(index).info.to_json())
    except ImportError:
        pass
    import torch

    p = torch.cuda.get_device_properties(index)
    return {"name": p.name, "uuid": f"GPU-{p.uuid}", "cc": [p.major, p.minor],
            "sm_count": p.multi_processor_count, "l2_bytes": getattr(p, "L2_cache_size", 0)}


def calibrate(device: int = 0, out_root: str | Path = "results",
              settings: Any | None = None) -> Path:
    """Measure copy bandwidth and matmul TFLOP/s on ``device``; write and return the JSON."""
    try:
        import torch
    except ImportError:
        raise BenchError("calibrate needs torch with CUDA: pip install 'trt-convbench[torch]'") \
            from None
    if not torch.cuda.is_available():
        raise BenchError("calibrate needs a CUDA GPU; torch sees none")
    from bench.timing import TimingSettings

    settings = settings or TimingSettings(warmup_s=0.3, min_samples=10, min_time_s=0.5,
                                          max_time_s=5.0, target_rse=0.005)
    gpu = _gpu_info(device)
    torch.cuda.set_device(device)
    result: dict[str, Any] = {"copy": {}, "matmul": {}}
    result["copy"] = _copy(torch, max(1 << 30, 4 * int(gpu.get("l2_bytes") or 0)), settings)
    tf32_before = torch.backends.cuda.matmul.allow_tf32
    try:
        for prec, n in MATMUL_N.items():
            dtype = {"fp32": torch.float32, "tf32": torch.float32, "fp16": torch.float16,
                     "bf16": torch.bfloat16}[prec]
            torch.backends.cuda.matmul.allow_tf32 = prec == "tf32"
            a = torch.randn(n, n, device="cuda", dtype=dtype)
            b = torch.randn(n, n, device="cuda", dtype=dtype)
            c = torch.empty(n, n, device="cuda", dtype=dtype)
            m = _measure(lambda a=a, b=b, c=c: torch.matmul(a, b, out=c), settings)
            flops = 2 * n**3
            m.update(n=n, flops=flops, tflops=flops / (m["median_ms"] * 1e9),
                     tflops_best=flops / (m["min_ms"] * 1e9))
            result["matmul"][prec] = m
            del a, b, c
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32_before
    torch.cuda.empty_cache()
    table = table_peak(gpu.get("name"))
    doc = {"schema": CALIBRATION_SCHEMA, "gpu": gpu,
           "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "torch": torch.__version__, "method": "bench.timing.measure with CUDA events; "
           "copy = device-to-device Tensor.copy_ (bytes = read + write); matmul = torch.matmul "
           "n x n (flops = 2 n^3); ceilings are the medians",
           "measured": {"copy_gbps": result["copy"]["gbps"],
                        "tflops": {p: r["tflops"] for p, r in result["matmul"].items()}},
           "detail": result,
           "datasheet": table.to_json() if table else None}
    path = calibration_path(out_root, str(gpu.get("uuid") or f"device{device}"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path
