#!/usr/bin/env python
"""Fidelity benchmark: convbench's GPU timers against Nsight Compute (issue 3, item 7).

Every case of ``suites/fidelity.toml`` is built with the torch (cuDNN) backend, or with
``--backend cudnn`` the cuDNN-frontend backend (one fused graph per case), and timed by

- convbench: ``graph`` (warm L2), ``events`` (warm L2) and ``graph`` with a cold L2;
- ``triton.testing.do_bench`` (median; it clears a 256 MB buffer before every call);
- Nsight Compute as the reference: ``gpu__time_duration.sum`` of every kernel, summed per call,
  median over the calls, with ``--clock-control none`` and ``--cache-control none`` (warm) or
  ``all`` (cold). ncu's defaults lock clocks to base and flush caches; both bias a reference.

ncu runs this script's ``--child`` mode, which runs each case a few times inside the NVTX
range ``fidelity`` of the ``convbench`` domain (the only kernels profiled, via
``--nvtx-include convbench@fidelity/``) with a ``spin_kernel`` (``torch.cuda._sleep``) before
every call, so the kernels of the CSV split into calls by position, whatever ncu does with
NVTX names. Two ncu processes in all: one warm, one cold.

convbench and do_bench run ``--repeat`` passes (default 2) over all cases, which gives the
run-to-run repeatability. Prints a markdown table and writes it to ``--out`` (and the raw
numbers to the same path with ``.json``). One command on the GPU machine (~4-6 minutes):

    python benchmarks/fidelity.py --out benchmarks/results/fidelity-h100.md
    python benchmarks/fidelity.py --backend cudnn --out benchmarks/results/fidelity-cudnn.md
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import os
import platform
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RANGE = "fidelity"  # the NVTX range (domain convbench) that holds every profiled call
SEPARATOR = "spin_kernel"  # torch.cuda._sleep's kernel, launched before every profiled call
METRIC = "gpu__time_duration.sum"
#: the SM clock while a kernel ran (cycles elapsed per second, averaged over the SMs)
CLOCK_METRIC = "sm__cycles_elapsed.avg.per_second"
_PER_S_MHZ = {"second": 1e-6, "msecond": 1e-3, "usecond": 1.0, "nsecond": 1e3, "hz": 1e-6}
_UNIT_US = {"nsecond": 1e-3, "ns": 1e-3, "usecond": 1.0, "us": 1.0, "msecond": 1e3, "ms": 1e3,
            "second": 1e6, "s": 1e6}


# --- ncu CSV (pure, tested on the CPU) --------------------------------------------------------
@dataclass(frozen=True)
class Kernel:
    id: int
    name: str
    us: float
    sm_mhz: float | None = None  # the SM clock while it ran (CLOCK_METRIC), if ncu gave it


def parse_ncu_csv(text: str, metric: str = METRIC) -> list[Kernel]:
    """Kernels of an ``ncu --csv`` log in launch order, with ``metric`` in microseconds and,
    where the log has ``CLOCK_METRIC`` rows, each kernel's SM clock in MHz (a unit or value
    that cannot be read leaves that kernel's clock None, never the time).

    ncu's own ``==PROF==``/``==WARNING==`` lines may be mixed in; rows that do not have the
    header's width are skipped.
    """
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines)
                  if "Metric Name" in line and "Kernel Name" in line), None)
    if start is None:
        raise ValueError("no ncu CSV header (a line with \"Kernel Name\" and \"Metric Name\") "
                         "in the ncu output: did ncu profile any kernel?")
    rows = csv.reader(lines[start:])
    header = next(rows)
    col = {name: i for i, name in enumerate(header)}
    for need in ("ID", "Kernel Name", "Metric Name", "Metric Unit", "Metric Value"):
        if need not in col:
            raise ValueError(f"ncu CSV has no {need!r} column (columns: {header})")
    times: list[tuple[int, str, float]] = []
    clocks: dict[int, float] = {}
    for row in rows:
        if len(row) != len(header):
            continue
        name, unit = row[col["Metric Name"]], row[col["Metric Unit"]].strip()
        if name == metric:
            if unit not in _UNIT_US:
                raise ValueError(f"unknown unit {unit!r} for {metric}")
            value = float(row[col["Metric Value"]].replace(",", ""))
            times.append((int(row[col["ID"]]), row[col["Kernel Name"]], value * _UNIT_US[unit]))
        elif name == CLOCK_METRIC:
            per = unit.lower().rsplit("/", 1)[-1]  # cycle/second, cycle/nsecond, ...
            with contextlib.suppress(KeyError, ValueError):  # "n/a", an unknown unit
                clocks[int(row[col["ID"]])] = (float(row[col["Metric Value"]].replace(",", ""))
                                               * _PER_S_MHZ[per])
    return sorted((Kernel(i, n, us, clocks.get(i)) for i, n, us in times), key=lambda k: k.id)


def group_calls(kernels: Sequence[Kernel], n_calls: int,
                separator: str = SEPARATOR) -> list[list[Kernel]]:
    """Split kernels into calls: each call starts right after a separator kernel."""
    calls: list[list[Kernel]] = []
    for k in kernels:
        if separator in k.name:
            calls.append([])
        elif not calls:
            raise ValueError(f"kernel {k.name!r} (ID {k.id}) came before the first separator")
        else:
            calls[-1].append(k)
    if len(calls) != n_calls:
        raise ValueError(f"ncu profiled {len(calls)} calls, the child made {n_calls}: was every "
                         f"call inside the NVTX range {RANGE!r}?")
    return calls


def summarize_calls(calls: Sequence[Sequence[Kernel]]) -> dict[str, Any]:
    """Reference numbers of one case from its profiled calls."""
    sums = [sum(k.us for k in c) for c in calls]
    counts = [len(c) for c in calls]
    # a call's SM clock: its kernels' clocks weighted by their times
    mhz = [sum(k.us * k.sm_mhz for k in c) / sum(k.us for k in c) for c in calls
           if c and all(k.sm_mhz for k in c) and sum(k.us for k in c) > 0]
    longest = [max((k.us for k in c), default=0.0) for c in calls]
    names = sorted({k.name for c in calls for k in c})
    return {"us": statistics.median(sums), "calls_us": sums,
            "kernels": statistics.mode(counts) if counts else 0,
            "kernel_counts_differ": len(set(counts)) > 1,
            "longest_us": statistics.median(longest) if longest else 0.0, "kernel_names": names,
            "sm_mhz": statistics.median(mhz) if mhz else None}


def err_pct(value: float | None, ref: float | None) -> float | None:
    if value is None or ref is None or ref <= 0:
        return None
    return (value - ref) / ref * 100.0


# --- child mode: the calls ncu profiles ---------------------------------------------------------
def run_child(args: argparse.Namespace) -> int:
    from bench.gpu import cuda, nvtx

    if not nvtx.available():
        print("fidelity child: the nvtx package is needed for ncu's NVTX filter: "
              "pip install nvtx", file=sys.stderr)
        return 3
    import torch

    from bench.reference import make_data

    cases = _cases(args)
    device = cuda.Device(args.device)
    stream = device.stream()
    # cuDNN heuristics, not autotuning: under ncu (which replays and serializes kernels) the
    # autotuner picks other algorithms than in the timed process, and the reference would
    # time different kernels
    backend = _backend(args.backend)
    torch_stream = torch.cuda.ExternalStream(stream.handle)
    manifest: list[int] = []
    for case in cases:
        spec = case_spec(case)
        engine = backend.build(spec, make_data(spec))
        try:
            for _ in range(3):  # warm, outside the profiled range
                engine.enqueue(stream)
            stream.sync()
            with nvtx.annotate(RANGE, payload=case.index):
                for _ in range(args.calls):
                    with torch.cuda.stream(torch_stream):
                        torch.cuda._sleep(100)
                    engine.enqueue(stream)
                    stream.sync()
                    manifest.append(case.index)
        finally:
            engine.close()
    stream.close()
    Path(args.manifest).write_text(json.dumps(manifest), encoding="utf-8")
    return 0


def run_ncu(args: argparse.Namespace, l2: str, workdir: Path) -> dict[str, Any]:
    """One ncu process over every case; returns per-case references and the wall time."""
    from bench.gpu.nvtx import ncu_include

    csv_path = workdir / f"ncu-{l2}.csv"
    manifest_path = workdir / f"manifest-{l2}.json"
    cmd = [args.ncu, "--clock-control", "none",
           "--cache-control", "none" if l2 == "warm" else "all",
           "--nvtx", "--nvtx-include", ncu_include(RANGE), "--metrics", f"{METRIC},{CLOCK_METRIC}",
           "--csv", "--print-units", "base", "--log-file", str(csv_path),
           sys.executable, str(Path(__file__).resolve()), "--child",
           "--suite", str(args.suite), "--calls", str(args.calls),
           "--manifest", str(manifest_path), "--device", str(args.device),
           "--backend", args.backend]
    if args.filter:
        cmd += ["--filter", args.filter]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    _log(f"ncu {l2}: {shlex.join(cmd)}")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False,
                          timeout=args.ncu_timeout)
    wall = time.perf_counter() - t0
    if proc.returncode != 0 or not manifest_path.exists():
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
        log = csv_path.read_text(errors="replace")[-2000:] if csv_path.exists() else ""
        raise RuntimeError(f"ncu ({l2}) failed with exit code {proc.returncode}:\n{tail}\n"
                           f"{log}\ncommand: {shlex.join(cmd)}")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    calls = group_calls(parse_ncu_csv(csv_path.read_text(errors="replace")), len(manifest))
    per_case: dict[int, list[list[Kernel]]] = {}
    for index, call in zip(manifest, calls):
        per_case.setdefault(index, []).append(call)
    return {"wall_s": wall, "command": shlex.join(cmd),
            "cases": {i: summarize_calls(c) for i, c in per_case.items()}}


# --- convbench and do_bench -------------------------------------------------------------------
HARNESSES = (("graph", "graph", "warm"), ("events", "events", "warm"), ("cold", "graph", "cold"))


def _do_bench(engine: Any, stream: Any) -> float | None:
    try:
        from triton.testing import do_bench
    except ImportError:
        return None
    import torch

    def fn() -> None:
        engine.enqueue(stream)

    # do_bench records its events on torch's current stream: make that convbench's stream
    with torch.cuda.stream(torch.cuda.ExternalStream(stream.handle)):
        try:
            return float(do_bench(fn, return_mode="median"))
        except TypeError:  # older triton: no return_mode
            return float(do_bench(fn, quantiles=[0.5])[0])


def traced_kernels(run: Any) -> list[Any]:
    """``run()`` with CUPTI's kernel activity on (torch.profiler / kineto, left running after
    a stuck wait, as in the backend): the CUDA kernels it saw, memsets and copies left out, in
    order of start."""
    import torch

    from bench.backends.torch import profiling

    with profiling(cuda=True) as prof:
        run()
    torch.cuda.synchronize()
    return sorted((e for e in prof.events() if str(e.device_type).endswith("CUDA")
                   and not e.name.startswith(("Memset", "Memcpy"))),
                  key=lambda e: e.time_range.start)


def _device_us(event: Any) -> float:
    return float(getattr(event, "device_time", None) or event.cuda_time)


def case_spec(case: Any, algo: str = "heuristic") -> Any:
    """The case's spec with ``algo`` set (the benchmarks choose the selection themselves)."""
    from bench.spec import ConvSpec

    return ConvSpec.model_validate({**case.spec.model_dump(), "algo": algo})


