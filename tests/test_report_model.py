"""Model roll-up in reports: Σ median × count per backend and precision, shares, losses."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from bench import suite_text
from bench.record import Stats, TimingFacts
from bench.report import write_report
from bench.report.model import rollup
from bench.report.tables import load
from bench.runner import new_record
from bench.store import RunStore
from bench.suite import parse_suite

SHA = "0" * 64


def _suite() -> str:
    return suite_text.dump({
        "name": "net", "backends": ["torch"],
        "model": {"file": "net.onnx", "sha256": SHA, "inputs": {"x": [1, 8, 16, 16]},
                  "conv_nodes": 4},
        "defaults": {"in_channels": 8, "out_channels": 8, "height": 16, "width": 16},
        "sweep": {"precision": ["fp32", "fp16"]},
        "cases": [{"label": "big", "count": 3, "nodes": ["/a", "/b", "/c"]},
                  {"label": "small", "count": 1, "nodes": ["/d"], "kernel": 1}]})


#: median ms per (label, precision): fp16 halves "big" and is 1.5x slower on "small"
MEDIANS = {("big", "fp32"): 2.0, ("big", "fp16"): 1.0, ("small", "fp32"): 0.2,
           ("small", "fp16"): 0.3}


def _run(tmp_path: Path, text: str | None = None) -> Path:
    text = text or _suite()
    suite = parse_suite(text)
    store = RunStore.create(tmp_path / "results", "net", {"suite": "net", "suite_text": text,
                                                           "timing": {}, "host": {}})
    rng = np.random.default_rng(0)
    for c in suite.cases:
        med = MEDIANS[(c.label, c.spec.precision)] * c.spec.batch
        ms = list(med * (1 + 0.001 * rng.standard_normal(30)))
        rec = new_record(c, "torch", "cpu", None, status="ok")
        rec.samples_ms, rec.stats = ms, Stats.of(ms)
        rec.timing = TimingFacts(mode="host", iters_per_sample=1, l2="n/a", converged=True)
        store.append(rec)
    return store.dir


def test_totals_shares_and_losses(tmp_path: Path) -> None:
    r = rollup(load(_run(tmp_path)))
    assert r is not None and r.unique_layers == 2 and r.config == ["precision"]
    totals = {row["precision"]: row["total_ms"] for row in r.totals.to_dict("records")}
    assert abs(totals["fp32"] - (3 * 2.0 + 0.2)) < 0.01
    assert abs(totals["fp16"] - (3 * 1.0 + 0.3)) < 0.01
    big = r.layers[(r.layers["precision"] == "fp32") & (r.layers["label"] == "big")]
    assert abs(float(big["share"].iloc[0]) - 6.0 / 6.2) < 0.01
    (loss,) = r.losses.to_dict("records")
    assert (loss["label"], loss["slow"], loss["fast"], loss["count"]) == ("small", "fp32",
                                                                          "fp16", 1)
    assert abs(loss["lost_ms"] - 0.1) < 0.005


def test_report_shows_the_roll_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.report import render

    monkeypatch.setattr(render, "_plots", lambda run, out: [])  # text only; plots cost seconds
    md = write_report(_run(tmp_path), out_root=tmp_path / "reports").read_text()
    assert "## Model: net.onnx" in md and "4 Conv nodes, 2 unique layers" in md
    assert re.search(r"\| torch \| fp16 \| 2/2 \| 3\.(29|30)\d* \|", md)
    assert re.search(r"\| torch \| fp32 \| 2/2 \| 6\.(19|20)\d* \|", md)
    assert "## Model: where a lower precision loses" in md
    assert "fp16 is slower than fp32 for small (×1)" in md
    assert re.search(r"the 4 convolutions of net\.onnx take 3\.(29|30)\d ms at fp16 \(2/2 "
                     r"layers\), 6\.(19|20)\d ms at fp32", md)


def test_no_roll_up_for_a_plain_suite() -> None:
    root = Path(__file__).parent / "data" / "runs" / "quickstart-cpu-a"
    assert rollup(load(root)) is None


def test_a_batch_sweep_set_on_a_model_suite_is_rolled_up_per_batch(tmp_path: Path) -> None:
    from bench.suite_overrides import apply_sets

    swept = apply_sets(parse_suite(_suite()), ["batch=1,4"])
    assert [c.count for c in swept.cases] == [3, 3, 3, 3, 1, 1, 1, 1]  # counts survive --set
    r = rollup(load(_run(tmp_path, swept.text)))
    assert r is not None and r.config == ["batch", "precision"]
    totals = {(row["batch"], row["precision"]): row["total_ms"]
              for row in r.totals.to_dict("records")}
    assert set(totals) == {(b, p) for b in (1, 4) for p in ("fp32", "fp16")}
    assert abs(totals[(4, "fp32")] - 4 * 6.2) < 0.05
    assert set(r.losses["batch"]) == {1, 4}
