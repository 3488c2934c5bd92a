"""The GPU layer: CUDA devices, streams, buffers, graphs and L2 flushes (``cuda``), the CUDA-event
and CUDA-graph sample sources of the measurement loop (``timers``), clocks and throttle reasons
from NVML (``nvml``) and NVTX ranges (``nvtx``).

Every module here imports on a machine with no GPU, no driver and no cuda-python: the CUDA, NVML
and NVTX packages are imported inside the functions that use them.
"""
