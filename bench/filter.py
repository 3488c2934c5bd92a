"""``--filter`` expressions, parsed by a small safe evaluator (never ``eval``).

Grammar: comparisons of case fields with constants, joined by ``and``/``or``/``not``, e.g.
``precision == 'fp16' and in_channels >= 64`` or ``kernel in [(1, 1), (3, 3)]``.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable
from typing import Any

from bench.errors import BenchError
from bench.spec import ConvSpec
from bench.suite import Case

FIELDS = frozenset(ConvSpec.model_fields) | {"label", "index", "key", "name"}
_OPS: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
}
MAX_LENGTH = 1000


def parse_filter(text: str) -> Callable[[Case], bool]:
    """Compile ``text`` into a predicate on cases; any problem is a one-line ``BenchError``."""
    if len(text) > MAX_LENGTH:
        raise BenchError(f"--filter: expression longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as e:
        raise BenchError(f"--filter: invalid expression {text!r} ({e.msg})") from None
    except ValueError as e:  # e.g. NUL bytes on Pythons that do not call it a SyntaxError
        raise BenchError(f"--filter: invalid expression {text!r} ({e})") from None
    _validate(tree.body, text)
    return lambda case: bool(_eval(tree.body, _fields(case)))


def _fields(case: Case) -> dict[str, Any]:
    d = dict(case.spec)
    d.update(label=case.label, index=case.index, key=case.key, name=case.name)
    return d


def _validate(node: ast.AST, text: str) -> None:
    if isinstance(node, ast.BoolOp) and isinstance(node.op, (ast.And, ast.Or)):
        for v in node.values:
            _validate(v, text)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        _validate(node.operand, text)
    elif isinstance(node, ast.Compare):
        if not all(type(op) in _OPS for op in node.ops):
            raise BenchError(f"--filter: unsupported operator in {text!r}")
        for v in [node.left, *node.comparators]:
            _validate_operand(v, text)
    else:
        raise BenchError(f"--filter: {text!r} is not a comparison such as \"precision == 'fp16'\"")


def _validate_operand(node: ast.AST, text: str) -> None:
    if isinstance(node, ast.Name):
        if node.id not in FIELDS:
            raise BenchError(f"--filter: unknown field {node.id!r} (known: "
                             f"{', '.join(sorted(FIELDS))})")
    elif isinstance(node, (ast.List, ast.Tuple)):
        for e in node.elts:
            _validate_operand(e, text)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(
            node.operand, ast.Constant) and isinstance(node.operand.value, (int, float)):
        pass  # a negative number; -'fp16' or -None would fail at evaluation time
    elif not (isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool))
              or isinstance(node, ast.Constant) and node.value is None):
        raise BenchError(f"--filter: only field names and constants are allowed in {text!r}")


def _eval(node: ast.AST, env: dict[str, Any]) -> Any:
    if isinstance(node, ast.BoolOp):
        vals = (_eval(v, env) for v in node.values)
        return all(vals) if isinstance(node.op, ast.And) else any(vals)
    if isinstance(node, ast.UnaryOp):
        v = _eval(node.operand, env)
        return (not v) if isinstance(node.op, ast.Not) else -v
    if isinstance(node, ast.Compare):
        left = _eval(node.left, env)
        for op, comp in zip(node.ops, node.comparators):
            right = _eval(comp, env)
            try:
                if not _OPS[type(op)](_norm(left), _norm(right)):
                    return False
            except TypeError:
                return False
            left = right
        return True
    if isinstance(node, ast.Name):
        return env[node.id]
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_eval(e, env) for e in node.elts]
    if isinstance(node, ast.Constant):
        return node.value
    raise AssertionError("validated above")


def _norm(v: Any) -> Any:
    """Tuples and lists compare equal: ``kernel == [3, 3]`` and ``kernel == (3, 3)`` both work."""
    if isinstance(v, (list, tuple)):
        return tuple(_norm(e) for e in v)
    return v
