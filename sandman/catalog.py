"""Where recipes come from, and turning `tool@version` into one recipe version.

Precedence, most specific first: dirs in SANDMAN_RECIPE_PATH (this command), the user's own
recipes, recipe repositories in the order they were added, then the built-in recipes. A tool
found in several places is shadowed, and `recipes list` says so.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from sandman.errors import NotFoundError, RecipeError, UsageError
from sandman.paths import Paths, builtin_recipes_dir
from sandman.recipes import Recipe, Version, load_recipe

SPEC_RE = re.compile(
    r"^(?:(?P<source>[a-z0-9][a-z0-9._-]*)/)?(?P<tool>[a-z0-9][a-z0-9._-]*)"
    r"(?:@(?P<version>[A-Za-z0-9][A-Za-z0-9._+-]*))?$"
)


@dataclass(frozen=True)
class Source:
    """One place recipes come from. `name` addresses it (`NAME/tool@version`)."""

    name: str  # "env", "user", "builtin", or a repo name
    kind: str  # "env" | "user" | "repo" | "builtin"
    root: Path
    trusted: bool = True


@dataclass(frozen=True)
class Spec:
    tool: str
    version: str | None
    source: str | None = None

    def __str__(self) -> str:
        prefix = f"{self.source}/" if self.source else ""
        return f"{prefix}{self.tool}@{self.version}" if self.version else f"{prefix}{self.tool}"


@dataclass(frozen=True)
class Entry:
    """A tool found in a source; `shadowed_by` names the source that wins over it, if any."""

    tool: str
    source: Source
    recipe_file: Path
    shadowed_by: str | None = None


def parse_spec(text: str, *, need_version: bool = True) -> Spec:
    m = SPEC_RE.match(text.strip())
    if not m or (need_version and not m.group("version")):
        form = "TOOL@VERSION" if need_version else "TOOL[@VERSION]"
        raise UsageError(f"'{text}' is not {form} (for example sqlite3@3.34 or myrepo/sqlite3@3.34)")
    return Spec(m.group("tool"), m.group("version"), m.group("source"))


def default_sources(paths: Paths, env: dict[str, str] | None = None) -> list[Source]:
    env = dict(os.environ) if env is None else env
    sources: list[Source] = []
    for i, d in enumerate(p for p in env.get("SANDMAN_RECIPE_PATH", "").split(os.pathsep) if p):
        sources.append(Source("env" if i == 0 else f"env{i + 1}", "env", Path(d).expanduser()))
    sources.append(Source("user", "user", paths.user_recipes_dir))
    from sandman import repos  # repos know their own clones and trust

    sources.extend(repos.recipe_sources(paths))
    sources.append(Source("builtin", "builtin", builtin_recipes_dir()))
    return sources


class Catalog:
    def __init__(self, sources: list[Source]) -> None:
        self.sources = sources

    @classmethod
    def default(cls, paths: Paths) -> Catalog:
        return cls(default_sources(paths))

    def entries(self) -> list[Entry]:
        """Every tool in every source, in precedence order, with shadowing marked."""
        winner: dict[str, str] = {}
        out: list[Entry] = []
        for src in self.sources:
            if not src.root.is_dir():
                continue
            for folder in sorted(src.root.iterdir()):
                f = folder / "recipe.toml"
                if not f.is_file():
                    continue
                tool = folder.name
                out.append(Entry(tool, src, f, winner.get(tool)))
                winner.setdefault(tool, src.name)
        return out

    def tools(self) -> list[str]:
        return sorted({e.tool for e in self.entries()})

    def find(self, tool: str, source: str | None = None) -> Entry:
        for e in self.entries():
            if e.tool == tool and (source is None or e.source.name == source):
                return e
        if source is not None and source not in {s.name for s in self.sources}:
            names = ", ".join(s.name for s in self.sources)
            raise NotFoundError(f"unknown recipe source '{source}'; sources: {names}")
        known = ", ".join(self.tools()) or "none"
        where = f" in source '{source}'" if source else ""
        raise NotFoundError(f"unknown tool '{tool}'{where}; known tools: {known}")

    def load(self, tool: str, source: str | None = None) -> tuple[Entry, Recipe]:
        entry = self.find(tool, source)
        return entry, load_recipe(entry.recipe_file, expect_tool=tool)

    def resolve(self, spec: Spec) -> tuple[Entry, Recipe, Version]:
        entry, recipe = self.load(spec.tool, spec.source)
        if spec.version is None:
            raise UsageError(f"'{spec}' needs a version; {spec.tool} has: "
                             f"{', '.join(recipe.version_names)}")
        version = recipe.version(spec.version)
        if version is None:
            raise NotFoundError(
                f"unknown version '{spec.version}' of {spec.tool}; versions: "
                f"{', '.join(recipe.version_names)}"
            )
        return entry, recipe, version

    def check_all(self) -> list[RecipeError]:
        errors: list[RecipeError] = []
        for e in self.entries():
            try:
                load_recipe(e.recipe_file, expect_tool=e.tool)
            except RecipeError as err:
                errors.append(err)
        return errors
