"""The package's structure holds: no import cycle between buildlib's sub-packages.

Module-level imports only: an import inside a function is the lazy-import pattern the
start-up relies on (it runs when used, never at import time), and an import under
`TYPE_CHECKING` never runs. A cycle between sub-packages means one of them is not a layer
any more (issue 15: graph and run_bounded moved to core, change selection to changes/).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from helpers import ROOT

PACKAGE = ROOT / "buildlib"


def module_level_imports(path: Path) -> Iterator[str]:
    """The buildlib modules `path` imports when it is imported."""

    def visit(nodes: list[ast.stmt]) -> Iterator[str]:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            if isinstance(node, ast.Import):
                yield from (alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                yield node.module
                yield from (f"{node.module}.{alias.name}" for alias in node.names)
            for block in ("body", "orelse", "finalbody"):
                yield from visit(getattr(node, block, []) or [])
            for handler in getattr(node, "handlers", []) or []:
                yield from visit(handler.body)

    yield from (
        name for name in visit(ast.parse(path.read_text()).body) if name.startswith("buildlib.")
    )


def subpackage(module: str) -> str | None:
    parts = module.split(".")
    if len(parts) < 2 or not (PACKAGE / parts[1]).is_dir():
        return None
    return parts[1]


def subpackage_graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        if "_reapi" in path.parts:  # generated protobuf code
            continue
        source = subpackage(".".join(path.relative_to(ROOT).with_suffix("").parts))
        if source is None:
            continue
        for imported in module_level_imports(path):
            target = subpackage(imported)
            if target is not None and target != source:
                edges.setdefault(source, set()).add(target)
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path, or None (depth first with colours)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := walk(nxt)) is not None:
                return found
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(edges):
        if node not in state and (found := walk(node)) is not None:
            return found
    return None


def test_no_import_cycle_between_subpackages() -> None:
    edges = subpackage_graph()
    assert {"core", "workspace", "planning", "run", "cache"} <= set(edges) | {"core"}
    cycle = find_cycle(edges)
    assert cycle is None, " -> ".join(cycle or [])


def test_core_imports_no_other_subpackage() -> None:
    assert subpackage_graph().get("core", set()) == set()


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}}) is None
