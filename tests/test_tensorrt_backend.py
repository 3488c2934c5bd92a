"""The TensorRT backend, with real TensorRT-RTX builds (no GPU needed to build).

TensorRT-RTX (``pip install 'trt-convbench[tensorrt-rtx]'``) builds engines ahead of time on a
machine without a GPU; these tests build every convolution of every suite that way and check
the built network, the plan and the engine cache. Running an engine needs a GPU TensorRT-RTX
supports (not Hopper): the ``gpu`` tests do that where possible and otherwise check that the
case ends as "unsupported" with the build recorded.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pytest

from bench.backends.base import BuildContext
from bench.backends.registry import get_backend
from bench.backends.tensorrt import (
    EngineCache,
    NoSupportedGpu,
    TensorRTBackend,
    TensorRTRTXBackend,
    current_gpu,
)
from bench.errors import BuildFailed, UnsupportedCase
from bench.reference import make_data
from bench.spec import ConvSpec
from bench.suite import load_suite

ROOT = Path(__file__).resolve().parents[1]
trt = pytest.importorskip("tensorrt_rtx", reason="tensorrt_rtx not installed: "
                          "pip install 'trt-convbench[tensorrt-rtx]'")
pytestmark = pytest.mark.tensorrt

SMALL = dict(in_channels=16, out_channels=16, height=12, width=12)
MIB = 1 << 20


def _backend(target: tuple[int, int] | None = None) -> TensorRTRTXBackend:
    return TensorRTRTXBackend(rtx_target=target)


def _build_info(spec: ConvSpec, cache_dir: Path | None = None,
                target: tuple[int, int] | None = None):
    """Build ``spec``; return (BuildInfo, engine or None). Without a supported GPU the build
    still happens and NoSupportedGpu carries its BuildInfo."""
    b = _backend(target)
    try:
        engine = b.build(spec, make_data(spec), BuildContext(cache_dir=cache_dir))
    except NoSupportedGpu as e:
        assert "no supported GPU" in str(e)
        return e.build_info, None
    return engine.info, engine


def _unique_specs() -> list[tuple[str, ConvSpec]]:
    seen: dict[str, tuple[str, ConvSpec]] = {}
    for path in sorted((ROOT / "suites").glob("*.toml")):
        suite = load_suite(path)
        for case in suite.cases:
            seen.setdefault(case.spec.key, (f"{suite.name}:{case.name}", case.spec))
    return list(seen.values())


SUITE_SPECS = _unique_specs()


# --- selection and availability ------------------------------------------------------------
def test_registry_names_and_flavour() -> None:
    rtx = get_backend("tensorrt-rtx")
    assert isinstance(rtx, TensorRTRTXBackend) and rtx.flavour.module == "tensorrt_rtx"
    any_trt = get_backend("tensorrt")
    assert isinstance(any_trt, TensorRTBackend)
    try:
        import tensorrt  # noqa: F401

        assert any_trt.flavour.module == "tensorrt"
    except ImportError:
        assert any_trt.flavour.module == "tensorrt_rtx"  # the fallback


def test_rtx_is_available_without_a_gpu_and_says_where_it_runs() -> None:
    b = _backend()
    assert b.available() == (True, "")  # building needs no GPU
    v = b.versions()
    assert v["tensorrt_rtx"] == trt.__version__ and v["flavour"] == "TensorRT-RTX"
    ok, why = b.runtime_support()
    gpu = current_gpu()
    if gpu is None:
        assert not ok and why.startswith("no supported GPU: no CUDA GPU found")
        assert v["build_target"] == "portable" and b.device == "cpu"
    elif gpu.cc == (9, 0):
        assert not ok and "does not run on compute capability 9.0" in why and gpu.name in why
    assert v["execution"] == ("ok" if ok else why)


def test_missing_module_reason_names_the_extra() -> None:
    from bench.backends.tensorrt import Flavour, import_flavour

    ghost = Flavour("tensorrt_not_a_module", "Ghost", "ghost", rtx=False)
    assert import_flavour(ghost) == "not installed — pip install 'trt-convbench[ghost]'"


# --- network per case ----------------------------------------------------------------------
@pytest.mark.parametrize("label,spec", SUITE_SPECS, ids=[s[0] for s in SUITE_SPECS])
def test_every_suite_case_builds(label: str, spec: ConvSpec) -> None:
    # fp8 needs an sm_89+ target (TensorRT-RTX's portable one includes 8.0 and 8.6)
    target = (8, 9) if spec.precision == "fp8" and current_gpu() is None else None
    try:
        info, engine = _build_info(spec, target=target)
    except BuildFailed as e:
        # TensorRT-RTX cannot build with a workspace of 0 (no scratch) and runs out at 16 MiB
        # for the largest stem; the record says so, the sweep goes on
        assert spec.workspace is not None and spec.workspace <= 16 * MIB, str(e)
        assert str(e).startswith(f"workspace limit {spec.workspace} B too small?")
        return
    if engine is not None:
        engine.close()
    assert info.plan_bytes > 0 and info.build_s > 0 and not info.cache_hit
    qdq = ["CONSTANT"] * 3 + ["QUANTIZE", "DEQUANTIZE"] * 2 if spec.quantized else []
    want = qdq + ["CONVOLUTION"] + (["ACTIVATION"] if spec.activation == "relu" else [])
    assert [layer["type"] for layer in info.layers][:len(want)] == want or engine is not None
    if engine is None:  # layers from the network definition
        assert [layer["type"] for layer in info.layers] == want
        assert info.layers[-1]["output_shape"] == list(spec.output_shape)
        dtype = {"fp32": "FLOAT", "fp16": "HALF", "bf16": "BF16"}[spec.io_precision]
        assert {layer["precision"] for layer in info.layers[len(qdq):]} == {dtype}
    assert info.extra["tf32"] == (spec.precision == "fp32" and spec.tf32)
    assert info.extra.get("opt_level") == spec.opt_level
    assert info.extra.get("workspace") == spec.workspace


@pytest.mark.parametrize("kw", [
    dict(precision="fp32", tf32=False), dict(precision="fp16", activation="relu"),
    dict(precision="bf16", bias=False), dict(groups=4, dilation=2, padding="same"),
    dict(groups=16, stride=2, padding=1, kernel=5), dict(kernel=(1, 3), padding=(0, 1)),
    dict(workspace="64MiB", opt_level=1), dict(opt_level=5),
], ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()))
def test_variants_build_with_the_right_network(kw: dict) -> None:
    spec = ConvSpec(**SMALL, **kw)
    info, engine = _build_info(spec)
    if engine is not None:
        engine.close()
        return
    assert [layer["name"] for layer in info.layers] == (
        ["conv", "relu"] if spec.activation == "relu" else ["conv"])
    assert info.layers[-1]["output_shape"] == list(spec.output_shape)
    assert info.plan_bytes > 1000
    assert info.extra["flavour"] == "TensorRT-RTX" and info.extra["version"] == trt.__version__


def test_plan_holds_the_weights_in_the_case_precision() -> None:
    """A bigger fp32 layer gives a bigger plan than its fp16 twin: weights of the case dtype."""
    big = dict(in_channels=256, out_channels=256, height=8, width=8)
    fp32, _ = _build_info(ConvSpec(**big, precision="fp32"))
    fp16, _ = _build_info(ConvSpec(**big, precision="fp16"))
    weights32 = 256 * 256 * 9 * 4
    assert fp32.plan_bytes - fp16.plan_bytes == pytest.approx(weights32 / 2, rel=0.2)


def test_workspace_zero_is_a_build_failure_with_the_loggers_words() -> None:
    with pytest.raises(BuildFailed, match=r"workspace limit 0 B too small\? TensorRT-RTX "
                                          r"build failed: \[(ERROR|INTERNAL_ERROR)\]"):
        _build_info(ConvSpec(**SMALL, workspace=0))


# --- engine cache ---------------------------------------------------------------------------
def test_rebuild_hits_the_engine_cache(tmp_path: Path) -> None:
    spec = ConvSpec(**SMALL, precision="fp16", activation="relu")
    first, e1 = _build_info(spec, tmp_path)
    second, e2 = _build_info(spec, tmp_path)
    for e in (e1, e2):
        if e is not None:
            e.close()
    assert not first.cache_hit and second.cache_hit
    assert second.plan_bytes == first.plan_bytes and second.build_s == 0.0
    assert second.extra["original_build_s"] == pytest.approx(first.build_s)
    assert second.layers == first.layers
    plans = list(tmp_path.rglob("*.plan"))
    (meta_path,) = tmp_path.rglob("*.json")
    meta = json.loads(meta_path.read_text())
    assert meta["sha256"] == hashlib.sha256(plans[0].read_bytes()).hexdigest()
    assert meta["fields"]["spec_key"] == spec.key and meta["fields"]["flavour"] == "tensorrt_rtx"
    assert meta["fields"]["version"] == trt.__version__


def test_different_weights_or_spec_miss_the_cache(tmp_path: Path) -> None:
    spec = ConvSpec(**SMALL)
    b = _backend()
    data = make_data(spec)
    other = make_data(spec, seed=7)
    for d in (data, other):
        try:  # on a GPU TensorRT-RTX does not run (Hopper), the build still lands in the cache
            b.build(spec, d, BuildContext(cache_dir=tmp_path)).close()
        except NoSupportedGpu:
            pass
    assert len(list(tmp_path.rglob("*.plan"))) == 2  # keyed by the weights too


class _noop:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *a: object) -> bool:
        return False


@pytest.mark.parametrize("damage", ["flip_plan_byte", "truncate_plan", "bad_sidecar",
                                    "other_fields", "no_sidecar"])
def test_corrupted_cache_entry_is_detected_and_rebuilt(tmp_path: Path, damage: str,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    spec = ConvSpec(**SMALL, precision="bf16")
    first, _ = _build_info(spec, tmp_path)
    (plan_path,) = tmp_path.rglob("*.plan")
    meta_path = plan_path.with_suffix(".json")
    blob = bytearray(plan_path.read_bytes())
    if damage == "flip_plan_byte":
        blob[len(blob) // 2] ^= 0xFF
        plan_path.write_bytes(bytes(blob))
    elif damage == "truncate_plan":
        plan_path.write_bytes(bytes(blob[:100]))
    elif damage == "bad_sidecar":
        meta_path.write_text("{not json")
    elif damage == "other_fields":
        meta = json.loads(meta_path.read_text())
        meta["fields"]["version"] = "0.0.0"
        meta_path.write_text(json.dumps(meta))
    else:
        meta_path.unlink()
    with caplog.at_level(logging.WARNING, logger="bench.backends.tensorrt"):
        again, e = _build_info(spec, tmp_path)
    if e is not None:
        e.close()
    assert not again.cache_hit and again.plan_bytes == first.plan_bytes
    assert "cache_rejected" in again.extra
    assert any("rebuilding" in r.getMessage() for r in caplog.records)
    # the rebuilt entry is valid again
    third, e = _build_info(spec, tmp_path)
    if e is not None:
        e.close()
    assert third.cache_hit


def test_cache_key_fields_change_with_target_and_version() -> None:
    spec = ConvSpec(**SMALL)
    data = make_data(spec)
    fl = _backend().flavour
    a = EngineCache.key_fields(spec, data, fl, "1.7", "portable")
    assert a != EngineCache.key_fields(spec, data, fl, "1.8", "portable")
    assert a != EngineCache.key_fields(spec, data, fl, "1.7", "sm89")
    assert a == EngineCache.key_fields(spec, make_data(spec), fl, "1.7", "portable")


# --- execution -------------------------------------------------------------------------------
@pytest.mark.skipif(current_gpu() is not None, reason="checks the no-GPU path")
def test_no_gpu_gives_unsupported_after_the_build(tmp_path: Path) -> None:
    spec = ConvSpec(**SMALL)
    with pytest.raises(UnsupportedCase, match="no supported GPU") as err:
        _backend().build(spec, make_data(spec), BuildContext(cache_dir=tmp_path))
    info = err.value.build_info
    assert info.plan_bytes > 0 and info.build_s > 0 and info.extra["target"] == "portable"


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16", "int8", "fp8"])
def test_gpu_run_matches_reference_or_is_unsupported(precision: str) -> None:
    """On a GPU: TensorRT-RTX runs the conv and matches the reference, or (Hopper...) the case
    is 'unsupported' with the build recorded. Uses full TensorRT when installed."""
    from bench.gpu import cuda
    from bench.precision import TOLERANCE
    from bench.reference import reference, rel_l2_error

    spec = ConvSpec(**SMALL, precision=precision, activation="relu")
    data = make_data(spec)
    b = get_backend("tensorrt")
    try:
        engine = b.build(spec, data, BuildContext())
    except NoSupportedGpu as e:
        assert e.build_info.plan_bytes > 0
        pytest.skip(f"built, not run: {e}")
    except UnsupportedCase as e:  # fp8 before sm_89, bf16 before sm_80: refused, not built
        pytest.skip(f"refused: {e}")
    stream = cuda.Device(0).stream()
    try:
        with engine:
            engine.set_input(data.x)
            engine.enqueue(stream)
            out = engine.output(stream)
            assert rel_l2_error(out, reference(spec, data)) <= TOLERANCE[precision]
            layers = engine.layer_profile(stream, 5)
            assert layers and sum(t.share for t in layers) == pytest.approx(1.0)
            assert engine.info.extra.get("inspector_schema") in ("10.x", "11.x", "unknown")
            if "tactics" in engine.info.extra:
                assert [t["layer"] for t in engine.info.extra["tactics"]] == \
                    [layer["name"] for layer in engine.info.layers]
    finally:
        stream.close()
    assert np.isfinite(out).all()


# --- timing_cache = "fresh" ------------------------------------------------------------------
def _tree(root: Path) -> dict[str, tuple[int, str]]:
    """Every file under ``root``: (mtime_ns, sha256), to tell that a build touched nothing."""
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns,
                                       hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_fresh_builds_read_and_write_no_cache(tmp_path: Path) -> None:
    spec = ConvSpec(**SMALL, precision="fp16")
    fresh = spec.model_copy(update={"timing_cache": "fresh"})
    assert fresh.key != spec.key  # a recorded build option, so resume/compare tell them apart
    reuse, e = _build_info(spec, tmp_path)  # fills the engine cache for the same network
    if e is not None:
        e.close()
    assert not reuse.cache_hit and reuse.extra["timing_cache"] == "reuse"
    assert reuse.extra["engine_cache"] is True
    # a timing cache and a runtime cache where a build would look for them
    trt_dir = tmp_path / "tensorrt"
    (trt_dir / f"timing-{trt.__version__}-portable.cache").write_bytes(b"timing cache")
    (trt_dir / "runtime").mkdir(exist_ok=True)
    for key in (spec.key, fresh.key):
        (trt_dir / "runtime" / f"{key}-portable.cache").write_bytes(b"runtime cache")
    before = _tree(tmp_path)
    infos = []
    for _ in range(2):
        info, e = _build_info(fresh, tmp_path)
        if e is not None:
            e.close()
        infos.append(info)
    assert _tree(tmp_path) == before, "a fresh build read or wrote the cache directory"
    for info in infos:
        assert not info.cache_hit and info.build_s > 0 and info.plan_bytes > 0
        assert info.extra["timing_cache"] == "fresh" and info.extra["engine_cache"] is False
        assert info.extra["timing_cache_file"] is None
    # and reuse still hits what it stored
    again, e = _build_info(spec, tmp_path)
    if e is not None:
        e.close()
    assert again.cache_hit


def test_timing_cache_plan_per_mode_and_flavour(tmp_path: Path) -> None:
    from bench.backends.tensorrt import TENSORRT, TENSORRT_RTX, TimingCachePlan

    spec = ConvSpec(**SMALL)
    full = TimingCachePlan.for_build(spec, TENSORRT, "10.16.1", "sm90-GPU-x", tmp_path)
    assert full.timing_cache == tmp_path / "tensorrt" / "timing-10.16.1-sm90-GPU-x.cache"
    assert full.engine_cache is not None and full.runtime_cache_dir is None
    rtx = TimingCachePlan.for_build(spec, TENSORRT_RTX, "1.7", "portable", tmp_path)
    assert rtx.timing_cache is None and rtx.runtime_cache_dir == tmp_path / "tensorrt" / "runtime"
    fresh = spec.model_copy(update={"timing_cache": "fresh"})
    for fl in (TENSORRT, TENSORRT_RTX):
        p = TimingCachePlan.for_build(fresh, fl, "10.16.1", "sm90", tmp_path)
        assert (p.engine_cache, p.timing_cache, p.runtime_cache_dir) == (None, None, None)
        assert p.to_json() == {"timing_cache": "fresh", "timing_cache_file": None,
                               "engine_cache": False}


def test_device_index_reaches_the_build() -> None:
    spec = ConvSpec(**SMALL)
    info, e = None, None
    try:
        e = _backend().build(spec, make_data(spec), BuildContext(device_index=99))
    except NoSupportedGpu as err:
        info = err.build_info
        assert "no CUDA device 99" in str(err) or current_gpu(99) is not None
    if e is not None:
        info = e.info
        e.close()
    assert info.extra["device_index"] == 99
