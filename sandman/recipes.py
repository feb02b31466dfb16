"""The recipe model and its loader.

A recipe is untrusted data (it may come from a shared repository), so loading it only parses
TOML and checks types: nothing in it is run on the host. Validation happens here, once, so that
everything downstream can rely on the model; every error names file, line and key.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandman.errors import RecipeError

SCHEMA = 1
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
MOUNT_NAME_RE = re.compile(r"^[a-z0-9_-]+$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
COMMAND_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
MODES = ("ro", "rw")
PATH_ARG_MODES = ("ro", "rw", "off")


@dataclass(frozen=True)
class Mount:
    name: str
    source: str
    target: str
    mode: str = "ro"
    optional: bool = False


@dataclass(frozen=True)
class Kit:
    file: str
    sha256: str


@dataclass(frozen=True)
class Runtime:
    """How a version runs: everything a shim needs, fixed at install time."""

    entrypoint: tuple[str, ...] = ()
    commands: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    pass_env: tuple[str, ...] = ()
    path_env: dict[str, str] = field(default_factory=dict)
    path_args: str = "ro"
    network: bool = False
    smoke: tuple[str, ...] = ()
    mounts: tuple[Mount, ...] = ()


@dataclass(frozen=True)
class BuildSpec:
    base: str | None = None
    packages: tuple[str, ...] = ()
    run: tuple[str, ...] = ()
    dockerfile: str | None = None
    build_args: dict[str, str] = field(default_factory=dict)
    files: tuple[str, ...] = ()
    kits: tuple[Kit, ...] = ()


@dataclass(frozen=True)
class Version:
    version: str
    build: BuildSpec
    runtime: Runtime


@dataclass(frozen=True)
class Recipe:
    tool: str
    description: str
    homepage: str | None
    path: Path  # the recipe.toml file
    versions: tuple[Version, ...]

    @property
    def folder(self) -> Path:
        return self.path.parent

    def version(self, name: str) -> Version | None:
        return next((v for v in self.versions if v.version == name), None)

    @property
    def version_names(self) -> list[str]:
        return [v.version for v in self.versions]


RUNTIME_KEYS = {
    "entrypoint", "commands", "env", "pass_env", "path_env", "path_args", "network", "smoke",
    "mounts",
}
BUILD_KEYS = {"base", "packages", "run", "dockerfile", "build_args", "files", "kits"}
TOP_KEYS = {"schema", "tool", "description", "homepage", "versions"} | RUNTIME_KEYS
MOUNT_KEYS = {"name", "source", "target", "mode", "optional"}
KIT_KEYS = {"file", "sha256"}


def load_recipe(path: Path, *, expect_tool: str | None = None) -> Recipe:
    """Parse and validate one recipe file; raise RecipeError listing every problem found."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise RecipeError(f"{path}: cannot read recipe: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise RecipeError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from e
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise RecipeError(_toml_error(path, str(e))) from e
    v = _Validator(path, text)
    recipe = v.recipe(data, expect_tool or path.parent.name)
    if v.errors:
        raise RecipeError(v.errors[0], detail="\n".join(v.errors[1:]) or None)
    assert recipe is not None
    return recipe


def _toml_error(path: Path, msg: str) -> str:
    m = re.search(r"\(at line (\d+), column (\d+)\)", msg)
    if m:
        clean = msg[: m.start()].strip()
        return f"{path}:{m.group(1)}: invalid TOML: {clean} (column {m.group(2)})"
    return f"{path}: invalid TOML: {msg}"


