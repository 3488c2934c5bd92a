"""Host-side handling of fp32/fp16/bf16 data (numpy has no bfloat16)."""

from __future__ import annotations

import numpy as np

#: relative L2 error a case may have against the float64 reference, per precision.
#: fp32 may run as TF32 (10-bit mantissa) on Ampere and later, so it gets TF32's budget.
TOLERANCE = {"fp32": 5e-3, "fp16": 5e-3, "bf16": 3e-2}


def round_to(x: np.ndarray, precision: str) -> np.ndarray:
    """Round float32 values to the nearest value representable in ``precision`` (as float32)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if precision == "fp32":
        return x
    if precision == "fp16":
        return x.astype(np.float16).astype(np.float32)
    if precision == "bf16":
        return decode(encode(x, "bf16"), "bf16")
    raise ValueError(f"unknown precision {precision!r}")


def encode(x: np.ndarray, precision: str) -> np.ndarray:
    """Host array in the storage type of ``precision``: float32, float16 or bf16 bits (uint16)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if precision == "fp32":
        return x
    if precision == "fp16":
        return x.astype(np.float16)
    if precision == "bf16":
        bits = x.view(np.uint32).astype(np.uint64)
        # round to nearest even on the 16 dropped bits
        bits = bits + 0x7FFF + ((bits >> 16) & 1)
        return (bits >> 16).astype(np.uint16)
    raise ValueError(f"unknown precision {precision!r}")


def decode(raw: np.ndarray, precision: str) -> np.ndarray:
    """Inverse of :func:`encode`: storage array → float32."""
    if precision == "bf16":
        return (np.ascontiguousarray(raw, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
    return np.asarray(raw, dtype=np.float32)


def storage_dtype(precision: str) -> np.dtype:
    return np.dtype({"fp32": np.float32, "fp16": np.float16, "bf16": np.uint16}[precision])
