#!/usr/bin/env python3
"""TensorRT Python API names: extract them from NVIDIA/TensorRT's sources, check code against them.

Full TensorRT cannot be installed in convbench's CI, so a misspelled or removed TensorRT API in
``bench/backends/tensorrt.py`` would only show on a user's GPU. Instead, the names the Python
bindings define are extracted from the pybind11 sources (``python/src/infer/*.cpp``) and the
package ``__init__.py`` of a given NVIDIA/TensorRT release, written to
``bench/backends/trt_api/tensorrt-<major>.x.txt``, and ``tests/test_trt_api_names.py`` checks
every name the backend uses against each list.

Extract (from a git clone of https://github.com/NVIDIA/TensorRT):

    python tools/trt_api_names.py extract --repo /path/to/TensorRT --ref v11.1 \
        --out bench/backends/trt_api/tensorrt-11.x.txt

List format: ``#`` header lines (version, tag, commit, files), then one name per line:
``Class``, ``Class.member`` (members of base classes included), ``Enum.MEMBER``, or a
module-level name. Every ``#if`` branch of the sources is included (full TensorRT is built with
``EXPORT_ALL_BINDINGS``), so the list is a superset of what one build exposes.
"""

from __future__ import annotations

import argparse
import ast
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

INFER_DIR = "python/src/infer"
INIT_PY = "python/packaging/bindings_wheel/tensorrt/__init__.py"

_DECL_RE = re.compile(r"py::(class_|enum_)\s*<")
_MEMBER_RE = re.compile(
    r"(?:\b(?P<recv>\w+)\s*)?\.\s*(?P<kind>def|def_static|def_property|def_property_readonly|"
    r"def_readwrite|def_readonly|def_property_static|def_property_readonly_static|value)"
    r"\s*\(\s*\"(?P<name>\w+)\"")
_ATTR_RE = re.compile(r"\b(?P<recv>\w+)\s*\.\s*attr\s*\(\s*\"(?P<name>\w+)\"\s*\)\s*=")
_EXPORT_RE = re.compile(r"\.\s*export_values\s*\(")


@dataclass
class _Class:
    name: str  # python name, dotted for nested enums ("ILogger.Severity")
    cpp: str
    bases_cpp: list[str]
    is_enum: bool
    members: set[str] = field(default_factory=set)
    exported: bool = False


def _strip_comments(text: str) -> str:
    # keep string literals intact: a "//" inside a docstring literal is not a comment
    out, pos = [], 0
    for m in re.finditer(r'"(?:[^"\\\n]|\\.)*"|//[^\n]*|/\*.*?\*/', text, re.DOTALL):
        out.append(text[pos:m.start()])
        out.append(m.group(0) if m.group(0).startswith('"') else " ")
        pos = m.end()
    out.append(text[pos:])
    return "".join(out)


def _template_args(text: str, start: int) -> tuple[list[str], int]:
    """Split the balanced ``<...>`` starting after ``start`` (just past '<') at top-level commas."""
    depth, args, cur, i = 1, [], [], start
    while i < len(text) and depth:
        c = text[i]
        if c == "<":
            depth += 1
        elif c == ">":
            depth -= 1
            if depth == 0:
                break
        if c == "," and depth == 1:
            args.append("".join(cur).strip())
            cur = []
        else:
            cur.append(c)
        i += 1
    args.append("".join(cur).strip())
    return args, i + 1


def _cpp_name(arg: str) -> str:
    return arg.split("::")[-1].strip()


def parse_bindings(sources: list[str]) -> tuple[dict[str, _Class], set[str]]:
    """pybind11 sources → ({python class name: _Class}, module-level names)."""
    classes: dict[str, _Class] = {}
    module: set[str] = set()
    for raw in sources:
        text = _strip_comments(raw)
        variables: dict[str, str] = {}  # C++ variable holding a class_ → python name
        events: list[tuple[int, str, object]] = []
        for m in _DECL_RE.finditer(text):
            targs, end = _template_args(text, m.end())
            tail = re.match(r"\s*(\w+)?\s*[({]\s*(\w+)\s*,\s*\"(\w+)\"", text[end:])
            if not tail:
                continue
            var, scope, pyname = tail.groups()
            events.append((m.start(), "decl", (m.group(1) == "enum_", targs, var, scope, pyname)))
            before = re.search(r"(?:auto|py::class_<[^;]*>)\s+(\w+)\s*=\s*$", text[:m.start()])
            if before:
                events.append((m.start(), "var", before.group(1)))
        events += [(m.start(), "member", m) for m in _MEMBER_RE.finditer(text)]
        events += [(m.start(), "attr", m) for m in _ATTR_RE.finditer(text)]
        events += [(m.start(), "export", None) for m in _EXPORT_RE.finditer(text)]
        events.sort(key=lambda e: (e[0], e[1] != "var"))
        current: _Class | None = None
        pending_var: str | None = None
        for _, kind, payload in events:
            if kind == "var":
                pending_var = payload  # type: ignore[assignment]
            elif kind == "decl":
                is_enum, targs, var, scope, pyname = payload  # type: ignore[misc]
                if scope != "m":
                    parent = variables.get(scope)
                    pyname = f"{parent}.{pyname}" if parent else pyname
                cls = classes.setdefault(pyname, _Class(pyname, _cpp_name(targs[0]),
                                                        [_cpp_name(a) for a in targs[1:]],
                                                        is_enum))
                for v in (var, pending_var):
                    if v:
                        variables[v] = pyname
                pending_var = None
                current = cls
            elif kind == "member":
                m = payload  # type: ignore[assignment]
                recv, name = m.group("recv"), m.group("name")  # type: ignore[union-attr]
                if recv == "m":
                    module.add(name)
                elif recv in variables:
                    classes[variables[recv]].members.add(name)
                elif current is not None:
                    current.members.add(name)
            elif kind == "attr":
                m = payload  # type: ignore[assignment]
                recv, name = m.group("recv"), m.group("name")  # type: ignore[union-attr]
                if recv == "m":
                    module.add(name)
                elif recv in variables:
                    classes[variables[recv]].members.add(name)
            elif kind == "export" and current is not None:
                current.exported = True
    return classes, module


