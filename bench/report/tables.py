"""Results → pandas DataFrames."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from bench.store import load_layers, load_records, read_run_info

SPEC_COLUMNS = ["batch", "in_channels", "out_channels", "height", "width", "kernel", "stride",
                "padding", "dilation", "groups", "bias", "activation", "precision", "workspace",
                "opt_level", "tf32"]
STAT_COLUMNS = ["min", "median", "mean", "p90", "p95", "p99", "max", "std", "cov", "rse",
                "median_ci_low", "median_ci_high", "n"]


@dataclass
class Run:
    """A loaded run: ``info`` (run.json), ``records`` (one row per case × backend), ``layers``."""

    dir: Path
    info: dict[str, Any]
    records: pd.DataFrame
    layers: pd.DataFrame


def _flatten(r: dict[str, Any]) -> dict[str, Any]:
    spec = r.get("spec", {})
    row: dict[str, Any] = {
        "case_index": r.get("case_index"), "case_key": r.get("case_key"), "name": r.get("name"),
        "label": r.get("label", ""), "backend": r.get("backend"), "device": r.get("device"),
        "status": r.get("status"), "error": r.get("error"),
    }
    for c in SPEC_COLUMNS:
        v = spec.get(c)
        row[c] = tuple(v) if isinstance(v, list) else v
    d = r.get("derived", {})
    row.update(flops=d.get("flops"), bytes_min=d.get("bytes_min"), intensity=d.get("intensity"))
    st = r.get("stats") or {}
    for c in STAT_COLUMNS:
        row[f"{c}_ms" if c not in ("cov", "rse", "n") else c] = st.get(c)
    med = st.get("median")
    row["tflops"] = d.get("flops", 0) / med / 1e9 if med else None
    row["gbps"] = d.get("bytes_min", 0) / med / 1e6 if med else None
    b = r.get("build") or {}
    row.update(build_s=b.get("build_s"), plan_bytes=b.get("plan_bytes"),
               cache_hit=b.get("cache_hit"))
    chk = r.get("check") or {}
    row.update(rel_err=chk.get("rel_err"), check_passed=chk.get("passed"))
    t = r.get("timing") or {}
    row.update(mode=t.get("mode"), l2=t.get("l2"), iters_per_sample=t.get("iters_per_sample"),
               converged=t.get("converged"), wall_s=r.get("wall_s"),
               throttled=bool(r.get("throttled")))
    gpu = r.get("gpu") or {}
    row.update(gpu_name=gpu.get("name"), gpu_uuid=gpu.get("uuid"))
    return row


def records_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame([_flatten(r) for r in records])


def layers_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    flat = [{"case_key": row["case_key"], "backend": row["backend"], **layer}
            for row in rows for layer in row.get("layers", [])]
    return pd.DataFrame(flat)


def load(run_dir: str | Path) -> Run:
    """Load ``run_dir`` (run.json + records.jsonl + layers.jsonl) into DataFrames."""
    run_dir = Path(run_dir)
    info = read_run_info(run_dir)
    return Run(dir=run_dir, info=info, records=records_frame(load_records(run_dir)),
               layers=layers_frame(load_layers(run_dir)))
