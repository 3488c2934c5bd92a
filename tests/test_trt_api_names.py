"""Every TensorRT name bench/backends/tensorrt/ uses exists in TensorRT 8.6, 10.x and 11.x.

Full TensorRT cannot be installed in CI, so a misspelled or removed API would only fail on a
user's GPU. The names lists in bench/backends/trt_api/ are extracted by tools/trt_api_names.py
from NVIDIA/TensorRT's pybind11 sources (python/src/infer/*.cpp) and package __init__.py at the
tag and commit named in each list's header. This test scans the AST of every module of the
bench/backends/tensorrt package (but the pure ``inspector``):

* ``trt.X`` / ``trt.X.Y`` chains (the module is always bound to a local named ``trt``) are looked
  up as written;
* every other attribute the file reads or sets is either a TensorRT member, declared in
  ``TRT_MEMBERS`` with its class, or not TensorRT (``NOT_TRT``, or defined by convbench). An
  attribute in neither fails the test, so a new or misspelled call must be classified.

Names that exist in only some flavours or versions are allowed only where listed in
``RTX_ONLY`` / ``TRT_ONLY`` / ``TRT8_ONLY`` / ``SINCE_10`` (each is guarded in the package);
RTX-path names are also checked on the live ``tensorrt_rtx`` module when it is installed.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import sys
from pathlib import Path

import pytest

from bench.backends.base import BuildContext, BuildInfo, ConvData, Engine, QuantScales
from bench.backends.tensorrt import Flavour, GpuId
from bench.backends.tensorrt.config import WEAK_FLAGS
from bench.backends.tensorrt.inspector import EngineLayout
from bench.precision import PRECISIONS, PrecisionInfo
from bench.spec import ConvSpec

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "bench" / "backends" / "tensorrt"
#: every module that calls TensorRT (inspector.py only parses JSON)
SOURCES = sorted(p for p in PACKAGE.glob("*.py") if p.name not in ("inspector.py",
                                                                     "__init__.py"))
LISTS = ROOT / "bench" / "backends" / "trt_api"


def _tool():
    spec = importlib.util.spec_from_file_location("trt_api_names", ROOT / "tools" /
                                                  "trt_api_names.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("trt_api_names", mod)
    spec.loader.exec_module(mod)
    return mod


TOOL = _tool()
#: the lists every name must be in (8.6 is the oldest TensorRT the backend supports)
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
    "pre_padding": "IConvolutionLayer", "post_padding": "IConvolutionLayer",
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
    # explicit quantization (network.py)
    "add_constant": "INetworkDefinition", "add_quantize": "INetworkDefinition",
    "add_dequantize": "INetworkDefinition", "set_input": "ILayer", "axis": "IQuantizeLayer",
    # TensorRT 8.x paths
    "max_workspace_size": "IBuilderConfig", "execute_async_v2": "IExecutionContext",
    "num_bindings": "ICudaEngine", "get_binding_index": "ICudaEngine",
}
#: qualified names where TRT_MEMBERS' class is not the one used (same attribute, two classes)
EXTRA_QUALIFIED = {"IRuntimeCache.serialize", "DataType.name", "ILogger.Severity.name",
                   "IDequantizeLayer.axis"}

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
#: the bindings era (TensorRT 8.x): used only where the newer API is absent (hasattr guards in
#: config.configure, engine.TensorRTEngine._bind/_enqueue_impl) or on 8.x (network_flags)
TRT8_ONLY = {"IBuilderConfig.max_workspace_size", "IExecutionContext.execute_async_v2",
             "ICudaEngine.num_bindings", "ICudaEngine.get_binding_index",
             "NetworkDefinitionCreationFlag.EXPLICIT_BATCH"}
#: TensorRT 10.0 and later: used only where flavour.has_strong_typing / a hasattr guard says so
#: (bf16 is refused on 8.x by config.unsupported_reason)
SINCE_10 = {"NetworkDefinitionCreationFlag.STRONGLY_TYPED", "DataType.BF16",
            "BuilderFlag.BF16"}
#: typing = "weak" only, which config.unsupported_reason refuses on 11.x and TensorRT-RTX
WEAK_ONLY = {f"BuilderFlag.{f}" for f in WEAK_FLAGS.values()}


def exempt(lst_version: str) -> set[str]:
    """Names a TensorRT version may lack, because the package does not use them there."""
    major = int(lst_version.split(".")[0])
    out = set(RTX_ONLY)
    if major < 10:
        out |= SINCE_10
    if major >= 10:
        out |= TRT8_ONLY
    if major >= 11:
        out |= WEAK_ONLY
    return out

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
    "model_fields", "fromkeys", "reshape", "values",
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
    for dc in (BuildInfo, BuildContext, ConvData, QuantScales, Flavour, GpuId, PrecisionInfo,
               EngineLayout):
        own |= {f.name for f in dataclasses.fields(dc)} | set(vars(dc))
    own |= set(vars(Engine)) | {"spec", "info"}  # set in Engine.__init__
    own |= {"build_info", "to_json", "layers", "schema", "reports", "messages", "errors"}
    return own


def used_names(sources: list[Path] = SOURCES) -> tuple[set[str], set[str]]:
    """(qualified names used as trt.X..., other attribute names) in ``sources``."""
    tree = ast.Module(body=[n for p in sources for n in ast.parse(p.read_text()).body],
                      type_ignores=[])
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
    # dynamic lookups: getattr(trt.DataType, ...) from the precision registry and
    # getattr(trt.BuilderFlag, ...) for weak typing
    names = {p.name for p in sources}
    if "network.py" in names:
        qualified |= {f"DataType.{p.tensorrt}" for p in PRECISIONS.values()}
    if "config.py" in names:
        qualified |= {f"BuilderFlag.{f}" for f in WEAK_FLAGS.values()}
    own = _own_names(tree)
    return qualified, {a for a in other if a not in own}


def _prefixes(names: set[str]) -> set[str]:
    """``trt.X.Y`` read as a chain also reads ``trt.X``: keep only the longest of each chain."""
    return {n for n in names if not any(m.startswith(n + ".") for m in names)}


def all_used(sources: list[Path] = SOURCES) -> set[str]:
    qualified, other = used_names(sources)
    extra = EXTRA_QUALIFIED if sources == SOURCES else set()
    return _prefixes(qualified) | {f"{TRT_MEMBERS[a]}.{a}" for a in other if a in TRT_MEMBERS} \
        | extra


def test_lists_state_version_and_commit() -> None:
    assert {"tensorrt-8.6", "tensorrt-10.0", "tensorrt-10.x", "tensorrt-11.x"} <= set(VERSIONS)
    for lst in VERSIONS.values():
        assert "github.com/NVIDIA/TensorRT" in lst.source and "commit " in lst.source
        assert len(lst.names) > 1000
    assert VERSIONS["tensorrt-11.x"].version.startswith("11.")


def test_every_attribute_is_classified() -> None:
    _, other = used_names()
    unknown = sorted(a for a in other if a not in TRT_MEMBERS and a not in NOT_TRT)
    assert not unknown, (f"bench/backends/tensorrt/ uses attributes neither in TRT_MEMBERS "
                         f"nor NOT_TRT: {unknown} (add TensorRT ones to TRT_MEMBERS with "
                         "their class)")


@pytest.mark.parametrize("version", sorted(VERSIONS))
def test_names_exist_in_tensorrt(version: str) -> None:
    lst = VERSIONS[version]
    missing = sorted(n for n in all_used() - exempt(lst.version) if n not in lst)
    assert not missing, f"not in TensorRT {lst.version} ({lst.source}): {missing}"


def test_version_specific_names_are_still_needed() -> None:
    """The allowlists name only what is really used and really missing somewhere."""
    used = all_used()
    for allow in (RTX_ONLY, TRT_ONLY, TRT8_ONLY, SINCE_10, WEAK_ONLY):
        assert allow <= used, sorted(allow - used)
    for n in RTX_ONLY | TRT8_ONLY | SINCE_10 | WEAK_ONLY:
        assert any(n not in lst for lst in VERSIONS.values()), f"{n} is in every TensorRT list"
    # the bindings era is really gone from 11.x, and 8.6 really has it
    for n in TRT8_ONLY:
        assert n in VERSIONS["tensorrt-8.6"], n
    assert "IExecutionContext.execute_async_v2" not in VERSIONS["tensorrt-11.x"]
    assert "NetworkDefinitionCreationFlag.STRONGLY_TYPED" not in VERSIONS["tensorrt-8.6"]


def test_a_misspelled_name_is_caught() -> None:
    lst = VERSIONS["tensorrt-11.x"]
    assert "IBuilderConfig.set_memory_pool_limit" in lst
    assert "IBuilderConfig.set_memory_pool_limt" not in lst
    assert "BuilderFlag.FP16" not in lst  # removed in 11.x
    assert "BuilderFlag.FP16" in VERSIONS["tensorrt-10.x"]


def test_rtx_path_names_exist_in_live_tensorrt_rtx() -> None:
    trt = pytest.importorskip("tensorrt_rtx", reason="tensorrt_rtx not installed: "
                              "pip install 'trt-convbench[tensorrt-rtx]'")
    missing = sorted(n for n in all_used() - TRT_ONLY - TRT8_ONLY - WEAK_ONLY
                     if not TOOL.live_has(trt, n))
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
