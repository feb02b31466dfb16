"""`sandman outdated`: what the recipe sources now say about the versions installed here.

For each installed tool, by the source it was installed from (docs/teams.md, "An install keeps
its source"): the versions that source offers now that are not installed here (`new`), and the
installed versions it no longer has (`dropped`: their recipe is gone, so `upgrade` cannot
rebuild them; they keep working). A repository is read at its pinned commit, as everywhere:
`sandman repo update` first to see what was pushed since. An untrusted repo's offers are not
listed (a note says how to trust it); what it dropped is, since that needs no trust.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from sandman import installs
from sandman.catalog import Catalog
from sandman.errors import NotFoundError, RecipeError
from sandman.paths import Paths
from sandman.recipe_check import load_recipe


@dataclass(frozen=True)
class Outdated:
    tool: str
    source: str
    kind: str  # env | user | repo | bundle | builtin | "" (the source is gone)
    installed: list[str]
    new: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    trusted: bool = True
    note: str | None = None

    def as_json(self) -> dict:
        return asdict(self)


def report(paths: Paths, catalog: Catalog) -> list[Outdated]:
    """One row per installed (tool, source) that has new or dropped versions, or a note."""
    by: dict[tuple[str, str], list[str]] = {}
    for rec in installs.all_records(paths):
        by.setdefault((rec.tool, rec.source), []).append(rec.version)
    sources = {s.name: s for s in catalog.sources}
    rows = []
    for (tool, source), versions in sorted(by.items()):
        versions = sorted(versions)
        src = sources.get(source)
        if src is None:
            rows.append(Outdated(tool, source, "", versions, note=(
                f"source '{source}' is not a recipe source here now; its versions keep working, "
                f"but nothing can say what it offers")))
            continue
        kind = src.kind
        try:
            entry = catalog.find(tool, source)
        except NotFoundError:
            rows.append(Outdated(tool, source, kind, versions, dropped=versions, note=(
                f"'{source}' has no recipe for {tool} any more")))
            continue
        try:
            recipe = load_recipe(entry.recipe_file, expect_tool=tool)
        except RecipeError as e:
            rows.append(Outdated(tool, source, kind, versions, note=f"recipe unreadable: {e.message}"))
            continue
        dropped = [v for v in versions if recipe.version(v) is None]
        have = {recipe.version(v).version for v in versions if recipe.version(v) is not None}
        offered = [v for v in recipe.version_names if v not in have]
        if not entry.source.trusted:
            if offered or dropped:
                rows.append(Outdated(tool, source, kind, versions, dropped=dropped, trusted=False,
                                     note=f"repo '{source}' is not trusted at its pinned commit, "
                                          f"so its offers are not listed; review it, then run: "
                                          f"sandman repo trust {source}"))
            continue
        if offered or dropped:
            rows.append(Outdated(tool, source, kind, versions, offered, dropped))
    return rows

