"""Suite loading: expansion, and one clear line per kind of bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.errors import SuiteError
from bench.suite import load_suite, parse_suite

ROOT = Path(__file__).resolve().parents[1]
BASE = """
name = "t"
[defaults]
in_channels = 8
out_channels = 8
height = 8
width = 8
"""


def test_cartesian_zip_and_cases_expand_in_order() -> None:
    s = parse_suite(BASE + """
[sweep]
kernel = [1, 3]
precision = ["fp32", "fp16", "bf16"]
[[zip]]
groups = [1, 2]
dilation = [1, 2]
""")
    assert len(s.cases) == 2 * 3 * 2
    assert [c.index for c in s.cases] == list(range(12))
    first = s.cases[0].spec
    assert (first.kernel, first.precision, first.groups) == ((1, 1), "fp32", 1)
    assert s.cases[1].spec.groups == 2 and s.cases[1].spec.dilation == (2, 2)


def test_cases_list_crossed_with_sweep_and_labels_kept() -> None:
    s = parse_suite(BASE + """
[sweep]
batch = [1, 32]
[[cases]]
label = "a"
kernel = 1
[[cases]]
label = "b"
kernel = 3
padding = 1
""")
    assert [(c.label, c.spec.batch) for c in s.cases] == [("a", 1), ("a", 32), ("b", 1),
                                                          ("b", 32)]
    # each point of a swept labelled case has its own name
    assert [c.name for c in s.cases] == ["a batch=1", "a batch=32", "b batch=1", "b batch=32"]


def test_duplicate_convs_run_once() -> None:
    s = parse_suite(BASE + '[sweep]\npadding = [1, "same"]\n')
    assert len(s.cases) == 1


@pytest.mark.parametrize("text,needle", [
    ("name = ", "invalid TOML"),
    ("", "empty suite"),
    ("colour = 'red'\n" + BASE, "colour: unknown key"),
    (BASE.replace("in_channels = 8", "in_chanels = 8"), "unknown conv field 'in_chanels'"),
    (BASE.replace("height = 8", "height = 'tall'"), "height"),
    (BASE.replace("height = 8", "height = -2"), "height must be positive"),
    (BASE + "kernel = 9\n", "larger than the padded height"),
    (BASE + "groups = 3\n", "divisible by groups"),
    (BASE + "[sweep]\nkernel = []\n", "kernel: empty list"),
    (BASE + "[[zip]]\nkernel = [1, 3]\nstride = [1]\n", "equal lengths"),
    (BASE + "[timing]\nmode = 'fast'\n", "timing.mode"),
    (BASE + "[sweep]\nkernel = [1]\n[[cases]]\nkernel = 3\n", "also swept"),
    (BASE.replace('name = "t"', 'name = "a/b"'), "name"),
    (BASE + "[sweep]\nbatch = [1, 2, 3, 4]\nkernel = [1, 3, 5]\n", "more than the limit of 10"),
])
def test_bad_suites_give_one_line_naming_file_and_key(tmp_path: Path, text: str,
                                                     needle: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(SuiteError) as e:
        load_suite(path, max_cases=10)
    msg = str(e.value)
    assert msg.startswith(f"{path}: ")
    assert needle in msg
    assert "\n" not in msg


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(SuiteError, match="no such suite file"):
        load_suite(tmp_path / "nope.toml")
    with pytest.raises(SuiteError, match="is a directory"):
        load_suite(tmp_path)


def test_not_utf8(tmp_path: Path) -> None:
    p = tmp_path / "latin1.toml"
    p.write_bytes(b'name = "caf\xe9"\n')
    with pytest.raises(SuiteError, match="not UTF-8"):
        load_suite(p)


def test_every_shipped_suite_loads() -> None:
    suites = sorted((ROOT / "suites").glob("*.toml"))
    assert suites, "no suites shipped"
    for path in suites:
        s = load_suite(path)
        assert s.cases, path
        assert s.name == path.stem, f"{path}: name {s.name!r} differs from the file name"


def test_quickstart_is_small() -> None:
    s = load_suite(ROOT / "suites" / "quickstart.toml")
    assert 1 <= len(s.cases) <= 12


MODEL_SUITE = """
name = "m"
[model]
file = "net.onnx"
sha256 = "%s"
inputs = { input = [1, 3, 32, 32] }
conv_nodes = 3
[defaults]
in_channels = 8
out_channels = 8
height = 8
width = 8
[sweep]
precision = ["fp32", "fp16"]
[[cases]]
label = "a"
count = 2
nodes = ["/a/Conv", "/b/Conv"]
[[cases]]
label = "c"
nodes = ["/c/Conv"]
kernel = 1
""" % ("ab" * 32)


def test_model_metadata_stays_out_of_the_spec_and_the_key() -> None:
    s = parse_suite(MODEL_SUITE)
    assert s.model is not None and s.model.file == "net.onnx" and s.model.conv_nodes == 3
    assert [(c.label, c.count, c.nodes) for c in s.cases] == [
        ("a", 2, ("/a/Conv", "/b/Conv")), ("a", 2, ("/a/Conv", "/b/Conv")),
        ("c", 1, ("/c/Conv",)), ("c", 1, ("/c/Conv",))]
    plain = parse_suite(BASE + "[sweep]\nprecision = ['fp32', 'fp16']\n")
    assert s.cases[0].key == plain.cases[0].key  # count/nodes/[model] change no case key


def test_two_listed_layers_that_are_one_conv_add_their_counts() -> None:
    text = MODEL_SUITE.replace("kernel = 1\n", "")
    s = parse_suite(text)
    assert [(c.count, c.nodes) for c in s.cases] == [
        (3, ("/a/Conv", "/b/Conv", "/c/Conv"))] * 2


@pytest.mark.parametrize("change,needle", [
    (("count = 2", "count = 0"), "cases[0].count: must be a positive integer"),
    (("count = 2", "count = true"), "cases[0].count: must be a positive integer"),
    (('nodes = ["/c/Conv"]', "nodes = [1]"), "cases[1].nodes: must be a list of strings"),
    (('file = "net.onnx"', 'file = "net.onnx"\nopset = 3'), "model.opset: unknown key"),
    (("sha256 = ", "sha = "), "model.sha"),
    (("label = \"c\"", "label = \"c\"\ncounts = 1"), "unknown conv field 'counts'"),
])
def test_bad_model_metadata(change: tuple[str, str], needle: str) -> None:
    with pytest.raises(SuiteError, match=r"^m\.toml: ") as e:
        parse_suite(MODEL_SUITE.replace(*change), source="m.toml")
    assert needle in str(e.value)
