"""The worker side of a scaled-out sweep: set up backends once, then build and time cases in turn.

One worker owns one GPU (its process sees only that GPU), so a build never shares a GPU with a
measurement. The same class runs inside a local worker process and inside a Ray actor.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from bench.errors import BenchError, CaseStuck
from bench.plan import RunPlan
from bench.suite import Case

#: what ``Worker.run`` returns: ("result", record, layers row or None), ("stuck", record) when
#: the case's GPU work never finished (the worker must take no further case), or
#: ("fatal", message)
Reply = tuple[Any, ...]


class Worker:
    """Backends + GPU session of one worker; ``run`` measures one case with them."""

    def __init__(self, plan: RunPlan, identity: dict[str, Any]) -> None:
        from bench.runner import GpuSession

        self.plan = plan
        self.identity = {"pid": os.getpid(), "host": socket.gethostname(), **identity}
        self.gpu: GpuSession | None = None
        self.error: str | None = None
        try:
            backends, self.unavailable = plan.resolve_backends()
            self.backends = {b.name: b for b in backends}
            if any(b.device == "cuda" for b in backends):
                # the plan's device: 0 in a worker pinned with CUDA_VISIBLE_DEVICES
                self.gpu = plan.gpu_session()
        except BenchError as e:
            # reported through info(): the driver stops the sweep with this one line
            self.backends, self.unavailable = {}, {}
            self.error = f"worker {self.identity['host']}:{self.identity['pid']}: {e}"

    def info(self) -> dict[str, Any]:
        """Who this worker is and what it can run (the driver stores it in run.json)."""
        return {
            **self.identity,
            "error": self.error,
            "backends": {n: {"device": b.device, "versions": b.versions()}
                         for n, b in self.backends.items()},
            "unavailable_backends": self.unavailable,
            "gpu": self.gpu.info.to_json() if self.gpu else None,
            "gpu_clocks_at_start": self.gpu.clocks() if self.gpu else None,
        }

    def run(self, case: Case, backend_name: str) -> Reply:
        from bench.runner import measure_case

        backend = self.backends.get(backend_name)
        if backend is None:
            reason = self.unavailable.get(backend_name, "not requested")
            return ("fatal", f"worker {self.identity['host']}:{self.identity['pid']}: backend "
                             f"{backend_name} cannot run there ({reason})")
        try:
            rec, layers = measure_case(case, backend, self.plan.timing, self.gpu,
                                       self.plan.cache_dir)
        except CaseStuck as e:
            # the record (status error) goes to the driver, which stores it and stops the
            # sweep; this worker's GPU context may still hold the stuck work
            e.record.worker = dict(self.identity)
            self.gpu = None  # never closed: closing would wait for the stuck work
            return ("stuck", e.record)
        except BenchError as e:
            return ("fatal", str(e))
        rec.worker = dict(self.identity)
        return ("result", rec, layers)

    def close(self) -> None:
        if self.gpu is not None:
            self.gpu.close()
            self.gpu = None

