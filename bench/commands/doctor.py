"""``convbench doctor``: which backends and GPUs can run here, and why not."""

from __future__ import annotations

import argparse

from bench.commands._output import console
from bench.text import safe


def add_arguments(p: argparse.ArgumentParser) -> None:
    pass


def main(args: argparse.Namespace) -> int:
    return run()


def run() -> int:
    from rich.table import Table

    from bench.backends.registry import backend_status

    t = Table(title="convbench doctor")
    for col in ("backend", "available", "versions / reason"):
        t.add_column(col)
    for name, ok, reason, versions in backend_status():
        detail = ", ".join(f"{k} {v}" for k, v in versions.items()) if ok else reason
        t.add_row(safe(name), "[green]yes" if ok else "[red]no", safe(detail))
    out = console()
    out.print(t)
    from bench.gpu import cuda

    reason = cuda.unavailable_reason()
    if reason:
        out.print(f"CUDA: {safe(reason)}")
    else:
        info = cuda.Device(0).info
        out.print(safe(f"CUDA device 0: {info.name}, CC {info.cc[0]}.{info.cc[1]}, "
                       f"{info.sm_count} SMs, L2 {info.l2_bytes >> 20} MiB, "
                       f"{info.total_mem >> 30} GiB, {info.uuid}"))
    return 0
