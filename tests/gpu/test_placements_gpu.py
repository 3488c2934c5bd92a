"""Buffer placements on a real GPU: torch and cuDNN engines move their buffers to new device
memory and still compute the right output; a sweep with ``placements = 4`` times every case
at four placements, pools their samples and widens the within-pass interval over them.

Marked ``gpu``. On the H200: ``python3 -m pytest -m gpu tests/gpu/test_placements_gpu.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from bench.spec import ConvSpec
from bench.suite import Case, TimingConfig

pytestmark = pytest.mark.gpu

QUICK = TimingConfig(mode="graph", warmup_s=0.05, min_samples=8, min_time_s=0.2,
                     max_time_s=2.0, profile_iters=0, placements=4)
#: MobileNetV2's pointwise conv in fp16 (7.4 µs): the case placement moved most on the H200
POINTWISE = dict(batch=8, in_channels=144, out_channels=24, height=56, width=56, kernel=1,
                 padding=0, precision="fp16", algo="heuristic")


@pytest.fixture(scope="module")
def gpu() -> Iterator[Any]:
    from bench.runner import GpuSession

    session = GpuSession(0, cold=False)
    yield session
    session.close()


def _backend(name: str) -> Any:
    from bench.backends.registry import get_backend

    backend = get_backend(name)
    ok, why = backend.available()
    if not ok:
        pytest.skip(f"{name}: {why}")
    return backend


@pytest.mark.parametrize("name", ["torch", "cudnn"])
def test_a_relocated_engine_has_new_buffers_and_the_right_output(name: str, gpu: Any) -> None:
    from bench.runner import build_step, check_step

    backend = _backend(name)
    spec = ConvSpec(**POINTWISE)
    engine, data = build_step(Case(0, spec), backend, _ctx())
    try:
        before = _pointers(engine)
        assert check_step(engine, data, gpu.stream).passed
        assert engine.movable
        engine.relocate(1)
        engine.relocate(2)
        after = _pointers(engine)
        assert not set(before) & set(after), (before, after)
        check = check_step(engine, data, gpu.stream)  # the input is set again, the weights moved
        assert check.passed, check
    finally:
        engine.close()


@pytest.mark.parametrize("name", ["torch", "cudnn"])
def test_a_case_is_timed_at_four_placements(name: str, gpu: Any) -> None:
    from bench.runner import measure_case

    backend = _backend(name)
    rec, _ = measure_case(Case(0, ConvSpec(**POINTWISE)), backend, QUICK, gpu, None)
    assert rec.status == "ok", rec.error
    t, st = rec.timing, rec.stats
    assert t is not None and st is not None
    assert [p.index for p in t.placements] == [0, 1, 2, 3] and t.placements_note is None
    # the replay is sized once: the later placements keep the first one's inferences
    assert len({p.iters_per_sample for p in t.placements}) == 1
    assert t.placements[0].iters_per_sample == rec.timing.iters_per_sample > 1
    assert sum(p.samples for p in t.placements) == st.n == len(rec.samples_ms)
    meds = [p.median_ms for p in t.placements]
    assert t.placement_spread_pct == pytest.approx((max(meds) - min(meds)) / min(meds) * 100)
    import statistics

    from bench.stats import t95

    half = t95(3) * statistics.stdev(meds) / 2
    assert st.median_ci_low <= st.median - half + 1e-12
    assert st.median_ci_high >= st.median + half - 1e-12
    assert rec.interval is not None and rec.interval[2] == "within pass, over 4 placements"
    print(f"\n{name}: placements {[round(m * 1e3, 3) for m in meds]} µs, pooled median "
          f"{st.median * 1e3:.3f} µs, interval {st.median_ci_low * 1e3:.3f}-"
          f"{st.median_ci_high * 1e3:.3f} µs, spread {t.placement_spread_pct:.2f} %")


def _ctx() -> Any:
    from bench.backends.base import BuildContext

    return BuildContext(device_index=0)


def _pointers(engine: Any) -> list[int]:
    if hasattr(engine, "_bufs"):  # cudnn
        return [b.ptr for b in engine._bufs.values()]
    return [t.data_ptr() for t in (engine._x, engine._w, engine._b) if t is not None]
