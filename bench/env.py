"""The environment a run was measured in (host, Python, packages), stored in ``run.json``."""

from __future__ import annotations

import os
import platform
import socket
import sys
from importlib import metadata
from typing import Any

PACKAGES = ("numpy", "pandas", "pydantic", "torch", "tensorrt", "tensorrt_rtx", "tensorrt-rtx-cu13",
            "cuda-python", "cuda-core", "cuda-bindings", "nvidia-ml-py", "nvtx")


def host_env() -> dict[str, Any]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "packages": versions,
    }