#: back-to-back enqueues traced for the CUPTI reference (after as many untraced ones)
CUPTI_ITERS = 200


def cupti_kernel_us(engine: Any, stream: Any, iters: int = CUPTI_ITERS) -> dict[str, Any] | None:
    """Second reference for multi-kernel cases: CUPTI's kernel activity records (through
    torch.profiler / kineto), taken while ``iters`` inferences run back to back on the stream
    as in the graph timer — unlike Nsight Compute, which serializes every kernel and adds
    about 1 µs to each. Per inference: the sum of the kernels' device durations / iters, and
    the span from the first kernel's start to the last kernel's end / iters (which includes
    the gaps between kernels that a back-to-back run has)."""
    for _ in range(iters):  # warm, untraced
        engine.enqueue(stream)
    stream.sync()

    def run() -> None:
        for _ in range(iters):
            engine.enqueue(stream)
        stream.sync()

    kernels = traced_kernels(run)
    if not kernels:
        return None
    total_us = sum(_device_us(e) for e in kernels)
    start = min(e.time_range.start for e in kernels)
    end = max(e.time_range.end for e in kernels)
    return {"us": total_us / iters, "span_us": (end - start) / iters,
            "kernels": round(len(kernels) / iters, 2)}


#: blocked replays of the timed graph traced by CUPTI, right after its timing
CUPTI_GRAPH_REPLAYS = 10


