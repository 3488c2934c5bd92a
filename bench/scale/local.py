"""One host, many GPUs: one worker process per GPU, one result directory.

``convbench run SUITE --gpus all|0,1,...`` starts a worker per GPU, each pinned with
``CUDA_VISIBLE_DEVICES`` before it imports anything that touches CUDA; ``--workers N`` starts N
CPU workers (CUDA hidden) for machines without a GPU. Processes are started with ``spawn``: a
forked CUDA context is unusable. Cases go out one at a time over a pipe per worker, so a worker
that dies loses at most the case it held, and the driver (this process) knows which one.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from bench.errors import BenchError
from bench.plan import RunPlan
from bench.runner import RunSummary, progress_bar
from bench.scale.driver import Sweep, Task

#: a slot whose workers die this many times in a row without finishing a case is given up
MAX_CONSECUTIVE_CRASHES = 3


@dataclass(frozen=True)
class Slot:
    """Where one worker runs: ``visible`` is its CUDA_VISIBLE_DEVICES ("" hides every GPU)."""

    id: int
    visible: str
    gpu_index: str | None  # as the user named it (nvidia-smi index), None for a CPU worker
    threads: int | None = None  # CPU threads for a CPU worker (the cores are shared)


def gpu_slots(spec: str) -> list[Slot]:
    """Slots for ``--gpus all`` or ``--gpus 0,2``: pinned by UUID where NVML can tell it.

    With CUDA_VISIBLE_DEVICES already set, its entries are the GPUs to use and the indices count
    within them, as everywhere else in CUDA.
    """
    preset = os.environ.get("CUDA_VISIBLE_DEVICES")
    if preset is not None and preset.strip():
        devices = [d.strip() for d in preset.split(",") if d.strip()]
    elif preset is not None:
        raise BenchError("--gpus: CUDA_VISIBLE_DEVICES is empty, so no GPU is visible")
    else:
        devices = _nvml_uuids()
    if spec == "all":
        chosen = list(range(len(devices)))
    else:
        try:
            chosen = [int(v) for v in spec.split(",") if v.strip()]
        except ValueError:
            raise BenchError(f"--gpus expects 'all' or indices like 0,1, got {spec!r}") from None
        if not chosen:
            raise BenchError("--gpus: no GPU index given")
        if len(set(chosen)) != len(chosen):
            raise BenchError(f"--gpus {spec}: an index appears twice")
        bad = [i for i in chosen if not 0 <= i < len(devices)]
        if bad:
            raise BenchError(f"--gpus {spec}: no GPU {bad[0]} (this host has {len(devices)})")
    if not chosen:
        raise BenchError("--gpus all: no GPU found")
    return [Slot(k, devices[i], str(i)) for k, i in enumerate(chosen)]


def cpu_slots(n: int) -> list[Slot]:
    """``--workers N``: N CPU workers, the cores split between them."""
    if n < 1:
        raise BenchError(f"--workers {n}: needs at least 1")
    threads = max(1, (os.cpu_count() or 1) // n)
    return [Slot(k, "", None, threads) for k in range(n)]


def _nvml_uuids() -> list[str]:
    try:
        import pynvml
    except ImportError:
        raise BenchError("--gpus needs nvidia-ml-py (pip install nvidia-ml-py)") from None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as e:
        raise BenchError(f"--gpus: NVML cannot list GPUs here ({e}); use --workers N for CPU "
                         "workers") from None
    try:
        uuids = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            uuid = pynvml.nvmlDeviceGetUUID(pynvml.nvmlDeviceGetHandleByIndex(i))
            uuids.append(uuid.decode() if isinstance(uuid, bytes) else uuid)
        return uuids
    finally:
        pynvml.nvmlShutdown()


# --- the worker process -----------------------------------------------------------------------
def _worker_main(conn: Connection, slot: Slot, plan: RunPlan) -> None:
    """Entry point of a worker process (spawned: nothing of the driver is inherited)."""
    # before anything imports torch or CUDA: this process sees its own GPU only
    os.environ["CUDA_VISIBLE_DEVICES"] = slot.visible
    if slot.threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, str(slot.threads))
    # Ctrl-C reaches the whole process group: the driver decides, workers just get terminated
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from bench.scale.worker import Worker

    worker = Worker(plan, {"slot": slot.id, "gpu_index": slot.gpu_index})
    try:
        conn.send(("ready", worker.info()))
        while True:
            try:
                msg = conn.recv()
            except EOFError:  # the driver is gone
                return
            if msg is None:
                return
            task_id, case, backend = msg
            reply = worker.run(case, backend)
            conn.send(("done", (task_id, reply)))
            if reply[0] == "stuck":
                # the GPU may still run the stuck work: leave without closing anything (no
                # exit handler may wait for it); the driver stores the record and stops
                conn.close()
                os._exit(0)
    except (BrokenPipeError, ConnectionResetError):
        return
    finally:
        worker.close()


# --- the driver -------------------------------------------------------------------------------
@dataclass
class _Proc:
    slot: Slot
    process: Any
    conn: Connection
    info: dict[str, Any] | None = None
    task: Task | None = None
    pid: int = 0
    closed: bool = False


@dataclass
class _Launcher:
    sweep: Sweep
    slots: list[Slot]
    ctx: Any = field(default_factory=lambda: mp.get_context("spawn"))
    procs: dict[int, _Proc] = field(default_factory=dict)
    crashes_in_row: dict[int, int] = field(default_factory=dict)

    def start(self, slot: Slot) -> None:
        parent, child = self.ctx.Pipe()
        p = self.ctx.Process(target=_worker_main, name=f"convbench-worker-{slot.id}",
                             args=(child, slot, self.sweep.plan.for_worker()), daemon=True)
        p.start()
        child.close()  # so a dead worker shows as EOF on our end
        self.procs[slot.id] = _Proc(slot, p, parent, pid=p.pid)

    def live_slots(self) -> set[int]:
        return set(self.procs)

    def dispatch(self) -> None:
        for proc in list(self.procs.values()):
            if proc.info is None or proc.task is not None:
                continue
            task = self.sweep.next_task(proc.slot.id, self.live_slots())
            if task is None:
                continue
            proc.task = task
            try:
                proc.conn.send((task.id, task.case, task.backend))
            except (BrokenPipeError, ConnectionResetError):
                pass  # it died; its EOF/sentinel comes up in the loop and retries the task

    def handle(self, proc: _Proc) -> None:
        """Read what a worker sent; an EOF means it died."""
        while not proc.closed:
            try:
                if not proc.conn.poll():
                    return
                msg = proc.conn.recv()
            except (EOFError, ConnectionResetError, OSError):
                self._died(proc)
                return
            self._message(proc, msg)

    def _message(self, proc: _Proc, msg: Any) -> None:
        kind, payload = msg
        if kind == "ready":
            self.sweep.worker_ready(payload)
            proc.info = payload
            self.dispatch()
            return
        task_id, reply = payload
        task = proc.task
        assert kind == "done" and task is not None and task.id == task_id, (msg, task)
        proc.task = None
        if reply[0] == "fatal":
            raise BenchError(reply[1])
        if reply[0] == "stuck":  # the worker leaves; the others finish what they hold
            self.sweep.stuck(task, reply[1])
            return
        self.crashes_in_row[proc.slot.id] = 0
        # hand out the next case before writing this one: the GPU is not left idle for the fsync
        self.dispatch()
        _, rec, layers = reply
        self.sweep.result(task, rec, layers)

    def _died(self, proc: _Proc) -> None:
        if proc.closed:
            return
        proc.closed = True
        proc.process.join(timeout=5)
        code = proc.process.exitcode
        how = (f"signal {signal.Signals(-code).name}" if code is not None and code < 0
               else f"exit code {code}")
        where = f"gpu {proc.slot.gpu_index}" if proc.slot.gpu_index is not None else "cpu"
        desc = f"worker pid {proc.pid} ({where}) died: {how}"
        proc.conn.close()
        del self.procs[proc.slot.id]
        task, proc.task = proc.task, None
        if self.sweep.stopping is not None:  # stopping: no new worker on any GPU
            if task is not None:
                self.sweep.crashed(task, proc.slot.id, desc)  # back to pending: --resume
            return
        self.sweep.crashed(task, proc.slot.id, desc)
        n = self.crashes_in_row.get(proc.slot.id, 0) + 1
        self.crashes_in_row[proc.slot.id] = n
        if n < MAX_CONSECUTIVE_CRASHES:
            self.start(proc.slot)  # a fresh process on the same GPU
        elif not self.procs:
            raise BenchError(f"every worker crashed ({desc}); the finished records are kept, "
                             "continue with --resume")
        self.dispatch()

    def loop(self, progress: Any) -> None:
        task_bar = progress.add_task(f"{len(self.slots)} worker(s) starting", total=None)
        while not self.sweep.finished:
            waitables: dict[Any, _Proc] = {}
            for proc in self.procs.values():
                waitables[proc.conn] = proc
                waitables[proc.process.sentinel] = proc
            for ready in wait(list(waitables), timeout=1.0):
                proc = waitables[ready]
                if not proc.closed:
                    self.handle(proc)
                    if ready == proc.process.sentinel:
                        self._died(proc)
            if self.sweep.started:
                busy = sum(p.task is not None for p in self.procs.values())
                progress.update(task_bar, total=self.sweep.total,
                                completed=len(self.sweep.summary.records),
                                description=f"local: {busy}/{len(self.procs)} workers busy")

    def stop(self, graceful: bool) -> None:
        for proc in self.procs.values():
            try:
                if graceful:
                    proc.conn.send(None)
            except (BrokenPipeError, ConnectionResetError, OSError):
                pass
        deadline = time.monotonic() + (10 if graceful else 0)
        for proc in self.procs.values():
            proc.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if proc.process.is_alive():
                proc.process.terminate()
                proc.process.join(timeout=5)
            if proc.process.is_alive():
                proc.process.kill()
                proc.process.join()
            proc.conn.close()
        self.procs.clear()


def run_local(plan: RunPlan, slots: list[Slot], on_record: Any = None) -> RunSummary:
    """Run a plan with one worker process per slot; returns the summary of a plain run."""
    sweep = Sweep(plan, executor="local", on_record=on_record)
    launcher = _Launcher(sweep, slots)
    graceful = False
    try:
        with progress_bar(plan.progress) as progress:
            for slot in slots:
                launcher.start(slot)
            launcher.loop(progress)
        if sweep.stopping is not None:
            raise sweep.stopping
        graceful = True
    except KeyboardInterrupt:
        sweep.summary.interrupted = True
        sweep.abandon()
    finally:
        launcher.stop(graceful)
        sweep.close()
    return sweep.summary
