"""The driver of a scaled-out sweep: what to run, in which order, and the one writer of results.

Executors (local processes, Ray actors) only move tasks and replies; every decision lives here so
both behave the same: cases go out longest first (by FLOPs), results are appended to the run
directory through :class:`bench.store.RunStore` as they arrive, a case whose worker crashed is
retried once on another worker and then stored as a failure, and ``--resume`` skips what is done.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from bench.errors import BenchError, CaseStuck
from bench.plan import RunPlan
from bench.record import LayerRow, Record
from bench.runner import RunSummary, describe_run, failure_record, stuck_stop
from bench.store import RunStore
from bench.suite import Case

#: how many times a case is started before a crash of its worker makes it a failed record
MAX_ATTEMPTS = 2


@dataclass
class Task:
    """One (case, backend) to measure, with the crashes it has already caused."""

    id: int
    case: Case
    backend: str
    crashes: list[str] = field(default_factory=list)
    avoid: set[Any] = field(default_factory=set)  # worker slots it crashed on

    @property
    def attempt(self) -> int:
        return len(self.crashes) + 1


class Sweep:
    """Driver state of one scaled-out run. Not thread-safe: one executor loop drives it."""

    def __init__(self, plan: RunPlan, executor: str,
                 on_record: Callable[[Record], None] | None = None) -> None:
        self.plan, self.executor = plan, executor
        self.on_record = on_record
        self.cases = list(plan.cases)
        self.store: RunStore | None = None
        self.done: set[tuple[str, str]] = set()
        self._locks = contextlib.ExitStack()  # the run directory's writer lock, held to the end
        if plan.resume:
            self.store = RunStore.open(plan.resume)
            self._locks.enter_context(self.store.lock())
            self.done = self.store.done()
        self.pending: deque[Task] = deque()
        self.in_flight: dict[int, Task] = {}
        self.workers: list[dict[str, Any]] = []
        self.crash_log: list[dict[str, Any]] = []
        self.started = False
        self.started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self._session_saved = False
        self.total = 0
        #: set when a worker's case got stuck: no new case goes out, the cases in flight on
        #: the other workers are still stored, then the executor raises it
        self.stopping: CaseStuck | None = None
        self.summary = RunSummary(run_dir=self.store.dir if self.store else None, cases=self.cases)

    # --- start -----------------------------------------------------------------------------------
    def worker_ready(self, info: dict[str, Any]) -> None:
        """A worker has set up; the first one decides which backends run and opens the store."""
        if info.get("error"):
            raise BenchError(info["error"])
        self.workers.append({k: info.get(k) for k in ("pid", "host", "slot", "gpu_index", "gpu")})
        if self.started:
            self._save_workers()
            return
        self.started = True
        backends = [n for n in self.plan.backend_names if n in info["backends"]]
        self.summary.unavailable = dict(info["unavailable_backends"])
        if self.store is None:
            self.store = RunStore.create(self.plan.out, self.plan.suite.name,
                                         self._run_info(info))
            self._locks.enter_context(self.store.lock())
            self._session_saved = True
            self.summary.run_dir = self.store.dir
        else:
            self._save_workers()
        todo = [(c, b) for c in self.cases for b in backends if (c.key, b) not in self.done]
        self.summary.skipped = len(self.cases) * len(backends) - len(todo)
        # longest first, so the last cases to finish are short ones and no worker idles long
        todo.sort(key=lambda cb: (-cb[0].spec.flops, cb[0].index, cb[1]))
        self.pending.extend(Task(i, c, b) for i, (c, b) in enumerate(todo))
        self.total = len(todo)

    def _run_info(self, first: dict[str, Any]) -> dict[str, Any]:
        return describe_run(self.plan, first["backends"], first["unavailable_backends"], None,
                            gpu=first["gpu"], gpu_clocks_at_start=first["gpu_clocks_at_start"],
                            executors=[self._session()])

    def _session(self) -> dict[str, Any]:
        return {"kind": self.executor, "started": self.started_at, "workers": self.workers,
                "crashes": self.crash_log}

    def _save_workers(self) -> None:
        """Rewrite run.json's record of this session's workers and crashes (atomic replace)."""
        if self.store is None:
            return
        info = self.store.run_info()
        sessions = info.setdefault("executors", [])  # one entry per run and per resume
        if self._session_saved:
            sessions[-1] = self._session()
        else:
            sessions.append(self._session())
            self._session_saved = True
        self.store.write_run_info(info)

    # --- hand-out --------------------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        """Nothing left to wait for: every case is done, or a stop is pending and no case is
        in flight any more."""
        return self.started and not self.in_flight and (not self.pending
                                                        or self.stopping is not None)

    def next_task(self, slot: Any, live_slots: set[Any]) -> Task | None:
        """The longest pending task for a worker on ``slot``; a task that crashed a worker waits
        for a different worker while one is alive. None once a stop is pending."""
        if self.stopping is not None:
            return None
        for i, task in enumerate(self.pending):
            if slot in task.avoid and live_slots - task.avoid:
                continue
            del self.pending[i]
            self.in_flight[task.id] = task
            return task
        return None

    # --- replies ---------------------------------------------------------------------------------
    def result(self, task: Task, rec: Record, layers: LayerRow | None) -> None:
        """Store one finished case (the record is on disk when this returns)."""
        assert self.store is not None
        self.in_flight.pop(task.id, None)
        worker = rec.worker = dict(rec.worker or {})
        worker["executor"] = self.executor
        worker["attempt"] = task.attempt
        if task.crashes:
            worker["earlier_crashes"] = list(task.crashes)
        self.store.append_result(rec, layers)
        self.summary.records.append(rec)
        if self.on_record:
            self.on_record(rec)

    def stuck(self, task: Task, rec: Record) -> None:
        """A worker's GPU work never finished: its record (status ``error``) is stored and a
        stop is pending (``stopping``). No case goes out any more; the cases in flight on other
        workers are still stored; then the executor raises ``stopping``: one line naming the
        ``--resume`` that goes on. The stuck worker takes no further case."""
        self.result(task, rec, None)
        assert self.store is not None
        if self.stopping is None:
            self.stopping = stuck_stop(rec, task.backend, task.case, self.plan, self.store.dir)

    def crashed(self, task: Task | None, slot: Any, how: str) -> None:
        """A worker died; its in-flight task goes back to the front or becomes a failed record."""
        self.crash_log.append({"slot": slot, "how": how,
                               "case_key": task.case.key if task else None,
                               "backend": task.backend if task else None})
        self._save_workers()
        if task is None:
            return
        self.in_flight.pop(task.id, None)
        task.crashes.append(how)
        task.avoid.add(slot)
        if task.attempt <= MAX_ATTEMPTS:
            self.pending.appendleft(task)
            return
        self.result(task, failure_record(task.case, task.backend,
                                         f"worker crashed on each of {len(task.crashes)} "
                                         f"attempts: {'; '.join(task.crashes)}"), None)

    def close(self) -> None:
        """Release the run directory's lock (the executor calls this when the sweep ends)."""
        self._locks.close()

    def abandon(self) -> None:
        """Forget in-flight tasks (interrupted run): they are not done, ``--resume`` redoes them."""
        self.in_flight.clear()
        self.pending.clear()

