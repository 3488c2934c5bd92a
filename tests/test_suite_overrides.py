"""One-off cases (--case) and axis overrides (--set): suite text validated like a file."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.errors import BenchError
from bench.suite import parse_suite
from bench.suite_overrides import apply_sets, one_off_suite, parse_value

ROOT = Path(__file__).resolve().parents[1]


def test_values_read_as_toml_would() -> None:
    assert [parse_value(v) for v in ("8", "3x1", "true", "0.5", "fp16", "256MiB", "same")] == \
        [8, [3, 1], True, 0.5, "fp16", "256MiB", "same"]


def test_one_off_cases_become_a_suite_whose_text_reads_back() -> None:
    s = one_off_suite(["batch=8,in_channels=64,out_channels=64,height=56,width=56,kernel=3,"
                       "padding=1", "in_channels=3,out_channels=8,height=9,width=9,kernel=3x1,"
                       "padding_end=1x0,precision=fp16,label=stem"], backends=["torch"])
    assert [c.spec.short_name() for c in s.cases] == [
        "fp32-n8-c64-k64-56x56-r3-s1-p1", "fp16-n1-c3-k8-9x9-r3x1-s1-pt0l0b1r0"]
    assert s.cases[1].label == "stem" and s.backends == ("torch",)
    again = parse_suite(s.text)  # what run.json stores runs the same cases
    assert [c.key for c in again.cases] == [c.key for c in s.cases]


@pytest.mark.parametrize("text,needle", [
    ("batch=8,kernal=3", "--case 'batch=8,kernal=3': unknown conv field 'kernal'"),
    ("batch", "--case 'batch': expected FIELD=VALUE pairs"),
    ("batch=1,batch=2", "batch given twice"),
    ("in_channels=8,out_channels=8,height=2,width=2,kernel=5",
     "--case 'in_channels=8,out_channels=8,height=2,width=2,kernel=5': kernel"),
    ("in_channels=8,out_channels=8,height=8,width=8,precision=fp64", "precision"),
])
def test_bad_one_off_cases_name_the_flag(text: str, needle: str) -> None:
    with pytest.raises(BenchError) as e:
        one_off_suite([text])
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_set_replaces_or_adds_axes_and_wins_everywhere() -> None:
    suite = parse_suite("""
name = "t"
[defaults]
in_channels = 8
out_channels = 8
height = 8
width = 8
batch = 4
[sweep]
precision = ["fp32"]
[[zip]]
kernel = [1, 3]
groups = [1, 2]
[[cases]]
label = "a"
batch = 2
""")
    s = apply_sets(suite, ["precision=fp16,fp32", "batch=1,8", "groups=1"])
    assert len(s.cases) == 2 * 2 * 2  # precision × batch × the zip's kernel
    assert {(c.spec.precision, c.spec.batch, c.spec.groups) for c in s.cases} == {
        (p, b, 1) for p in ("fp16", "fp32") for b in (1, 8)}
    assert {c.spec.kernel for c in s.cases} == {(1, 1), (3, 3)} and s.cases[0].label == "a"
    assert parse_suite(s.text).cases == s.cases


def test_set_on_a_shipped_suite_and_bad_sets() -> None:
    from bench.suite import load_suite

    base = load_suite(ROOT / "suites" / "quickstart.toml")
    s = apply_sets(base, ["precision=fp16"])
    assert {c.spec.precision for c in s.cases} == {"fp16"} and s.path == base.path
    for sets, needle in [(["precison=fp16"], "--set precison=fp16: unknown conv field"),
                         (["precision"], "--set precision: expected AXIS=V1,V2"),
                         (["batch=1,1"], "a value is given twice"),
                         (["precision=fp64"], "with --set precision=fp64: cases[0] "
                          "(precision=fp64): precision: Input should be")]:
        with pytest.raises(BenchError) as e:
            apply_sets(base, sets)
        assert needle in str(e.value), str(e.value)
