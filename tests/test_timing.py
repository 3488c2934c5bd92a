"""``measure()`` and its stopping criteria, on a fake clock and a fake sample source.

The fake source advances the fake clock by ``sample_s`` per call (time passes while a sample
runs, as on a real clock), so sample counts and times are exact.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable

import numpy as np
import pytest

from bench.errors import SuiteError
from bench.stats import rse
from bench.suite import TimingConfig, parse_suite
from bench.timing import (
    CRITERIA,
    HostSource,
    StoppingCriterion,
    TimingSettings,
    make_criterion,
    measure,
    register_criterion,
)

# two values 2**-7 apart: relative std ~0.39 %, below the 0.5 % defaults, all exact in binary
LOW = (1.0, 1.0078125)
NOISY = (1.0, 3.0)  # relative std ~50 %: rse needs ~10 000 samples for 0.5 %


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class FakeSource:
    mode = "host"

    def __init__(self, clock: FakeClock, values: Iterable[float], sample_s: float = 0.125,
                 iters_per_sample: int = 100) -> None:
        self.clock, self.sample_s, self.iters_per_sample = clock, sample_s, iters_per_sample
        self._values = itertools.cycle(values)
        self.calls = 0

    def __call__(self) -> float:
        self.calls += 1
        self.clock.t += self.sample_s
        return next(self._values)


def run(values: Iterable[float], sample_s: float = 0.125, iters_per_sample: int = 100,
        **settings: object):
    clock = FakeClock()
    source = FakeSource(clock, values, sample_s, iters_per_sample)
    base = {"warmup_s": 0.25, "max_time_s": 10.0} | settings
    return measure(source, TimingSettings(**base), clock=clock), source  # type: ignore[arg-type]


# --- rse ---------------------------------------------------------------------------------------
def test_rse_converges_at_min_samples_on_low_noise_data() -> None:
    s, source = run(LOW, min_samples=10, min_time_s=0.5, target_rse=0.005)
    assert len(s.ms) == 10 and s.converged and s.stopped_by == "target"
    assert source.calls == 12  # 2 warm-up samples (0.25 s), then 10
    assert (s.warmup_s, s.wall_s) == (0.25, 1.5)
    assert s.criterion == {"name": "rse", "target_rse": 0.005, "min_samples": 10,
                           "min_time_s": 0.5}
    a = np.asarray(s.ms)
    assert s.rse == pytest.approx(rse(s.ms), rel=1e-12)
    assert s.relstd == pytest.approx(float(a.std(ddof=1) / a.mean()), rel=1e-12)


def test_rse_honours_min_time() -> None:
    # 2 samples would do; 2.0 s of sampling at 0.125 s a sample is 16
    s, _ = run(LOW, min_samples=2, min_time_s=2.0, target_rse=0.005)
    assert len(s.ms) == 16 and s.converged and s.wall_s - s.warmup_s == 2.0


def test_rse_honours_min_samples_over_min_time() -> None:
    s, _ = run(LOW, min_samples=40, min_time_s=0.0, target_rse=0.5)
    assert len(s.ms) == 40 and s.converged


def test_rse_target_decides_when_minimums_are_met() -> None:
    # noisy data meets rse <= 0.2 once 0.5/sqrt(n) (about) drops below it: the exact n is the
    # first with rse(prefix) <= 0.2, n >= 2
    s, _ = run(NOISY, min_samples=2, min_time_s=0.0, target_rse=0.2)
    expect = next(n for n in range(2, 100)
                  if rse([NOISY[i % 2] for i in range(n)]) <= 0.2)
    assert len(s.ms) == expect == 8 and s.converged


def test_rse_noisy_data_hits_max_time_kept_and_not_converged() -> None:
    s, _ = run(NOISY, min_samples=10, min_time_s=0.5, target_rse=0.005, max_time_s=1.0)
    assert len(s.ms) == 8 and not s.converged and s.stopped_by == "max_time"
    assert s.ms == [1.0, 3.0] * 4 and s.rse == pytest.approx(rse(s.ms), rel=1e-12)
    d = s.to_json()
    assert d["converged"] is False and d["criterion"]["name"] == "rse"


def test_at_least_two_samples_even_past_max_time() -> None:
    s, _ = run(NOISY, min_samples=10, max_time_s=0.01)
    assert len(s.ms) == 2 and not s.converged


def test_many_samples_keep_exact_running_noise() -> None:
    # 20 000 samples (the quadratic case) run in well under a second and the running
    # rse equals the two-pass one over all samples
    x = np.random.default_rng(3).normal(1.0, 0.2, 1000).tolist()
    s, _ = run(x, sample_s=0.0005, min_samples=10, target_rse=1e-6, max_time_s=10.0)
    assert len(s.ms) == 20_000 and not s.converged
    assert s.rse == pytest.approx(rse(s.ms), rel=1e-9)


# --- stdrel (nvbench) ------------------------------------------------------------------------
def nvbench_stdrel_stop(values: list[float], min_samples: int, max_noise: float,
                        min_time_s: float, iters: int) -> tuple[int, str] | None:
    """An independent, array-based transcription of nvbench's stdrel + measure_cold gate
    (stdrel_criterion.cxx:47-139, measure_cold.cu:183): the first n it stops at, and why."""
    noise: list[float] = []
    invalid = 0
    for n in range(1, len(values) + 1):
        a = np.asarray(values[:n])
        if n >= 5:
            mean, std = float(a.mean()), float(a.std(ddof=1))
            v = std / mean if mean > 0 else math.nan
            if math.isfinite(v):
                invalid = 0
                noise.append(v)
            else:
                invalid += 1
        if n < min_samples:
            continue
        if invalid >= 64:
            return n, "invalid_noise"
        if float(a.mean()) * n * iters / 1e3 <= min_time_s or not noise or invalid:
            continue
        if noise[-1] < max_noise:
            return n, "target"
        window = np.asarray(noise[-512:])
        if len(window) > 64 and n % 16 == 0 and window.var() < (window.mean() * 0.05) ** 2:
            return n, "plateau"
    return None


def test_stdrel_converges_after_its_min_time_of_measured_time() -> None:
    # nvbench's min-time counts measured time (mean * n of the samples): 10 inferences of
    # ~1.004 ms a sample pass 0.5 s at the 50th sample, though 6.25 s of wall time have passed
    s, _ = run(LOW, iters_per_sample=10, criterion="stdrel", min_samples=10, min_time_s=0.5,
               max_noise=0.005)
    assert len(s.ms) == 50 and s.converged and s.stopped_by == "target"
    assert nvbench_stdrel_stop(list(s.ms), 10, 0.005, 0.5, 10) == (50, "target")
    assert s.relstd < 0.005 and s.relstd == pytest.approx(
        float(np.std(s.ms, ddof=1) / np.mean(s.ms)), rel=1e-12)
    assert s.criterion == {"name": "stdrel", "max_noise": 0.005, "min_time_s": 0.5,
                           "min_samples": 10}


def test_stdrel_honours_min_samples() -> None:
    s, _ = run(LOW, criterion="stdrel", min_samples=60, min_time_s=0.0)
    assert len(s.ms) == 60 and s.converged


def test_stdrel_needs_five_samples_for_a_noise_estimate() -> None:
    # nvbench: no noise value before the 5th sample (statistics.cuh:55), so min_samples=2
    # still takes 5
    s, _ = run(LOW, criterion="stdrel", min_samples=2, min_time_s=0.0)
    assert len(s.ms) == 5 and s.stopped_by == "target"


def test_stdrel_plateau_exit_on_stable_noise_above_target() -> None:
    # noise ~33 % never reaches 0.5 %, but after 64+ noise values (5th sample on) it is stable:
    # nvbench checks every 16th sample, so the first chance is sample 80, and it stops there
    s, _ = run(NOISY, criterion="stdrel", min_samples=10, min_time_s=0.0, max_noise=0.005)
    assert len(s.ms) == 80 and s.converged and s.stopped_by == "plateau"
    assert s.relstd > 0.3
    assert nvbench_stdrel_stop([NOISY[i % 2] for i in range(200)], 10, 0.005, 0.0, 100) == (
        80, "plateau")


def test_stdrel_plateau_exit_matches_nvbench_on_drifting_noise() -> None:
    # 100 quiet samples (2 %), then noisy ones (20 %): the noise climbs, and settles only once
    # the quiet era's noise values have left nvbench's 512-value window. Sample 736 here; with
    # an unbounded window it would never stop, with a 256-value one at 480.
    rng = np.random.default_rng(0)
    x = np.concatenate([np.exp(rng.normal(0, 0.02, 100)),
                        np.exp(rng.normal(0, 0.2, 3900))]).tolist()
    assert nvbench_stdrel_stop(x, 10, 0.005, 0.0, 100) == (736, "plateau")
    s, _ = run(x, sample_s=0.001, warmup_s=0.0, criterion="stdrel", min_samples=10,
               min_time_s=0.0, max_noise=0.005)
    assert s.ms == x[:736] and (s.stopped_by, s.converged) == ("plateau", True)


def test_stdrel_gives_up_after_64_invalid_noise_estimates() -> None:
    # a zero mean has no relative noise: nvbench stops after 64 invalid ones (samples 5..68)
    s, _ = run([0.0], criterion="stdrel", min_samples=10, min_time_s=0.5)
    assert len(s.ms) == 68 and s.stopped_by == "invalid_noise"
    assert s.to_json()["rse"] is None and s.to_json()["relstd"] is None


def test_stdrel_hits_max_time_when_measured_time_stays_short() -> None:
    # 1 inference of 1 ms a sample, 0.125 s of wall time each: 8 samples measure 8 ms < 0.5 s
    s, _ = run(LOW, iters_per_sample=1, criterion="stdrel", min_samples=2, min_time_s=0.5,
               max_time_s=1.0)
    assert len(s.ms) == 8 and not s.converged and s.stopped_by == "max_time"


# --- fixed (trtexec) -------------------------------------------------------------------------
def test_fixed_stops_at_exactly_the_count() -> None:
    s, _ = run(NOISY, criterion="fixed", fixed_samples=7, fixed_time_s=0.0)
    assert len(s.ms) == 7 and s.converged and s.stopped_by == "fixed"
    assert s.criterion == {"name": "fixed", "fixed_samples": 7, "fixed_time_s": 0.0}


def test_fixed_stops_at_exactly_the_duration() -> None:
    s, _ = run(NOISY, criterion="fixed", fixed_samples=1, fixed_time_s=1.0)
    assert len(s.ms) == 8 and s.wall_s - s.warmup_s == 1.0 and s.converged


def test_fixed_needs_both_count_and_duration_like_trtexec() -> None:
    s, _ = run(NOISY, criterion="fixed", fixed_samples=20, fixed_time_s=1.0)
    assert len(s.ms) == 20
    s, _ = run(NOISY, criterion="fixed", fixed_samples=3, fixed_time_s=1.0)
    assert len(s.ms) == 8


def test_fixed_ignores_min_samples_and_noise() -> None:
    s, _ = run(NOISY, criterion="fixed", fixed_samples=4, fixed_time_s=0.0, min_samples=50,
               min_time_s=5.0, target_rse=1e-9)
    assert len(s.ms) == 4 and s.converged


def test_fixed_count_past_max_time_is_kept_and_not_converged() -> None:
    s, _ = run(LOW, criterion="fixed", fixed_samples=100, fixed_time_s=0.0, max_time_s=1.0)
    assert len(s.ms) == 8 and not s.converged and s.stopped_by == "max_time"


# --- protocol, registry, real clock ------------------------------------------------------------
def test_criteria_registry_and_unknown_name() -> None:
    assert list(CRITERIA) == ["rse", "stdrel", "fixed"]
    with pytest.raises(Exception, match="no stopping criterion named 'nope'"):
        make_criterion("nope")
    with pytest.raises(ValueError, match="already registered"):
        register_criterion(CRITERIA["rse"])


def test_a_criterion_can_be_driven_by_hand() -> None:
    clock = FakeClock()
    c = make_criterion("rse")
    c.initialize(TimingSettings(min_samples=3, min_time_s=0.0), clock=clock)
    for v in (1.0, 1.0, 1.0):
        assert not c.is_finished() or c.stats.n == 3
        c.add_measurement(v)
    assert c.is_finished() and c.reason == "target" and c.stats.rse == 0.0
    c.initialize(TimingSettings(min_samples=3, min_time_s=0.0), clock=clock)  # a fresh run
    assert c.stats.n == 0 and not c.is_finished()


def test_a_registered_custom_criterion_is_used_by_measure() -> None:
    @register_criterion
    class FirstFive(StoppingCriterion):
        name = "first-five"
        params = ()

        def _finished_impl(self) -> str:
            return "five" if self.stats.n >= 5 else ""

    try:
        clock = FakeClock()
        s = measure(FakeSource(clock, NOISY), TimingSettings(criterion="first-five"),
                    clock=clock)
        assert len(s.ms) == 5 and s.stopped_by == "five"
        assert s.criterion == {"name": "first-five"}
    finally:
        del CRITERIA["first-five"]


def test_measure_with_the_real_clock_and_host_source() -> None:
    s = measure(HostSource(lambda: sum(range(200)), min_sample_s=1e-4),
                TimingSettings(warmup_s=0.01, min_samples=5, min_time_s=0.02, max_time_s=2.0,
                               criterion="fixed", fixed_samples=5, fixed_time_s=0.02))
    assert len(s.ms) >= 5 and s.wall_s - s.warmup_s >= 0.02 and s.converged
    assert s.to_json()["criterion"] == {"name": "fixed", "fixed_samples": 5,
                                        "fixed_time_s": 0.02}


# --- [timing] keys -----------------------------------------------------------------------------
BASE = """name = "t"
[defaults]
in_channels = 4
out_channels = 4
height = 8
width = 8
[timing]
"""


def test_timing_config_defaults_and_settings() -> None:
    t = TimingConfig()
    assert (t.criterion, t.max_noise, t.fixed_time_s, t.fixed_samples) == ("rse", 0.005, 3.0, 10)
    s = parse_suite(BASE + "criterion = 'stdrel'\nmax_noise = 0.01\n").timing.settings()
    assert (s.criterion, s.max_noise) == ("stdrel", 0.01)
    s = parse_suite(BASE + "criterion = 'fixed'\nfixed_time_s = 0.0\nfixed_samples = 50\n"
                    ).timing.settings()
    assert (s.criterion, s.fixed_time_s, s.fixed_samples) == ("fixed", 0.0, 50)


@pytest.mark.parametrize("text,key", [
    ("criterion = 'median'", "timing.criterion"),
    ("max_noise = 0.0", "timing.max_noise"),
    ("max_noise = nan", "timing.max_noise"),
    ("fixed_time_s = inf", "timing.fixed_time_s"),
    ("fixed_time_s = -1.0", "timing.fixed_time_s"),
    ("fixed_samples = 0", "timing.fixed_samples"),
    ("criterion = 'fixed'\nfixed_time_s = 20.0", "timing.fixed_time_s"),
])
def test_bad_criterion_keys_are_one_line_errors(text: str, key: str) -> None:
    with pytest.raises(SuiteError) as e:
        parse_suite(BASE + text + "\n", source="s.toml")
    msg = str(e.value)
    assert msg.startswith(f"s.toml: {key}: ") and "\n" not in msg


def test_a_fixed_time_within_max_time_is_accepted() -> None:
    t = parse_suite(BASE + "criterion = 'fixed'\nfixed_time_s = 20.0\nmax_time_s = 30.0\n").timing
    assert t.settings().fixed_time_s == 20.0
    # fixed_time_s only binds for criterion = "fixed"
    assert parse_suite(BASE + "fixed_time_s = 20.0\n").timing.criterion == "rse"
