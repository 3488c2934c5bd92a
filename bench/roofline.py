"""Roofline ceilings: peak dense FLOP/s per precision and DRAM bandwidth, per GPU.

A case's *bound* is the time it cannot beat on this GPU: ``max(flops / peak_flops,
bytes_min / bandwidth)``. ``% of bound`` = bound / measured median, so 100 % is the hardware
limit. Ceilings come from ``convbench calibrate`` (measured on this very GPU) when a calibration
file exists, else from the datasheet table below. Pure Python: no GPU library is imported.

Table values are *dense* (no 2:4 sparsity) tensor-core rates; datasheets print the sparse rate
with an asterisk, so those are halved here. fp32 is the CUDA-core (non-tensor) rate; ``tf32`` is
used for fp32 cases built with TF32 allowed on CC >= 8.0 (TensorRT's and cuDNN's default).
GeForce cards are listed at the FP32-accumulate tensor rate (half their FP16-accumulate rate).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

PRECISIONS = ("fp32", "tf32", "fp16", "bf16")


@dataclass(frozen=True)
class Peak:
    """Ceilings of one GPU: TFLOP/s per precision (dense) and DRAM bandwidth in GB/s."""

    name: str
    tflops: dict[str, float]
    bandwidth_gbps: float
    source: str  # where the numbers come from (a datasheet URL, or "measured ...")
    measured: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# name, regex over the NVML/CUDA device name, {precision: dense TFLOP/s}, GB/s, source.
# Order matters: more specific patterns (PCIe, NVL) come before the generic one.
_A100_SHEET = ("https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/"
               "nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf")
_TABLE: list[tuple[str, str, dict[str, float], float, str]] = [
    # H100 datasheet (SXM5 / PCIe / NVL columns): FP32 67 / 51 / 60; TF32 989* / 756* / 835*;
    # BF16 & FP16 1979* / 1513* / 1671* (* = with sparsity); 3.35 / 2.0 / 3.9 TB/s.
    # https://resources.nvidia.com/en-us-tensor-core/nvidia-tensor-core-gpu-datasheet
    ("H100 PCIe", r"H100.*PCIe", {"fp32": 51.0, "tf32": 378.0, "fp16": 756.5, "bf16": 756.5},
     2039.0, "https://resources.nvidia.com/en-us-tensor-core/nvidia-tensor-core-gpu-datasheet"),
    ("H100 NVL", r"H100.*NVL", {"fp32": 60.0, "tf32": 417.5, "fp16": 835.5, "bf16": 835.5},
     3900.0, "https://resources.nvidia.com/en-us-tensor-core/nvidia-tensor-core-gpu-datasheet"),
    ("H100 SXM", r"H100", {"fp32": 67.0, "tf32": 494.5, "fp16": 989.5, "bf16": 989.5},
     3350.0, "https://resources.nvidia.com/en-us-tensor-core/nvidia-tensor-core-gpu-datasheet"),
    # H200 datasheet (SXM / NVL): FP32 67 / 60; TF32 989* / 835*; BF16 & FP16 1979* / 1671*;
    # 4.8 TB/s both. https://www.nvidia.com/en-us/data-center/h200/
    ("H200 NVL", r"H200.*NVL", {"fp32": 60.0, "tf32": 417.5, "fp16": 835.5, "bf16": 835.5},
     4800.0, "https://www.nvidia.com/en-us/data-center/h200/"),
    ("H200 SXM", r"H200", {"fp32": 67.0, "tf32": 494.5, "fp16": 989.5, "bf16": 989.5},
     4800.0, "https://www.nvidia.com/en-us/data-center/h200/"),
    # A100 datasheet: FP32 19.5; TF32 156 (312*); BF16 & FP16 312 (624*); HBM2e 80GB SXM
    # 2039 GB/s, 80GB PCIe 1935 GB/s, 40GB 1555 GB/s.
    # https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf
    ("A100 80GB PCIe", r"A100.*80GB.*PCIe|A100.*PCIE.*80GB",
     {"fp32": 19.5, "tf32": 156.0, "fp16": 312.0, "bf16": 312.0}, 1935.0,
     _A100_SHEET),
    ("A100 80GB SXM", r"A100.*80GB", {"fp32": 19.5, "tf32": 156.0, "fp16": 312.0, "bf16": 312.0},
     2039.0, _A100_SHEET),
    ("A100 40GB", r"A100", {"fp32": 19.5, "tf32": 156.0, "fp16": 312.0, "bf16": 312.0},
     1555.0, _A100_SHEET),
    # L40S datasheet: FP32 91.6; TF32 183 | 366*; BF16 & FP16 362.05 | 733*; 864 GB/s.
    # https://resources.nvidia.com/en-us-l40s/l40s-datasheet-28413
    ("L40S", r"L40S", {"fp32": 91.6, "tf32": 183.0, "fp16": 362.05, "bf16": 362.05}, 864.0,
     "https://resources.nvidia.com/en-us-l40s/l40s-datasheet-28413"),
    # L4 datasheet: FP32 30.3; TF32 120*; BF16 & FP16 242*; 300 GB/s.
    # https://resources.nvidia.com/en-us-data-center-overview/l4-gpu-datasheet
    ("L4", r"\bL4\b", {"fp32": 30.3, "tf32": 60.0, "fp16": 121.0, "bf16": 121.0}, 300.0,
     "https://resources.nvidia.com/en-us-data-center-overview/l4-gpu-datasheet"),
    # Ada Lovelace architecture whitepaper, appendix table (RTX 4090): FP32 82.6; TF32 82.6;
    # FP16/BF16 tensor with FP32 accumulate 165.2 (dense); 1008 GB/s.
    # https://images.nvidia.com/aem-dam/Solutions/geforce/ada/nvidia-ada-gpu-architecture.pdf
    ("RTX 4090", r"RTX 4090", {"fp32": 82.6, "tf32": 82.6, "fp16": 165.2, "bf16": 165.2},
     1008.0, "https://images.nvidia.com/aem-dam/Solutions/geforce/ada/"
     "nvidia-ada-gpu-architecture.pdf"),
    # RTX Blackwell GPU architecture whitepaper, appendix (RTX 5090): FP32 104.8; TF32 104.8;
    # FP16/BF16 tensor with FP32 accumulate 209.5 (dense); 1792 GB/s.
    # https://images.nvidia.com/aem-dam/Solutions/geforce/blackwell/nvidia-rtx-blackwell-gpu-architecture.pdf
    ("RTX 5090", r"RTX 5090", {"fp32": 104.8, "tf32": 104.8, "fp16": 209.5, "bf16": 209.5},
     1792.0, "https://images.nvidia.com/aem-dam/Solutions/geforce/blackwell/"
     "nvidia-rtx-blackwell-gpu-architecture.pdf"),
]


def table_peak(gpu_name: str | None) -> Peak | None:
    """The datasheet ceilings for a device name (as NVML/CUDA report it), or None if unknown."""
    if not gpu_name:
        return None
    for name, pattern, tflops, bw, source in _TABLE:
        if re.search(pattern, gpu_name, re.IGNORECASE):
            return Peak(name=name, tflops=dict(tflops), bandwidth_gbps=bw, source=source)
    return None


def known_gpus() -> list[str]:
    return [row[0] for row in _TABLE]


# --- calibration files ---------------------------------------------------------------------------
CALIBRATION_SCHEMA = 1


def normalize_uuid(uuid: str) -> str:
    """NVML writes ``GPU-1234abcd-...``, CUDA APIs often the bare hex: compare them alike."""
    u = re.sub(r"^gpu-", "", str(uuid).strip().lower())
    return re.sub(r"[^a-z0-9_.-]", "_", u)


def calibration_path(root: str | Path, uuid: str) -> Path:
    """Where ``convbench calibrate`` stores the ceilings of GPU ``uuid`` under a results root."""
    return Path(root) / "calibration" / f"{normalize_uuid(uuid)}.json"


def read_calibration(path: str | Path) -> Peak:
    from bench.errors import BenchError, SchemaError

    path = Path(path)
    try:
        d = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise BenchError(f"{path}: cannot read calibration ({e})") from None
    if d.get("schema") != CALIBRATION_SCHEMA:
        raise SchemaError(f"{path}: calibration schema {d.get('schema')!r}, this convbench reads "
                          f"version {CALIBRATION_SCHEMA}; run `convbench calibrate` again")
    m = d["measured"]
    return Peak(name=d["gpu"]["name"], tflops={k: float(v) for k, v in m["tflops"].items()},
                bandwidth_gbps=float(m["copy_gbps"]), measured=True,
                source=f"measured by convbench calibrate on {d.get('created')} ({path.name})",
                extra={"path": str(path), "uuid": d["gpu"].get("uuid")})


def find_calibration(run_dir: str | Path, gpu: dict[str, Any] | None) -> Path | None:
    """A calibration file for the run's GPU: ``RUN_DIR/calibration.json``, else
    ``<results root>/calibration/<uuid>.json`` (the run dir is ``<root>/<suite>/<run-id>``)."""
    run_dir = Path(run_dir)
    local = run_dir / "calibration.json"
    if local.is_file():
        return local
    uuid = (gpu or {}).get("uuid")
    if not uuid:
        return None
    p = calibration_path(run_dir.parent.parent, str(uuid))
    return p if p.is_file() else None


def ceilings(run_dir: str | Path, gpu: dict[str, Any] | None) -> Peak | None:
    """Measured ceilings if a calibration exists for this GPU, else the datasheet's, else None
    (a CPU run, or a GPU missing from the table)."""
    path = find_calibration(run_dir, gpu)
    if path is not None:
        return read_calibration(path)
    return table_peak((gpu or {}).get("name"))


# --- per-case bound ------------------------------------------------------------------------------
def _cc_major(gpu: dict[str, Any] | None) -> int | None:
    cc = (gpu or {}).get("cc")
    if isinstance(cc, (list, tuple)) and cc:
        return int(cc[0])
    if isinstance(cc, str) and cc:
        return int(cc.split(".")[0])
    if isinstance(cc, (int, float)):
        return int(cc)
    return None


def math_precision(precision: str, tf32: bool | None, gpu: dict[str, Any] | None) -> str:
    """Which ceiling applies: fp32 cases with TF32 allowed run on tensor cores from CC 8.0 on."""
    if precision == "fp32" and tf32 and (_cc_major(gpu) or 0) >= 8:
        return "tf32"
    return precision


def bound_ms(flops: float, bytes_min: float, peak_tflops: float,
             bandwidth_gbps: float) -> tuple[float, str]:
    """(the roofline bound in ms, "compute" or "memory": which side sets it)."""
    compute = flops / (peak_tflops * 1e9)
    memory = bytes_min / (bandwidth_gbps * 1e6)
    return (compute, "compute") if compute >= memory else (memory, "memory")