def cupti_graph_us(source: Any, replays: int = CUPTI_GRAPH_REPLAYS) -> dict[str, Any] | None:
    """The multi-kernel reference that the issue asks for, taken on the timed graph itself:
    ``replays`` more blocked replays of the graph source that was just timed (same graph, same
    buffers, the GPU in the state the timing left it), with CUPTI's kernel activity on (through
    torch.profiler / kineto). Kernels run back to back as when timed; CUPTI only timestamps
    them. Per inference (the graph holds K): ``span_us``, the first kernel's start to the last
    kernel's end of a replay / K (what the event pair around a replay measures, less the
    launch); ``us``, the kernels' device durations summed / K (the span less the gaps between
    kernels); ``traced_us``, the event timer's own reading of the same traced replays. Medians
    over the replays. None where CUPTI reported no kernels."""
    k = source.iters_per_sample
    timed: list[float] = []
    # each replay waits for its end event, so the replays do not overlap
    kernels = traced_kernels(lambda: timed.extend(source() for _ in range(replays)))
    if not kernels:
        return None
    if len(kernels) % replays:
        raise ValueError(f"CUPTI reported {len(kernels)} kernels for {replays} replays")
    per = len(kernels) // replays
    spans, sums = [], []
    for i in range(replays):
        chunk = kernels[i * per:(i + 1) * per]
        spans.append((max(e.time_range.end for e in chunk)
                      - min(e.time_range.start for e in chunk)) / k)
        sums.append(sum(_device_us(e) for e in chunk) / k)
    return {"us": statistics.median(sums), "span_us": statistics.median(spans),
            "traced_us": statistics.median(timed) * 1e3, "kernels": per / k,
            "replays": replays, "iters_per_sample": k}


class ClockSampler:
    """The GPU's SM clock (MHz) and power (W) from NVML every ``period_s`` on a thread, for the
    time a ``with`` block runs; ``summary()`` gives their medians and the lowest clock. Inert
    (summary None) where NVML cannot see the GPU. In the paced graph most readings fall in the
    idle gaps between bursts, not during the kernels."""

    def __init__(self, uuid: str, period_s: float = 0.01) -> None:
        import threading

        from bench.gpu import nvml

        self._nv, self._h = nvml.device_handle(uuid) or (None, None)
        self._period = period_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.mhz: list[int] = []
        self.watts: list[float] = []

    def _loop(self) -> None:
        nv, h = self._nv, self._h
        while not self._stop.is_set():
            try:
                self.mhz.append(int(nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM)))
                self.watts.append(nv.nvmlDeviceGetPowerUsage(h) / 1000.0)
            except Exception:  # noqa: BLE001 - a failed reading is left out
                pass
            self._stop.wait(self._period)

    def __enter__(self) -> ClockSampler:
        if self._h is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._h is not None:
            self._stop.set()
            self._thread.join()

    def summary(self) -> dict[str, Any] | None:
        if not self.mhz:
            return None
        return {"sm_mhz": statistics.median(self.mhz), "min_sm_mhz": min(self.mhz),
                "power_w": statistics.median(self.watts) if self.watts else None,
                "readings": len(self.mhz)}


#: the paced graph: PACED_SAMPLES replays of about PACED_BURST_MS each, PACED_GAP_S apart
PACED_SAMPLES = 30
PACED_BURST_MS = 0.5
PACED_GAP_S = 0.01


def paced_graph_us(engine: Any, stream: Any) -> dict[str, Any]:
    """The graph timer with the GPU mostly idle, as Nsight Compute times a kernel: each sample
    is one blocked replay of a short graph (about ``PACED_BURST_MS``: one inference of a
    300 µs case, ten of a 50 µs one) after ``PACED_GAP_S`` of idle GPU. Back-to-back replays
    of large kernels draw the H200 up to its power cap and its SM clock down; a ~2 % duty
    cycle keeps it at the clock an isolated kernel sees. A check of the timer against ncu
    under the same conditions, not a convbench mode."""
    from bench.gpu.timers import GraphSource

    source = GraphSource(engine, stream, "warm", None, target_ms=PACED_BURST_MS)
    try:
        ms = []
        for _ in range(PACED_SAMPLES):
            time.sleep(PACED_GAP_S)
            ms.append(source())
    finally:
        source.close()
    return {"us": statistics.median(ms) * 1e3, "n": len(ms),
            "iters_per_sample": source.iters_per_sample, "gap_s": PACED_GAP_S}


