"""bench.gpu and the fidelity benchmark on a machine without a GPU: imports, the reasons given,
and the pure parts (throttle reasons, graph sizing, ncu CSV parsing, the fidelity table)."""

from __future__ import annotations

import contextlib
import importlib.util
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from bench.gpu import cuda, nvml, nvtx
from bench.gpu.timers import iters_for, make_source

ROOT = Path(__file__).resolve().parents[1]

BLOCK = textwrap.dedent("""
    import importlib.abc, sys
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split('.')[0] in {'torch', 'tensorrt', 'cuda', 'pynvml', 'nvtx', 'triton'}:
                raise ImportError(f'blocked {name}')
    sys.meta_path.insert(0, Block())
""")


def test_gpu_modules_import_and_explain_without_cuda_python(cli_env: dict[str, str]) -> None:
    code = BLOCK + textwrap.dedent("""
        from bench.gpu import cuda, nvml, nvtx, timers
        reason = cuda.unavailable_reason()
        assert reason and "\\n" not in reason, reason
        assert "cuda-python is not installed" in reason and "pip install" in reason, reason
        try:
            cuda.Device(0)
        except cuda.CudaError as e:
            assert reason in str(e), e
        else:
            raise AssertionError("Device(0) without cuda-python did not raise")
        assert nvml.clocks("GPU-00000000-0000-0000-0000-000000000000") is None
        assert "nvidia-ml-py" in nvml.unavailable_reason()
        assert not nvtx.available()
        with nvtx.annotate("case 1", payload=1):
            pass
        heavy = [m for m in sys.modules if m.split('.')[0] in {'torch', 'cuda', 'pynvml'}]
        assert not heavy, heavy
        print('ok')
    """)
    out = subprocess.run([sys.executable, "-c", code], env=cli_env, capture_output=True,
                         text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_no_gpu_is_a_one_line_reason_and_a_clear_error() -> None:
    reason = cuda.unavailable_reason()
    if reason is None:
        pytest.skip("this machine has a usable CUDA GPU")
    assert "\n" not in reason and reason
    with pytest.raises(cuda.CudaError, match="cuInit") as exc:
        cuda.Device(0)
    assert reason in str(exc.value)


def test_cuda_error_names_the_call_and_the_error() -> None:
    driver = pytest.importorskip("cuda.bindings.driver")
    with pytest.raises(cuda.CudaError) as exc:
        cuda._check((driver.CUresult.CUDA_ERROR_INVALID_VALUE,), "cuMemAlloc(8 bytes)")
    assert str(exc.value).startswith("cuMemAlloc(8 bytes) failed: CUDA_ERROR_INVALID_VALUE")
    assert exc.value.call == "cuMemAlloc(8 bytes)"
    assert exc.value.error == "CUDA_ERROR_INVALID_VALUE"
    assert cuda._check((driver.CUresult.CUDA_SUCCESS, 7), "x") == 7


def test_clock_event_reasons_decode_and_flag_only_real_throttling() -> None:
    assert nvml.decode_reasons(0) == ([], False)
    assert nvml.decode_reasons(0x1) == (["gpu_idle"], False)
    assert nvml.decode_reasons(0x2 | 0x10) == (["applications_clocks_setting", "sync_boost"],
                                               False)
    assert nvml.decode_reasons(0x4) == (["sw_power_cap"], True)
    assert nvml.decode_reasons(0x20 | 0x40) == (["sw_thermal_slowdown", "hw_thermal_slowdown"],
                                                True)
    names, throttled = nvml.decode_reasons(0x8 | 0x1000)
    assert names == ["hw_slowdown", "0x1000"] and throttled


def test_graph_replays_are_sized_for_event_resolution() -> None:
    assert iters_for(0.005, target_ms=0.2) == 40  # a 5 us case: 40 per replay
    assert iters_for(0.3, target_ms=0.2) == 1  # longer than the target: one
    assert iters_for(1e-6, target_ms=0.2, max_iters=1000) == 1000  # capped
    assert iters_for(0.0) == 1000
    assert iters_for(float("nan")) == 1


def test_make_source_rejects_bad_modes_before_touching_the_gpu() -> None:
    with pytest.raises(ValueError, match="'graph' or 'events'"):
        make_source(None, None, "host", "warm", None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs an L2Flusher"):
        make_source(None, None, "graph", "cold", None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'warm' or 'cold'"):
        make_source(None, None, "events", "tepid", None)  # type: ignore[arg-type]


def test_nvtx_filter_strings() -> None:
    assert nvtx.ncu_include("fidelity") == "convbench@fidelity/"
    assert nvtx.nsys_capture("case 3") == "case 3@convbench"


# --- the fidelity benchmark's pure parts --------------------------------------------------------
@pytest.fixture(scope="module")
def fidelity() -> ModuleType:
    name = "convbench_fidelity_benchmark"
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / "fidelity.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up while the class is made
    spec.loader.exec_module(mod)
    return mod


HEADER = ('"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream",'
          '"Block Size","Grid Size","Device","CC","Section Name","Metric Name","Metric Unit",'
          '"Metric Value"')


def _row(i: int, name: str, value: str, unit: str = "nsecond") -> str:
    return (f'"{i}","77","python3","host","{name}","1","13","(128, 1, 1)","(10, 1, 1)","0",'
            f'"9.0","Command line profiler metrics","gpu__time_duration.sum","{unit}",'
            f'"{value}"')


SPIN = "at::cuda::(anonymous namespace)::spin_kernel(long)"
CONV = "sm90_xmma_fprop_implicit_gemm_f32f32_tf32f32_f32_nchwkcrs_nchw_tilesize128x128x32"
BIAS = "void at::native::elementwise_kernel<128, 4, add_kernel>(int, T3)"


def test_ncu_csv_parses_in_launch_order_with_units_and_noise(fidelity: ModuleType) -> None:
    text = "\n".join([
        "==PROF== Connected to process 77 (/usr/bin/python3)",
        HEADER,
        _row(2, CONV, "12,345"),
        "==PROF== Profiling \"kernel\": 0%....50%....100% - 1 pass",
        _row(0, SPIN, "1,024"),
        _row(1, BIAS, "1.5", unit="usecond"),
        '"3","77","python3","host","x","1","13","(1,1,1)","(1,1,1)","0","9.0","s",'
        '"other__metric","byte","5"',
        "==PROF== Disconnected from process 77",
    ])
    kernels = fidelity.parse_ncu_csv(text)
    assert [k.id for k in kernels] == [0, 1, 2]
    assert [k.us for k in kernels] == pytest.approx([1.024, 1.5, 12.345])
    assert kernels[2].name == CONV


def _clock_row(i: int, name: str, value: str, unit: str) -> str:
    return _row(i, name, value, unit).replace("gpu__time_duration.sum",
                                              "sm__cycles_elapsed.avg.per_second")


def test_ncu_sm_clock_per_kernel_in_mhz_and_per_call_weighted_by_time(
        fidelity: ModuleType) -> None:
    text = "\n".join([HEADER, _row(0, SPIN, "1000"), _clock_row(0, SPIN, "1.98", "cycle/nsecond"),
                      _row(1, CONV, "300000"), _clock_row(1, CONV, "1,700,000,000", "cycle/second"),
                      _row(2, BIAS, "100000"), _clock_row(2, BIAS, "1900", "cycle/usecond"),
                      _row(3, BIAS, "2000"), _clock_row(3, BIAS, "5", "furlong/fortnight"),
                      _row(4, BIAS, "3000"), _clock_row(4, BIAS, "n/a", "cycle/second"),
                      _clock_row(5, BIAS, "1980", "cycle/usecond")])
    kernels = {k.id: k for k in fidelity.parse_ncu_csv(text)}
    assert sorted(kernels) == [0, 1, 2, 3, 4]  # a clock row alone (5) adds no kernel
    assert [kernels[i].sm_mhz for i in (0, 1, 2)] == pytest.approx([1980.0, 1700.0, 1900.0])
    # an unknown unit or an unreadable value leaves the clock out, the time stays
    assert kernels[3].sm_mhz is None and kernels[4].sm_mhz is None
    assert [kernels[3].us, kernels[4].us] == pytest.approx([2.0, 3.0])
    K = fidelity.Kernel
    # one call of a 300 us kernel at 1700 MHz and a 100 us one at 1900: (300*1700+100*1900)/400
    s = fidelity.summarize_calls([[K(1, CONV, 300.0, 1700.0), K(2, BIAS, 100.0, 1900.0)]])
    assert s["sm_mhz"] == pytest.approx(1750.0)
    assert fidelity.summarize_calls([[K(1, CONV, 300.0)]])["sm_mhz"] is None


def test_ncu_csv_without_header_is_a_clear_error(fidelity: ModuleType) -> None:
    with pytest.raises(ValueError, match="did ncu profile any kernel"):
        fidelity.parse_ncu_csv("==PROF== Connected\n==PROF== Disconnected\n")


def test_kernels_split_into_calls_at_separators(fidelity: ModuleType) -> None:
    K = fidelity.Kernel
    ks = [K(0, SPIN, 1.0), K(1, CONV, 10.0), K(2, BIAS, 2.0),
          K(3, SPIN, 1.0), K(4, CONV, 11.0), K(5, BIAS, 2.0),
          K(6, SPIN, 1.0), K(7, CONV, 30.0)]
    calls = fidelity.group_calls(ks, 3)
    assert [[k.id for k in c] for c in calls] == [[1, 2], [4, 5], [7]]
    s = fidelity.summarize_calls(calls[:2])
    assert s["us"] == pytest.approx(12.5) and s["kernels"] == 2
    assert s["longest_us"] == pytest.approx(10.5) and not s["kernel_counts_differ"]
    assert fidelity.summarize_calls(calls)["kernel_counts_differ"]
    with pytest.raises(ValueError, match="profiled 3 calls, the child made 4"):
        fidelity.group_calls(ks, 4)
    with pytest.raises(ValueError, match="before the first separator"):
        fidelity.group_calls([K(0, CONV, 1.0)] + ks, 3)


def _ref(us: float, kernels: int, longest: float) -> dict[str, object]:
    """An ncu reference of one case, as run_ncu gives it."""
    return {"us": us, "kernels": kernels, "longest_us": longest,
            "kernel_counts_differ": False, "calls_us": [us], "kernel_names": []}


META = {"gpu": "H100", "command": "fidelity.py", "date": "today", "torch": "2.11",
        "cudnn": 91000, "driver": "13.0", "ncu_version": "2025.3", "clocks_before": "n/a",
        "clocks_after": "n/a", "calls": 5, "free_before_mib": 1000.0,
        "free_after_mib": 1000.0, "rss_before_mib": 500.0, "rss_after_mib": 510.0,
        "ncu_wall_warm": 40.0, "ncu_wall_cold": 42.0, "blocked": ["True"]}


def test_fidelity_table_and_targets_from_synthetic_results(fidelity: ModuleType) -> None:
    from bench.suite import parse_suite

    suite = parse_suite(textwrap.dedent("""
        name = "t"
        [defaults]
        in_channels = 8
        out_channels = 8
        height = 8
        width = 8
        [[cases]]
        label = "small"
        [[cases]]
        label = "big"
        batch = 8
    """))
    small, big = suite.cases

    def run(graph: float, events: float, cold: float, db: float) -> dict[str, object]:
        def h(us: float) -> dict[str, object]:
            return {"us": us, "rse": 0.001, "n": 100, "iters_per_sample": 10, "converged": True,
                    "wall_s": 0.45, "info": {"blocked": True}}
        return {"graph": {**h(graph), "clocks": {"sm_mhz": 1700, "min_sm_mhz": 1650,
                                                  "power_w": 690.0, "readings": 40}},
                "events": h(events), "cold": h(cold),
                "paced": {"us": graph * 0.985, "n": 30, "iters_per_sample": 2, "gap_s": 0.01,
                          "clocks": {"sm_mhz": 1980, "min_sm_mhz": 1980, "power_w": 120.0,
                                     "readings": 30}},
                "do_bench": {"us": db, "wall_s": 0.2},
                "cupti": {"us": graph / 1.01, "span_us": graph, "kernels": 1}}

    passes = [{0: run(14.0, 30.0, 20.0, 25.0), 1: run(101.0, 110.0, 130.0, 140.0)},
              {0: run(14.0, 31.0, 20.5, 40.0), 1: run(101.5, 110.0, 130.0, 141.0)}]

    ncu = {"warm": {"wall_s": 40.0, "cases": {0: _ref(19.6, 3, 8.0), 1: _ref(100.0, 1, 100.0)}},
           "cold": {"wall_s": 42.0, "cases": {0: _ref(25.0, 3, 10.0), 1: _ref(128.0, 1, 128.0)}}}
    rows = fidelity.build_rows([small, big], passes, ncu)
    assert rows[1]["graph_err"] == pytest.approx(1.0)
    assert rows[1]["cold_err"] == pytest.approx(130 / 128 * 100 - 100)
    assert rows[0]["do_bench_rerun"] == pytest.approx(60.0)
    targets = fidelity.check_targets(rows, 2)
    text = "\n".join(targets)
    assert "within ±1 % (cases with kernels ≥ 50 µs): 1/1" in text
    assert "graph ≤ ncu warm + 0.5 µs/kernel: 1/2 (over: big)" in text
    assert "graph 2/2 (100 %)" in text and "do_bench 1/2 (50 %)" in text
    assert "paced 2/2 (100 %)" in text  # 99.49 / 99.98 us: 0.5 % apart
    md = fidelity.render(rows, META, targets)
    table = [line for line in md.splitlines() if line.startswith("|")]
    assert len(table) == 8  # two tables of two rows, each with its head and separator
    assert len({line.count("|") for line in table[:4]}) == 1
    assert len({line.count("|") for line in table[4:]}) == 1
    assert "| 1 | big | 1 | 100.00 | 128.00 | 100.00 | 101.00 | +1.0 | +1.0 |" in md
    assert rows[1]["cupti_err"] == pytest.approx(1.0)
    assert "Single-kernel cases ≥ 50 µs, graph vs ncu within ±1 %: 1/1" in text
    # the paced graph of "big": 101.0 * 0.985 = 99.485 us against ncu's 100: -0.5 %
    assert rows[1]["paced_err"] == pytest.approx(-0.515)
    assert ("Single-kernel cases ≥ 50 µs, paced graph (short replays after an idle gap, as ncu "
            "times a kernel) vs ncu within ±1 %: 1/1; worst -0.5 % (big)") in text
    assert "| 1 | big | 1 | 100.00 | n/a | 101.00 | 1700 (1650) | 690 | 99.48 | -0.5 | 2 | 1980 |" \
        in md


def test_cupti_graph_trace_splits_kernels_into_replays_per_inference(
        fidelity: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """cupti_graph_us with a fake profiler: CUDA kernels only (no CPU events, memsets), in start
    order, split into replays; span and kernel sum per inference, medians over the replays."""
    import random
    from types import SimpleNamespace

    import torch

    from bench.backends import torch as torch_backend

    def event(name: str, start: float, end: float, device: str = "DeviceType.CUDA") -> object:
        return SimpleNamespace(name=name, device_type=device, device_time=end - start,
                               time_range=SimpleNamespace(start=start, end=end))

    # 3 replays of a K = 2 graph with 2 kernels per inference; span / kernel sum per inference:
    # 83/80 -> 41.5/40, 146/140 -> 73/70, 93/90 -> 46.5/45 (medians 46.5/45, means 53.7/51.7)
    replays = [[(0, 30), (31, 41), (42, 72), (73, 83)],
               [(1000, 1060), (1062, 1072), (1074, 1134), (1136, 1146)],
               [(2000, 2035), (2036, 2046), (2047, 2082), (2083, 2093)]]
    kernels = [event((CONV, BIAS)[i % 2], s, e) for r in replays for i, (s, e) in enumerate(r)]
    noise = [event("aten::conv2d", 0, 2093, "DeviceType.CPU"), event("Memset (Device)", 990, 995)]
    trace = {"events": kernels + noise, "on": False}
    random.Random(0).shuffle(trace["events"])

    @contextlib.contextmanager
    def profiling(cuda: bool = True) -> Iterator[object]:
        assert cuda
        trace["on"] = True
        yield SimpleNamespace(events=lambda: trace["events"])
        trace["on"] = False

    class Source:
        iters_per_sample = 2

        def __init__(self) -> None:
            self.ms, self.traced = iter([0.0481, 0.0735, 0.0472]), []

        def __call__(self) -> float:
            self.traced.append(trace["on"])
            return next(self.ms)

    monkeypatch.setattr(torch_backend, "profiling", profiling)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: None)
    source = Source()
    out = fidelity.cupti_graph_us(source, replays=3)
    assert source.traced == [True, True, True]
    assert out == pytest.approx({"span_us": 46.5, "us": 45.0, "traced_us": 48.1, "kernels": 2.0,
                                 "replays": 3, "iters_per_sample": 2})
    trace["events"] = kernels[1:] + noise
    with pytest.raises(ValueError, match="CUPTI reported 11 kernels for 3 replays"):
        fidelity.cupti_graph_us(Source(), replays=3)
    trace["events"] = noise
    assert fidelity.cupti_graph_us(Source(), replays=3) is None


def test_fidelity_cupti_graph_rows_target_and_table(fidelity: ModuleType) -> None:
    """The trace of the graph's own replays: err % against its span, the multi-kernel ≥ 50 µs
    target (single-kernel, small and untraced cases left out) and its table; runs from before
    it (no cupti_graph in the .json) render neither."""
    from types import SimpleNamespace

    names = ["multi-a", "multi-b", "multi-small", "single", "multi-untraced"]
    cases = [SimpleNamespace(index=i, name=n, key=n) for i, n in enumerate(names)]

    def run(graph: float, traced: tuple[float, ...] | None = None) -> dict[str, object]:
        # traced: CUPTI span, kernel sum, the event timer's traced reading (µs), kernels
        return {"graph": {"us": graph, "rse": 0.001, "iters_per_sample": 10, "wall_s": 0.4,
                          "info": {"blocked": True}},
                "cupti_graph": None if traced is None else {
                    **dict(zip(("span_us", "us", "traced_us", "kernels"), traced)),
                    "replays": 10, "iters_per_sample": 10}}

    first = {0: run(101.0, (100.0, 97.5, 100.4, 3.0)), 1: run(61.8, (60.0, 58.0, 60.3, 2.0)),
             2: run(40.0, (30.0, 29.0, 30.1, 2.0)), 3: run(76.0, (80.0, 80.0, 80.1, 1.0)),
             4: run(70.0)}
    first[0]["cupti"] = {"us": 100.0, "span_us": 100.5, "kernels": 3}
    ncu = {"warm": {"wall_s": 40.0, "cases": {0: _ref(120.0, 3, 60.0), 1: _ref(60.0, 2, 40.0),
                                              2: _ref(30.0, 2, 20.0), 3: _ref(80.0, 1, 80.0),
                                              4: _ref(70.0, 2, 50.0)}}, "cold": None}
    rows = fidelity.build_rows(cases, [first], ncu)
    assert [r["cg_err"] for r in rows[:4]] == pytest.approx([1.0, 3.0, 100 / 3, -5.0])
    assert [r["cg_traced_err"] for r in rows[:4]] == pytest.approx([0.4, 0.5, 1 / 3, 0.125])
    assert rows[4]["cg_err"] is None and rows[4]["cg_traced_err"] is None
    targets = fidelity.check_targets(rows, 1)
    assert ("- Multi-kernel cases ≥ 50 µs, graph vs CUPTI trace of its own replays (first kernel "
            "start to last kernel end per inference) within ±2 %: 1/2; worst +3.0 % (multi-b)"
            ) in targets
    assert ("- Multi-kernel cases ≥ 50 µs, graph vs CUPTI back-to-back kernel sum of eager "
            "inferences within ±2 %: 1/1; worst +1.0 % (multi-a)") in targets
    md = fidelity.render(rows, META, targets)
    assert "\n".join([
        "## CUPTI trace of the timed graph's own replays", "",
        "10 more blocked replays of the graph just timed, with CUPTI's kernel activity on "
        "(torch.profiler), medians over the replays, per inference: span = first kernel's "
        "start to last kernel's end of a replay / K; kernel sum = the kernels' durations / K; "
        "gaps = span − sum; traced graph = the event timer's reading of those same traced "
        "replays. err % = (graph − span) / span, with graph the untraced median of the table "
        "above.", "",
        "| # | case | kernels | graph µs | traced graph µs | CUPTI span µs | err % | "
        "traced err % | CUPTI kernel sum µs | gaps µs | K |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        "| 0 | multi-a | 3 | 101.00 | 100.40 | 100.00 | +1.0 | +0.4 | 97.50 | 2.50 | 10 |",
        "| 1 | multi-b | 2 | 61.80 | 60.30 | 60.00 | +3.0 | +0.5 | 58.00 | 2.00 | 10 |",
        "| 2 | multi-small | 2 | 40.00 | 30.10 | 30.00 | +33.3 | +0.3 | 29.00 | 1.00 | 10 |",
        "| 3 | single | 1 | 76.00 | 80.10 | 80.00 | -5.0 | +0.1 | 80.00 | 0.00 | 10 |",
        "| 4 | multi-untraced | n/a | 70.00 | n/a | n/a | n/a | n/a | n/a | n/a | 10 |", "",
        "## Targets"]) in md
    old = [{i: {k: v for k, v in res.items() if k != "cupti_graph"} for i, res in first.items()}]
    rows = fidelity.build_rows(cases, old, ncu)
    targets = fidelity.check_targets(rows, 1)
    assert not any("its own replays" in line for line in targets)
    assert ("- Multi-kernel cases ≥ 50 µs, graph vs CUPTI back-to-back kernel sum within ±2 %: "
            "1/1; worst +1.0 % (multi-a)") in targets
    md = fidelity.render(rows, META, targets)
    assert "CUPTI trace of the timed graph" not in md and "CUPTI span µs" not in md


def test_rerender_of_the_committed_h200_run_gives_its_committed_tables(
        fidelity: ModuleType, tmp_path: Path) -> None:
    """`--rerender` rebuilds a finished run's table and targets from its .json without a GPU;
    the committed H200 markdown must be what the committed .json renders to."""
    results = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
    out = tmp_path / "again.md"
    assert fidelity.main(["--rerender", str(results / "fidelity-cudnn-h200.json"),
                          "--out", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    committed = (results / "fidelity-cudnn-h200.md").read_text(encoding="utf-8")
    assert committed.startswith(text.rstrip("\n"))
    assert ("paced graph (short replays after an idle gap, as ncu times a kernel) vs ncu within "
            "±1 %: 3/6; worst +2.8 % (grouped-g32-b16-256)") in text


def test_nvml_finds_a_gpu_by_uuid_for_clocks_contention_and_the_sampler(
        monkeypatch: pytest.MonkeyPatch, fidelity: ModuleType) -> None:
    """One lookup (``nvml.device_handle``) serves the record's clocks, the contention checks and
    fidelity's clock sampler: convbench's UUIDs may lack NVML's ``GPU-`` prefix (a fake NVML)."""
    from types import SimpleNamespace

    from bench import contention
    from bench.gpu import nvml

    asked: list[str] = []

    class FakeNvml:
        NVML_CLOCK_SM, NVML_CLOCK_MEM, NVML_TEMPERATURE_GPU = 0, 1, 0

        def nvmlDeviceGetHandleByUUID(self, uuid: str) -> str:
            asked.append(uuid)
            if uuid == "GPU-gone":
                raise RuntimeError("NVMLError_NotFound")
            return f"handle of {uuid}"

        def nvmlDeviceGetUtilizationRates(self, h: str) -> SimpleNamespace:
            return SimpleNamespace(gpu=7 if h == "handle of GPU-abc" else -1, memory=0)

        def nvmlDeviceGetClockInfo(self, h: str, kind: int) -> int:
            return 1980 if kind == 0 else 3201

        def nvmlDeviceGetCurrentClocksEventReasons(self, h: str) -> int:
            return 0

        def nvmlDeviceGetPowerUsage(self, h: str) -> int:
            return 612_000  # mW

    monkeypatch.setitem(nvml._state, "pynvml", FakeNvml())
    assert nvml.device_handle("abc")[1] == "handle of GPU-abc"
    assert nvml.device_handle("MIG-1")[1] == "handle of MIG-1"
    assert nvml.device_handle("gone") is None and nvml.clocks("gone") is None
    assert contention.gpu_utilization("abc") == 7
    assert nvml.clocks("abc")["sm_mhz"] == 1980  # fields the fake lacks stay None
    with fidelity.ClockSampler("abc", period_s=0.001) as sampler:
        time.sleep(0.02)
    assert sampler.summary()["sm_mhz"] == 1980 and sampler.summary()["power_w"] == 612.0
    with fidelity.ClockSampler("gone") as sampler:
        pass
    assert sampler.summary() is None
    assert asked[:3] == ["GPU-abc", "MIG-1", "GPU-gone"]


class _AllocatorTorch:
    """Stands in for torch in bench.backends.torch.fresh_allocator: records the calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        outer = self

        class _Cuda:
            @staticmethod
            def synchronize(device: object) -> None:
                outer.calls.append(f"synchronize {device}")

            @staticmethod
            def empty_cache() -> None:
                outer.calls.append("empty_cache")

        self.cuda = _Cuda()


def test_fresh_allocator_empties_torchs_cache_only_when_asked(monkeypatch) -> None:
    from bench.backends import torch as tb

    fake = _AllocatorTorch()
    monkeypatch.delenv(tb.FRESH_ALLOCATOR_ENV, raising=False)
    assert tb.fresh_allocator(fake, "cuda:0") is False and fake.calls == []
    monkeypatch.setenv(tb.FRESH_ALLOCATOR_ENV, "0")
    assert tb.fresh_allocator(fake, "cuda:0") is False and fake.calls == []
    monkeypatch.setenv(tb.FRESH_ALLOCATOR_ENV, "1")
    # the device's work first, then the cached blocks back to the driver
    assert tb.fresh_allocator(fake, "cuda:0") is True
    assert fake.calls == ["synchronize cuda:0", "empty_cache"]
    for on in (" TRUE ", "On", "yes"):
        monkeypatch.setenv(tb.FRESH_ALLOCATOR_ENV, on)
        assert tb.fresh_allocator(fake, "cuda:1") is True
    assert fake.calls[-2:] == ["synchronize cuda:1", "empty_cache"]
