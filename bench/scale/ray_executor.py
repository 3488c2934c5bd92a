"""Many GPUs, many hosts: one long-lived Ray actor per GPU, this process writes the results.

``convbench run SUITE --executor ray [--address ray://head:10001]``. Each actor reserves one GPU
(``num_gpus=1``; Ray sets its CUDA_VISIBLE_DEVICES), builds and times one case at a time on it,
and is restarted by Ray if its process dies. Results stream back to the driver, which alone
appends them to the run directory, so the crash safety and ``--resume`` of a plain run hold for a
whole cluster. ``ray`` is an optional extra, imported only here and only when asked for.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any

from bench.errors import BenchError
from bench.plan import RunPlan
from bench.runner import RunSummary, progress_bar
from bench.scale.driver import Sweep, Task
from bench.suite import Case

INSTALL_HINT = "pip install 'trt-convbench[ray]'"
#: Ray restarts a crashed actor this many times before its GPU is given up
MAX_RESTARTS = 3


def import_ray(local: bool = False) -> Any:
    """``ray``; ``local``: set up for a private instance on the loopback interface (see
    :func:`init_local`), which must happen before ray's constants are read."""
    if local:
        # ray/_private/services.py get_node_ip_address (Ray 2.60, lines 811-821): with
        # ray_constants.ENABLE_RAY_CLUSTER off it returns get_localhost_ip() (127.0.0.1) instead
        # of the address other hosts reach, and resolve_ip_for_localhost maps _node_ip_address
        # "127.0.0.1" through it. ENABLE_RAY_CLUSTER is this variable, read when ray is imported
        # (ray_constants.py lines 657-661); the raylet and workers inherit it.
        os.environ[_LOOPBACK_ENV] = "0"
    try:
        import ray
    except ImportError:
        raise BenchError(f"--executor ray needs Ray, which is not installed: {INSTALL_HINT}") \
            from None
    if local:
        with contextlib.suppress(ImportError, AttributeError):
            from ray._private import ray_constants  # already imported before us: set it too

            ray_constants.ENABLE_RAY_CLUSTER = False
    return ray


_LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def init_local(ray: Any) -> None:
    """Start a new private Ray instance bound to 127.0.0.1: never join the cluster that
    RAY_ADDRESS or /tmp/ray/ray_current_cluster names (``address="local"``, ray.init's docstring
    point 4), no dashboard, and the GCS, raylet and workers listening on the loopback only."""
    ray.init(address="local", _node_ip_address="127.0.0.1", include_dashboard=False,
             log_to_driver=False)


class CaseActor:
    """The body of the Ray actor (wrapped with ``ray.remote`` at run time, so importing this
    module needs no ray)."""

    def __init__(self, plan: RunPlan, cpu_only: bool) -> None:
        import ray

        if cpu_only:  # before anything imports torch or CUDA
            os.environ["CUDA_VISIBLE_DEVICES"] = ""
        from bench.scale.worker import Worker

        gpu_ids = ray.get_gpu_ids()
        identity = {"gpu_index": ",".join(str(g) for g in gpu_ids) if gpu_ids else None,
                    "node": ray.get_runtime_context().get_node_id()}
        self.worker = Worker(plan, identity)

    def info(self) -> dict[str, Any]:
        return self.worker.info()

    def run(self, case: Case, backend: str) -> tuple[Any, ...]:
        return self.worker.run(case, backend)


@dataclass
class _Actor:
    slot: int
    handle: Any
    info: dict[str, Any] | None = None
    task: Task | None = None
    dead: bool = False


def cluster_gpus(ray: Any) -> int:
    return int(ray.cluster_resources().get("GPU", 0))


def run_ray(plan: RunPlan, address: str | None = None, workers: int | None = None,
            on_record: Any = None) -> RunSummary:
    """Run a plan on a Ray cluster: one actor per GPU (``workers`` actors, default: every GPU
    of the cluster); ``address`` None (and no RAY_ADDRESS) starts a private local instance on
    127.0.0.1 (a Ray already initialized in this process is used as it is)."""
    address = address or os.environ.get("RAY_ADDRESS") or None  # an explicit choice, as --address
    ray = import_ray(local=address is None)
    sweep = Sweep(plan, executor="ray", on_record=on_record)
    started_here = not ray.is_initialized()
    if started_here:
        try:
            if address is None:
                init_local(ray)
            else:
                ray.init(address=address, include_dashboard=False, log_to_driver=False)
        except (ConnectionError, ValueError, RuntimeError) as e:
            raise BenchError(f"Ray: cannot connect to {address or 'a cluster'}: {e}") from None
    try:
        return _run(ray, sweep, workers)
    finally:
        sweep.close()
        if started_here:
            ray.shutdown()


