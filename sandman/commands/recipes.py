"""`sandman recipes check` and `recipes list`: recipes read and validated, nothing built.

The check has two passes. The first needs no engine: every recipe parsed and validated, build
inputs included. Only when it finds nothing does the second look at images: `packages` on a
base that has no apt-get (read from the base where an engine answers; without one, or for a
base named debian or ubuntu, not looked at).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sandman.context import Context
from sandman.errors import RecipeError, SandmanError


@dataclass(frozen=True)
class RecipeCheck:
    checked: int  # recipes looked at
    errors: list[RecipeError]

    @property
    def exit_code(self) -> int:
        """0; else the errors' own code when they agree (108: unsafe build inputs), else 112."""
        codes = {e.exit_code for e in self.errors}
        if not codes:
            return 0
        return codes.pop() if len(codes) == 1 else RecipeError.exit_code


def check(ctx: Context, paths: list[Path] | None = None) -> RecipeCheck:
    """The recipes that paths name (recipe files, recipe folders, folders of them), else every
    recipe in the catalog."""
    from sandman.recipe_check import check_paths, recipe_files

    if paths:
        checked, errors = check_paths(paths)
        files = recipe_files(paths)[0]
    else:
        checked = len(ctx.catalog.entries())
        errors = ctx.catalog.check_all()
        files = [e.recipe_file for e in ctx.catalog.entries()]
    if not errors:
        errors = packages_checked(ctx, files)
    return RecipeCheck(checked, errors)


def packages_checked(ctx: Context, files: list[Path]) -> list[RecipeError]:
    """`packages` on a base without apt, where an engine answers (without one: not checked, and
    said); bases named debian or ubuntu are not looked at (recipe_check.bases_to_check)."""
    from sandman.recipe_check import bases_to_check, load_recipe

    versions = bases_to_check(load_recipe(f) for f in files)
    if not versions:  # every one on a Debian or Ubuntu base: no engine needed
        return []
    from sandman.build import packages_without_apt

    try:
        return packages_without_apt(ctx.engine, versions)
    except SandmanError as e:
        ctx.out.info(f"sandman: the bases of `packages` were not checked: {e.message}")
        return []


def listing(ctx: Context) -> list[dict]:
    """Every recipe in the catalog as `recipes list --json` prints it: where it comes from, what
    shadows it, its versions and description, or why it does not load."""
    from sandman.recipe_check import load_recipe

    rows = []
    for e in ctx.catalog.entries():
        item = {"tool": e.tool, "source": e.source.name, "source_kind": e.source.kind,
                "path": str(e.recipe_file), "shadowed_by": e.shadowed_by,
                "versions": [], "description": "", "error": None}
        try:
            r = load_recipe(e.recipe_file, expect_tool=e.tool)
            item["versions"], item["description"] = r.version_names, r.description
        except RecipeError as err:
            item["error"] = err.message
        rows.append(item)
    return rows
