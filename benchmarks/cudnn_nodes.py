"""What a cudnn engine enqueues, and how long it takes back to back (an H200 diagnostic for the
fidelity table).

For each named case of ``suites/fidelity.toml`` (cuDNN's heuristic plan, as in
``benchmarks/fidelity.py``): the node types of one captured enqueue, and the CUDA activities
CUPTI records (kernels, memsets) for 200 eager enqueues and for 50 replays of a graph of 4
enqueues. Printed per activity: how many per inference and its mean duration; per run: the span
from the first activity's start to the last one's end per inference (gaps included).

    python3 benchmarks/cudnn_nodes.py [CASE ...]    # needs a GPU, torch and cudnn-frontend
"""

from __future__ import annotations

import collections
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT = ["1x1-b8-256", "3x3-b32-128-fp16-relu", "grouped-g32-b16-256", "3x3-b16-256x28"]
GRAPH_K = 4


def activities(stream: Any, fn: Callable[[], None], iters: int
               ) -> tuple[dict[str, list[float]], float]:
    """CUPTI's CUDA activities of ``iters`` calls of ``fn`` (after 20 untraced ones): durations
    in µs by name, and the span of all of them in µs."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    for _ in range(20):
        fn()
    stream.sync()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(iters):
            fn()
        stream.sync()
    torch.cuda.synchronize()
    events = [e for e in prof.events() if str(e.device_type).endswith("CUDA")]
    by: dict[str, list[float]] = collections.defaultdict(list)
    for e in events:
        by[e.name[:70]].append(float(getattr(e, "device_time", None) or e.cuda_time))
    span = max(e.time_range.end for e in events) - min(e.time_range.start for e in events)
    return by, span


def one_case(case: Any, stream: Any, backend: Any) -> None:
    from cuda.bindings import driver as drv

    from bench.gpu import cuda
    from bench.reference import make_data
    from bench.spec import ConvSpec

    spec = ConvSpec.model_validate({**case.spec.model_dump(), "algo": "heuristic"})
    engine = backend.build(spec, make_data(spec))
    chosen = engine.info.extra["chosen"]
    print(f"== {case.name}: plan {chosen['name']} ws {chosen['workspace_bytes']}")
    graph = cuda.capture_graph(stream, lambda: engine.enqueue(stream))
    _, nodes, _ = drv.cuGraphGetNodes(graph._graph, graph.nodes)
    types = collections.Counter(str(drv.cuGraphNodeGetType(n)[1]).split(".")[-1]
                                for n in nodes)
    print("  nodes of one captured enqueue:", dict(types))
    graph.close()
    by, span = activities(stream, lambda: engine.enqueue(stream), 200)
    for name, v in by.items():
        print(f"  eager: {len(v) / 200:.2f}/inf  mean {statistics.mean(v):8.2f} us  {name}")
    print(f"  eager: span/inference {span / 200:8.2f} us")
    graph = cuda.capture_graph(stream, lambda: [engine.enqueue(stream)
                                                for _ in range(GRAPH_K)])
    by, span = activities(stream, lambda: graph.launch(stream), 50)
    n = 50 * GRAPH_K
    for name, v in by.items():
        print(f"  graph x{GRAPH_K}: {len(v) / n:.2f}/inf  mean {statistics.mean(v):8.2f} us  "
              f"{name}")
    print(f"  graph x{GRAPH_K}: span/inference {span / n:8.2f} us")
    graph.close()
    engine.close()


def main(names: list[str]) -> int:
    from bench.backends.registry import get_backend
    from bench.gpu import cuda
    from bench.runner import select_cases
    from bench.suite import load_suite

    cases = [c for c in select_cases(load_suite(ROOT / "suites" / "fidelity.toml"), None)
             if c.name in names]
    device = cuda.Device(0)
    stream = device.stream()
    backend = get_backend("cudnn")
    for case in cases:
        one_case(case, stream, backend)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:] or DEFAULT))
