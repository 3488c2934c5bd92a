"""The runtime side of bench/backends/tensorrt/ against the real TensorRT 11.4 lean runtime.

``pip install tensorrt-lean-cu13-bindings==11.4.0.106 tensorrt-lean-cu13-libs==11.4.0.106``
(the ``test`` extra) installs NVIDIA's own lean runtime bindings; they import on a machine
without a GPU (``import tensorrt_lean_libs`` loads the shared libraries first). The names lists
of tests/test_trt_api_names.py are parsed from binding *sources*; this test reads the compiled
module: every class, attribute and enum member that engine.py and flavour.py (runtime, context,
IProfiler, ILogger) use must exist in it, and every call must match one of its pybind11
signatures (parameter names of the methods convbench overrides, the number of positional
arguments of the calls it makes, setters of the properties it sets).
"""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "bench" / "backends" / "tensorrt"
RUNTIME_SOURCES = [PACKAGE / "engine.py", PACKAGE / "flavour.py"]

pytest.importorskip("tensorrt_lean_libs", reason="TensorRT 11.4 lean runtime not installed: "
                    "pip install 'trt-convbench[test]'")
lean_pkg = pytest.importorskip("tensorrt_lean_bindings")
from tensorrt_lean_bindings import tensorrt_lean as lean  # noqa: E402


