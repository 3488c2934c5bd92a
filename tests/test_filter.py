"""--filter is parsed safely and selects the right cases."""

from __future__ import annotations

import pytest

from bench.errors import BenchError
from bench.filter import parse_filter
from bench.suite import parse_suite

SUITE = parse_suite("""
name = "f"
[defaults]
in_channels = 16
out_channels = 16
height = 8
width = 8
padding = "same"
[sweep]
kernel = [1, 3]
precision = ["fp32", "fp16"]
batch = [1, 8]
""")


@pytest.mark.parametrize("expr,count", [
    ("precision == 'fp16'", 4),
    ("precision == 'fp16' and batch >= 8", 2),
    ("kernel == [3, 3] or batch == 1", 6),
    ("not precision in ['fp16']", 4),
    ("precision not in ('fp16', 'bf16')", 4),
    ("1 <= batch < 8", 4),
    ("index == 0", 1),
])
def test_selection(expr: str, count: int) -> None:
    pred = parse_filter(expr)
    assert sum(pred(c) for c in SUITE.cases) == count


@pytest.mark.parametrize("expr,needle", [
    ("__import__('os').system('true')", "not a comparison"),
    ("precision == open('x').read()", "only field names and constants"),
    ("colour == 'red'", "unknown field 'colour'"),
    ("batch ==", "invalid expression"),
    ("batch.__class__ == 1", "only field names and constants"),
    ("batch + 1 == 2", "only field names and constants"),
    ("x" * 2000, "longer than"),
])
def test_malicious_or_bad_filters_are_one_line_errors(expr: str, needle: str) -> None:
    with pytest.raises(BenchError, match=needle) as e:
        parse_filter(expr)
    assert "\n" not in str(e.value)
