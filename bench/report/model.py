"""Model roll-up: when a suite came from a model (``convbench suite from-onnx``), the model's
total convolution time per backend and precision, each layer's share, the top layers, and the
layers where a lower precision is slower.

Total = Σ median × occurrences over the model's unique Conv layers. Each layer is timed alone,
so this is the time of the model's convolutions, not its end-to-end latency: no fusion with
neighbouring layers, no reuse of a predecessor's output in cache, no non-conv layers.

The occurrence counts are read from the suite text stored in run.json (``[[cases]]`` ``count``
and ``nodes``), so any run of such a suite can be rolled up, records stay as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from bench.errors import BenchError
from bench.report.plots import ok_rows
from bench.report.tables import SPEC_COLUMNS, Run

TOP_LAYERS = 5  # rows per backend × configuration in the top-layers table
#: (slow, fast): a lower precision "loses" where it is slower than the higher one
PRECISION_PAIRS = (("fp32", "fp16"), ("fp32", "bf16"), ("bf16", "fp16"))


@dataclass
class Rollup:
    model: Any  # bench.suite.ModelInfo
    unique_layers: int
    config: list[str]  # spec columns that tell the rolled-up totals apart (precision, batch...)
    totals: pd.DataFrame  # backend, *config, layers measured, total ms
    layers: pd.DataFrame  # backend, *config, layer, count, median ms, ms × count, share
    losses: pd.DataFrame  # backend, *config-without-precision, slow, fast, layer, ...


def _cases(run: Run) -> tuple[Any, dict[str, Any]] | None:
    from bench.suite import parse_suite

    text = run.info.get("suite_text")
    if not text:
        return None
    try:
        suite = parse_suite(text, source=f"{run.dir}/run.json suite_text", max_cases=10**9)
    except BenchError:
        return None  # written by another convbench version: no roll-up rather than no report
    if suite.model is None:
        return None
    return suite.model, {c.key: c for c in suite.cases}


def rollup(run: Run) -> Rollup | None:
    """The roll-up of ``run``, or None when its suite did not come from a model."""
    found = _cases(run)
    if found is None or run.records.empty:
        return None
    model, cases = found
    df = run.records[run.records["case_key"].isin(list(cases))].copy()
    if df.empty:
        return None
    df["layer"] = [cases[k].nodes[0] if cases[k].nodes else cases[k].label or cases[k].name
                   for k in df["case_key"]]
    df["label"] = [cases[k].label or cases[k].spec.short_name() for k in df["case_key"]]
    df["count"] = [cases[k].count for k in df["case_key"]]
    # what tells two measurements of one layer apart: the swept axes (precision always shown)
    varying = {c for c in SPEC_COLUMNS if c in df and
               df.groupby("layer")[c].agg(lambda s: s.astype(str).nunique()).max() > 1}
    config = [c for c in SPEC_COLUMNS if c == "precision" or c in varying]
    unique_layers = len({c.nodes[0] if c.nodes else k for k, c in cases.items()})
    ok = ok_rows(df).copy()
    ok["total_ms"] = ok["median_ms"] * ok["count"]
    keys = ["backend", *config]
    for c in config:  # tuples (kernel...) as text, so groupby and tables read them alike
        ok[c] = ok[c].map(lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else v)
    totals = ok.groupby(keys, sort=True).agg(measured=("layer", "nunique"),
                                             total_ms=("total_ms", "sum")).reset_index()
    totals["layers measured"] = [f"{m}/{unique_layers}" for m in totals["measured"]]
    ok = ok.merge(totals[[*keys, "total_ms"]].rename(columns={"total_ms": "_group_ms"}),
                  on=keys)
    ok["share"] = ok["total_ms"] / ok["_group_ms"]
    layers = ok.sort_values([*keys, "share"], ascending=[True] * len(keys) + [False])[
        [*keys, "label", "layer", "count", "median_ms", "total_ms", "share"]]
    return Rollup(model=model, unique_layers=unique_layers, config=config,
                  totals=totals.drop(columns="measured"), layers=layers,
                  losses=_losses(ok, config))


def _losses(ok: pd.DataFrame, config: list[str]) -> pd.DataFrame:
    """Layers where the lower precision of a pair is slower, with non-overlapping 95 % CIs."""
    if "precision" not in config:
        return pd.DataFrame()
    other = ["backend", *[c for c in config if c != "precision"], "layer"]
    out = []
    for slow, fast in PRECISION_PAIRS:
        a = ok[ok["precision"] == slow]
        b = ok[ok["precision"] == fast]
        m = a.merge(b, on=other, suffixes=("_hi", "_lo"))
        if m.empty:
            continue
        worse = m[(m["median_ci_low_ms_lo"] > m["median_ci_high_ms_hi"])]
        for r in worse.to_dict("records"):
            out.append({**{c: r[c] for c in other}, "label": r["label_hi"], "slow": slow,
                        "fast": fast, "count": r["count_hi"], "ms_hi": r["median_ms_hi"],
                        "ms_lo": r["median_ms_lo"],
                        "lost_ms": (r["median_ms_lo"] - r["median_ms_hi"]) * r["count_hi"]})
    return pd.DataFrame(out)


# --- what the report shows ------------------------------------------------------------------------
def totals_table(r: Rollup) -> pd.DataFrame:
    keys = ["backend", *r.config]
    t = r.totals[[*keys, "layers measured", "total_ms"]].rename(
        columns={"total_ms": "conv total ms"})
    return t


def top_layers_table(r: Rollup, n: int = TOP_LAYERS) -> pd.DataFrame:
    keys = ["backend", *r.config]
    t = r.layers.groupby(keys, sort=True, group_keys=False).head(n).copy()
    t["share"] = t["share"].map(lambda v: f"{v * 100:.1f}%")
    return t[[*keys, "label", "count", "median_ms", "total_ms", "share"]].rename(columns={
        "label": "layer", "median_ms": "median ms", "total_ms": "ms × count"})


def loss_lines(r: Rollup) -> list[str]:
    if r.losses.empty:
        return []
    out = []
    rest = [c for c in r.config if c != "precision"]
    for row in r.losses.sort_values("lost_ms", ascending=False).to_dict("records"):
        where = ", ".join(f"{c}={row[c]}" for c in rest)
        out.append(f"`{row['backend']}`{' ' + where if where else ''}: {row['fast']} is slower "
                   f"than {row['slow']} for {row['label']} (×{row['count']}): "
                   f"{_ms(row['ms_lo'])} vs {_ms(row['ms_hi'])}, "
                   f"{_ms(row['lost_ms'])} lost per inference of the model")
    return out


def rollup_findings(r: Rollup) -> list[str]:
    """One line per backend (and non-precision config): totals per precision, top layer."""
    out = []
    rest = [c for c in r.config if c != "precision"]
    keys = ["backend", *rest]
    for group, g in r.totals.groupby(keys, sort=True):
        group = group if isinstance(group, tuple) else (group,)
        backend, vals = group[0], group[1:]
        where = ", ".join(f"{c}={v}" for c, v in zip(rest, vals))
        parts = [f"{_ms(t)} at {p} ({m} layers)" for p, t, m in
                 zip(g["precision"], g["total_ms"], g["layers measured"])]
        text = (f"`{backend}`{' ' + where if where else ''}: the {r.model.conv_nodes} "
                f"convolutions of {r.model.file} take " + ", ".join(parts))
        fastest = g.sort_values("total_ms").iloc[0]
        sel = (r.layers["backend"] == backend) & (r.layers["precision"] == fastest["precision"])
        for c, v in zip(rest, vals):
            sel &= r.layers[c] == v
        top = r.layers[sel].head(1)
        if not top.empty:
            t = top.iloc[0]
            text += (f"; at {fastest['precision']} the top layer {t['label']} (×{t['count']}) "
                     f"takes {t['share'] * 100:.0f} % of it")
        out.append(text + ".")
    if not r.losses.empty:
        lost = r.losses.groupby(["backend", "fast"]).agg(n=("layer", "size"),
                                                         ms=("lost_ms", "sum"))
        out.append("a lower precision is slower for " + ", ".join(
            f"{int(row.n)} layer(s) of `{b}` at {f} ({_ms(row.ms)} lost per inference)"
            for (b, f), row in lost.iterrows()) + " (95 % CIs apart).")
    return out


def _ms(v: float) -> str:
    return f"{v * 1e3:.1f} µs" if v < 0.1 else f"{v:.3f} ms"


def blocks(r: Rollup) -> list[tuple[str, Any, str]]:
    """(kind, content, alt) for render.Block: heading, method note, tables, losses."""
    m = r.model
    inputs = ", ".join(f"{k} {'x'.join(map(str, v))}" for k, v in m.inputs.items())
    out: list[tuple[str, Any, str]] = [
        ("h2", f"Model: {m.file}", ""),
        ("p", f"`{m.file}` (sha256 `{m.sha256[:12]}…`{', inputs ' + inputs if inputs else ''}):"
              f" {m.conv_nodes} Conv nodes, {r.unique_layers} unique layers. Conv total = Σ "
              "median × occurrences. Each layer is timed alone: this is the time of the model's "
              "convolutions, not its end-to-end latency (no fusion with neighbouring layers, no "
              "cache reuse between layers, no other layers).", ""),
        ("table", totals_table(r), "model-totals"),
        ("h2", "Model: top layers", ""),
        ("table", top_layers_table(r), "model-top-layers"),
    ]
    lines = loss_lines(r)
    if lines:
        out += [("h2", "Model: where a lower precision loses", ""), ("ul", lines, "")]
    return out
