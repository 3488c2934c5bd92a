"""NVTX ranges in the ``convbench`` domain, with registered strings.

Nsight Systems' ``--capture-range=nvtx`` matches registered strings only (unless the
environment sets NSYS_NVTX_PROFILER_REGISTER_ONLY=0), and the ``nvtx`` package registers every
message it is given, so these work as capture ranges:

    nsys profile --capture-range=nvtx --nvtx-capture='MESSAGE@convbench' ...
    ncu --nvtx --nvtx-include 'convbench@MESSAGE/' ...

Without the ``nvtx`` package every range is a no-op; with it but no tool attached, the package's
own dummy domain makes each range nearly free.
"""

from __future__ import annotations

import contextlib
from typing import Any

DOMAIN = "convbench"


def available() -> bool:
    try:
        import nvtx  # noqa: F401
    except ImportError:
        return False
    return True


def annotate(message: str, payload: int | None = None,
             color: str | int | None = None) -> contextlib.AbstractContextManager[Any]:
    """A context manager: an NVTX push/pop range named ``message`` in the convbench domain.

    ``payload`` (e.g. the case index) is attached to the range, so tools can group by it.
    """
    try:
        import nvtx
    except ImportError:
        return contextlib.nullcontext()
    return nvtx.annotate(message, color=color, domain=DOMAIN, payload=payload)


def ncu_include(message: str) -> str:
    """The ``ncu --nvtx-include`` filter for kernels inside the push/pop range ``message``."""
    return f"{DOMAIN}@{message}/"


def nsys_capture(message: str) -> str:
    """The ``nsys --nvtx-capture`` value for the range ``message``."""
    return f"{message}@{DOMAIN}"
