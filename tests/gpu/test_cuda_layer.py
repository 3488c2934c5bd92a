"""The CUDA layer on a real GPU: device facts, buffers, graphs, errors, the timers, NVTX in ncu.

Every test here is marked ``gpu`` and skips with the reason when no CUDA device is usable.
Tests that need torch (conv cases) or ncu (NVTX filtering) skip without them.
"""

from __future__ import annotations

import json
import re
import shutil
import statistics
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from bench.backends.base import BuildInfo, Engine, StreamLike
from bench.gpu import cuda, nvml, nvtx
from bench.gpu.timers import make_source
from bench.precision import decode, storage_dtype
from bench.spec import ConvSpec
from bench.timing import TimingSettings, measure

pytestmark = pytest.mark.gpu

QUICK = TimingSettings(warmup_s=0.05, min_samples=10, min_time_s=0.2, max_time_s=3.0,
                       target_rse=0.005)


@pytest.fixture(scope="module")
def device() -> cuda.Device:
    return cuda.Device(0)


@pytest.fixture
def stream(device: cuda.Device) -> Iterator[cuda.Stream]:
    s = device.stream()
    yield s
    s.close()


class MemsetEngine(Engine):
    """A real GPU workload with no library behind it: each inference memsets a buffer."""

    device = "cuda"

    def __init__(self, dev: cuda.Device, nbytes: int, sync_in_enqueue: bool = False) -> None:
        super().__init__(ConvSpec(in_channels=1, out_channels=1, height=4, width=4),
                         BuildInfo(build_s=0.0))
        self._buf = dev.alloc(nbytes)
        self._sync = sync_in_enqueue
        self._value = 0

    def _set_input_impl(self, x: np.ndarray) -> None:
        return None

    def _enqueue_impl(self, stream: StreamLike | None) -> None:
        assert isinstance(stream, cuda.Stream)
        self._value += 1
        self._buf.fill(self._value, stream)
        if self._sync:  # what an engine must not do: it cannot be captured
            stream.sync()

    def _output_impl(self, stream: StreamLike | None) -> np.ndarray:
        return np.zeros(1, np.float32)

    def _close_impl(self) -> None:
        self._buf.close()


def _time(engine: Engine, stream: cuda.Stream, mode: str, l2: str = "warm",
          flusher: cuda.L2Flusher | None = None) -> tuple[float, Any]:
    source = make_source(engine, stream, mode, l2, flusher)
    try:
        samples = measure(source, QUICK)
    finally:
        source.close()
    return statistics.median(samples.ms), source


# --- device, buffers, graphs, errors ----------------------------------------------------------
def test_device_info_matches_nvidia_smi_conventions(device: cuda.Device) -> None:
    info = device.info
    assert re.fullmatch(r"(GPU|MIG)-[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", info.uuid)
    assert info.name and info.cc >= (3, 5) and info.sm_count > 0
    assert info.l2_bytes > 0 and info.total_mem > info.l2_bytes
    free, total = device.mem_info()
    assert 0 < free <= total == info.total_mem
    assert json.loads(json.dumps(info.to_json()))["uuid"] == info.uuid
    clocks = nvml.clocks(info.uuid)  # NVML finds the same GPU by its UUID
    if clocks is None:
        pytest.skip(f"NVML: {nvml.unavailable_reason()}")
    assert clocks["sm_mhz"] > 0 and clocks["max_sm_mhz"] >= clocks["sm_mhz"]
    assert isinstance(clocks["throttled"], bool)