def _run(ray: Any, sweep: Sweep, workers: int | None) -> RunSummary:
    if workers is not None and workers < 1:
        raise BenchError(f"--workers {workers}: needs at least 1")
    gpus = cluster_gpus(ray)
    if workers is None and gpus == 0:
        raise BenchError("Ray: the cluster has no GPU; pass --workers N to run N CPU actors")
    count = workers or gpus
    cpu_only = gpus == 0
    actor_cls = ray.remote(CaseActor).options(
        num_gpus=0 if cpu_only else 1, max_restarts=MAX_RESTARTS, max_task_retries=0)
    plan = sweep.plan.for_worker()
    actors = [_Actor(k, actor_cls.remote(plan, cpu_only)) for k in range(count)]
    refs: dict[Any, tuple[_Actor, str]] = {}

    def ask_info(a: _Actor) -> None:
        # retried by Ray while the actor restarts; fails only once its restarts are used up
        refs[a.handle.info.options(max_task_retries=-1).remote()] = (a, "info")

    def dispatch() -> None:
        live = {a.slot for a in actors if not a.dead}
        for a in actors:
            if a.dead or a.info is None or a.task is not None:
                continue
            task = sweep.next_task(a.slot, live)
            if task is None:
                continue
            a.task = task
            refs[a.handle.run.remote(task.case, task.backend)] = (a, "run")

    for a in actors:
        ask_info(a)
    try:
        with progress_bar(sweep.plan.progress) as progress:
            bar = progress.add_task(f"ray: starting {count} actor(s)", total=None)
            while not sweep.finished:
                if not refs:
                    raise BenchError("Ray: every actor is gone; the finished records are "
                                     "kept, continue with --resume")
                ready, _ = ray.wait(list(refs), num_returns=1, timeout=1.0)
                for ref in ready:
                    a, kind = refs.pop(ref)
                    _reply(ray, sweep, a, kind, ref, ask_info, dispatch)
                if sweep.started:
                    busy = sum(a.task is not None for a in actors)
                    live = sum(not a.dead for a in actors)
                    progress.update(bar, total=sweep.total,
                                    completed=len(sweep.summary.records),
                                    description=f"ray: {busy}/{live} actors busy")
        if sweep.stopping is not None:
            raise sweep.stopping
    except KeyboardInterrupt:
        sweep.summary.interrupted = True
        sweep.abandon()
    finally:
        for a in actors:
            ray.kill(a.handle, no_restart=True)
    return sweep.summary


def _reply(ray: Any, sweep: Sweep, a: _Actor, kind: str, ref: Any, ask_info: Any,
           dispatch: Any) -> None:
    try:
        value = ray.get(ref)
    except ray.exceptions.RayActorError as e:
        task, a.task = a.task, None
        pid = a.info["pid"] if a.info else "?"
        where = f"gpu {a.info.get('gpu_index')}" if a.info else "?"
        how = " ".join(str(e).split())[:300]
        sweep.crashed(task, a.slot, f"actor {a.slot} pid {pid} ({where}) died: {how}")
        a.info = None
        if isinstance(e, ray.exceptions.ActorDiedError) and kind == "info":
            a.dead = True  # restarts used up
        elif sweep.stopping is None:
            ask_info(a)  # waits for Ray's restart
        dispatch()
        return
    if kind == "info":
        sweep.worker_ready(value)
        a.info = value
        dispatch()
        return
    task, a.task = a.task, None
    assert task is not None
    if value[0] == "fatal":
        raise BenchError(value[1])
    if value[0] == "stuck":  # stored; the other actors finish what they hold, then all are
        sweep.stuck(task, value[1])  # killed
        return
    dispatch()  # the next case goes out before this one is written
    _, rec, layers = value
    sweep.result(task, rec, layers)

