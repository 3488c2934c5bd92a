"""GPU clocks, temperature, power and clock-event (throttle) reasons from NVML.

Uses nvidia-ml-py (``import pynvml``), imported on first use; devices are matched by UUID, so
CUDA's and NVML's device orders (which differ under ``CUDA_VISIBLE_DEVICES``) never get mixed.
Every function returns None where NVML is missing rather than raising: clocks are context for a
result, never a reason to lose it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

#: NVML clock-event reason bits (nvmlClocksEventReason*), in bit order
REASONS: dict[int, str] = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}
#: reasons that mean the clocks were pulled down by power or heat: a result taken under them is
#: flagged. Idle, application clocks and sync boost are settings, not throttling.
THROTTLE_REASONS = frozenset({"sw_power_cap", "hw_slowdown", "sw_thermal_slowdown",
                              "hw_thermal_slowdown", "hw_power_brake_slowdown"})

_lock = threading.Lock()
_state: dict[str, Any] = {"pynvml": None, "failed": None}


def decode_reasons(mask: int) -> tuple[list[str], bool]:
    """(reason names, throttled) of a clock-event reason bit mask."""
    names = [name for bit, name in REASONS.items() if mask & bit]
    unknown = mask & ~sum(REASONS)
    if unknown:
        names.append(f"0x{unknown:x}")
    return names, any(n in THROTTLE_REASONS for n in names)


def _nvml() -> Any | None:
    """The initialised pynvml module, or None (and the reason in ``unavailable_reason``)."""
    with _lock:
        if _state["pynvml"] is not None:
            return _state["pynvml"]
        if _state["failed"] is not None:
            return None
        try:
            import pynvml

            pynvml.nvmlInit()
        except ImportError:
            _state["failed"] = "nvidia-ml-py is not installed: pip install nvidia-ml-py"
            return None
        except Exception as e:  # noqa: BLE001 - NVMLError_LibraryNotFound, DriverNotLoaded...
            _state["failed"] = f"NVML unavailable: {e}"
            return None
        _state["pynvml"] = pynvml
        return pynvml


def unavailable_reason() -> str | None:
    """None when NVML works here, else one line saying why not."""
    return None if _nvml() is not None else _state["failed"]


def _try(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception:  # noqa: BLE001 - a field this GPU does not report stays None
        return None


def device_handle(uuid: str) -> tuple[Any, Any] | None:
    """(pynvml, the NVML handle of the GPU with this UUID), or None where NVML is unavailable or
    does not see that GPU. ``uuid`` may lack the ``GPU-`` prefix of NVML's own UUIDs."""
    nv = _nvml()
    if nv is None:
        return None
    if not uuid.startswith(("GPU-", "MIG-")):
        uuid = f"GPU-{uuid}"
    try:
        return nv, nv.nvmlDeviceGetHandleByUUID(uuid)
    except Exception:  # noqa: BLE001 - NVMLError_NotFound: not a device NVML sees
        return None


def clocks(uuid: str) -> dict[str, Any] | None:
    """SM and memory clocks (MHz), max SM clock, temperature (°C), power (W) and the active
    clock-event reasons of the GPU with this UUID; None if NVML or the device is unavailable."""
    found = device_handle(uuid)
    if found is None:
        return None
    nv, h = found
    # nvidia-ml-py 12.535+ names them clock-event reasons; older releases, throttle reasons
    get_reasons = (getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None)
                   or nv.nvmlDeviceGetCurrentClocksThrottleReasons)
    mask = _try(lambda: int(get_reasons(h)))
    names, throttled = decode_reasons(mask) if mask is not None else ([], False)
    power_mw = _try(lambda: nv.nvmlDeviceGetPowerUsage(h))
    return {
        "sm_mhz": _try(lambda: int(nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM))),
        "mem_mhz": _try(lambda: int(nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_MEM))),
        "max_sm_mhz": _try(lambda: int(nv.nvmlDeviceGetMaxClockInfo(h, nv.NVML_CLOCK_SM))),
        "temperature_c": _try(lambda: int(nv.nvmlDeviceGetTemperature(
            h, nv.NVML_TEMPERATURE_GPU))),
        "power_w": None if power_mw is None else power_mw / 1000.0,
        "clock_event_reasons": names,
        "throttled": throttled,
    }
