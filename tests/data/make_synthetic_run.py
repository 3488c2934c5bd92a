"""Write tests/data/runs/synthetic-h100: a SYNTHETIC GPU-like run directory (no GPU made it).

The report tests need data a CPU run cannot give: two backends, fp16 vs fp32, a channel sweep
with channels that are not multiples of 8, a workspace sweep, reformat layers, a build failure,
a failed check, a throttled and a noisy result. The numbers follow a simple latency model
(roofline with per-backend efficiency, a 2.3x fp16 penalty for unaligned channels, reformat
layers around C=3 at fp16, workspace below 64 MiB slower) with seeded noise, so the findings
the report should state are known. run.json says ``"synthetic": true``.

Regenerate with: python tests/data/make_synthetic_run.py (it writes schema 1, like the committed
quickstart runs, and checks that every line loads as a schema-2 ``bench.record.Record``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from bench.spec import ConvSpec
from bench.stats import summarize

OUT = Path(__file__).parent / "runs" / "synthetic-h100"
GPU = {"name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-00000000-synthetic", "cc": [9, 0],
       "sm_count": 132, "l2_bytes": 52428800}
PEAK_TFLOPS = {"tf32": 494.5, "fp16": 989.5}
BW_GBPS = 3350.0
MIB = 2**20


def latency(spec: ConvSpec, backend: str) -> tuple[float, float]:
    """(total ms, reformat ms) of the model."""
    prec = "tf32" if spec.precision == "fp32" else "fp16"
    eff = 0.55 if backend == "tensorrt" else 0.42
    compute = spec.flops / (PEAK_TFLOPS[prec] * eff * 1e9)
    memory = spec.bytes_min / (BW_GBPS * 0.8 * 1e6)
    t = max(compute, memory) + 0.003
    if prec == "fp16" and (spec.in_channels % 8 or spec.out_channels % 8):
        t *= 2.3  # no tensor-core friendly layout: padded or slower kernels
    if spec.workspace is not None and spec.workspace < 64 * MIB:
        t *= 1.0 + 0.4 * (64 * MIB / spec.workspace) ** 0.25 - 0.4
    reformat = 0.0
    if backend == "tensorrt" and prec == "fp16" and spec.in_channels % 8:
        reformat = 1.6 * t  # 61.5 % of the total
    return t + reformat, reformat


def _schema_1_spec(spec: ConvSpec) -> dict:
    """The spec as schema 1 stored it: fields added since (``KEY_OPTIONAL``) left out at their
    default, so the script still writes the committed files byte for byte."""
    from bench.spec import KEY_OPTIONAL

    d = spec.model_dump(mode="json")
    for name in KEY_OPTIONAL:
        if d.get(name) == ConvSpec.model_fields[name].default:
            d.pop(name)
    return d


def main() -> None:
    rng = np.random.default_rng(20260101)
    cases: list[tuple[ConvSpec, list[str]]] = []
    base = dict(batch=32, height=28, width=28, kernel=3, padding=1)
    for c in (3, 8, 12, 16, 64, 128):
        for k in (64, 256):
            for p in ("fp32", "fp16"):
                cases.append((ConvSpec(**base, in_channels=c, out_channels=k, precision=p),
                              ["tensorrt", "torch"]))
    for ws in (4, 16, 64, 256, 1024):
        cases.append((ConvSpec(**base, in_channels=64, out_channels=64, precision="fp16",
                               workspace=ws * MIB), ["tensorrt"]))
    cases.append((ConvSpec(**base, in_channels=64, out_channels=64, precision="bf16",
                           groups=64), ["tensorrt"]))

    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    info = {"schema": 1, "synthetic": True, "suite": "synthetic", "suite_path": None,
            "suite_text": "# synthetic: written by tests/data/make_synthetic_run.py\n",
            "command": "python tests/data/make_synthetic_run.py",
            "created": "2026-01-01T00:00:00+00:00",
            "backends": {"tensorrt": {"device": "cuda", "versions": {"tensorrt": "10.13.0"}},
                         "torch": {"device": "cuda", "versions": {"torch": "2.11.0+cu130",
                                                                  "cudnn": "91300"}}},
            "unavailable_backends": {}, "timing": {"mode": "graph", "l2": "warm",
                                                    "target_rse": 0.005},
            "filter": None, "shard": None,
            "host": {"host": "synthetic", "cpu": "x86_64", "cpu_count": 16, "python": "3.12"},
            "gpu": GPU, "gpu_clocks_at_start": {"sm_mhz": 1980, "throttled": False}}
    (OUT / "run.json").write_text(json.dumps(info, indent=2) + "\n")
    recs, layer_rows = [], []
    for index, (spec, backends) in enumerate(cases):
        for backend in backends:
            rec = {"schema": 1, "case_index": index, "case_key": spec.key, "label": "",
                   "name": spec.short_name(), "backend": backend,
                   "spec": _schema_1_spec(spec),
                   "derived": {"flops": spec.flops, "bytes_min": spec.bytes_min,
                               "intensity": spec.intensity,
                               "output_shape": list(spec.output_shape)},
                   "device": "cuda", "gpu": GPU, "started": "2026-01-01T00:00:00+00:00",
                   "status": "ok", "error": None}
            if spec.precision == "bf16":
                rec["status"], rec["error"] = "build_failed", (
                    "TensorRT could not find any implementation for node conv "
                    "(bf16 depthwise)")
                rec["wall_s"] = 1.2
                recs.append(rec)
                continue
            t, reformat = latency(spec, backend)
            noisy = index == 5 and backend == "torch"
            sigma = 0.15 if noisy else 0.01
            ms = (t * rng.lognormal(0.0, sigma, size=20)).round(7).tolist()
            st = summarize(ms).to_json()
            rec["build"] = {"build_s": round(float(rng.uniform(0.8, 3.0)), 3)
                            if backend == "tensorrt" else 0.02,
                            "plan_bytes": int(spec.weight_shape[0] * spec.weight_shape[1]
                                              * 9 * 2 + 30000) if backend == "tensorrt"
                            else None, "cache_hit": False, "layers": [], "extra": {}}
            failed_check = index == 9 and backend == "torch"
            err = 2e-2 if failed_check else (3e-4 if spec.precision == "fp16" else 2e-6)
            tol = 1e-2 if spec.precision == "fp16" else 5e-3
            rec["check"] = {"rel_err": err, "tol": tol, "passed": not failed_check,
                            "images": 1}
            if failed_check:
                rec["status"] = "check_failed"
                rec["error"] = f"relative L2 error {err:.3g} above the fp16 tolerance {tol}"
            rec["samples_ms"] = ms
            rec["timing"] = {"mode": "graph", "iters_per_sample": 20, "l2": "warm",
                             "warmup_s": 0.2, "wall_s": 0.6, "rse": st["rse"],
                             "converged": st["rse"] <= 0.005, "extra": {}}
            rec["stats"] = st
            throttled = index == 14 and backend == "tensorrt"
            clk = {"sm_mhz": 1755 if throttled else 1980, "throttled": throttled}
            rec["clocks"] = {"before": clk, "after": clk}
            rec["throttled"] = throttled
            rec["wall_s"] = 1.0
            recs.append(rec)
            if backend == "tensorrt":
                layers = [{"name": "conv", "median_ms": t - reformat, "type": "Convolution"}]
                if reformat:
                    layers = [{"name": "Reformatting CopyNode for Input Tensor 0 to conv",
                               "median_ms": reformat * 0.7, "type": "Reformat"}, *layers,
                              {"name": "Reformatting CopyNode for Output Tensor 0 to conv",
                               "median_ms": reformat * 0.3, "type": "Reformat"}]
            else:
                layers = [{"name": "sm90_xmma_fprop_implicit_gemm_f16f16_f32_nhwc",
                           "median_ms": t, "type": "kernel"}]
            total = sum(layer["median_ms"] for layer in layers)
            layer_rows.append({"schema": 1, "case_key": spec.key, "backend": backend,
                               "layers": [{**layer, "median_ms": round(layer["median_ms"], 7),
                                           "share": layer["median_ms"] / total, "calls": 1,
                                           "extra": {}} for layer in layers]})
    # the files are schema 1 (as convbench wrote them before typed records): every line must
    # still load through the schema upgrade and validate as a bench.record.Record / LayerRow
    from bench.record import parse_layer_row, parse_record

    for n, r in enumerate(recs, 1):
        parse_record(r, f"records.jsonl:{n}")
    for n, r in enumerate(layer_rows, 1):
        parse_layer_row(r, f"layers.jsonl:{n}")
    with open(OUT / "records.jsonl", "w") as f:
        for r in recs:
            f.write(json.dumps(r, separators=(",", ":")) + "\n")
    with open(OUT / "layers.jsonl", "w") as f:
        for r in layer_rows:
            f.write(json.dumps(r, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
