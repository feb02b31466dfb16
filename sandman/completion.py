"""Shell completion of TOOL@VERSION arguments, from the recipe catalog or the install records.

The shell calls these on every Tab, so they must be quick and must never fail: a broken recipe
or an unreadable record just means fewer suggestions, not a traceback in the user's prompt.
"""

from __future__ import annotations

from collections.abc import Callable

from sandman import installs
from sandman.errors import SandmanError
from sandman.paths import Paths


def _catalog_specs(paths: Paths) -> list[str]:
    from sandman.catalog import Catalog
    from sandman.recipe_check import load_recipe

    out: list[str] = []
    seen: set[str] = set()
    for entry in Catalog.default(paths).entries():
        if entry.tool in seen or entry.shadowed_by:
            continue
        seen.add(entry.tool)
        try:
            recipe = load_recipe(entry.recipe_file, expect_tool=entry.tool)
        except SandmanError:
            continue
        out.extend(f"{recipe.tool}@{v}" for v in recipe.version_names)
    return out


def _installed_specs(paths: Paths) -> list[str]:
    try:
        return [r.key for r in installs.all_records(paths)]
    except SandmanError:
        return []


def _safe(fn: Callable[[Paths], list[str]], paths: Paths | None) -> list[str]:
    try:
        return fn(paths or Paths.from_env())
    except (SandmanError, OSError, ValueError):
        return []


def recipe_specs(incomplete: str, paths: Paths | None = None) -> list[str]:
    """Every tool@version the catalog can build, that starts with what was typed."""
    return [s for s in _safe(_catalog_specs, paths) if s.startswith(incomplete)]


def installed_specs(incomplete: str, paths: Paths | None = None) -> list[str]:
    """Every installed tool@version that starts with what was typed."""
    return [s for s in _safe(_installed_specs, paths) if s.startswith(incomplete)]


def matrix_specs(incomplete: str, paths: Paths | None = None) -> list[str]:
    """`tool@v1,v2,...`: `tool@all` first; after a comma, the versions not listed yet."""
    if "," not in incomplete:
        specs = _safe(_catalog_specs, paths)
        tools = sorted({s.split("@", 1)[0] for s in specs})
        return [s for s in [*specs, *(f"{t}@all" for t in tools)] if s.startswith(incomplete)]
    head, _, last = incomplete.rpartition(",")
    tool = head.split(",", 1)[0].split("@", 1)[0]
    listed = {p.split("@")[-1] for p in head.split(",")}
    versions = [s.split("@", 1)[1] for s in _safe(_catalog_specs, paths) if s.split("@", 1)[0] == tool]
    return [f"{head},{v}" for v in versions if v not in listed and v.startswith(last)]
