"""The package layout is layered (ARCHITECTURE.md): rules, then operations, then drivers, then
integrations. A module imports, at module level, only its own layer and the ones before it, and
no two modules import each other in a circle."""

from __future__ import annotations

import ast
from pathlib import Path

import graphsend

ROOT = Path(graphsend.__file__).parent
ORDER = {"_rules": 0, "_operations": 1, "_drivers": 2, "integrations": 3}


def _module_imports() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found: set[str] = set()
        for node in ast.parse(path.read_text()).body:  # module level: lazy imports are allowed
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("graphsend"):
                assert node.module is not None
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    is_module = (ROOT.parent / sub.replace(".", "/")).with_suffix(".py").exists()
                    found.add(sub if is_module or alias.name == "_native" else node.module)
        graph[name] = found
    return graph


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return ORDER.get(parts[1]) if len(parts) > 1 else None


def test_no_module_imports_a_later_layer() -> None:
    wrong = [
        f"{module} -> {imported}"
        for module, imports in _module_imports().items()
        for imported in imports
        if (mine := _layer(module)) is not None
        and (theirs := _layer(imported)) is not None
        and theirs > mine
    ]
    assert not wrong, wrong


def test_no_import_cycles() -> None:
    graph = _module_imports()
    cycles: list[list[str]] = []

    def walk(module: str, stack: list[str]) -> None:
        for imported in graph.get(module, ()):
            if imported in stack:
                cycles.append([*stack[stack.index(imported) :], imported])
            elif len(stack) < 30:
                walk(imported, [*stack, imported])

    for module in graph:
        walk(module, [module])
    assert not cycles, cycles[:3]
