"""Where recipes come from, and turning `tool@version` into one recipe version.

Precedence, most specific first: dirs in SANDMAN_RECIPE_PATH (this command), the user's own
recipes, recipe repositories in the order they were added, then the built-in recipes. A tool
found in several places is shadowed, and `recipes list` says so.

Two exceptions keep sources truthful (docs/teams.md). An installed tool@version resolves from
the source it was installed from, unless the user names another: an install never switches
source behind the user's back. And a recipe of a repo whose update waits for trust stays
trusted when its folder is byte for byte the one the user trusted: it builds what was reviewed.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

from sandman import installs, repos
from sandman.errors import NotFoundError, RecipeError, StateError, UsageError
from sandman.paths import Paths, builtin_recipes_dir
from sandman.recipe_check import load_recipe
from sandman.recipes import Recipe, Version

SPEC_RE = re.compile(
    r"^(?:(?P<source>[a-z0-9][a-z0-9._-]*)/)?(?P<tool>[a-z0-9][a-z0-9._-]*)"
    r"(?:@(?P<version>[A-Za-z0-9][A-Za-z0-9._+-]*))?\Z"
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
    sources.extend(Source(r.name, r.kind, repos.recipes_root(repos.clone_dir(paths, r.name)),
                          trusted=r.trusted) for r in repos.load_all(paths))
    sources.append(Source("builtin", "builtin", builtin_recipes_dir()))
    return sources


class Catalog:
    def __init__(self, sources: list[Source], paths: Paths | None = None) -> None:
        """`paths` (the home's state) turns on the two exceptions above; without it, plain
        precedence and each source's own trust."""
        self.sources = sources
        self.paths = paths
        self._unchanged: dict[str, frozenset[str]] = {}
        # recipe file and tool -> (the file's stat when parsed, its Recipe or its RecipeError):
        # a command parses each recipe once, however many of its versions it looks at
        self._parsed: dict[tuple[Path, str], tuple[tuple[int, ...], Recipe | RecipeError]] = {}

    @classmethod
    def default(cls, paths: Paths) -> Catalog:
        return cls(default_sources(paths), paths)

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
                return self._trusted_if_unchanged(e)
        if source is not None and source not in {s.name for s in self.sources}:
            names = ", ".join(s.name for s in self.sources)
            raise NotFoundError(f"unknown recipe source '{source}'; sources: {names}")
        known = ", ".join(self.tools()) or "none"
        where = f" in source '{source}'" if source else ""
        raise NotFoundError(f"unknown tool '{tool}'{where}; known tools: {known}")

    def load(self, tool: str, source: str | None = None) -> tuple[Entry, Recipe]:
        entry = self.find(tool, source)
        return entry, self._recipe(entry.recipe_file, tool)

    def _recipe(self, path: Path, tool: str) -> Recipe:
        """load_recipe, once per file for this catalog (parsed again when the file changed)."""
        try:
            st = os.stat(path)
        except OSError:
            return load_recipe(path, expect_tool=tool)  # its own error says what is wrong
        sig = (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        kept = self._parsed.get((path, tool))
        if kept is None or kept[0] != sig:
            try:
                got: Recipe | RecipeError = load_recipe(path, expect_tool=tool)
            except RecipeError as e:
                got = e
            kept = self._parsed[(path, tool)] = (sig, got)
        if isinstance(kept[1], RecipeError):
            raise kept[1]
        return kept[1]

    def _trusted_if_unchanged(self, e: Entry) -> Entry:
        """e, trusted when its repo's pending update leaves its recipe folder as trusted."""
        if e.source.trusted or e.source.kind != "repo" or self.paths is None:
            return e
        if e.source.name not in self._unchanged:
            repo = next((r for r in repos.load_all(self.paths) if r.name == e.source.name), None)
            self._unchanged[e.source.name] = (repos.unchanged_tools(self.paths, repo)
                                              if repo is not None else frozenset())
        if e.tool not in self._unchanged[e.source.name]:
            return e
        return replace(e, source=replace(e.source, trusted=True))

    def pick(self, spec: Spec) -> Spec:
        """spec with the source its installed version came from, when the user named none."""
        if spec.source is not None or spec.version is None or self.paths is None:
            return spec
        try:
            rec = installs.load(self.paths, spec.tool, spec.version)
        except StateError:
            return spec  # a broken record: plain precedence (install repairs the record)
        if rec is None:
            return spec
        if re.fullmatch(r"env\d*", rec.source) and any(s.kind == "env" for s in self.sources):
            return spec  # env, env2... are places in SANDMAN_RECIPE_PATH, given for this command
        return replace(spec, source=rec.source)

    def resolve(self, spec: Spec) -> tuple[Entry, Recipe, Version]:
        """The recipe version spec names; an installed version keeps its source (see above)."""
        picked = self.pick(spec)
        if picked.source != spec.source and picked.source not in {s.name for s in self.sources}:
            raise NotFoundError(
                f"{spec} was installed from '{picked.source}', which is not a recipe source here "
                f"now; add it back, or name the source to switch to (SOURCE/{spec}; sources: "
                f"{', '.join(s.name for s in self.sources)})")
        spec = picked
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
        """Every recipe in every source, build inputs included (nothing is built)."""
        from sandman.recipe_check import check_recipe

        errors: list[RecipeError] = []
        for e in self.entries():
            try:
                check_recipe(e.recipe_file, expect_tool=e.tool)
            except RecipeError as err:
                errors.append(err)
        return errors
