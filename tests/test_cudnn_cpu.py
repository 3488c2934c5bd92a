"""The cudnn backend without a GPU: registry, the reasons it gives, and the graph it describes
(NHWC strides, one fused graph). The GPU tests are in tests/gpu/test_cudnn_backend.py."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bench.backends.registry import BACKENDS, get_backend
from bench.spec import ConvSpec
from bench.suite import load_suite


def test_cudnn_is_a_known_backend_that_runs_on_cuda(tmp_path: Path) -> None:
    assert "cudnn" in BACKENDS
    b = get_backend("cudnn")
    assert b.name == "cudnn" and b.device == "cuda"
    path = tmp_path / "x.toml"
    path.write_text('name = "x"\nbackends = ["cudnn", "torch"]\n'
                    '[[cases]]\nin_channels = 8\nout_channels = 8\nheight = 8\nwidth = 8\n')
    assert load_suite(path).backends == ("cudnn", "torch")


def test_without_the_frontend_the_reason_names_the_install_command(
        cli_env: dict[str, str]) -> None:
    code = textwrap.dedent("""
        import importlib.abc, sys
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split('.')[0] == 'cudnn':
                    raise ImportError(f'blocked {name}')
        sys.meta_path.insert(0, Block())
        from bench.backends.registry import get_backend
        b = get_backend('cudnn')
        print(b.available())
        print(b.versions())
    """)
    out = subprocess.run([sys.executable, "-c", code], env=cli_env, capture_output=True,
                         text=True, check=False)
    assert out.returncode == 0, out.stderr
    ok_line, versions = out.stdout.strip().splitlines()
    assert ok_line.startswith("(False,") and "pip install 'trt-convbench[cudnn]'" in ok_line
    assert versions == "{}"


def _cudnn():  # type: ignore[no-untyped-def]
    try:
        import cudnn
    except ImportError as e:
        pytest.skip(f"nvidia-cudnn-frontend is not installed ({e}): pip install --no-deps "
                    "nvidia-cudnn-frontend")
    return cudnn


def test_without_a_gpu_the_backend_says_it_needs_one() -> None:
    _cudnn()
    from bench.gpu.cuda import unavailable_reason

    reason = unavailable_reason()
    if reason is None:
        pytest.skip("a CUDA GPU is present: the GPU tests cover this backend")
    ok, why = get_backend("cudnn").available()
    assert not ok and why.startswith("needs a CUDA GPU") and reason in why


def test_the_graph_is_one_fused_nhwc_graph() -> None:
    from bench.backends.cudnn import make_graph, nhwc_strides

    cudnn = _cudnn()
    spec = ConvSpec(batch=16, in_channels=128, out_channels=64, height=56, width=56, kernel=3,
                    padding=1, stride=1, activation="relu", precision="fp16")
    g, t = make_graph(cudnn, spec, None)  # building the graph needs no GPU; validate() does
    assert [n.name for n in g.nodes] == ["conv", "bias", "relu"]
    assert list(t["x"].get_stride()) == [56 * 56 * 128, 1, 56 * 128, 128]
    assert list(t["w"].get_dim()) == [64, 128, 3, 3]
    assert list(t["w"].get_stride()) == [128 * 9, 1, 3 * 128, 128]  # KRSC
    assert list(t["b"].get_dim()) == [1, 64, 1, 1]
    assert list(t["y"].get_dim()) == list(spec.output_shape)
    assert list(t["y"].get_stride()) == nhwc_strides(spec.output_shape)
    assert all(v.get_data_type() == cudnn.data_type.HALF for v in t.values())
    conv = g.nodes[0].params
    assert conv["pre_padding"] == conv["post_padding"] == [1, 1]


def test_a_grouped_strided_conv_without_bias_is_a_conv_alone() -> None:
    from bench.backends.cudnn import make_graph

    cudnn = _cudnn()
    spec = ConvSpec(batch=2, in_channels=8, out_channels=16, height=9, width=9, kernel=3,
                    stride=2, dilation=2, groups=2, bias=False, precision="bf16")
    g, t = make_graph(cudnn, spec, None)
    assert [n.name for n in g.nodes] == ["conv"] and set(t) == {"x", "w", "y"}
    assert list(t["w"].get_dim()) == [16, 4, 3, 3]  # C/g input channels per group
    assert g.nodes[0].params["stride"] == [2, 2] and g.nodes[0].params["dilation"] == [2, 2]
    assert list(t["y"].get_dim()) == list(spec.output_shape)
    assert t["y"].get_data_type() == cudnn.data_type.BFLOAT16


def test_the_fidelity_benchmark_takes_the_cudnn_backend() -> None:
    import importlib.util

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("convbench_fidelity_cudnn",
                                                  root / "benchmarks" / "fidelity.py")
    assert spec and spec.loader
    fidelity = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = fidelity  # dataclasses look their module up
    spec.loader.exec_module(fidelity)
    assert fidelity.parse_args(["--backend", "cudnn"]).backend == "cudnn"
    assert fidelity.parse_args([]).backend == "torch"
    meta = {"gpu": "H200", "command": "fidelity.py --backend cudnn", "date": "today",
            "torch": "2.11", "cudnn": 91900, "driver": "13.0", "ncu_version": "2025.3",
            "clocks_before": "n/a", "clocks_after": "n/a", "calls": 5,
            "free_before_mib": 1.0, "free_after_mib": 1.0, "rss_before_mib": 1.0,
            "rss_after_mib": 1.0, "ncu_wall_warm": 1.0, "ncu_wall_cold": 1.0,
            "blocked": ["True"], "backend": "cudnn"}
    md = fidelity.render([], meta, [])
    assert "Backend: `cudnn`" in md and "cuDNN frontend's first usable plan" in md
