"""The cudnn backend on a real GPU: a fused conv+bias+ReLU graph built, checked, timed in graph
mode and profiled through the same runner step as every backend; the plan list; the heuristic
and autotune choices; workspace limits; TF32 off.

Marked ``gpu`` (skipped without a CUDA device, with the reason); skipped with the backend's own
reason when nvidia-cudnn-frontend or libcudnn is missing. On the H200:
``python3 -m pytest -m gpu tests/gpu/test_cudnn_backend.py -rs``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from bench.backends.registry import get_backend
from bench.precision import TOLERANCE
from bench.spec import ConvSpec
from bench.suite import Case, TimingConfig

pytestmark = pytest.mark.gpu

QUICK = TimingConfig(mode="graph", warmup_s=0.05, min_samples=10, min_time_s=0.2,
                     max_time_s=3.0, profile_iters=5)
FUSED = dict(batch=16, in_channels=128, out_channels=128, height=56, width=56, kernel=3,
             padding=1, bias=True, activation="relu", precision="fp16")


@pytest.fixture(scope="module")
def backend() -> Any:
    b = get_backend("cudnn")
    ok, reason = b.available()
    if not ok:
        pytest.skip(f"cudnn backend: {reason}")
    return b


@pytest.fixture(scope="module")
def gpu() -> Iterator[Any]:
    from bench.runner import GpuSession

    session = GpuSession(0, cold=False)
    yield session
    session.close()


def _measure(backend: Any, gpu: Any, **fields: Any) -> tuple[dict[str, Any], Any]:
    from bench.runner import measure_case

    spec = ConvSpec(**fields)
    rec, layers = measure_case(Case(0, spec), backend, QUICK, gpu, None)
    # the stored form (what records.jsonl and layers.jsonl hold), as these checks read it
    return rec.to_json(), (layers.to_json() if layers is not None else None)


def _usable(rec: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in rec["build"]["extra"]["plans"] if p["status"] == "ok"]


def test_fused_fp16_conv_bias_relu_is_checked_timed_in_a_graph_and_runs_one_kernel(
        backend: Any, gpu: Any) -> None:
    rec, layers = _measure(backend, gpu, **FUSED)
    assert rec["status"] == "ok", rec.get("error")
    assert rec["check"]["rel_err"] <= TOLERANCE["fp16"]
    assert rec["timing"]["mode"] == "graph" and rec["stats"]["median"] > 0
    extra = rec["build"]["extra"]
    assert extra["layout"] == "NHWC" and extra["graph"] == "conv_fprop+bias+relu"
    plans = extra["plans"]
    assert plans and extra["plan_count"] == len(plans)
    usable = _usable(rec)
    assert usable, [p["error"] for p in plans]
    for p in usable:  # every usable plan was checked and timed
        assert p["rel_err"] <= TOLERANCE["fp16"] and p["ms"] > 0 and p["name"]
    # autotune keeps the fastest plan; its full measurement agrees with the short one
    assert extra["chosen_index"] == extra["fastest_index"]
    fastest = min(p["ms"] for p in usable)
    assert extra["chosen"]["ms"] == fastest
    assert rec["stats"]["median"] == pytest.approx(fastest, rel=0.25)
    # the fused graph is one kernel (torch runs a conv, a bias add and layout transforms)
    assert layers is not None, rec.get("profile_error")
    kernels = [lt for lt in layers["layers"] if "memset" not in lt["name"].lower()]
    assert len(kernels) == 1 and kernels[0]["calls"] == 1, layers["layers"]


def test_heuristic_takes_cudnns_first_usable_plan_and_autotune_is_never_slower(
        backend: Any, gpu: Any) -> None:
    heur, _ = _measure(backend, gpu, **FUSED, algo="heuristic")
    assert heur["status"] == "ok", heur.get("error")
    extra = heur["build"]["extra"]
    assert extra["selection"] == "heuristic"
    assert extra["chosen_index"] == extra["heuristic_index"] == min(
        p["index"] for p in _usable(heur))
    # the heuristic's plan is at best as fast as the fastest one of the same search
    chosen = next(p for p in extra["plans"] if p["index"] == extra["chosen_index"])
    assert chosen["ms"] >= min(p["ms"] for p in _usable(heur))


def test_plans_needing_more_workspace_than_allowed_are_skipped_and_counted(
        backend: Any, gpu: Any) -> None:
    rec, _ = _measure(backend, gpu, **FUSED, workspace=0)
    extra = rec["build"]["extra"]
    skipped = [p for p in extra["plans"] if p["status"] == "skipped_workspace"]
    assert extra["plans_skipped_workspace"] == len(skipped)
    assert all(p["workspace_bytes"] > 0 for p in skipped)
    if rec["status"] == "ok":
        assert extra["chosen"]["workspace_bytes"] == 0
    else:  # every plan needs workspace: a reasoned unsupported, plans kept
        assert rec["status"] == "unsupported" and "plans" in rec["error"]


def test_fp32_without_tf32_keeps_fp32_accuracy(backend: Any, gpu: Any) -> None:
    rec, _ = _measure(backend, gpu, **{**FUSED, "precision": "fp32", "tf32": False})
    assert rec["status"] == "ok", rec.get("error")
    extra = rec["build"]["extra"]
    assert extra["tf32"] is False
    # TF32 rounds inputs to a 10-bit mantissa (relative L2 error ~2e-4 for this conv); fp32
    # arithmetic, Winograd or FFT included, stays far below that
    assert rec["check"]["rel_err"] < 5e-5, extra["chosen"]
    assert all(p["rel_err"] < 5e-5 for p in _usable(rec))


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_other_precisions_are_ok_or_unsupported_with_cudnns_reason(
        backend: Any, gpu: Any, precision: str) -> None:
    rec, _ = _measure(backend, gpu, **{**FUSED, "precision": precision, "batch": 2})
    assert rec["status"] in ("ok", "unsupported"), rec.get("error")
    if rec["status"] == "unsupported":
        assert rec["error"].startswith("cuDNN")
    else:
        assert rec["check"]["rel_err"] <= TOLERANCE[precision]


def test_a_depthwise_search_finishes_with_every_plan_timed(backend: Any, gpu: Any) -> None:
    """quickstart's 3x3-depthwise (32 groups of 1 channel, 28x28, fp32): with blocked graph
    replays one of its plans (eng11_k2=4_k3=0 on the H200, cuDNN 9.19) never finished and the
    sweep waited for ever. The search now replays unblocked and no plan may hang."""
    rec, _ = _measure(backend, gpu, in_channels=32, out_channels=32, height=28, width=28,
                      kernel=3, padding=1, groups=32)
    assert rec["status"] == "ok", rec["error"]
    plans = rec["build"]["extra"]["plans"]
    assert not [p for p in plans if p["status"] in ("hung", "failed")], plans
    timed = [p for p in plans if p["status"] == "ok" and p["timed_by"].startswith("graph")]
    assert timed and all(p["timed_by"].endswith("unblocked") for p in timed)
