"""The access report as Python sees it: one numpy dtype built from ``bpf/access.h``.

The header is the single definition; this module parses its struct and #defines so the BPF side
and the Python side cannot drift apart.
"""

from __future__ import annotations

import ast
import operator
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

_C_TYPES = {"__u8": "u1", "__u16": "u2", "__u32": "u4", "__u64": "u8"}


def bpf_dir() -> Path:
    """Directory of the C sources: ``damon_bpf/bpf`` inside the installed package, or the
    top-level ``bpf/`` when the package is imported straight from a source checkout."""
    installed = Path(str(resources.files("damon_bpf") / "bpf"))
    if installed.is_dir():
        return installed
    return Path(__file__).resolve().parent.parent / "bpf"


def _header_text() -> str:
    return (bpf_dir() / "access.h").read_text()


def _parse_struct(text: str, name: str) -> np.dtype:
    body = re.search(r"struct\s+%s\s*\{(.*?)\};" % name, text, re.S)
    if body is None:
        raise RuntimeError(f"struct {name} not found in access.h")
    fields = []
    for ctype, field, count in re.findall(r"(__u\d+|char)\s+(\w+)(?:\[([^\]]+)\])?\s*;", body.group(1)):
        if ctype == "char" and count.isdigit():   # a NUL-padded string (comm)
            fields.append((field, f"S{count}"))
            continue
        if count or ctype == "char":
            raise RuntimeError(f"field {field} of struct {name}: only __uN scalars and char[N] are supported")
        fields.append((field, "<" + _C_TYPES[ctype]))
    return np.dtype(fields)


def _parse_defines(text: str) -> dict[str, int]:
    values: dict[str, int] = {}
    for name, expr in re.findall(r"^#define\s+([A-Z_][A-Z0-9_]*)\s+(.+?)\s*(?:/\*.*)?$", text, re.M):
        try:
            values[name] = _integer_expression(ast.parse(expr, mode="eval").body, values)
        except (SyntaxError, ValueError):  # include guards and macros that are not integer constants
            continue
    return values


_OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.FloorDiv: operator.floordiv,
              ast.Div: operator.floordiv, ast.LShift: operator.lshift, ast.RShift: operator.rshift,
              ast.BitOr: operator.or_, ast.BitAnd: operator.and_}


def _integer_expression(node: ast.AST, names: dict[str, int]) -> int:
    """The value of a #define's integer expression: literals, earlier #defines, + - * / << >> | &
    and parentheses (C's integer division truncates; our constants are non-negative). Anything
    else is not a constant of ours: ValueError."""
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return node.value
    if isinstance(node, ast.Name) and node.id in names:
        return names[node.id]
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        return _OPERATORS[type(node.op)](_integer_expression(node.left, names), _integer_expression(node.right, names))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_integer_expression(node.operand, names)
    raise ValueError(f"not an integer constant expression: {ast.dump(node)}")


@lru_cache(maxsize=None)
def access_dtype() -> np.dtype:
    """numpy dtype of ``struct access_record``."""
    return _parse_struct(_header_text(), "access_record")


@lru_cache(maxsize=None)
def struct_dtype(header: str, name: str) -> np.dtype:
    """numpy dtype of ``struct name`` in bpf/``header`` (for structs other programs hand to Python)."""
    return _parse_struct((bpf_dir() / header).read_text(), name)


def lifecycle_dtype() -> np.dtype:
    """numpy dtype of ``struct lifecycle_record`` (fork/exec/exit of a followed process)."""
    return _parse_struct(_header_text(), "lifecycle_record")


@lru_cache(maxsize=None)
def constants() -> dict[str, int]:
    """Numeric #defines of access.h (ACCESS_WRITE, MAX_FILTERS, COUNTER_* ...)."""
    return _parse_defines(_header_text())


ACCESS_DTYPE = access_dtype()
_C = constants()
ACCESS_READ = _C["ACCESS_READ"]
ACCESS_WRITE = _C["ACCESS_WRITE"]
ACCESS_UNKNOWN = _C["ACCESS_UNKNOWN"]
MAX_FILTERS = _C["MAX_FILTERS"]
MAX_CPUS = _C["MAX_CPUS"]
LIFECYCLE_DTYPE = lifecycle_dtype()
LIFECYCLE_KINDS = {_C["LIFECYCLE_FORK"]: "fork", _C["LIFECYCLE_EXEC"]: "exec", _C["LIFECYCLE_EXIT"]: "exit",
                   _C["LIFECYCLE_JOIN"]: "join", _C["LIFECYCLE_LEAVE"]: "leave"}
FILTER_TYPES = {"cpumask": _C["FILTER_CPUMASK"], "threads": _C["FILTER_THREADS"], "write": _C["FILTER_WRITE"]}


def empty_batch(n: int = 0) -> np.ndarray:
    """An array of ``n`` zeroed access records."""
    return np.zeros(n, dtype=ACCESS_DTYPE)