def _backend(name: str) -> Any:
    """The backend under test; algo = heuristic for both (torch: cudnn.benchmark off; cudnn:
    cuDNN's first usable plan), so the ncu process runs the kernels the timed one ran."""
    from bench.backends.registry import get_backend

    backend = get_backend(name)
    ok, reason = backend.available()
    if not ok:
        raise SystemExit(f"fidelity: backend {name} cannot run here: {reason}")
    return backend


def measure_pass(cases: Sequence[Any], stream: Any, flusher: Any, settings: Any,
                 with_do_bench: bool, label: str,
                 backend_name: str = "torch", placements: int = 1) -> dict[int, dict[str, Any]]:
    """``placements`` > 1: the graph harness is timed as ``convbench run`` does with
    ``[timing] placements`` (``bench.placements``): the budget split between that many buffer
    placements, samples pooled; its CUPTI trace then runs at the last placement."""
    from bench.gpu.cuda import GpuStuck
    from bench.gpu.timers import make_source
    from bench.placements import measure_placements
    from bench.reference import make_data
    from bench.stats import summarize
    from bench.timing import measure

    # cuDNN heuristics, not autotuning: under ncu (which replays and serializes kernels) the
    # autotuner picks other algorithms than in the timed process, and the reference would
    # time different kernels
    backend = _backend(backend_name)
    uuid = stream.device.info.uuid
    out: dict[int, dict[str, Any]] = {}
    for n, case in enumerate(cases, 1):
        t0 = time.perf_counter()
        spec = case_spec(case)
        engine = backend.build(spec, make_data(spec))
        res: dict[str, Any] = {"build_s": time.perf_counter() - t0}
        try:
            for key, mode, l2 in HARNESSES:
                t1 = time.perf_counter()
                source = make_source(engine, stream, mode, l2, flusher)
                # NVML is read on a thread only around graph timing: in events mode every
                # sample includes the host's launch, and the reader's turns at the GIL delay it
                # (on the H200 the events column rose 1.32x, median, with the reader running)
                clocks = ClockSampler(uuid) if key == "graph" else None
                traced = None
                placed = None
                try:
                    with clocks or contextlib.nullcontext():
                        if key == "graph" and placements > 1:
                            source.close()  # the placements make their own timers

                            def make(iters: int | None, engine: Any = engine,
                                     mode: str = mode, l2: str = l2) -> Any:
                                return make_source(engine, stream, mode, l2, flusher, iters)

                            placed = measure_placements(engine, make, settings, placements)
                            samples = placed.samples
                            # for the trace below, at the last placement
                            source = make(samples.iters_per_sample)
                        else:
                            samples = measure(source, settings)
                    wall_s = time.perf_counter() - t1  # the trace below is not convbench's
                    if key == "graph":
                        try:
                            traced = cupti_graph_us(source)
                        except GpuStuck:
                            raise
                        except Exception as e:  # noqa: BLE001 - keep the case's other numbers
                            _log(f"{label} {case.name}: no CUPTI trace of the graph "
                                 f"({type(e).__name__}: {e})")
                finally:
                    source.close()
                if key == "graph":
                    res["cupti_graph"] = traced
                st = summarize(samples.ms)
                res[key] = {"us": st.median * 1e3, "rse": samples.rse, "n": len(samples.ms),
                            "iters_per_sample": samples.iters_per_sample,
                            "converged": samples.converged,
                            "wall_s": wall_s,
                            "info": placed.source_info if placed
                            else getattr(source, "info", {}),
                            "placements_us": [p.median_ms * 1e3 for p in placed.placements]
                            if placed else None,
                            "clocks": clocks.summary() if clocks else None}
            try:
                with ClockSampler(uuid) as clocks:
                    res["paced"] = paced_graph_us(engine, stream)
                res["paced"]["clocks"] = clocks.summary()
            except GpuStuck:
                raise
            except Exception as e:  # noqa: BLE001 - a missing reference must not lose the rest
                res["paced"] = None
                _log(f"{label} {case.name}: no paced graph ({type(e).__name__}: {e})")
            try:
                res["cupti"] = cupti_kernel_us(engine, stream)
            except GpuStuck:
                raise  # the GPU cannot be trusted for the cases after this one
            except Exception as e:  # noqa: BLE001 - a missing reference must not lose the rest
                res["cupti"] = None
                _log(f"{label} {case.name}: no CUPTI reference ({type(e).__name__}: {e})")
            if with_do_bench:
                t1 = time.perf_counter()
                ms = _do_bench(engine, stream)
                res["do_bench"] = None if ms is None else {
                    "us": ms * 1e3, "wall_s": time.perf_counter() - t1}
        finally:
            engine.close()
        out[case.index] = res
        g = res["graph"]
        _log(f"{label} {n}/{len(cases)} {case.name}: graph {g['us']:.2f} us "
             f"(K={g['iters_per_sample']}, rse {g['rse'] * 100:.2f}%, {g['wall_s']:.2f} s, "
             f"SM {(g.get('clocks') or {}).get('sm_mhz')} MHz); paced "
             f"{_f(_us(res['paced']), 2)} us")
    return out


