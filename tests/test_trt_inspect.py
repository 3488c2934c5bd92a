"""Engine-inspector JSON and profiler parsing, on committed samples.

The samples in tests/data/trt/ are written by hand from documented formats, not captured from a
GPU (no TensorRT engine can run in this project's environments):

* inspector_10x.json: the TensorRT 10.x layout ("Layers" + "Bindings" name list), layer fields as
  in the engine-graph JSON files of NVIDIA/TensorRT's trt-engine-explorer examples
  (tools/experimental/trt-engine-explorer/examples/pytorch/resnet/A100/fp16, tag v10.16) and
  the Engine Inspector section of the TensorRT 10.16 developer guide
  (https://docs.nvidia.com/deeplearning/tensorrt/10.16.1/inference-library/engine-tools.html).
* inspector_11x.json: the TensorRT 11.x layout, "Bindings" replaced by "I/O Tensors" objects,
  per "Migrating IEngineInspector Usage from TensorRT 10.x to 11.x"
  (https://docs.nvidia.com/deeplearning/tensorrt/11.0.0/api/migration/tensorrt-10x-to-11x-IEngineInspector.html).
* inspector_names_only.json: ProfilingVerbosity.LAYER_NAMES_ONLY (layers are bare names).
* profiler_reports.json: IProfiler.report_layer_time(layer_name, ms) calls per inference.
* trtexec_profile.json: trtexec --exportProfile output ([{"count"}, {"name", "timeMs",
  "averageMs", "medianMs", "percentage"}...]).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.backends.tensorrt.inspector import (
    layer_times,
    parse_engine_info,
    parse_trtexec_profile,
    precision_of,
)

DATA = Path(__file__).parent / "data" / "trt"


def _load(name: str) -> str:
    return (DATA / name).read_text()


def test_10x_layout_gives_layers_tactics_formats_and_io() -> None:
    layout = parse_engine_info(_load("inspector_10x.json"))
    assert layout.schema == "10.x"
    assert [layer.type for layer in layout.layers] == ["Reformat", "CaskConvolution", "Reformat"]
    conv = layout.layers[1]
    assert conv.name == "conv + relu"
    assert conv.tactic.startswith("sm80_xmma_fprop_implicit_gemm_f16f16")  # TacticName wins
    assert conv.precisions == ["fp16"]
    assert conv.inputs[0].format == "Channel major FP16 format where channel % 8 == 0"
    assert conv.extra["Groups"] == 1 and conv.extra["Kernel"] == [3, 3]
    assert [layer.reformat for layer in layout.layers] == [True, False, True]
    assert len(layout.reformat_layers) == 2
    # 10.x names the I/O tensors only; direction and format come from the layers
    io = {t.name: t for t in layout.io}
    assert io["input"].mode == "input" and io["output"].mode == "output"
    assert io["input"].precision == "fp16" and io["output"].dims == [8, 64, 56, 56]


def test_11x_layout_reads_io_tensor_objects() -> None:
    layout = parse_engine_info(json.loads(_load("inspector_11x.json")))
    assert layout.schema == "11.x"
    (conv,) = layout.layers
    assert conv.type == "CaskConvolution" and not conv.reformat
    assert conv.precisions == ["bf16"]
    assert conv.extra["Dilation"] == [2, 2] and conv.extra["Groups"] == 4
    assert [(t.name, t.mode, t.precision, t.dims) for t in layout.io] == [
        ("input", "input", "bf16", [1, 32, 28, 28]),
        ("output", "output", "bf16", [1, 32, 28, 28]),
    ]
    assert layout.io[0].format == "Row major linear BF16 format (kLINEAR)"
    # the JSON-ready form keeps what a report shows
    d = conv.to_json()
    assert d["tactic"].startswith("sm90_xmma") and d["precisions"] == ["bf16"]


def test_layer_names_only_verbosity() -> None:
    layout = parse_engine_info(_load("inspector_names_only.json"))
    assert [layer.name for layer in layout.layers] == [
        "Reformatting CopyNode for Input Tensor 0 to conv", "conv", "relu"]
    assert [layer.reformat for layer in layout.layers] == [True, False, False]
    assert all(layer.type is None and layer.tactic is None for layer in layout.layers)


@pytest.mark.parametrize("bad", ["not json", "[]", '{"Bindings": []}', '{"Layers": [3]}'])
def test_malformed_inspector_output_is_a_value_error(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_engine_info(bad)


@pytest.mark.parametrize(("text", "want"), [
    ("Row major linear FP32", "fp32"), ("Channel major FP16 format where channel % 8 == 0", "fp16"),
    ("Row major linear BF16 format", "bf16"), ("Float", "fp32"), ("Half", "fp16"),
    ("Row major Int8 format", "int8"), ("", None), ("Unknown", None)])
def test_precision_of_format_strings(text: str, want: str | None) -> None:
    assert precision_of(text) == want


def test_profiler_reports_to_per_layer_medians_with_reformats_labelled() -> None:
    reports = [[(n, ms) for n, ms in it]
               for it in json.loads(_load("profiler_reports.json"))["reports"]]
    layout = parse_engine_info(_load("inspector_10x.json"))
    times = layer_times(reports, layout)
    assert [t.name for t in times] == [layer.name for layer in layout.layers]  # engine order
    conv = times[1]
    assert conv.median_ms == pytest.approx(0.0512)
    assert conv.type == "CaskConvolution" and conv.extra["reformat"] is False
    assert conv.extra["tactic"].startswith("sm80_xmma")
    assert [t.type for t in (times[0], times[2])] == ["Reformat", "Reformat"]
    assert times[0].median_ms == pytest.approx(0.0102)
    assert sum(t.share for t in times) == pytest.approx(1.0)
    assert conv.share == pytest.approx(0.0512 / (0.0102 + 0.0512 + 0.0100))


def test_profiler_reports_keep_every_measured_time_for_trtexecs_totals() -> None:
    """As trtexec's Profiler keeps ``LayerProfile.timeMs`` (sampleReporting.h, v11.0, lines
    187-191): one time per inference per layer, so exports give its totals and averages."""
    raw = json.loads(_load("profiler_reports.json"))["reports"]
    times = layer_times([[(n, ms) for n, ms in it] for it in raw])
    for t in times:
        want = [sum(ms for n, ms in it if n == t.name) for it in raw]
        assert t.times_ms == pytest.approx(want)
        assert t.iterations == len(raw) and t.total_ms == pytest.approx(sum(want))


def test_profiler_without_inspector_still_labels_reformats_by_name() -> None:
    reports = [[("Reformatting CopyNode for Input Tensor 0 to conv", 0.01), ("conv", 0.03),
                ("conv", 0.01)]]  # a layer reported twice in one inference is summed
    times = layer_times(reports)
    assert [(t.name, t.type, t.calls) for t in times] == [
        ("Reformatting CopyNode for Input Tensor 0 to conv", "Reformat", 1), ("conv", None, 2)]
    assert times[1].median_ms == pytest.approx(0.04)
    assert layer_times([]) == []


def test_trtexec_profile() -> None:
    times = parse_trtexec_profile(_load("trtexec_profile.json"),
                                  parse_engine_info(_load("inspector_10x.json")))
    assert [t.median_ms for t in times] == [0.0100, 0.0500, 0.0100]
    assert [t.type for t in times] == ["Reformat", "CaskConvolution", "Reformat"]
    assert times[1].share == pytest.approx(0.05 / 0.07)


def test_tactics_per_layer_as_build_info_records_them() -> None:
    layout = parse_engine_info(_load("inspector_10x.json"))
    tactics = layout.tactics()
    assert [t["layer"] for t in tactics] == [layer.name for layer in layout.layers]
    assert tactics[1]["type"] == "CaskConvolution"
    assert tactics[1]["tactic"].startswith("sm80_xmma_fprop_implicit_gemm_f16f16")
    names_only = parse_engine_info(_load("inspector_names_only.json")).tactics()
    assert [t["tactic"] for t in names_only] == [None, None, None]