def test_buffers_round_trip_and_random_fills_have_no_zeros(device: cuda.Device,
                                                          stream: cuda.Stream) -> None:
    host = np.arange(4096, dtype=np.float32)
    with device.alloc(host.nbytes) as buf:
        buf.upload(host, stream)
        np.testing.assert_array_equal(buf.download(host.shape, np.float32, stream), host)
        for precision in ("fp32", "fp16", "bf16"):
            buf.fill_random(precision, stream, seed=3)
            dt = storage_dtype(precision)
            values = decode(buf.download(buf.nbytes // dt.itemsize, dt, stream), precision)
            assert np.all(values != 0) and np.all(np.isfinite(values))
            assert len(np.unique(values)) > 100 and (values < 0).any() and (values > 0).any()
        with pytest.raises(ValueError, match="does not fit"):
            buf.upload(np.zeros(4097, np.float32), stream)


def test_a_captured_graph_replays_the_work_only_when_launched(device: cuda.Device,
                                                             stream: cuda.Stream) -> None:
    one = np.float32(1.0).view(np.uint32)
    with device.alloc(1 << 20) as buf:
        buf.fill(0, stream)
        graph = cuda.capture_graph(stream, lambda: buf.fill(int(one), stream))
        try:
            assert graph.nodes == 1
            assert not buf.download(1 << 18, np.float32, stream).any()  # captured, not run
            graph.launch(stream)
            assert (buf.download(1 << 18, np.float32, stream) == 1.0).all()
        finally:
            graph.close()


def test_capturing_nothing_is_an_error(stream: cuda.Stream) -> None:
    with pytest.raises(ValueError, match="recorded no work"):
        cuda.capture_graph(stream, lambda: None)


def test_cuda_errors_name_the_failing_call(device: cuda.Device, stream: cuda.Stream) -> None:
    with pytest.raises(cuda.CudaError, match=r"cuDeviceGet\(999\) failed: "
                                             r"CUDA_ERROR_INVALID_DEVICE"):
        cuda.Device(999)
    # a synchronization while the stream is being captured is an invalid call: the error names
    # the call that failed (Stream.sync polls cuStreamQuery), the capture is ended, and the
    # stream is usable again
    with pytest.raises(cuda.CudaError, match=r"cuStreamQuery failed: "
                                             r"CUDA_ERROR_STREAM_CAPTURE"):
        cuda.capture_graph(stream, stream.sync)
    stream.sync()
    with pytest.raises(cuda.CudaError, match=r"cuMemAlloc\(\d+ bytes\) failed: "
                                             r"CUDA_ERROR_(OUT_OF_MEMORY|INVALID_VALUE)"):
        device.alloc(1 << 50)
    device.sync()


def test_l2_flusher_covers_twice_the_l2(device: cuda.Device, stream: cuda.Stream) -> None:
    flusher = cuda.L2Flusher(device)
    try:
        assert flusher.nbytes >= 2 * device.info.l2_bytes
        flusher.flush(stream)
        stream.sync()
    finally:
        flusher.close()


def test_profiler_range_calls_succeed_without_a_profiler() -> None:
    cuda.profiler_start()
    cuda.profiler_stop()


# --- timers -----------------------------------------------------------------------------------
def test_graph_and_events_time_the_same_memset(device: cuda.Device,
                                               stream: cuda.Stream) -> None:
    with MemsetEngine(device, 1 << 32) as engine:  # 4 GiB: ~1.5 ms of memory writes
        graph_ms, graph_src = _time(engine, stream, "graph")
        events_ms, _ = _time(engine, stream, "events")
    assert graph_src.info["blocked"] is True
    assert graph_src.iters_per_sample >= 1
    assert abs(events_ms / graph_ms - 1) <= 0.03, (events_ms, graph_ms)


def test_an_engine_that_cannot_be_captured_fails_clearly_and_frees_the_stream(
        device: cuda.Device, stream: cuda.Stream) -> None:
    with MemsetEngine(device, 1 << 20, sync_in_enqueue=True) as engine:
        with pytest.raises(cuda.CudaError, match="cuStreamQuery failed: CUDA_ERROR_STREAM_CAPTURE"):
            make_source(engine, stream, "graph", "warm", None)
    stream.sync()  # not left waiting on the blocker


def test_sources_give_back_the_device_memory_they_take(device: cuda.Device,
                                                       stream: cuda.Stream) -> None:
    flusher = cuda.L2Flusher(device)
    with MemsetEngine(device, 1 << 24) as engine:
        _time(engine, stream, "graph")  # first-use allocations of the driver happen here
        device.sync()
        free_before = device.mem_info()[0]
        for _ in range(10):
            for mode, l2 in (("graph", "warm"), ("graph", "cold"), ("events", "cold")):
                make_source(engine, stream, mode, l2, flusher).close()
        device.sync()
        free_after = device.mem_info()[0]
    flusher.close()
    assert free_before - free_after <= 4 << 20, (free_before, free_after)


# --- with torch: the checks on conv layers ------------------------------------------------
def _conv_engine(**fields: Any) -> Engine:
    pytest.importorskip("torch")
    from bench.backends.torch import TorchBackend
    from bench.reference import make_data

    spec = ConvSpec(**fields)
    return TorchBackend().build(spec, make_data(spec))


def test_events_and_graph_agree_within_3_percent_on_a_millisecond_conv(
        device: cuda.Device, stream: cuda.Stream) -> None:
    # events mode includes the host's launch overhead in each pair (cuDNN's was ~150 us on the
    # H100): a ~10 ms conv keeps that below the 3 % the check allows
    # The modes are timed graph, events, graph and events is held against the mean of the two
    # graph medians: the sustained ~10 ms kernels heat the GPU, and its power cap slows later
    # samples (on the H200: events 3.5 % above an earlier graph run, with one graph run only)
    with _conv_engine(batch=128, in_channels=256, out_channels=256, height=56, width=56,
                      kernel=3, padding="same", tf32=False) as engine:
        before_ms, _ = _time(engine, stream, "graph")
        events_ms, _ = _time(engine, stream, "events")
        after_ms, _ = _time(engine, stream, "graph")
    graph_ms = (before_ms + after_ms) / 2
    assert graph_ms >= 1.0, f"case too short for this check: {graph_ms:.3f} ms"
    assert abs(events_ms / graph_ms - 1) <= 0.03, (events_ms, before_ms, after_ms)


def test_cold_l2_is_slower_than_warm_on_a_conv_that_fits_in_l2(device: cuda.Device,
                                                               stream: cuda.Stream) -> None:
    fields = dict(batch=8, in_channels=32, out_channels=32, height=112, width=112, kernel=1,
                  bias=False)
    assert ConvSpec(**fields).bytes_min < device.info.l2_bytes
    flusher = cuda.L2Flusher(device)
    try:
        with _conv_engine(**fields) as engine:
            warm_ms, _ = _time(engine, stream, "graph", "warm")
            cold_ms, cold_src = _time(engine, stream, "graph", "cold", flusher)
    finally:
        flusher.close()
    assert cold_src.iters_per_sample == 1
    assert cold_ms > 1.02 * warm_ms, (cold_ms, warm_ms)


# --- NVTX in Nsight Compute ---------------------------------------------------------------------
def _ncu_kernels(script: str, include: str, env: dict[str, str]) -> list[str]:
    ncu = shutil.which("ncu")
    if ncu is None:
        pytest.skip("ncu not on PATH")
    pytest.importorskip("nvtx")
    pytest.importorskip("torch")
    cmd = [ncu, "--nvtx", "--nvtx-include", include, "--metrics", "gpu__time_duration.sum",
           "--csv", sys.executable, "-c", textwrap.dedent(script)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600,
                         check=False)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    lines = out.stdout.splitlines()
    start = next((i for i, line in enumerate(lines) if "Kernel Name" in line), None)
    if start is None:
        return []
    import csv

    rows = list(csv.reader(lines[start:]))
    name = rows[0].index("Kernel Name")
    return [r[name] for r in rows[1:] if len(r) == len(rows[0])]


SCRIPT = """
    import torch
    from bench.gpu import nvtx
    x = torch.ones(1 << 20, device="cuda")
    torch.cuda._sleep(1000)  # outside the range: must not be profiled
    {body}
    torch.cuda.synchronize()
"""


@pytest.mark.slow
def test_ncu_profiles_only_the_kernels_inside_a_convbench_range(cli_env: dict[str, str]) -> None:
    body = 'with nvtx.annotate("nvtx-test", payload=1):\n        x.mul_(2)'
    kernels = _ncu_kernels(SCRIPT.format(body=body), nvtx.ncu_include("nvtx-test"), cli_env)
    assert len(kernels) == 1 and "MulFunctor" in kernels[0], kernels


@pytest.mark.slow
def test_ncu_finds_a_range_nested_in_another(cli_env: dict[str, str]) -> None:
    # the runner nests suite > case > phase ranges; `convbench profile` filters on the case
    body = ('with nvtx.annotate("outer"):\n        with nvtx.annotate("nvtx-test"):\n'
            '            x.mul_(2)\n        x.add_(1)')
    kernels = _ncu_kernels(SCRIPT.format(body=body), nvtx.ncu_include("nvtx-test"), cli_env)
    assert len(kernels) == 1 and "MulFunctor" in kernels[0], kernels
