"""``convbench suite from-onnx`` on real architectures exported to ONNX inside the test.

ResNet-18, MobileNetV3-small and EfficientNet-B0 (tests/models.py, random weights) are exported
once per session on the CPU; the unique conv shapes and counts read back from the ONNX file must
equal what forward hooks on the models' Conv2d modules saw.
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from bench.errors import BenchError  # noqa: E402
from bench.onnx_suite import read_convs, suite_from_onnx  # noqa: E402
from bench.suite import parse_suite  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from models import MODELS, conv_shapes, export_onnx  # noqa: E402

#: non-square and batch 2, so a swapped H/W or a lost batch shows; small, so export is quick
INPUT = (2, 3, 64, 96)


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, list[Any]]]:
    """model name → (ONNX file with a dynamic batch axis, conv calls seen by hooks)."""
    out = {}
    root = tmp_path_factory.mktemp("onnx")
    torch.manual_seed(0)
    for name, cls in MODELS.items():
        model = cls().eval()
        x = torch.randn(*INPUT)
        hooks = conv_shapes(model, x)
        path = root / f"{name}.onnx"
        export_onnx(model, x, path, dynamic_batch=True)
        out[name] = (path, hooks)
    return out


def _geometry(f: dict[str, Any]) -> tuple[Any, ...]:
    return (f["batch"], f["in_channels"], f["out_channels"], f["height"], f["width"],
            tuple(f["kernel"]), tuple(f["stride"]), tuple(f["padding"]), tuple(f["dilation"]),
            f["groups"])


@pytest.mark.parametrize("name", list(MODELS))
def test_unique_shapes_and_counts_equal_the_forward_hooks(
        exported: dict[str, tuple[Path, list[Any]]], name: str) -> None:
    path, hooks = exported[name]
    convs = read_convs(path, batch=INPUT[0])
    expected = collections.Counter(hooks)
    assert collections.Counter(_geometry(layer.fields) for layer in convs.layers) == expected
    # the suite's cases, as the runner expands them, carry the same shapes and counts
    suite = parse_suite(suite_from_onnx(path, batch=INPUT[0]))
    seen: collections.Counter[tuple[Any, ...]] = collections.Counter()
    for case in suite.cases:
        s = case.spec
        assert s.padding_end is None and case.count == len(case.nodes)
        seen[(s.batch, s.in_channels, s.out_channels, s.height, s.width, s.kernel, s.stride,
              s.padding, s.dilation, s.groups)] += case.count
    assert seen == expected
    assert suite.model is not None and suite.model.conv_nodes == len(hooks)
    assert suite.model.inputs == {"input": list(INPUT)}
    assert sum(c.count for c in suite.cases) == len(hooks)
    assert len({n for c in suite.cases for n in c.nodes}) == len(hooks)  # every node once


def test_resnet18_layers_relu_and_batch(exported: dict[str, tuple[Path, list[Any]]]) -> None:
    path, _ = exported["resnet18"]
    convs = read_convs(path, batch=8)
    assert {f.fields["batch"] for f in convs.layers} == {8}
    by_node = {layer.node: layer.fields for layer in convs.layers}
    # conv1 and each block's conv1 feed a Relu (BatchNormalization folded by the exporter);
    # conv2 feeds the residual Add and the downsample conv the Add too
    assert by_node["/conv1/Conv"]["activation"] == "relu"
    assert by_node["/layer1/layer1.0/conv1/Conv"]["activation"] == "relu"
    assert by_node["/layer1/layer1.0/conv2/Conv"]["activation"] == "none"
    assert by_node["/layer2/layer2.0/downsample/downsample.0/Conv"]["activation"] == "none"
    assert sum(f["activation"] == "relu" for f in by_node.values()) == 9
    unique = convs.unique()
    assert len(unique) == 15
    assert [u.count for u in unique if u.nodes[0] == "/layer1/layer1.0/conv2/Conv"] == [2]


def test_precision_sweep_and_cli(exported: dict[str, tuple[Path, list[Any]]], tmp_path: Path,
                                 cli_env: dict[str, str], python: str) -> None:
    import subprocess

    path, hooks = exported["mobilenet_v3_small"]
    out = tmp_path / "suites" / "mnv3.toml"
    cmd = [python, "-m", "bench", "suite", "from-onnx", str(path), "-o", str(out),
           "--input-shape", f"input:1x3x{INPUT[2]}x{INPUT[3]}", "--precision", "fp32", "fp16",
           "--backend", "torch"]
    r = subprocess.run(cmd, env=cli_env, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    suite = parse_suite(out.read_text())
    n_unique = len(read_convs(path, batch=1).unique())
    assert len(suite.cases) == 2 * n_unique
    assert {c.spec.precision for c in suite.cases} == {"fp32", "fp16"}
    assert {c.spec.batch for c in suite.cases} == {1}
    assert f"{len(hooks)} Conv node(s), {n_unique} unique, {2 * n_unique} case(s)" in r.stdout
    again = subprocess.run(cmd, env=cli_env, capture_output=True, text=True, check=False)
    assert again.returncode == 1 and "already exists (pass --force" in again.stderr


# --- bad inputs: one line naming the file and the node -------------------------------------------
def test_not_an_onnx_file(tmp_path: Path) -> None:
    bad = tmp_path / "model.onnx"
    bad.write_text("name = 'a suite, not a model'\n")
    with pytest.raises(BenchError, match=r"model\.onnx: not an ONNX model") as e:
        read_convs(bad)
    assert "\n" not in str(e.value)
    with pytest.raises(BenchError, match="no such file"):
        read_convs(tmp_path / "missing.onnx")


def test_dynamic_dims_need_an_input_shape(exported: dict[str, tuple[Path, list[Any]]]) -> None:
    path, _ = exported["resnet18"]
    with pytest.raises(BenchError) as e:
        read_convs(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}: node '/conv1/Conv': input shape [batch, 3, 64, 96] is "
                          "not static") and "--input-shape input:" in msg and "\n" not in msg
    with pytest.raises(BenchError, match="--input-shape nope: .* has no input 'nope'"):
        read_convs(path, input_shapes={"nope": [1, 3, 8, 8]})
    with pytest.raises(BenchError, match="--input-shape input: 3 dimensions, but .* has 4"):
        read_convs(path, input_shapes={"input": [3, 8, 8]})


def _graph(tmp_path: Path, x_shape: list[Any], w_shape: list[int], **attrs: Any) -> Path:
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.zeros(w_shape, dtype=np.float32), "w")
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="the_conv", **attrs)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                      x_shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
    path = tmp_path / "g.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_3d_convolution_is_refused(tmp_path: Path) -> None:
    path = _graph(tmp_path, [1, 4, 8, 8, 8], [4, 4, 3, 3, 3])
    with pytest.raises(BenchError, match=r"g\.onnx: node 'the_conv': a 3-D convolution .* "
                       r"2-D convolutions only"):
        read_convs(path)


def test_asymmetric_and_same_upper_pads(tmp_path: Path) -> None:
    """ONNX pads [top, left, bottom, right] and auto_pad SAME_UPPER become four-sided cases."""
    path = _graph(tmp_path, [1, 4, 9, 10], [8, 4, 3, 3], pads=[0, 1, 1, 2], strides=[2, 2])
    (layer,) = read_convs(path).layers
    assert layer.fields["padding"] == [0, 1] and layer.fields["padding_end"] == [1, 2]
    spec = parse_suite(suite_from_onnx(path)).cases[0].spec
    assert (spec.padding, spec.pad_end, spec.output_shape) == ((0, 1), (1, 2), (1, 8, 4, 6))
    # SAME_UPPER, stride 2, 3x3 on 10 wide: out 5, total pad 1, the odd pixel at the end
    path = _graph(tmp_path, [1, 4, 9, 10], [8, 4, 3, 3], auto_pad="SAME_UPPER", strides=[2, 2])
    (layer,) = read_convs(path).layers
    assert (layer.fields["padding"], layer.fields["padding_end"]) == ([1, 0], [1, 1])
    assert parse_suite(suite_from_onnx(path)).cases[0].spec.output_shape == (1, 8, 5, 5)


@pytest.mark.slow
def test_from_onnx_run_report_end_to_end(exported: dict[str, tuple[Path, list[Any]]],
                                         tmp_path: Path, cli_env: dict[str, str],
                                         python: str) -> None:
    """The issue's workflow on the CPU: from-onnx ResNet-18 → convbench run → report with the
    model roll-up, whose total is Σ median × count of the stored records."""
    import json
    import subprocess

    path, hooks = exported["resnet18"]
    suite_file = tmp_path / "suites" / "resnet18.toml"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        r = subprocess.run([python, "-m", "bench", *args], env=cli_env, capture_output=True,
                           text=True, check=False, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        return r

    cli("suite", "from-onnx", str(path), "-o", str(suite_file), "--batch", "1",
        "--backend", "torch")
    cli("run", str(suite_file), "--out", "results", "--warmup-s", "0", "--min-samples", "3",
        "--min-time-s", "0.005", "--max-time-s", "0.05", "--profile-iters", "0",
        "--no-progress", "--report")
    (run_dir,) = (tmp_path / "results" / "resnet18").iterdir()
    records = [json.loads(line) for line in (run_dir / "records.jsonl").read_text().splitlines()]
    suite = parse_suite(suite_file.read_text())
    count = {c.key: c.count for c in suite.cases}
    assert len(records) == len(suite.cases) == 15
    assert all(r["status"] == "ok" for r in records), [r["error"] for r in records]
    total = sum(r["stats"]["median"] * count[r["case_key"]] for r in records)
    (report,) = (tmp_path / "reports" / "resnet18").glob("*/report.md")
    md = report.read_text()
    assert f"## Model: {path.name}" in md and f"{len(hooks)} Conv nodes, 15 unique layers" in md
    row = next(line for line in md.splitlines() if line.startswith("| torch | fp32 | 15/15 |"))
    assert abs(float(row.split("|")[4]) - total) <= 1e-3 * total
    assert "## Model: top layers" in md


def test_a_model_without_conv_names_what_it_has(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="up")
    g = helper.make_graph([node], "g", [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8]),
        helper.make_tensor_value_info("w", TensorProto.FLOAT, [4, 4, 2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    path = tmp_path / "up.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(BenchError, match=r"up\.onnx: no 2-D Conv node in the model \(only 1 "
                       r"ConvTranspose, which convbench does not read\)"):
        read_convs(path)
