"""No sandman module reaches into another's private names.

A leading underscore says "this module's own business": free to change without looking for
callers. A module that imports `_kind` from another (or calls `engines._alive(...)`) turns it
into a public name nobody documented, and the next edit breaks the caller. When a helper is
shared, it gets a real name and a docstring that says why in the module that owns it.

Counted: `from sandman.x import _y`, and `x._y` (or `getattr(x, "_y")`) where `x` is a sandman
module the file imported, at any depth of the file (a function-level import counts the same).
Dunder names (`__version__`) are public by convention. Tests may look inside a module; the
package may not.
"""

from __future__ import annotations

import ast
from pathlib import Path

import sandman

PACKAGE = Path(sandman.__file__).resolve().parent
SOURCES = sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def dotted(path: Path) -> str:
    """A module's name inside the package: `engines`, `commands.install`, `commands`."""
    rel = path.relative_to(PACKAGE).with_suffix("")
    return ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)


MODULES = frozenset(dotted(p) for p in SOURCES)

# Known uses waiting for their owner, each as (importing module, "module._name"). Only shrink
# this (test_the_allow_list_has_no_stale_entry): it is empty, and stays so.
ALLOWED: frozenset[tuple[str, str]] = frozenset()


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_uses(source: str, package: str = "sandman",
                 modules: frozenset[str] = MODULES) -> list[tuple[int, str]]:
    """(line, "module._name") for each private name of another sandman module this source uses."""
    found: list[tuple[int, str]] = []
    _scan(ast.parse(source).body, {}, package, modules, found)
    return sorted(set(found))


_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)


def _in_scope(nodes: list[ast.stmt] | list[ast.expr]) -> list[ast.AST]:
    """Every node of one scope; a nested function or class is listed, not entered."""
    out: list[ast.AST] = []
    todo: list[ast.AST] = list(nodes)
    while todo:
        node = todo.pop()
        out.append(node)
        if not isinstance(node, _SCOPES):
            todo.extend(ast.iter_child_nodes(node))
        elif not isinstance(node, ast.Lambda):  # these run in the enclosing scope
            todo.extend(node.decorator_list)
            if isinstance(node, ast.ClassDef):
                todo.extend([*node.bases, *node.keywords])
            else:
                todo.extend([*node.args.defaults, *(d for d in node.args.kw_defaults if d)])
        else:
            todo.extend([*node.args.defaults, *(d for d in node.args.kw_defaults if d)])
    return out


def _scan(body: list[ast.stmt] | list[ast.expr], outer: dict[str, str], package: str,
          modules: frozenset[str], found: list[tuple[int, str]]) -> None:
    """Check one scope; `outer` maps the names it inherits to the sandman module each is.

    Scopes matter: `from sandman import install as core` in one function and
    `from typer import core` in another are two different `core`s.
    """
    nodes = _in_scope(body)
    aliases = dict(outer)
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # from .x import _y, inside the package
                base = f"{package}.{base}".rstrip(".")
            parts = base.split(".")
            for a in node.names:
                bound = a.asname or a.name
                aliases.pop(bound, None)
                if parts[0] != package:
                    continue
                sub = ".".join(parts[1:])
                if f"{sub}.{a.name}".lstrip(".") in modules:  # from sandman[.pkg] import x [as y]
                    aliases[bound] = f"{sub}.{a.name}".lstrip(".")
                elif _private(a.name):
                    owner = sub or package
                    found.append((node.lineno, f"{owner}.{a.name}"))
        elif isinstance(node, ast.Import):
            for a in node.names:
                parts = a.name.split(".")
                aliases.pop(a.asname or parts[0], None)
                if parts[0] != package or len(parts) < 2:
                    continue
                if a.asname:  # import sandman.x as y
                    aliases[a.asname] = ".".join(parts[1:])
                elif _private(parts[1]):
                    found.append((node.lineno, a.name))
    for node in nodes:
        if isinstance(node, ast.Attribute) and _private(node.attr):
            owner = _module_of(node.value, aliases, package, modules)
            if owner:
                found.append((node.lineno, f"{owner}.{node.attr}"))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id == "getattr" and len(node.args) >= 2
              and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)
              and _private(node.args[1].value)):
            owner = _module_of(node.args[0], aliases, package, modules)
            if owner:
                found.append((node.lineno, f"{owner}.{node.args[1].value}"))
        elif isinstance(node, ast.Lambda):
            _scan([node.body], aliases, package, modules, found)
        elif isinstance(node, _SCOPES):
            _scan(node.body, aliases, package, modules, found)


def _module_of(node: ast.expr, aliases: dict[str, str], package: str,
               modules: frozenset[str]) -> str | None:
    """The sandman module `node` names (`engines`, `sandman.engine_choice`, an alias), or None."""
    if isinstance(node, ast.Name):
        return aliases.get(node.id)
    if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
            and node.value.id == package and node.attr in modules):
        return node.attr  # sandman.x._y after `import sandman.x`
    return None


def test_the_reader_sees_every_way_in() -> None:
    src = """
from sandman.a import _one, two, three as _renamed
from sandman import b, c as cc, __version__
import sandman.d
import sandman.e as ee
from .f import _six
def later():
    from sandman import g
    g._seven()
    lambda: cc._nine
@b._ten
def elsewhere(x=ee._eleven):
    from typer import g
    g._not_ours()
b._two()
cc._three
sandman.d._four()
ee._five
getattr(b, "_eight")
b.public(), sandman.__version__, b.__name__
self._mine, other._theirs
"""
    mods = frozenset("abcdefg")
    uses = {use for _, use in private_uses(src, modules=mods)}
    assert uses == {"a._one", "f._six", "g._seven", "b._two", "c._three", "d._four", "e._five",
                    "b._eight", "c._nine", "b._ten", "e._eleven"}


def uses_in_package() -> set[tuple[str, str, int]]:
    return {(dotted(path), use, line)
            for path in SOURCES
            for line, use in private_uses(path.read_text(encoding="utf-8"))
            if not use.startswith(f"{dotted(path)}.")}  # its own name, spelled through the package


def test_no_module_uses_another_modules_private_name() -> None:
    bad = sorted(u for u in uses_in_package() if (u[0], u[1]) not in ALLOWED)
    assert not bad, ("private names used across modules (make the helper public, with a docstring "
                     "saying why it is shared, in the module that owns it): "
                     + "; ".join(f"sandman/{mod}.py:{line} uses {use}" for mod, use, line in bad))


def test_the_allow_list_has_no_stale_entry() -> None:
    """An entry whose use is gone is removed with it, so the list only shrinks."""
    seen = {(mod, use) for mod, use, _ in uses_in_package()}
    stale = sorted(ALLOWED - seen)
    assert not stale, f"remove from ALLOWED in {__file__}: {stale}"
