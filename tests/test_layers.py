"""Imports point one way (docs/design.md §1): each module imports only from its own layer or the layers
below it, and no modules import each other in a cycle, not even from inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Lowest first. A module not named here takes the layer of its package.
LAYERS = [
    # shared definitions
    ["damon_bpf", "damon_bpf.errors", "damon_bpf.access", "damon_bpf.filters", "damon_bpf.outputs",
     "damon_bpf.childproc", "damon_bpf.log", "damon_bpf.rounds"],
    ["damon_bpf.core"],
    ["damon_bpf.sources"],
    ["damon_bpf.samplers"],
    ["damon_bpf.session", "damon_bpf.recorder", "damon_bpf.recordfile", "damon_bpf.monitor", "damon_bpf.eventlog",
     "damon_bpf.probe", "damon_bpf.dark", "damon_bpf.priority", "damon_bpf.standing"],
    ["damon_bpf.reports", "damon_bpf.live", "damon_bpf.metrics"],
    ["cli"],
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for package in ("damon_bpf", "cli") for p in (ROOT / package).rglob("*.py")}


def imports(path: Path, known: set[str]) -> set[str]:
    """Every project module ``path`` imports, wherever the import statement is."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found.update(name for name in names if name in known)
    return found


def layer(module: str) -> int:
    best, best_len = None, -1
    for index, members in enumerate(LAYERS):
        for member in members:
            if (module == member or module.startswith(member + ".")) and len(member) > best_len:
                best, best_len = index, len(member)
    assert best is not None, f"{module} belongs to no layer: add it to LAYERS"
    return best


def graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: imports(path, known) - {name} for name, path in found.items()}


def upward_imports(edges: dict[str, set[str]]) -> list[str]:
    return sorted(f"{module} (layer {layer(module)}) imports {target} (layer {layer(target)})"
                  for module, targets in edges.items() for target in targets if layer(target) > layer(module))


def cycles(edges: dict[str, set[str]]) -> list[str]:
    """Every module that can reach itself through imports, with one such path."""
    found = []
    for start in sorted(edges):
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for target in sorted(edges.get(node, ())):
                if target == start:
                    found.append(" -> ".join(path + [target]))
                elif target not in seen:
                    seen.add(target)
                    stack.append((target, path + [target]))
    return found


def test_every_import_points_down_or_sideways():
    upward = upward_imports(graph())
    assert not upward, "\n".join(upward)


def test_no_import_cycles():
    found = cycles(graph())
    assert not found, "\n".join(found)


def test_the_checks_catch_an_upward_import_and_a_cycle(tmp_path):
    """The rules are not vacuous: imports inside functions count, an upward one is named, a cycle is found."""
    module = tmp_path / "m.py"
    module.write_text("from damon_bpf.sources import host\n\ndef f():\n    from damon_bpf.core import regions\n")
    known = {"damon_bpf.sources", "damon_bpf.sources.host", "damon_bpf.core.regions", "cli.main"}
    assert imports(module, known) == {"damon_bpf.sources", "damon_bpf.sources.host", "damon_bpf.core.regions"}
    edges = {"damon_bpf.core.regions": {"damon_bpf.sources.host"}, "damon_bpf.sources.host": {"damon_bpf.core.regions"}}
    assert upward_imports(edges) == ["damon_bpf.core.regions (layer 1) imports damon_bpf.sources.host (layer 2)"]
    assert cycles(edges) == ["damon_bpf.core.regions -> damon_bpf.sources.host -> damon_bpf.core.regions",
                             "damon_bpf.sources.host -> damon_bpf.core.regions -> damon_bpf.sources.host"]


def test_the_core_defines_its_own_input_and_never_reads_the_bpf_record():
    """The core consumes core.events' REPORT_COLUMNS and Kind; the BPF record (damon_bpf.access) is adapted
    to them above it (recorder.core_reports), as the kernel's core.c knows no operation set's types."""
    edges = graph()
    reaching = sorted(f"{module} imports {target}" for module, targets in edges.items() for target in targets
                      if layer(module) == layer("damon_bpf.core") and target.startswith("damon_bpf.access"))
    assert not reaching, "\n".join(reaching)