# --- report -----------------------------------------------------------------------------------
def _f(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _pm(x: float | None) -> str:
    return "n/a" if x is None else f"{x:+.1f}"


def _us(d: dict[str, Any] | None) -> float | None:
    return None if not d else d.get("us")


def build_rows(cases: Sequence[Any], passes: Sequence[dict[int, dict[str, Any]]],
               ncu: dict[str, dict[str, Any] | None]) -> list[dict[str, Any]]:
    rows = []
    for case in cases:
        first = passes[0][case.index]
        warm = (ncu.get("warm") or {}).get("cases", {}).get(case.index)
        cold = (ncu.get("cold") or {}).get("cases", {}).get(case.index)
        row: dict[str, Any] = {"index": case.index, "name": case.name, "key": case.key,
                               "ncu_warm": warm, "ncu_cold": cold}
        for h in ("graph", "events", "cold", "do_bench", "paced"):
            ref = cold if h in ("cold", "do_bench") else warm
            row[h] = _us(first.get(h))
            row[f"{h}_err"] = err_pct(row[h], ref["us"] if ref else None)
            row[f"{h}_wall"] = (first.get(h) or {}).get("wall_s")
            reruns = [_us(p[case.index].get(h)) for p in passes]
            reruns = [r for r in reruns if r is not None]
            row[f"{h}_rerun"] = ((max(reruns) - min(reruns)) / min(reruns) * 100
                                 if len(reruns) > 1 and min(reruns) > 0 else None)
        cupti = first.get("cupti")
        row["cupti"] = cupti["us"] if cupti else None
        row["cupti_span"] = cupti["span_us"] if cupti else None
        row["cupti_err"] = err_pct(row["graph"], row["cupti"])
        traced = first.get("cupti_graph")  # absent in runs from before 2026-12-02 (call 5)
        row["cg_span"] = traced["span_us"] if traced else None
        row["cg_sum"] = traced["us"] if traced else None
        row["cg_traced"] = traced["traced_us"] if traced else None
        row["cg_kernels"] = traced["kernels"] if traced else None
        row["cg_err"] = err_pct(row["graph"], row["cg_span"])
        row["cg_traced_err"] = err_pct(row["cg_traced"], row["cg_span"])
        paced = first.get("paced")
        row["paced_k"] = paced.get("iters_per_sample") if paced else None
        row["paced_mhz"] = ((paced or {}).get("clocks") or {}).get("sm_mhz")
        graph_clocks = first["graph"].get("clocks") or {}
        row["graph_mhz"] = graph_clocks.get("sm_mhz")
        row["graph_min_mhz"] = graph_clocks.get("min_sm_mhz")
        row["graph_w"] = graph_clocks.get("power_w")
        row["ncu_mhz"] = warm.get("sm_mhz") if warm else None
        row["graph_rse"] = first["graph"]["rse"]
        row["graph_k"] = first["graph"]["iters_per_sample"]
        row["blocked"] = first["graph"]["info"].get("blocked")
        rows.append(row)
    return rows


def _within(rows: Sequence[dict[str, Any]], err: str, limit: float, what: str,
            note: str = "") -> str:
    """A target line: how many of ``rows`` have ``|row[err]| <= limit`` %, and the worst."""
    ok = [r for r in rows if r[err] is not None and abs(r[err]) <= limit]
    worst = max(rows, key=lambda r: abs(r[err] or 0))
    return (f"- {what} within ±{limit} %{note}: {len(ok)}/{len(rows)}; worst "
            f"{_pm(worst[err])} % ({worst['name']})")


def check_targets(rows: Sequence[dict[str, Any]], n_passes: int) -> list[str]:
    """The issue's targets, each as one line with the actual numbers."""
    lines = []
    big = [r for r in rows if r["ncu_warm"] and r["ncu_warm"]["us"] >= 50]
    if big:
        ok = [r for r in big if r["graph_err"] is not None and abs(r["graph_err"]) <= 1]
        worst = max(big, key=lambda r: abs(r["graph_err"] or 0))
        lines.append(f"- Accuracy, graph vs ncu warm within ±1 % (cases with kernels ≥ 50 µs): "
                     f"{len(ok)}/{len(big)}; worst {_pm(worst['graph_err'])} % ({worst['name']})")
        bigc = [r for r in rows if r["ncu_cold"] and r["ncu_cold"]["us"] >= 50]
        okc = [r for r in bigc if r["cold_err"] is not None and abs(r["cold_err"]) <= 3]
        if bigc:
            worstc = max(bigc, key=lambda r: abs(r["cold_err"] or 0))
            lines.append(f"- Accuracy, cold vs ncu cold within ±3 % (≥ 50 µs): "
                         f"{len(okc)}/{len(bigc)}; worst {_pm(worstc['cold_err'])} % "
                         f"({worstc['name']})")
    # issue "Numbers that repeat" (6): single-kernel cases against ncu (±1 %), multi-kernel
    # cases against the CUPTI trace of back-to-back kernels (±2 %), both for kernels ≥ 50 µs
    single = [r for r in big if r["ncu_warm"]["kernels"] == 1]
    multi = [r for r in rows if r["ncu_warm"] and r["ncu_warm"]["kernels"] > 1
             and r["cupti"] is not None and r["cupti"] >= 50]
    if single:
        ok = [r for r in single if r["graph_err"] is not None and abs(r["graph_err"]) <= 1]
        lines.append(f"- Single-kernel cases ≥ 50 µs, graph vs ncu within ±1 %: "
                     f"{len(ok)}/{len(single)}")
    paced = [r for r in single if r["paced"] is not None]
    if paced:
        lines.append(_within(paced, "paced_err", 1, "Single-kernel cases ≥ 50 µs, paced graph "
                             "(short replays after an idle gap, as ncu times a kernel) vs ncu"))
    traced = [r for r in big if r["ncu_warm"]["kernels"] > 1 and r["cg_span"] is not None]
    if traced:
        lines.append(_within(traced, "cg_err", 2, "Multi-kernel cases ≥ 50 µs, graph vs CUPTI "
                             "trace of its own replays (first kernel start to last kernel end "
                             "per inference)"))
    if multi:
        lines.append(_within(multi, "cupti_err", 2, "Multi-kernel cases ≥ 50 µs, graph vs CUPTI "
                             "back-to-back kernel sum"
                             + (" of eager inferences" if traced else "")))
    multi_paced = [r for r in big if r["ncu_warm"]["kernels"] > 1 and r["paced"] is not None]
    if multi_paced:
        lines.append(_within(multi_paced, "paced_err", 2, "Multi-kernel cases ≥ 50 µs, paced "
                             "graph vs ncu kernel sum", " (ncu serializes the kernels)"))
    with_ref = [r for r in rows if r["ncu_warm"] and r["graph"] is not None]
    if with_ref:
        leaks = [r for r in with_ref
                 if r["graph"] > r["ncu_warm"]["us"] + 0.5 * r["ncu_warm"]["kernels"]]
        short = [r for r in with_ref if r["graph"] < r["ncu_warm"]["longest_us"]]
        lines.append(f"- No overhead leaks, graph ≤ ncu warm + 0.5 µs/kernel: "
                     f"{len(with_ref) - len(leaks)}/{len(with_ref)}"
                     + (f" (over: {', '.join(r['name'] for r in leaks)})" if leaks else ""))
        lines.append(f"- Graph ≥ longest single kernel: {len(with_ref) - len(short)}/"
                     f"{len(with_ref)}"
                     + (f" (under: {', '.join(r['name'] for r in short)})" if short else ""))
    if n_passes > 1:
        parts = []
        for h in ("graph", "events", "cold", "do_bench", "paced"):
            vals = [r[f"{h}_rerun"] for r in rows if r[f"{h}_rerun"] is not None]
            if vals:
                ok = sum(v <= 1.0 for v in vals)
                parts.append(f"{h} {ok}/{len(vals)} ({ok / len(vals) * 100:.0f} %)")
        lines.append("- Repeatability, two passes within 1 % (target ≥ 95 % of cases): "
                     + ", ".join(parts))
    timed = [r for r in rows if r["ncu_warm"] and r["ncu_warm"]["us"] >= 20
             and r["graph_wall"] is not None]
    if timed:
        walls = [r["graph_wall"] for r in timed]
        quiet = sum(r["graph_rse"] <= 0.005 for r in timed)
        lines.append(f"- Time to result, graph mode (kernels ≥ 20 µs): median "
                     f"{statistics.median(walls):.2f} s, max {max(walls):.2f} s per case "
                     f"(target ≤ 0.6 s); noise ≤ 0.5 % on {quiet}/{len(timed)}")
    return lines


def render(rows: Sequence[dict[str, Any]], meta: dict[str, Any], targets: list[str]) -> str:
    head = ("| # | case | kernels | ncu warm µs | ncu cold µs | CUPTI µs | graph µs | err % | "
            "err % vs CUPTI | events µs | "
            "err % | cold µs | err % (vs cold) | do_bench µs | err % (vs cold) | "
            "rerun Δ % graph / do_bench | wall s graph / events / cold / do_bench |")
    sep = "|" + "---|" * (head.count("|") - 1)
    backend = meta.get("backend", "torch")
    choice = ("cuDNN's heuristic algorithm choice (`cudnn.benchmark=False`)" if backend == "torch"
              else "the cuDNN frontend's first usable plan (`algo = heuristic`)")
    out = [f"# Fidelity: convbench vs Nsight Compute ({meta['gpu']})", "",
           f"Backend: `{backend}`  ",
           f"Command: `{meta['command']}`  ",
           f"Date: {meta['date']}; torch {meta['torch']}, cuDNN {meta['cudnn']}, "
           f"driver CUDA {meta['driver']}, ncu `{meta['ncu_version']}`  ",
           f"Clocks before/after: {meta['clocks_before']} / {meta['clocks_after']}  ",
           "Reference: ncu `gpu__time_duration.sum` summed over a call's kernels, median of "
           f"{meta['calls']} calls, `--clock-control none`, `--cache-control none` (warm) / "
           "`all` (cold; flushes before every kernel). convbench graph: back-to-back "
           "inferences in one CUDA graph, blocked launch, warm L2; events: one event pair per "
           "eager call; cold: one inference per sample after a ≥ 2×L2 memset. do_bench: "
           "triton's median (it zeroes 256 MB before each call, so it is compared with ncu "
           f"cold). err % = (harness − ncu) / ncu. CUPTI: the kernels' device durations from "
           "CUPTI's activity trace (torch.profiler) summed per inference while "
           f"{CUPTI_ITERS} inferences run back to back (no serialization); err % vs CUPTI = "
           f"(graph − CUPTI) / CUPTI. Both processes use {choice} so ncu times the same "
           "kernels.",
           "", head, sep]
    for r in rows:
        w, c = r["ncu_warm"], r["ncu_cold"]
        kern = "n/a" if not w else f"{w['kernels']}" + ("*" if w["kernel_counts_differ"] else "")
        out.append(
            f"| {r['index']} | {r['name']} | {kern} | {_f(w and w['us'], 2)} | "
            f"{_f(c and c['us'], 2)} | {_f(r['cupti'], 2)} | {_f(r['graph'], 2)} | "
            f"{_pm(r['graph_err'])} | {_pm(r['cupti_err'])} | "
            f"{_f(r['events'], 2)} | {_pm(r['events_err'])} | {_f(r['cold'], 2)} | "
            f"{_pm(r['cold_err'])} | {_f(r['do_bench'], 2)} | {_pm(r['do_bench_err'])} | "
            f"{_f(r['graph_rerun'], 2)} / {_f(r['do_bench_rerun'], 2)} | "
            f"{_f(r['graph_wall'], 2)} / {_f(r['events_wall'], 2)} / {_f(r['cold_wall'], 2)} / "
            f"{_f(r['do_bench_wall'], 2)} |")
    if any(r["paced"] is not None or r["graph_mhz"] is not None for r in rows):
        out += ["", "## Clocks, and the graph timer with the GPU mostly idle", "",
                "SM clocks: ncu's `sm__cycles_elapsed.avg.per_second` while the profiled "
                "kernels ran (median over calls); graph and paced: NVML's SM clock read every "
                "10 ms while they were timed (median, and the lowest reading). Paced: the graph "
                f"timer's blocked replay of a short graph (about {PACED_BURST_MS} ms; K "
                f"inferences), {PACED_SAMPLES} samples each after {PACED_GAP_S * 1e3:.0f} ms "
                "of idle GPU, median; err % = (paced − ncu warm) / ncu warm.", "",
                "| # | case | kernels | ncu warm µs | ncu SM MHz | graph µs | graph SM MHz "
                "(lowest) | graph W | paced µs | paced err % | paced K | paced SM MHz |",
                "|" + "---|" * 12]
        for r in rows:
            w = r["ncu_warm"]
            low = f" ({_f(r['graph_min_mhz'], 0)})" if r["graph_min_mhz"] else ""
            out.append(
                f"| {r['index']} | {r['name']} | {'n/a' if not w else w['kernels']} | "
                f"{_f(w and w['us'], 2)} | {_f(r['ncu_mhz'], 0)} | {_f(r['graph'], 2)} | "
                f"{_f(r['graph_mhz'], 0)}{low} | {_f(r['graph_w'], 0)} | "
                f"{_f(r['paced'], 2)} | {_pm(r['paced_err'])} | "
                f"{r['paced_k'] or 'n/a'} | {_f(r['paced_mhz'], 0)} |")
    if any(r["cg_span"] is not None for r in rows):
        out += ["", "## CUPTI trace of the timed graph's own replays", "",
                f"{CUPTI_GRAPH_REPLAYS} more blocked replays of the graph just timed, with "
                "CUPTI's kernel activity on (torch.profiler), medians over the replays, per "
                "inference: span = first kernel's start to last kernel's end of a replay / K; "
                "kernel sum = the kernels' durations / K; gaps = span − sum; traced graph = the "
                "event timer's reading of those same traced replays. err % = (graph − span) / "
                "span, with graph the untraced median of the table above.", "",
                "| # | case | kernels | graph µs | traced graph µs | CUPTI span µs | err % | "
                "traced err % | CUPTI kernel sum µs | gaps µs | K |",
                "|" + "---|" * 11]
        for r in rows:
            gaps = (r["cg_span"] - r["cg_sum"]) if r["cg_span"] is not None else None
            out.append(
                f"| {r['index']} | {r['name']} | {_f(r['cg_kernels'], 0)} | "
                f"{_f(r['graph'], 2)} | {_f(r['cg_traced'], 2)} | {_f(r['cg_span'], 2)} | "
                f"{_pm(r['cg_err'])} | {_pm(r['cg_traced_err'])} | {_f(r['cg_sum'], 2)} | "
                f"{_f(gaps, 2)} | {r['graph_k']} |")
    out += ["", "## Targets", "", *targets, "",
            f"- Device memory free before/after: {meta['free_before_mib']:.0f} / "
            f"{meta['free_after_mib']:.0f} MiB; host RSS {meta['rss_before_mib']:.0f} → "
            f"{meta['rss_after_mib']:.0f} MiB",
            f"- ncu wall: warm {_f(meta['ncu_wall_warm'])} s, cold {_f(meta['ncu_wall_cold'])} s "
            f"for {len(rows)} cases (one process each, startup and builds included)",
            f"- Graph samples blocked until queued: {meta['blocked']}",
            "- `*` after a kernel count: the profiled calls of that case did not all launch "
            "the same number of kernels.",
            *[f"- Reference missing: {e}" for e in meta.get("ncu_errors", [])],
            *([f"- ncu references taken: {meta['ncu_l2']} only (--ncu-l2)"]
              if meta.get("ncu_l2", "both") != "both" else []),
            f"- Total wall time: {_f(meta.get('wall_s'))} s", ""]
    return "\n".join(out)


# --- main -------------------------------------------------------------------------------------
def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _cases(args: argparse.Namespace) -> list[Any]:
    from bench.runner import select_cases
    from bench.suite import load_suite

    return select_cases(load_suite(args.suite), args.filter)


def _rss_mib() -> float:
    """Current resident set size (Linux), else the peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _ncu_version(ncu: str | None) -> str:
    if not ncu:
        return "not found"
    try:
        out = subprocess.run([ncu, "--version"], capture_output=True, text=True, timeout=60,
                             check=False).stdout.strip().splitlines()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out[-1] if out else "unknown"


def run_parent(args: argparse.Namespace) -> int:
    from bench.gpu import cuda, nvml

    reason = cuda.unavailable_reason()
    if reason:
        print(f"fidelity: needs a CUDA GPU: {reason}", file=sys.stderr)
        return 2
    import torch

    from bench.suite import load_suite

    suite = load_suite(args.suite)
    cases = _cases(args)
    settings = suite.timing.settings()
    device = cuda.Device(args.device)
    info = device.info
    stream = device.stream()
    flusher = cuda.L2Flusher(device)
    free_before, rss_before = device.mem_info()[0], _rss_mib()
    clocks_before = nvml.clocks(info.uuid)
    t_start = time.perf_counter()
    passes = []
    try:
        for p in range(args.repeat):
            passes.append(measure_pass(cases, stream, flusher, settings, not args.no_do_bench,
                                       f"pass {p + 1}/{args.repeat}", args.backend,
                                       args.placements))
        torch.cuda.synchronize()
    finally:
        flusher.close()
        stream.close()
    free_after, rss_after = device.mem_info()[0], _rss_mib()
    clocks_after = nvml.clocks(info.uuid)

    ncu: dict[str, dict[str, Any] | None] = {"warm": None, "cold": None}
    ncu_errors: list[str] = []
    ncu_path = None if args.no_ncu else (args.ncu or shutil.which("ncu"))
    if ncu_path:
        args.ncu = ncu_path
        with tempfile.TemporaryDirectory(prefix="fidelity-ncu-") as tmp:
            for l2 in ("warm", "cold") if args.ncu_l2 == "both" else (args.ncu_l2,):
                try:
                    ncu[l2] = run_ncu(args, l2, Path(tmp))
                except (RuntimeError, ValueError, subprocess.TimeoutExpired) as e:
                    # keep the convbench numbers: report the reference as missing, and why
                    _log(f"fidelity: ncu {l2} reference failed: {e}")
                    ncu_errors.append(f"ncu {l2}: {' '.join(str(e).split())[:600]}")
    elif not args.no_ncu:
        _log("fidelity: ncu not found on PATH (give --ncu PATH): no reference column")

    rows = build_rows(cases, passes, ncu)
    targets = check_targets(rows, len(passes))
    meta = {
        "gpu": f"{info.name}, {info.sm_count} SMs, L2 {info.l2_bytes >> 20} MiB",
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "backend": args.backend, "backend_versions": _backend(args.backend).versions(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__, "cudnn": torch.backends.cudnn.version(),
        "driver": _driver_version(), "ncu_version": _ncu_version(ncu_path),
        "clocks_before": _clock_text(clocks_before), "clocks_after": _clock_text(clocks_after),
        "calls": args.calls,
        "free_before_mib": free_before / 2**20, "free_after_mib": free_after / 2**20,
        "rss_before_mib": rss_before, "rss_after_mib": rss_after,
        "ncu_wall_warm": (ncu["warm"] or {}).get("wall_s"),
        "ncu_wall_cold": (ncu["cold"] or {}).get("wall_s"),
        "blocked": sorted({str(r["blocked"]) for r in rows}),
        "python": platform.python_version(), "wall_s": time.perf_counter() - t_start,
        "ncu_errors": ncu_errors, "ncu_l2": args.ncu_l2,
    }
    text = render(rows, meta, targets)
    print(text)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        raw = {"meta": meta, "device": info.to_json(), "rows": rows,
               "passes": [{str(k): v for k, v in p.items()} for p in passes],
               "ncu": {k: None if v is None else {**v, "cases": {str(i): c for i, c in
                                                               v["cases"].items()}}
                       for k, v in ncu.items()}}
        out.with_suffix(".json").write_text(json.dumps(raw, indent=1, default=str),
                                            encoding="utf-8")
        _log(f"fidelity: wrote {out} and {out.with_suffix('.json')}")
    return 0


def _driver_version() -> str:
    from bench.gpu.cuda import _check, _driver

    v = int(_check(_driver().cuDriverGetVersion(), "cuDriverGetVersion"))
    return f"{v // 1000}.{v % 1000 // 10}"


def _clock_text(c: dict[str, Any] | None) -> str:
    if not c:
        return "n/a"
    reasons = ",".join(c["clock_event_reasons"]) or "none"
    return (f"SM {c['sm_mhz']} MHz (max {c['max_sm_mhz']}), mem {c['mem_mhz']} MHz, "
            f"{c['temperature_c']} °C, {_f(c['power_w'], 0)} W, reasons {reasons}"
            + (" THROTTLED" if c["throttled"] else ""))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", type=Path, default=ROOT / "suites" / "fidelity.toml")
    p.add_argument("--out", type=Path, help="write the markdown table here (and .json beside)")
    p.add_argument("--filter", help="convbench --filter expression selecting cases")
    p.add_argument("--repeat", type=int, default=2, help="passes of convbench and do_bench")
    p.add_argument("--calls", type=int, default=5, help="profiled calls per case under ncu")
    p.add_argument("--placements", type=int, default=1,
                   help="buffer placements of the graph harness per case and pass, as "
                        "[timing] placements in convbench run (default 1)")
    p.add_argument("--device", type=int, default=0)
    p.add_argument("--backend", choices=["torch", "cudnn"], default="torch",
                   help="the backend whose cases are timed and profiled (default torch)")
    p.add_argument("--ncu", help="path of ncu (default: from PATH)")
    p.add_argument("--ncu-timeout", type=float, default=900.0)
    p.add_argument("--ncu-l2", choices=["both", "warm", "cold"], default="both",
                   help="which ncu references to take (default both: two ncu processes, each "
                        "running the whole suite, with --backend cudnn its tactic search "
                        "too; on the H200 the warm one took 51 s)")
    p.add_argument("--no-ncu", action="store_true", help="skip the Nsight Compute reference")
    p.add_argument("--no-do-bench", action="store_true")
    p.add_argument("--rerender", type=Path, metavar="JSON",
                   help="no GPU work: render the table and targets of an earlier run's .json "
                        "with this version's target lines (to --out, else to stdout)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--manifest", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.repeat < 1 or args.calls < 1:
        p.error("--repeat and --calls must be at least 1")
    if args.child and not args.manifest:
        p.error("--child needs --manifest")
    return args


def rerender(path: Path, out: Path | None) -> int:
    """The table and targets of a finished run again, from its ``.json``, with this version's
    rows and target lines (no GPU needed). Writes ``out`` (markdown) if given, else prints."""
    from types import SimpleNamespace

    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    cases = [SimpleNamespace(index=r["index"], name=r["name"], key=r["key"]) for r in raw["rows"]]
    passes = [{int(k): v for k, v in p.items()} for p in raw["passes"]]
    ncu = {k: None if v is None else {**v, "cases": {int(i): c for i, c in v["cases"].items()}}
           for k, v in raw["ncu"].items()}
    rows = build_rows(cases, passes, ncu)
    text = render(rows, raw["meta"], check_targets(rows, len(passes)))
    if out:
        Path(out).write_text(text, encoding="utf-8")
        _log(f"fidelity: wrote {out} from {path}")
    else:
        print(text)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.rerender:
        return rerender(args.rerender, args.out)
    return run_child(args) if args.child else run_parent(args)


if __name__ == "__main__":
    raise SystemExit(main())