class _Validator:
    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.lines = LineLocator(text)
        self.errors: list[str] = []

    def err(self, keypath: tuple[str | int, ...], msg: str) -> None:
        line = self.lines.find(keypath)
        where = f"{self.path}:{line}" if line else f"{self.path}"
        self.errors.append(f"{where}: {dotted(keypath)}: {msg}" if keypath else f"{where}: {msg}")

    # -- typed getters: report and return a safe default on error -------------------------
    def string(self, d: dict, key: str, kp: tuple, *, required: bool = False) -> str | None:
        if key not in d:
            if required:
                self.err(kp[:-1], f"missing required key '{key}'")
            return None
        val = d[key]
        if not isinstance(val, str) or not val:
            self.err(kp, f"expected a non-empty string, got {_kind(val)}")
            return None
        return val

    def strlist(self, d: dict, key: str, kp: tuple, *, allow_str: bool = False) -> tuple[str, ...]:
        val = d.get(key, [])
        if allow_str and isinstance(val, str):
            val = [val]
        if not isinstance(val, list) or not all(isinstance(x, str) for x in val):
            self.err(kp, f"expected a list of strings, got {_kind(val)}")
            return ()
        return tuple(val)

    def strtable(self, d: dict, key: str, kp: tuple) -> dict[str, str]:
        val = d.get(key, {})
        if not isinstance(val, dict) or not all(isinstance(x, str) for x in val.values()):
            self.err(kp, f"expected a table of strings, got {_kind(val)}")
            return {}
        return dict(val)

    def unknown(self, d: dict, allowed: set[str], kp: tuple) -> None:
        for key in d:
            if key not in allowed:
                close = difflib.get_close_matches(key, sorted(allowed), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                self.err((*kp, key), f"unknown key{hint}")

    # -- the recipe -------------------------------------------------------------------------
    def recipe(self, data: dict[str, Any], folder_name: str) -> Recipe | None:
        self.unknown(data, TOP_KEYS, ())
        schema = data.get("schema")
        if schema is None:
            self.err((), "missing required key 'schema' (add: schema = 1)")
        elif schema != SCHEMA:
            self.err(("schema",), f"unsupported schema {schema!r}; this sandman reads schema {SCHEMA}")
        tool = self.string(data, "tool", ("tool",), required=True)
        if tool is not None:
            if not NAME_RE.match(tool):
                self.err(("tool",), f"'{tool}' is not a valid name (lower case letters, digits, . _ -)")
            elif tool != folder_name:
                self.err(("tool",), f"'{tool}' does not match its folder name '{folder_name}'")
        description = self.string(data, "description", ("description",), required=True)
        homepage = self.string(data, "homepage", ("homepage",))
        defaults = self.runtime(data, (), Runtime())
        versions_raw = data.get("versions")
        versions: list[Version] = []
        if versions_raw is None:
            self.err((), "missing required table 'versions' (add: [versions.\"1.0\"])")
        elif not isinstance(versions_raw, dict) or not versions_raw:
            self.err(("versions",), "expected a table with one table per version")
        else:
            for name, vdata in versions_raw.items():
                kp = ("versions", name)
                if not VERSION_RE.match(name):
                    self.err(kp, f"'{name}' is not a valid version (letters, digits, . _ + -)")
                if not isinstance(vdata, dict):
                    self.err(kp, f"expected a table, got {_kind(vdata)}")
                    continue
                self.unknown(vdata, RUNTIME_KEYS | BUILD_KEYS, kp)
                build = self.build(vdata, kp)
                runtime = self.runtime(vdata, kp, defaults)
                versions.append(Version(name, build, runtime))
        if self.errors:
            return None
        return Recipe(str(tool), str(description), homepage, self.path, tuple(versions))

    def runtime(self, d: dict, kp: tuple, base: Runtime) -> Runtime:
        values: dict[str, Any] = {}
        if "entrypoint" in d:
            values["entrypoint"] = self.strlist(d, "entrypoint", (*kp, "entrypoint"), allow_str=True)
        if "commands" in d:
            cmds = self.strlist(d, "commands", (*kp, "commands"))
            for c in cmds:
                if not COMMAND_RE.match(c):
                    self.err((*kp, "commands"), f"'{c}' is not a valid command name for a shim")
            values["commands"] = cmds
        if "env" in d:
            env = self.strtable(d, "env", (*kp, "env"))
            for k in env:
                if not ENV_NAME_RE.match(k):
                    self.err((*kp, "env"), f"'{k}' is not a valid environment variable name")
            values["env"] = env
        if "pass_env" in d:
            names = self.strlist(d, "pass_env", (*kp, "pass_env"))
            for k in names:
                if not ENV_NAME_RE.match(k):
                    self.err((*kp, "pass_env"), f"'{k}' is not a valid environment variable name")
            values["pass_env"] = names
        if "path_env" in d:
            pe = self.strtable(d, "path_env", (*kp, "path_env"))
            for k, mode in pe.items():
                if not ENV_NAME_RE.match(k):
                    self.err((*kp, "path_env"), f"'{k}' is not a valid environment variable name")
                if mode not in MODES:
                    self.err((*kp, "path_env", k), f"expected \"ro\" or \"rw\", got {mode!r}")
            values["path_env"] = pe
        if "path_args" in d:
            pa = d["path_args"]
            if pa not in PATH_ARG_MODES:
                self.err((*kp, "path_args"), f"expected \"ro\", \"rw\" or \"off\", got {pa!r}")
            else:
                values["path_args"] = pa
        if "network" in d:
            if not isinstance(d["network"], bool):
                self.err((*kp, "network"), f"expected true or false, got {_kind(d['network'])}")
            else:
                values["network"] = d["network"]
        if "smoke" in d:
            values["smoke"] = self.strlist(d, "smoke", (*kp, "smoke"), allow_str=True)
        if "mounts" in d:
            values["mounts"] = self.mounts(d["mounts"], (*kp, "mounts"))
        return Runtime(**{**base.__dict__, **values})

    def mounts(self, raw: Any, kp: tuple) -> tuple[Mount, ...]:
        if not isinstance(raw, list) or not all(isinstance(m, dict) for m in raw):
            self.err(kp, f"expected an array of tables ([[mounts]]), got {_kind(raw)}")
            return ()
        out: list[Mount] = []
        seen: set[str] = set()
        for i, m in enumerate(raw):
            mkp = (*kp, i)
            self.unknown(m, MOUNT_KEYS, mkp)
            name = self.string(m, "name", (*mkp, "name"), required=True)
            source = self.string(m, "source", (*mkp, "source"), required=True)
            target = self.string(m, "target", (*mkp, "target"), required=True)
            mode = m.get("mode", "ro")
            optional = m.get("optional", False)
            if name is not None:
                if not MOUNT_NAME_RE.match(name):
                    self.err((*mkp, "name"), f"'{name}' is not a valid mount name ([a-z0-9_-]+)")
                if name in seen:
                    self.err((*mkp, "name"), f"duplicate mount name '{name}'")
                seen.add(name)
            if target is not None and not target.startswith("/"):
                self.err((*mkp, "target"), f"'{target}' must be an absolute path")
            if source is not None and not (source.startswith("/") or source.startswith("~")):
                self.err((*mkp, "source"), f"'{source}' must be an absolute path or start with ~")
            if mode not in MODES:
                self.err((*mkp, "mode"), f"expected \"ro\" or \"rw\", got {mode!r}")
            if not isinstance(optional, bool):
                self.err((*mkp, "optional"), f"expected true or false, got {_kind(optional)}")
            if name and source and target and mode in MODES and isinstance(optional, bool):
                out.append(Mount(name, source, target, mode, optional))
        return tuple(out)

    def build(self, d: dict, kp: tuple) -> BuildSpec:
        base = self.string(d, "base", (*kp, "base"))
        dockerfile = self.string(d, "dockerfile", (*kp, "dockerfile"))
        packages = self.strlist(d, "packages", (*kp, "packages"))
        run = self.strlist(d, "run", (*kp, "run"))
        build_args = self.strtable(d, "build_args", (*kp, "build_args"))
        files = self.strlist(d, "files", (*kp, "files"))
        if dockerfile and (base or packages or run):
            self.err((*kp, "dockerfile"), "use either 'dockerfile' or 'base'/'packages'/'run', not both")
        if not dockerfile and not base and "base" not in d:
            self.err(kp, "needs 'base' (with 'packages') or 'dockerfile'")
        if build_args and not dockerfile:
            self.err((*kp, "build_args"), "only applies with 'dockerfile'")
        for rel in ([dockerfile] if dockerfile else []) + list(files):
            key = "dockerfile" if rel == dockerfile else "files"
            p = (self.path.parent / rel)
            if Path(rel).is_absolute() or ".." in Path(rel).parts:
                self.err((*kp, key), f"'{rel}' must be a relative path inside the recipe folder")
            elif not p.exists():
                self.err((*kp, key), f"'{rel}' does not exist in {self.path.parent}")
        for pkg in packages:
            if not re.match(r"^[a-z0-9][a-z0-9+.:=~-]*$", pkg):
                self.err((*kp, "packages"), f"'{pkg}' is not a valid Debian package name")
        kits: list[Kit] = []
        raw_kits = d.get("kits", [])
        if not isinstance(raw_kits, list) or not all(isinstance(k, dict) for k in raw_kits):
            self.err((*kp, "kits"), f"expected an array of {{ file, sha256 }} tables, got {_kind(raw_kits)}")
            raw_kits = []
        for i, k in enumerate(raw_kits):
            kkp = (*kp, "kits", i)
            self.unknown(k, KIT_KEYS, kkp)
            f = self.string(k, "file", (*kkp, "file"), required=True)
            sha = self.string(k, "sha256", (*kkp, "sha256"), required=True)
            if f is not None and ("/" in f or f in (".", "..")):
                self.err((*kkp, "file"), f"'{f}' must be a plain file name")
            if sha is not None and not SHA256_RE.match(sha):
                self.err((*kkp, "sha256"), "expected 64 lower-case hex digits")
            if f and sha and SHA256_RE.match(sha):
                kits.append(Kit(f, sha))
        return BuildSpec(base, packages, run, dockerfile, build_args, files, tuple(kits))


def _kind(val: Any) -> str:
    return {
        str: "string", int: "integer", float: "float", bool: "boolean", list: "array",
        dict: "table",
    }.get(type(val), type(val).__name__)


def dotted(keypath: tuple[str | int, ...]) -> str:
    out = ""
    for part in keypath:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            seg = part if re.match(r"^[A-Za-z0-9_-]+$", part) else f'"{part}"'
            out += ("." if out else "") + seg
    return out


class LineLocator:
    """Finds the line of a key path in TOML source (tomllib reports none for valid files).

    It understands the forms recipes use: [table] and [[array]] headers with dotted and quoted
    parts, `key = ...` lines, and inline tables on one line. When a key is not found it falls back
    to the line of the enclosing table, which still points the user to the right place.
    """

    HEADER = re.compile(r"^\s*(\[\[?)\s*(.+?)\s*\]\]?\s*(#.*)?$")
    KEY = re.compile(r"""^\s*("(?:[^"\\]|\\.)*"|'[^']*'|[A-Za-z0-9_-]+)\s*(?:\.|=)""")

    def __init__(self, text: str) -> None:
        # (line number, table path, is array header) and key lines per table occurrence
        self.sections: list[tuple[int, tuple[str, ...], bool, dict[str, int]]] = []
        current: dict[str, int] = {}
        self.sections.append((0, (), False, current))
        for n, raw in enumerate(text.splitlines(), start=1):
            m = self.HEADER.match(raw)
            if m and not raw.lstrip().startswith("#"):
                current = {}
                self.sections.append((n, split_key(m.group(2)), m.group(1) == "[[", current))
                continue
            k = self.KEY.match(raw)
            if k:
                current.setdefault(split_key(k.group(1))[0], n)

    def find(self, keypath: tuple[str | int, ...]) -> int | None:
        parts = list(keypath)
        best: int | None = None
        # Try the longest table prefix that is a header, then look for the next key in it.
        for cut in range(len(parts), -1, -1):
            table, rest = parts[:cut], parts[cut:]
            index = None
            if table and isinstance(table[-1], int):
                index, table = table[-1], table[:-1]
            if any(isinstance(p, int) for p in table):
                continue
            matches = [s for s in self.sections if s[1] == tuple(table)]
            if not matches:
                continue
            if index is not None:
                if index >= len(matches):
                    continue
                matches = [matches[index]]
            line, _, _, keys = matches[0]
            if rest and isinstance(rest[0], str) and rest[0] in keys:
                return keys[rest[0]]
            if best is None and (line or not table):
                best = line or None
            if not rest:
                return line or None
            # The key may be an inline table/array inside this section: `env = { ... }`.
            for r in rest:
                if isinstance(r, str) and r in keys:
                    return keys[r]
            if line:
                return line
        return best


def split_key(key: str) -> tuple[str, ...]:
    parts: list[str] = []
    for m in re.finditer(r"""\s*("(?:[^"\\]|\\.)*"|'[^']*'|[^.\s]+)\s*(?:\.|$)""", key):
        p = m.group(1)
        if p[:1] in "\"'":
            p = p[1:-1]
        parts.append(p)
    return tuple(parts)
