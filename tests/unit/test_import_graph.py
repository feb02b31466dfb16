"""Imports flow one way: no sandman module imports, at any depth, a module that imports it.

A cycle hidden behind a function-level import still ties two layers together (and breaks as
soon as someone moves the import up), so the graph counts every import in a module, at module
level or inside a function. Only `if TYPE_CHECKING:` blocks are left out: they never run.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import sandman

PACKAGE = Path(sandman.__file__).resolve().parent
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__main__")


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and (
        (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
        or (isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING"))


def imports_of(source: str) -> set[str]:
    """The sandman modules a module's code imports (outside `if TYPE_CHECKING:`)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if _type_checking_only(node):
            for child in node.orelse:  # the else branch does run
                visit(child)
            return
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            parts = node.module.split(".")
            if parts[0] == "sandman":
                found.update([parts[1]] if len(parts) > 1 else [a.name for a in node.names])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names
                         if a.name.startswith("sandman."))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(source))
    return found


def graph() -> dict[str, set[str]]:
    g = {}
    for mod in MODULES:
        deps = imports_of((PACKAGE / f"{mod}.py").read_text(encoding="utf-8"))
        g[mod] = {d for d in deps if d in MODULES and d != mod}
    return g


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """One path per cycle found by depth-first search: [a, b, ..., a]."""
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def walk(mod: str) -> None:
        state[mod] = 1
        path.append(mod)
        for dep in sorted(g.get(mod, ())):
            if state.get(dep) == 1:
                found.append([*path[path.index(dep):], dep])
            elif dep not in state:
                walk(dep)
        path.pop()
        state[mod] = 2

    for mod in sorted(g):
        if mod not in state:
            walk(mod)
    return found


def test_the_graph_reader_sees_every_kind_of_import():
    src = """
from sandman import a, b
from sandman.c import x
import sandman.d
from typing import TYPE_CHECKING
if TYPE_CHECKING:
    from sandman.e import Y
else:
    from sandman.f import Z
def later():
    from sandman import g
"""
    assert imports_of(src) == {"a", "b", "c", "d", "f", "g"}
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


def test_no_import_cycle_among_sandman_modules():
    found = cycles(graph())
    assert not found, "import cycles (a -> b means a imports b): " + "; ".join(
        " -> ".join(c) for c in found)


@pytest.mark.parametrize("module", MODULES)
def test_each_module_imports_alone(module):
    """In a fresh interpreter, so no module is found half-initialised through another."""
    p = subprocess.run([sys.executable, "-c", f"import sandman.{module}"], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
