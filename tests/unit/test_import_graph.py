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
FILES = {".".join(p.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__"): p
         for p in sorted(PACKAGE.rglob("*.py")) if "__pycache__" not in p.parts}
MODULES = sorted(m for m in FILES if m not in ("__init__", "__main__"))


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and (
        (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
        or (isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING"))


def imports_of(source: str, *, type_checking: bool = False) -> set[str]:
    """What a module's code imports from sandman, as names inside the package (`engines`,
    `commands.install`; for `from sandman.x import y` both `x` and `x.y`, the caller keeps the
    modules): outside `if TYPE_CHECKING:` unless type_checking."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if _type_checking_only(node) and not type_checking:
            for child in node.orelse:  # the else branch does run
                visit(child)
            return
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            parts = node.module.split(".")
            if parts[0] == "sandman":
                sub = ".".join(parts[1:])
                if sub:
                    found.add(sub)
                found.update(f"{sub}.{a.name}".lstrip(".") for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".", 1)[1] for a in node.names
                         if a.name.startswith("sandman."))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(source))
    return found


def graph(*, type_checking: bool = False) -> dict[str, set[str]]:
    g = {}
    for mod in MODULES:
        deps = imports_of(FILES[mod].read_text(encoding="utf-8"), type_checking=type_checking)
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
    known = {"a", "b", "c", "d", "e", "f", "g", "c.x"}
    assert imports_of(src) & known == {"a", "b", "c", "c.x", "d", "f", "g"}
    assert imports_of(src, type_checking=True) & known == {"a", "b", "c", "c.x", "d", "e", "f", "g"}
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


# -- the house: sandman's files and folders as rooms, read top-down --------------------------------
MAX_FLOORS = 10  # issue 20: a newcomer reads the house top-down, not a tower


def rooms() -> dict[str, set[str]]:
    """Each top-level module or sub-package of sandman is one room; an arrow is any import
    (TYPE_CHECKING ones too: a reader follows those as well)."""
    room = {m: m.split(".")[0] for m in MODULES}
    out: dict[str, set[str]] = {r: set() for r in room.values()}
    for mod, deps in graph(type_checking=True).items():
        out[room[mod]] |= {room[d] for d in deps if room[d] != room[mod]}
    out.setdefault("__main__", set()).add("cli")
    return out


def floors(g: dict[str, set[str]]) -> dict[str, int]:
    memo: dict[str, int] = {}

    def floor(r: str) -> int:
        if r not in memo:
            memo[r] = 1 + max((floor(d) for d in g[r]), default=0)
        return memo[r]

    return {r: floor(r) for r in g}


def test_the_house_has_no_circle_and_few_floors() -> None:
    g = rooms()
    assert not cycles(g), cycles(g)
    assert not cycles(graph(type_checking=True)), cycles(graph(type_checking=True))
    f = floors(g)
    top = max(f, key=f.__getitem__)
    path = [top]
    while g[path[-1]]:
        path.append(max(g[path[-1]], key=f.__getitem__))
    assert f[top] <= MAX_FLOORS, f"{f[top]} floors: " + " > ".join(path)
    assert f["cli"] == f[top] - 1 and all(f[r] < f["cli"] for r in g if r not in ("cli", "docgen", "__main__"))
