"""Tactic analysis: the cuDNN plans of every cudnn record, and the backends side by side.

The cudnn backend builds, checks and times every plan cuDNN's heuristics propose
(``build.extra["plans"]``), as TensorRT times its tactics; here that becomes, per case, the spread
of plan times — fastest, cuDNN's heuristic choice (its first usable plan), slowest usable, how
many — and a plot of all of them (the analysis TREx gives TensorRT engines). Plan times come from
the backend's short tactic budget (a few CUDA-graph replays in one build), not from the full
measurement; the chosen plan's full measurement is the record's median.

``backend_table`` puts torch, cudnn and tensorrt (whichever ran) in one row per case with the
kernel count of each from the per-layer profiles (TensorRT: layers).

Records are read as dicts (``bench.store.load_records``): ``plans`` is not a column of the
flattened record table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.store import load_records

#: backends in the side-by-side table, in this order (others follow by name)
BACKEND_ORDER = ("torch", "cudnn", "tensorrt", "tensorrt-rtx")
PLAN_COLUMNS = ["case_index", "case_key", "name", "backend", "precision", "selection", "index",
                "plan", "mode", "status", "ms", "workspace_bytes", "rel_err", "chosen",
                "heuristic", "fastest"]


def plan_rows(records: list[Any]) -> pd.DataFrame:
    """One row per plan of every record (typed ``Record``) that carries a plan list
    (``PLAN_COLUMNS``)."""
    rows = []
    for r in records:
        extra = r.build.extra if r.build is not None else {}
        plans = extra.get("plans")
        if not plans:
            continue
        for p in plans:
            i = p.get("index")
            rows.append({
                "case_index": r.case_index, "case_key": r.case_key,
                "name": r.name, "backend": r.backend, "precision": r.spec.precision,
                "selection": extra.get("selection"), "index": i, "plan": p.get("name"),
                "mode": p.get("mode"), "status": p.get("status"), "ms": p.get("ms"),
                "workspace_bytes": p.get("workspace_bytes"), "rel_err": p.get("rel_err"),
                "chosen": i == extra.get("chosen_index"),
                "heuristic": i == extra.get("heuristic_index"),
                "fastest": i == extra.get("fastest_index")})
    df = pd.DataFrame(rows, columns=PLAN_COLUMNS)
    df["ms"] = pd.to_numeric(df["ms"], errors="coerce")
    return df


def load_plans(run_dir: str | Path) -> pd.DataFrame:
    return plan_rows(load_records(Path(run_dir)))


def _usable(g: pd.DataFrame) -> pd.DataFrame:
    return g[(g["status"] == "ok") & g["ms"].notna()]


def tactic_table(plans: pd.DataFrame, records: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per case × backend with plans: the spread of its plan times.

    Columns: #, case, backend, selection, plans (proposed), usable, skipped ws (over the case's
    workspace), fastest ms / plan, heuristic ms / plan, heuristic / fastest, slowest ms, chosen
    (plan), and median ms (the full measurement of the chosen plan, from ``records``).
    """
    cols = ["#", "case", "backend", "selection", "plans", "usable", "skipped ws", "fastest ms",
            "fastest plan", "heuristic ms", "heuristic plan", "heuristic / fastest",
            "slowest ms", "chosen", "median ms"]
    if plans.empty:
        return pd.DataFrame(columns=cols)
    medians: dict[tuple[Any, Any], float] = {}
    if records is not None and not records.empty:
        for r in records.itertuples(index=False):
            if r.status == "ok" and pd.notna(r.median_ms):
                medians[(r.case_key, r.backend)] = float(r.median_ms)
    out = []
    for (_, key, backend), g in plans.groupby(["case_index", "case_key", "backend"], sort=True):
        u = _usable(g)
        fastest = u.loc[u["ms"].idxmin()] if not u.empty else None
        heur = u[u["heuristic"]]
        heur = heur.iloc[0] if not heur.empty else None
        chosen = g[g["chosen"]]
        out.append({
            "#": g["case_index"].iloc[0], "case": g["name"].iloc[0], "backend": backend,
            "selection": g["selection"].iloc[0], "plans": len(g), "usable": len(u),
            "skipped ws": int((g["status"] == "skipped_workspace").sum()),
            "fastest ms": None if fastest is None else float(fastest["ms"]),
            "fastest plan": None if fastest is None else fastest["plan"],
            "heuristic ms": None if heur is None else float(heur["ms"]),
            "heuristic plan": None if heur is None else heur["plan"],
            "heuristic / fastest": None if heur is None or fastest is None
            else float(heur["ms"]) / float(fastest["ms"]),
            "slowest ms": float(u["ms"].max()) if not u.empty else None,
            "chosen": chosen["plan"].iloc[0] if not chosen.empty else None,
            "median ms": medians.get((key, backend))})
    return pd.DataFrame(out, columns=cols)