def _names_test():
    spec = importlib.util.spec_from_file_location("_trt_api_names_test",
                                                  ROOT / "tests" / "test_trt_api_names.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("_trt_api_names_test", mod)
    spec.loader.exec_module(mod)
    return mod


NAMES = _names_test()

#: used by the runtime modules but, on purpose, not in the 11.4 lean runtime
NOT_IN_LEAN = {
    # TensorRT-RTX's runtime cache of JIT-compiled kernels (engine.TensorRTEngine._rtx_context)
    "IRuntimeConfig.create_runtime_cache", "IRuntimeConfig.set_runtime_cache",
    "IRuntimeCache.deserialize", "IRuntimeCache.serialize",
    # the bindings era (TensorRT 8.x), used only where execute_async_v3 is absent
    "ICudaEngine.get_binding_index", "ICudaEngine.num_bindings",
    "IExecutionContext.execute_async_v2",
    # the lean runtime binds ICudaEngine.create_engine_inspector but not the class it returns
    # ("-> nvinfer1::IEngineInspector" in its signature): engine.inspect_engine gets None there
    "EngineInspector.execution_context", "EngineInspector.get_engine_information",
    # the .so module has no __version__; its package does (checked below)
    "__version__",
}

#: calls the runtime modules make: qualified name → positional arguments (after self) of each
#: way it is called; checked against the lean signatures and against the calls in the source
CALLS = {
    "Runtime.__init__": [("logger",)],
    "Runtime.deserialize_cuda_engine": [("serialized_engine",)],
    "ICudaEngine.create_execution_context": [(), ("runtime_config",)],
    "ICudaEngine.create_engine_inspector": [()],
    "ICudaEngine.create_runtime_config": [()],
    "IExecutionContext.set_tensor_address": [("name", "memory")],
    "IExecutionContext.execute_async_v3": [("stream_handle",)],
    "IExecutionContext.report_to_profiler": [()],
    "IProfiler.__init__": [()],
    "ILogger.__init__": [()],
}
#: methods convbench overrides in a subclass: their parameters must be named as TensorRT's
OVERRIDES = {"IProfiler.report_layer_time": ("layer_name", "ms"),
             "ILogger.log": ("severity", "msg")}
#: properties convbench assigns
SETS = {"IExecutionContext.profiler", "IExecutionContext.enqueue_emits_profile"}

_SIG = re.compile(r"^(?:\d+\.\s*)?(\w+)\((.*)\)\s*->", re.MULTILINE)


def _resolve(name: str) -> object:
    obj: object = lean
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def signatures(name: str) -> list[list[tuple[str, bool]]]:
    """Every pybind11 overload of ``name`` as [(parameter, has_default)], ``self`` dropped."""
    method = name.rsplit(".", 1)[1]
    doc = _resolve(name).__doc__ or ""
    out = []
    for m in _SIG.finditer(doc):
        if m.group(1) != method:
            continue
        params, depth, cur = [], 0, ""
        for c in m.group(2) + ",":
            if c in "[(<":
                depth += 1
            elif c in "])>":
                depth -= 1
            if c == "," and depth == 0:
                params.append(cur.strip())
                cur = ""
            else:
                cur += c
        parsed = [(p.split(":")[0].strip(), "=" in p) for p in params if p]
        out.append([p for p in parsed if p[0] != "self"])
    return out


def accepts(sig: list[tuple[str, bool]], args: tuple[str, ...]) -> bool:
    names = [p for p, _ in sig]
    return names[:len(args)] == list(args) and all(d for _, d in sig[len(args):])


def runtime_names() -> set[str]:
    used = NAMES.all_used(RUNTIME_SOURCES)
    # one attribute, two classes: engine.py serializes the RTX runtime cache, not a timing cache
    return {"IRuntimeCache.serialize" if n == "ITimingCache.serialize" else n for n in used}


def test_lean_runtime_is_11_4() -> None:
    assert lean_pkg.__version__ == "11.4.0.106"
    assert str(lean_pkg.__version__).startswith("11.")


def test_every_runtime_name_exists_in_the_lean_runtime() -> None:
    used = runtime_names()
    assert {"Runtime.deserialize_cuda_engine", "IExecutionContext.execute_async_v3",
            "IExecutionContext.set_tensor_address", "IProfiler"} <= used  # the scan sees them
    missing = sorted(n for n in used - NOT_IN_LEAN if not NAMES.TOOL.live_has(lean, n))
    assert not missing, f"not in the TensorRT {lean_pkg.__version__} lean runtime: {missing}"


def test_exemptions_are_really_missing_and_really_used() -> None:
    used = runtime_names()
    assert NOT_IN_LEAN <= used, sorted(NOT_IN_LEAN - used)
    present = sorted(n for n in NOT_IN_LEAN if NAMES.TOOL.live_has(lean, n))
    assert not present, f"now in the lean runtime, drop from NOT_IN_LEAN: {present}"
    sig = lean.ICudaEngine.create_engine_inspector.__doc__
    assert "nvinfer1::IEngineInspector" in sig  # an unbound return type


@pytest.mark.parametrize("name", sorted(CALLS))
def test_calls_match_a_lean_signature(name: str) -> None:
    sigs = signatures(name)
    assert sigs, f"no pybind11 signature found for {name}"
    for args in CALLS[name]:
        assert any(accepts(s, args) for s in sigs), (
            f"{name}{args} matches none of the lean overloads {sigs}")


@pytest.mark.parametrize("name", sorted(OVERRIDES))
def test_overridden_methods_have_tensorrts_parameter_names(name: str) -> None:
    (sig,) = signatures(name)
    assert tuple(p for p, _ in sig) == OVERRIDES[name]
    method = name.rsplit(".", 1)[1]
    defs = [node for p in RUNTIME_SOURCES for node in ast.walk(ast.parse(p.read_text()))
            if isinstance(node, ast.FunctionDef) and node.name == method]
    assert defs, f"the runtime modules no longer override {method}"
    for d in defs:
        assert tuple(a.arg for a in d.args.args[1:]) == OVERRIDES[name]


@pytest.mark.parametrize("name", sorted(SETS))
def test_assigned_properties_have_setters(name: str) -> None:
    prop = _resolve(name)
    assert isinstance(prop, property) and prop.fset is not None


def test_source_calls_use_the_declared_arities() -> None:
    """Each call in the runtime modules to a method of CALLS passes a declared number of
    positional arguments, so CALLS cannot drift from the code."""
    by_method: dict[str, set[int]] = {}
    for name, ways in CALLS.items():
        method = name.rsplit(".", 1)[1]
        if method != "__init__":
            by_method.setdefault(method, set()).update(len(a) for a in ways)
    seen = set()
    for p in RUNTIME_SOURCES:
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                    node.func.attr in by_method:
                seen.add(node.func.attr)
                assert not node.keywords, f"{p.name}:{node.lineno} passes keywords"
                assert len(node.args) in by_method[node.func.attr], (
                    f"{p.name}:{node.lineno}: {node.func.attr} with {len(node.args)} "
                    f"positional arguments, declared {sorted(by_method[node.func.attr])}")
    assert seen == set(by_method), sorted(set(by_method) - seen)


def test_enum_members_the_runtime_reads() -> None:
    assert lean.LayerInformationFormat.JSON.name == "JSON"
    assert int(lean.ILogger.Severity.WARNING) > int(lean.ILogger.Severity.ERROR)
    # the logger's "warnings and errors" filter relies on this order
    assert [int(lean.ILogger.Severity.__members__[n]) for n in
            ("INTERNAL_ERROR", "ERROR", "WARNING", "INFO", "VERBOSE")] == [0, 1, 2, 3, 4]
