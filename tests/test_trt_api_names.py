"""Every TensorRT name bench/backends/tensorrt.py uses exists in TensorRT 10.x and 11.x.

Full TensorRT cannot be installed in CI, so a misspelled or removed API would only fail on a
user's GPU. The names lists in bench/backends/trt_api/ are extracted by tools/trt_api_names.py
from NVIDIA/TensorRT's pybind11 sources (python/src/infer/*.cpp) and package __init__.py at the
tag and commit named in each list's header. This test scans tensorrt.py's AST:

* ``trt.X`` / ``trt.X.Y`` chains (the module is always bound to a local named ``trt``) are looked
  up as written;
* every other attribute the file reads or sets is either a TensorRT member, declared in
  ``TRT_MEMBERS`` with its class, or not TensorRT (``NOT_TRT``, or defined by convbench). An
  attribute in neither fails the test, so a new or misspelled call must be classified.

Names that exist in only some flavours are allowed only where listed in ``RTX_ONLY`` /
``TRT_ONLY`` (each is guarded in tensorrt.py); RTX-path names are also checked on the live
``tensorrt_rtx`` module when it is installed.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import sys
from pathlib import Path

import pytest

from bench.backends import tensorrt as backend
from bench.backends.base import BuildInfo, ConvData, Engine
from bench.spec import ConvSpec

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "bench" / "backends" / "tensorrt.py"
LISTS = ROOT / "bench" / "backends" / "trt_api"


def _tool():
    spec = importlib.util.spec_from_file_location("trt_api_names", ROOT / "tools" /
                                                  "trt_api_names.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("trt_api_names", mod)
    spec.loader.exec_module(mod)
    return mod


TOOL = _tool()
#: the lists every name must be in (10.0 is the oldest TensorRT the backend supports)
VERSIONS = {p.stem: TOOL.load_list(p) for p in sorted(LISTS.glob("tensorrt-*.txt"))}

#: attribute → the TensorRT class it is used on
TRT_MEMBERS = {
    # Builder / network / config
    "create_network": "Builder", "create_builder_config": "Builder",
    "build_serialized_network": "Builder",
    "add_input": "INetworkDefinition", "add_convolution_nd": "INetworkDefinition",
    "add_activation": "INetworkDefinition", "mark_output": "INetworkDefinition",
    "num_layers": "INetworkDefinition", "get_layer": "INetworkDefinition",
    "stride_nd": "IConvolutionLayer", "padding_nd": "IConvolutionLayer",
    "dilation_nd": "IConvolutionLayer", "num_groups": "IConvolutionLayer",
    "get_output": "ILayer", "type": "ILayer", "name": "ILayer",
    "dtype": "ITensor", "shape": "ITensor",
    "set_memory_pool_limit": "IBuilderConfig", "builder_optimization_level": "IBuilderConfig",
    "profiling_verbosity": "IBuilderConfig", "set_flag": "IBuilderConfig",
    "clear_flag": "IBuilderConfig", "get_flag": "IBuilderConfig",
    "create_timing_cache": "IBuilderConfig", "set_timing_cache": "IBuilderConfig",
    "get_timing_cache": "IBuilderConfig", "serialize": "ITimingCache",
    "num_compute_capabilities": "IBuilderConfig", "set_compute_capability": "IBuilderConfig",
    # runtime
    "deserialize_cuda_engine": "Runtime", "create_execution_context": "ICudaEngine",
    "create_engine_inspector": "ICudaEngine", "create_runtime_config": "ICudaEngine",
    "create_runtime_cache": "IRuntimeConfig", "set_runtime_cache": "IRuntimeConfig",
    "deserialize": "IRuntimeCache",
    "execution_context": "EngineInspector", "get_engine_information": "EngineInspector",
    "set_tensor_address": "IExecutionContext", "execute_async_v3": "IExecutionContext",
    "profiler": "IExecutionContext", "enqueue_emits_profile": "IExecutionContext",
    "report_to_profiler": "IExecutionContext",
}
#: qualified names where TRT_MEMBERS' class is not the one used (same attribute, two classes)
EXTRA_QUALIFIED = {"IRuntimeCache.serialize", "DataType.name", "ILogger.Severity.name"}

#: exist only in TensorRT-RTX; used only when ``flavour.rtx`` (configure(), _rtx_context())
RTX_ONLY = {
    "ComputeCapability", "IBuilderConfig.num_compute_capabilities",
    "IBuilderConfig.set_compute_capability", "IRuntimeConfig.create_runtime_cache",
    "IRuntimeConfig.set_runtime_cache", "IRuntimeCache.deserialize", "IRuntimeCache.serialize",
    # in 10.16 and 11.x but not 10.0; RTX path only
    "ICudaEngine.create_runtime_config",
}
#: full-TensorRT path only: the timing cache (a deprecated no-op in TensorRT-RTX)
TRT_ONLY = {"IBuilderConfig.set_timing_cache", "IBuilderConfig.get_timing_cache",
            "IBuilderConfig.create_timing_cache", "ITimingCache.serialize"}

#: attributes tensorrt.py uses that are not TensorRT's: stdlib, numpy, cuda.core, bench.gpu
NOT_TRT = {
    "append", "get", "items", "join", "split", "startswith", "isdigit", "replace", "update",
    "dumps", "loads", "sha256", "hexdigest", "tobytes", "perf_counter", "getLogger", "debug",
    "warning", "import_module", "mkstemp", "fdopen", "fsync", "fileno", "flush", "write",
    "unlink", "suppress", "mkdir", "exists", "parent", "read_bytes", "read_text",
    "ascontiguousarray", "asarray", "prod", "float32", "ndarray", "ctypes", "data", "size",
    "itemsize", "uint16", "unavailable_reason", "info", "cc", "uuid",
    "Device", "alloc", "ptr", "upload", "download", "stream", "sync", "close", "free",
    "handle", "encode", "lower", "__name__", "__init__", "__members__", "__version__",
    "model_fields",
    "cache_dir", "device_index",  # bench.backends.base.BuildContext
}


def _chain(node: ast.AST) -> list[str] | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return [node.id, *reversed(parts)]
    return None


def _own_names(tree: ast.Module) -> set[str]:
    """Attributes convbench defines: in tensorrt.py and the bench types it uses."""
    own: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            own.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and \
                isinstance(node.value, ast.Name) and node.value.id == "self":
            own.add(node.attr)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            own.add(node.target.id)
    own |= set(ConvSpec.model_fields) | {n for n in dir(ConvSpec) if not n.startswith("_")}
    for dc in (BuildInfo, ConvData, backend.Flavour, backend.GpuId):
        own |= {f.name for f in dataclasses.fields(dc)} | set(vars(dc))
    own |= set(vars(Engine)) | {"spec", "info"}  # set in Engine.__init__
    own |= {"build_info", "to_json", "layers", "schema", "reports", "messages", "errors"}
    return own


def used_names() -> tuple[set[str], set[str]]:
    """(qualified names used as trt.X..., other attribute names) in tensorrt.py."""
    tree = ast.parse(SOURCE.read_text())
    qualified, other = set(), set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        chain = _chain(node)
        if chain and chain[0] == "trt":
            names = []
            for p in chain[1:]:  # stop at python's own attributes (__init__, __members__)
                if p.startswith("__") and p != "__version__":
                    break
                names.append(p)
            if names:
                qualified.add(".".join(names))
        else:
            other.add(node.attr)
    # dynamic lookups: getattr(trt.DataType, ...)
    qualified |= {f"DataType.{v}" for v in backend._TRT_DTYPES.values()}
    own = _own_names(tree)
    return qualified, {a for a in other if a not in own}


def _prefixes(names: set[str]) -> set[str]:
    """``trt.X.Y`` read as a chain also reads ``trt.X``: keep only the longest of each chain."""
    return {n for n in names if not any(m.startswith(n + ".") for m in names)}


def all_used() -> set[str]:
    qualified, other = used_names()
    return _prefixes(qualified) | {f"{TRT_MEMBERS[a]}.{a}" for a in other if a in TRT_MEMBERS} \
        | EXTRA_QUALIFIED


def test_lists_state_version_and_commit() -> None:
    assert {"tensorrt-10.0", "tensorrt-10.x", "tensorrt-11.x"} <= set(VERSIONS)
    for lst in VERSIONS.values():
        assert "github.com/NVIDIA/TensorRT" in lst.source and "commit " in lst.source
        assert len(lst.names) > 1000
    assert VERSIONS["tensorrt-11.x"].version.startswith("11.")


def test_every_attribute_is_classified() -> None:
    _, other = used_names()
    unknown = sorted(a for a in other if a not in TRT_MEMBERS and a not in NOT_TRT)
    assert not unknown, (f"tensorrt.py uses attributes neither in TRT_MEMBERS nor NOT_TRT: "
                         f"{unknown} (add TensorRT ones to TRT_MEMBERS with their class)")


@pytest.mark.parametrize("version", sorted(VERSIONS))
def test_names_exist_in_tensorrt(version: str) -> None:
    lst = VERSIONS[version]
    missing = sorted(n for n in all_used() - RTX_ONLY if n not in lst)
    assert not missing, f"not in TensorRT {lst.version} ({lst.source}): {missing}"


def test_version_specific_names_are_still_needed() -> None:
    """The allowlists name only what is really used and really missing somewhere."""
    used = all_used()
    assert RTX_ONLY <= used and TRT_ONLY <= used
    for n in RTX_ONLY:
        assert any(n not in lst for lst in VERSIONS.values()), f"{n} is in every TensorRT list"


def test_a_misspelled_name_is_caught() -> None:
    lst = VERSIONS["tensorrt-11.x"]
    assert "IBuilderConfig.set_memory_pool_limit" in lst
    assert "IBuilderConfig.set_memory_pool_limt" not in lst
    assert "BuilderFlag.FP16" not in lst  # removed in 11.x
    assert "BuilderFlag.FP16" in VERSIONS["tensorrt-10.x"]


def test_rtx_path_names_exist_in_live_tensorrt_rtx() -> None:
    trt = pytest.importorskip("tensorrt_rtx", reason="tensorrt_rtx not installed: "
                              "pip install 'trt-convbench[tensorrt-rtx]'")
    missing = sorted(n for n in all_used() - TRT_ONLY if not TOOL.live_has(trt, n))
    assert not missing, f"not in tensorrt_rtx {trt.__version__}: {missing}"


def test_extractor_resolves_inheritance_and_nested_enums() -> None:
    src = '''
    py::class_<ILayer>(m, "ILayer").def_property("name", &ILayer::getName, &ILayer::setName);
    py::class_<IConvolutionLayer, ILayer, std::unique_ptr<IConvolutionLayer, py::nodelete>>(
        m, "IConvolutionLayer")
        // .def("commented_out", ...)
        .def_property("stride_nd", &IConvolutionLayer::getStrideNd, nullptr);
    py::class_<ILogger, PyLogger> baseLoggerBinding{m, "ILogger"};
    py::enum_<ILogger::Severity>(baseLoggerBinding, "Severity", py::arithmetic())
        .value("WARNING", ILogger::Severity::kWARNING).export_values();
    py::class_<DefaultLogger, ILogger>(m, "Logger");
    m.attr("float32") = DataType::kFLOAT;
    '''
    classes, module = TOOL.parse_bindings([src])
    names = set(TOOL.flatten(classes, module))
    assert {"IConvolutionLayer.name", "IConvolutionLayer.stride_nd", "ILogger.Severity.WARNING",
            "Logger.WARNING", "Logger.Severity", "float32"} <= names
    assert "IConvolutionLayer.commented_out" not in names
