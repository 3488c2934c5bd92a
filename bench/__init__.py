"""convbench: benchmark and profile convolution layers on TensorRT and cuDNN.

``import bench`` imports no GPU library; ``bench.load(run_dir)`` gives pandas DataFrames.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def load(run_dir: Any) -> Any:
    """Load a run directory into pandas DataFrames (see ``bench.report.tables.load``)."""
    from bench.report.tables import load as _load

    return _load(run_dir)