def tactic_figure(plans: pd.DataFrame) -> Any | None:
    """Every usable plan's time per case (log scale), the fastest, cuDNN's heuristic choice and
    the chosen plan marked; None without plans."""
    if plans.empty:
        return None
    from bench.report.plots import _plt

    usable = _usable(plans)
    if usable.empty:
        return None
    keys = list(dict.fromkeys(
        (r.case_index, r.case_key, r.backend) for r in
        usable.sort_values(["case_index", "backend"]).itertuples(index=False)))
    labels = []
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, max(2.5, 0.32 * len(keys) + 1.4)))
    for y, (ci, key, backend) in enumerate(keys):
        g = usable[(usable["case_key"] == key) & (usable["backend"] == backend)]
        labels.append(f"#{ci} {g['name'].iloc[0]}" + (f" ({backend})" if backend != "cudnn"
                                                        else ""))
        ax.scatter(g["ms"] * 1e3, np.full(len(g), y), s=14, color="#7f7f7f", alpha=0.6,
                   label="usable plan" if y == 0 else None, zorder=2)
        for flag, marker, color, size, text in (
                ("fastest", "D", "#2ca02c", 48, "fastest"),
                ("heuristic", "x", "#ff7f0e", 64, "cuDNN heuristic choice"),
                ("chosen", "|", "#000000", 160, "chosen (measured)")):
            m = g[g[flag]]
            ax.scatter(m["ms"] * 1e3, np.full(len(m), y), marker=marker, s=size, color=color,
                       label=text if y == 0 else None, zorder=3)
    ax.set_xscale("log")
    ax.set_yticks(range(len(keys)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("plan time per inference (µs, short tactic budget; log scale)")
    ax.set_title("cuDNN plans per case: the tactic spread")
    ax.grid(True, axis="x", which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def _order(backends: list[str]) -> list[str]:
    known = [b for b in BACKEND_ORDER if b in backends]
    return known + sorted(b for b in backends if b not in BACKEND_ORDER)


def backend_table(records: pd.DataFrame, layers: pd.DataFrame) -> pd.DataFrame:
    """One row per case: each backend's median ms (or its status when not ok) and kernel count
    per inference from its per-layer profile (TensorRT: layers), the fastest backend, and the
    time ratio of the slowest to the fastest ok backend. Empty with fewer than two backends."""
    if records.empty or records["backend"].nunique() < 2:
        return pd.DataFrame()
    backends = _order(sorted(records["backend"].dropna().unique()))
    counts: dict[tuple[Any, Any], int] = {}
    if not layers.empty:
        calls = layers["calls"] if "calls" in layers else pd.Series(1, index=layers.index)
        per = layers.assign(_calls=calls.fillna(1)).groupby(["case_key", "backend"])["_calls"]
        counts = {k: int(v) for k, v in per.sum().items()}
    rows = []
    for (ci, key), g in records.groupby(["case_index", "case_key"], sort=True):
        row: dict[str, Any] = {"#": ci, "case": g["name"].iloc[0]}
        times = {}
        for b in backends:
            r = g[g["backend"] == b]
            unit = "layers" if b.startswith("tensorrt") else "kernels"
            if r.empty:
                row[f"{b} ms"], row[f"{b} {unit}"] = None, None
                continue
            r = r.iloc[0]
            if r["status"] == "ok" and pd.notna(r["median_ms"]):
                row[f"{b} ms"] = float(r["median_ms"])
                times[b] = float(r["median_ms"])
            else:
                row[f"{b} ms"] = r["status"]
            row[f"{b} {unit}"] = counts.get((key, b))
        row["fastest"] = min(times, key=times.__getitem__) if times else None
        row["slowest / fastest"] = (max(times.values()) / min(times.values())
                                    if len(times) > 1 else None)
        rows.append(row)
    out = pd.DataFrame(rows)
    for c in out.columns:
        if c.endswith((" kernels", " layers")):
            out[c] = out[c].astype("Int64")
    return out
