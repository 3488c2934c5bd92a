"""Write tests/data/runs/synthetic-cudnn: a SYNTHETIC run with torch, cudnn and tensorrt records
(no GPU made it), for the tactic and side-by-side report tests.

cudnn records carry plan lists the way the cudnn backend writes them (``build.extra["plans"]``):
mode-A plans near the fastest, FALLBACK plans far slower, refused plans, one over the case's
workspace. The numbers are chosen so the findings are known: in case 1 cuDNN's heuristic choice
is 1.35x the fastest plan, in case 3 (algo = heuristic) 1.12x, elsewhere it is the fastest; case
4 has no usable plan (an ``unsupported`` record that keeps its plans). torch runs 4 kernels per
fp16 case (layout transforms and an unfused bias), cudnn 1, TensorRT 1 layer. run.json says
``"synthetic": true``.

Regenerate with: python tests/data/make_synthetic_cudnn_run.py
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.spec import ConvSpec  # noqa: E402
from bench.stats import summarize  # noqa: E402

OUT = Path(__file__).parent / "runs" / "synthetic-cudnn"
GPU = {"name": "NVIDIA H200", "uuid": "GPU-00000000-synthetic-cudnn", "cc": [9, 0],
       "sm_count": 132, "l2_bytes": 62914560}
BASE = dict(batch=16, height=56, width=56, kernel=3, padding=1, activation="relu",
            precision="fp16")
#: (spec fields, backends, cudnn plan factors (None: refused; the heuristic plan is the first
#: usable one), cudnn base ms)
CASES: list[tuple[dict[str, Any], list[str], list[float | None], float]] = [
    ({"in_channels": 64, "out_channels": 64, "workspace": 64 << 20},
     ["torch", "cudnn", "tensorrt"],
     [1.0, 1.04, None, 1.2, 1.3, 21.0, 950.0], 0.0321),
    ({"in_channels": 128, "out_channels": 128}, ["torch", "cudnn", "tensorrt"],
     [1.35, 1.0, 1.02, None, 1.6, 18.0], 0.0610),
    ({"in_channels": 256, "out_channels": 256, "height": 28, "width": 28}, ["torch", "cudnn"],
     [1.0, 1.1, 1.25, 30.0], 0.0580),
    ({"in_channels": 128, "out_channels": 128, "algo": "heuristic"}, ["cudnn"],
     [1.12, 1.0, 1.3, 25.0], 0.0615),
    ({"in_channels": 60, "out_channels": 60, "groups": 60, "precision": "bf16"},
     ["torch", "cudnn"], [None, None], 0.0),
]


def _plans(factors: list[float | None], base: float, workspace_over: int | None
           ) -> list[dict[str, Any]]:
    out = []
    for i, f in enumerate(factors):
        fallback = f is not None and f >= 10
        p = {"index": i, "name": f"eng{i}_k2={i % 3}_k3={i % 2}", "engine_id": i,
             "mode": "FALLBACK" if fallback else "A", "knobs": {"TILE_SIZE": i % 3},
             "behavior_notes": [], "workspace_bytes": None, "ms": None, "rel_err": None,
             "timed_by": None, "status": "ok", "error": None}
        if f is None:
            p["status"] = "unsupported"
            p["error"] = "[cudnn_frontend] Error: No execution plans support the graph."
        else:
            p["workspace_bytes"] = 0 if i % 2 == 0 else 1 << 20
            p["ms"] = round(base * f, 7)
            p["rel_err"] = 2.1e-4
            p["timed_by"] = "once" if f > 10 else "graph x31"
        out.append(p)
    if workspace_over is not None:
        p = out[workspace_over]
        p.update(status="skipped_workspace", workspace_bytes=1 << 30, ms=None, rel_err=None,
                 timed_by=None,
                 error="needs 1073741824 workspace bytes, the case allows 67108864")
    return out


def _cudnn_extra(spec: ConvSpec, plans: list[dict[str, Any]]) -> dict[str, Any]:
    usable = [p for p in plans if p["status"] == "ok"]
    counts: dict[str, int] = {}
    for p in plans:
        counts[p["status"]] = counts.get(p["status"], 0) + 1
    extra: dict[str, Any] = {
        "device": "cuda:0", "algo": spec.algo,
        "selection": "fastest" if spec.algo == "autotune" else "heuristic", "layout": "NHWC",
        "graph": "conv_fprop+bias+relu", "tf32": False, "heuristics": ["A", "FALLBACK"],
        "plan_count": len(plans), "plan_status": counts, "plans_usable": len(usable),
        "plans_skipped_workspace": counts.get("skipped_workspace", 0),
        "tactic_budget": {"replay_ms": 1.0, "replays": 5, "slow_factor": 10.0},
        "search_s": 0.4, "plans": plans}
    if usable:
        heur = min(usable, key=lambda p: p["index"])
        fast = min(usable, key=lambda p: p["ms"])
        chosen = fast if spec.algo == "autotune" else heur
        extra.update(heuristic_index=heur["index"], fastest_index=fast["index"],
                     chosen_index=chosen["index"], chosen=chosen)
    return extra


def main() -> None:
    rng = np.random.default_rng(20261201)
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    info = {"schema": 1, "synthetic": True, "suite": "synthetic-cudnn", "suite_path": None,
            "suite_text": "# synthetic: written by tests/data/make_synthetic_cudnn_run.py\n",
            "command": "python tests/data/make_synthetic_cudnn_run.py",
            "created": "2026-12-01T00:00:00+00:00",
            "backends": {"torch": {"device": "cuda", "versions": {"torch": "2.11.0+cu130",
                                                                  "cudnn": "91900"}},
                         "cudnn": {"device": "cuda", "versions": {"cudnn_frontend": "1.32.0",
                                                                  "cudnn": "9.19.0"}},
                         "tensorrt": {"device": "cuda", "versions": {"tensorrt": "10.13.0"}}},
            "unavailable_backends": {}, "timing": {"mode": "graph", "l2": "warm",
                                                    "target_rse": 0.005},
            "filter": None, "shard": None,
            "host": {"host": "synthetic", "cpu": "x86_64", "cpu_count": 16, "python": "3.12"},
            "gpu": GPU, "gpu_clocks_at_start": {"sm_mhz": 1980, "throttled": False}}
    (OUT / "run.json").write_text(json.dumps(info, indent=2) + "\n")
    recs, layer_rows = [], []
    for index, (fields, backends, factors, base) in enumerate(CASES):
        spec = ConvSpec(**{**BASE, **fields})
        for backend in backends:
            rec: dict[str, Any] = {
                "schema": 1, "case_index": index, "case_key": spec.key, "label": "",
                "name": spec.short_name(), "backend": backend,
                "spec": spec.model_dump(mode="json"),
                "derived": {"flops": spec.flops, "bytes_min": spec.bytes_min,
                            "intensity": spec.intensity, "output_shape": list(spec.output_shape)},
                "device": "cuda", "gpu": GPU, "started": "2026-12-01T00:00:00+00:00",
                "status": "ok", "error": None, "wall_s": 1.0}
            extra: dict[str, Any] = {}
            if backend == "cudnn":
                plans = _plans(factors, base, 4 if index == 0 else None)
                extra = _cudnn_extra(spec, plans)
                if "chosen_index" not in extra:
                    rec["status"] = "unsupported"
                    rec["error"] = ("cuDNN: none of its 2 plans is usable here (2 unsupported); "
                                    "first: [cudnn_frontend] Error: No execution plans support "
                                    "the graph.")
                    rec["build"] = {"build_s": 0.3, "plan_bytes": None, "cache_hit": False,
                                    "layers": [], "extra": extra}
                    recs.append(rec)
                    continue
                t = extra["chosen"]["ms"]
            elif spec.groups > 1:
                t = 0.9  # torch's depthwise bf16
            else:
                t = base * (1.55 if backend == "torch" else 0.93)
            ms = (t * rng.lognormal(0.0, 0.004, size=20)).round(7).tolist()
            st = summarize(ms).to_json()
            rec["build"] = {"build_s": 0.5, "plan_bytes": None, "cache_hit": False,
                            "layers": [], "extra": extra}
            rec["check"] = {"rel_err": 2.1e-4, "tol": 5e-3, "passed": True, "images": 4}
            rec["samples_ms"] = ms
            rec["timing"] = {"mode": "graph", "iters_per_sample": 10, "l2": "warm",
                             "warmup_s": 0.2, "wall_s": 0.6, "rse": st["rse"],
                             "converged": True, "extra": {}}
            rec["stats"] = st
            clk = {"sm_mhz": 1980, "throttled": False}
            rec["clocks"] = {"before": clk, "after": clk}
            rec["throttled"] = False
            recs.append(rec)
            if backend == "torch":
                names = [("nchwToNhwcKernel", 0.15), ("nhwcToNchwKernel", 0.1),
                         ("sm90_xmma_fprop_implicit_gemm_f16f16_f32_nhwc", 0.65),
                         ("elementwise_kernel (bias)", 0.1)]
                layers = [{"name": n, "median_ms": t * f, "type": "kernel"} for n, f in names]
            elif backend == "cudnn":
                layers = [{"name": "sm90_xmma_fprop_implicit_gemm_bias_relu_f16f16_f32_nhwc",
                           "median_ms": t, "type": "kernel"}]
            else:
                layers = [{"name": "conv", "median_ms": t, "type": "Convolution"}]
            layer_rows.append({"schema": 1, "case_key": spec.key, "backend": backend,
                               "layers": [{**lt, "median_ms": round(lt["median_ms"], 7),
                                           "share": lt["median_ms"] / t, "calls": 1,
                                           "extra": {}} for lt in layers]})
    with open(OUT / "records.jsonl", "w") as f:
        for r in recs:
            f.write(json.dumps(r, separators=(",", ":")) + "\n")
    with open(OUT / "layers.jsonl", "w") as f:
        for r in layer_rows:
            f.write(json.dumps(r, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