def parse_init_py(text: str) -> tuple[set[str], dict[str, set[str]]]:
    """Module-level names and ``Class.attr = ...`` members defined by the package __init__."""
    tree = ast.parse(re.sub(r"##\w+##", "tensorrt", text))
    names: set[str] = set()
    members: dict[str, set[str]] = {}

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for t in targets:
                    if isinstance(t, ast.Name):
                        names.add(t.id)
                    elif isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name):
                        members.setdefault(t.value.id, set()).add(t.attr)
            elif isinstance(node, (ast.If, ast.Try)):
                visit(node.body)
                visit(node.orelse)

    visit(tree.body)
    return {n for n in names if not n.startswith("_") or n == "__version__"}, members


def flatten(classes: dict[str, _Class], module: set[str],
            init_names: set[str] = frozenset(),  # type: ignore[assignment]
            init_members: dict[str, set[str]] | None = None) -> list[str]:
    """Every resolvable name, members of base classes included, sorted."""
    by_cpp = {c.cpp: c.name for c in classes.values() if "." not in c.name}
    for cls, extra in (init_members or {}).items():
        if cls in classes:
            classes[cls].members |= extra
        else:
            module.add(cls)

    def all_members(name: str, seen: frozenset[str] = frozenset()) -> set[str]:
        cls = classes[name]
        out = set(cls.members)
        for b in cls.bases_cpp:
            base = by_cpp.get(b)
            if base and base not in seen:
                out |= all_members(base, seen | {name})
        # nested types and enums exported into this class's scope
        for other in classes.values():
            if other.name.startswith(name + ".") and "." not in other.name[len(name) + 1:]:
                out.add(other.name[len(name) + 1:])
                if other.exported:
                    out |= other.members
        return out

    names = set(module) | set(init_names)
    for name, cls in classes.items():
        names.add(name)
        # every pybind11 enum value has .name and .value
        members = all_members(name) | ({"name", "value"} if cls.is_enum else set())
        names |= {f"{name}.{m}" for m in members}
    return sorted(names)


# --- reading a TensorRT clone --------------------------------------------------------------
def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout


def extract_from_git(repo: Path, ref: str) -> tuple[list[str], dict[str, str]]:
    commit = _git(repo, "rev-list", "-n", "1", ref).strip()
    files = sorted(p for p in _git(repo, "ls-tree", "--name-only", commit, INFER_DIR + "/")
                   .split() if p.endswith(".cpp"))
    sources = [_git(repo, "show", f"{commit}:{p}") for p in files]
    classes, module = parse_bindings(sources)
    init_names: set[str] = set()
    init_members: dict[str, set[str]] = {}
    try:
        init_names, init_members = parse_init_py(_git(repo, "show", f"{commit}:{INIT_PY}"))
        files.append(INIT_PY)
    except subprocess.CalledProcessError:
        pass
    header = {"ref": ref, "commit": commit, "files": ", ".join(files)}
    return flatten(classes, module, init_names, init_members), header


def write_list(path: Path, names: list[str], version: str, header: dict[str, str]) -> None:
    lines = [
        "# TensorRT Python API names, extracted by tools/trt_api_names.py",
        f"# version: {version}",
        f"# source: https://github.com/NVIDIA/TensorRT {header['ref']} "
        f"commit {header['commit']}",
        f"# files: {header['files']}",
        "# one name per line: Class, Class.member (base-class members included), Enum.MEMBER,",
        "# module-level name. All #if branches included.",
        *names,
    ]
    path.write_text("\n".join(lines) + "\n")


# --- checking ------------------------------------------------------------------------------
@dataclass(frozen=True)
class NamesList:
    version: str
    source: str
    names: frozenset[str]

    def __contains__(self, name: object) -> bool:
        return name in self.names


def load_list(path: Path) -> NamesList:
    version = source = ""
    names = set()
    for line in path.read_text().splitlines():
        if line.startswith("# version:"):
            version = line.split(":", 1)[1].strip()
        elif line.startswith("# source:"):
            source = line.split(":", 1)[1].strip()
        elif line and not line.startswith("#"):
            names.add(line.strip())
    if not version or not names:
        raise ValueError(f"{path}: not a names list (no '# version:' header or no names)")
    return NamesList(version, source, frozenset(names))


def live_has(module: object, name: str) -> bool:
    """Whether ``module`` (an imported tensorrt or tensorrt_rtx) has the dotted ``name``."""
    obj = module
    for part in name.split("."):
        if not hasattr(obj, part):
            return False
        obj = getattr(obj, part)
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    ex = sub.add_parser("extract", help="write a names list from a NVIDIA/TensorRT clone")
    ex.add_argument("--repo", type=Path, required=True)
    ex.add_argument("--ref", required=True, help="tag or branch, e.g. v11.1")
    ex.add_argument("--version", help="version for the header (default: from --ref)")
    ex.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    names, header = extract_from_git(args.repo, args.ref)
    version = args.version or args.ref.lstrip("v").replace("release/", "")
    write_list(args.out, names, version, header)
    print(f"{args.out}: {len(names)} names from {args.ref} ({header['commit'][:12]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
