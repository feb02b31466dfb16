"""Loading a recipe: parse recipe.toml, check every key, build the model.

A recipe is untrusted data (it may come from a shared repository), so loading it only parses
TOML and checks types: nothing in it is run on the host. Validation happens here, once, so
that everything downstream can rely on the model; every error names file, line and key, and
all of a recipe's errors are reported together. The rules for one value (a device, a
capability, a network) are public: config.toml grants the same things and checks them alike.
"""

from __future__ import annotations

import difflib
import functools
import re
import tomllib
import urllib.parse
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sandman.errors import RecipeError, UnsafeInputError
from sandman.recipe_inputs import build_inputs, input_problem
from sandman.recipe_source import (
    MAX_DOCKERFILE_BYTES,
    MAX_RECIPE_BYTES,
    LineLocator,
    NotRegularError,
    dotted,
    read_regular,
)
from sandman.recipes import (
    CAPABILITIES,
    COMMAND_RE,
    DEVICE_RE,
    ENV_NAME_RE,
    MODES,
    MOUNT_NAME_RE,
    NAME_RE,
    NETWORK_MODES,
    PACKAGE_RE,
    PATH_ARG_MODES,
    RUN_RE,
    SCHEMA,
    SHA256_RE,
    SOURCE_FILE_RE,
    SOURCE_SCHEMES,
    VERSION_RE,
    BuildSpec,
    Kit,
    Mount,
    Recipe,
    Runtime,
    Source,
    Version,
    VersionCheck,
    url_file_name,
)
from sandman.text import has_control, quoted, safe

# `{version}` and `{full_version}` in a version_check's `expect`; any other brace is regex syntax.
PLACEHOLDER_RE = re.compile(r"\{(version|full_version)\}")

# The keys each table of recipe.toml may hold; any other is an error that names the closest.
RUNTIME_KEYS = {
    "entrypoint", "commands", "env", "pass_env", "path_env", "path_args", "network", "smoke",
    "mounts", "home_files", "devices", "cap_add", "alias_shims", "platform",
}
BUILD_KEYS = {"base", "packages", "run", "dockerfile", "build_args", "files", "kits", "sources"}
TOP_KEYS = {"schema", "tool", "description", "homepage", "versions", "version_check"} | RUNTIME_KEYS
VERSION_KEYS = RUNTIME_KEYS | BUILD_KEYS | {"version_check", "full_version", "aliases"}
MOUNT_KEYS = {"name", "source", "target", "mode", "optional"}
KIT_KEYS = {"file", "sha256"}
SOURCE_KEYS = {"url", "sha256", "file"}
CHECK_KEYS = {"command", "expect"}
COMMAND_KEYS = {"shim", "run"}


def load_recipe(path: Path, *, expect_tool: str | None = None) -> Recipe:
    """Parse and validate one recipe file; raise RecipeError listing every problem found.

    UnsafeInputError (a RecipeError) when a build input is outside the folder or not a file.
    """
    try:
        text = read_regular(path, MAX_RECIPE_BYTES).decode("utf-8")
    except OSError as e:
        raise RecipeError(f"{safe(path)}: cannot read recipe: {e.strerror}") from e
    except NotRegularError as e:
        raise UnsafeInputError(f"{safe(path)}: the recipe file {e}") from e
    except UnicodeDecodeError as e:
        raise RecipeError(f"{safe(path)}: not UTF-8 text ({e.reason} at byte {e.start})") from e
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise RecipeError(_toml_error(path, str(e))) from e
    v = _Validator(path, text)
    recipe = v.recipe(data, expect_tool or path.parent.name)
    if v.unsafe:  # the worst problem first, with its own exit code
        rest = [e for e in v.errors if e != v.unsafe[0]]
        raise UnsafeInputError(v.unsafe[0], detail="\n".join(rest) or None)
    if v.errors:
        raise RecipeError(v.errors[0], detail="\n".join(v.errors[1:]) or None)
    assert recipe is not None
    return recipe


def check_recipe(path: Path, *, expect_tool: str | None = None) -> Recipe:
    """load_recipe, plus every build input of every version (folders walked): what an install
    would refuse, found without building."""
    recipe = load_recipe(path, expect_tool=expect_tool)
    for v in recipe.versions:
        build_inputs(recipe, v)
    return recipe


def check_paths(paths: list[Path]) -> tuple[int, list[RecipeError]]:
    """Check recipe files, recipe folders, or folders of recipe folders (a repo's root).

    Returns how many recipes were checked and the errors, each starting with file:line.
    """
    files, errors = recipe_files(paths)
    for f in files:
        try:
            check_recipe(f, expect_tool=f.absolute().parent.name)
        except RecipeError as e:
            errors.append(e)
    return len(files), errors


def recipe_files(paths: list[Path]) -> tuple[list[Path], list[RecipeError]]:
    """The recipe.toml files that paths name (files, recipe folders, folders of them), and an
    error for each folder that holds none."""
    files: list[Path] = []
    errors: list[RecipeError] = []
    for p in paths:
        if p.is_dir() and not (p / "recipe.toml").exists():
            found = sorted(d / "recipe.toml" for d in p.iterdir()
                           if d.is_dir() and (d / "recipe.toml").exists())
            if not found:
                errors.append(RecipeError(f"{safe(p)}: no recipe.toml in it or in its subfolders"))
            files += found
        else:
            files.append(p / "recipe.toml" if p.is_dir() else p)
    return files, errors


def _toml_error(path: Path, msg: str) -> str:
    m = re.search(r"\(at line (\d+), column (\d+)\)", msg)
    if m:
        clean = msg[: m.start()].strip()
        return f"{safe(path)}:{m.group(1)}: invalid TOML: {safe(clean)} (column {m.group(2)})"
    return f"{safe(path)}: invalid TOML: {safe(msg)}"


class _Validator:
    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.text = text
        self.errors: list[str] = []
        self.unsafe: list[str] = []  # the errors that are unsafe build inputs

    @functools.cached_property
    def lines(self) -> LineLocator:
        """Line numbers, found only when an error needs one (a valid recipe never pays)."""
        return LineLocator(self.text)

    def err(self, keypath: tuple[str | int, ...], msg: str, *, unsafe: bool = False) -> None:
        line = self.lines.find(keypath)
        where = f"{safe(self.path)}:{line}" if line else f"{safe(self.path)}"
        text = f"{where}: {safe(dotted(keypath))}: {msg}" if keypath else f"{where}: {msg}"
        self.errors.append(text)
        if unsafe:
            self.unsafe.append(text)

    # -- typed getters: report and return a safe default on error -------------------------
    def string(self, d: dict, key: str, kp: tuple, *, required: bool = False) -> str | None:
        if key not in d:
            if required:
                self.err(kp[:-1], f"missing required key '{key}'")
            return None
        val = d[key]
        if not isinstance(val, str) or not val:
            self.err(kp, f"expected a non-empty string, got {toml_kind(val)}")
            return None
        return val

    def strlist(self, d: dict, key: str, kp: tuple, *, allow_str: bool = False) -> tuple[str, ...]:
        val = d.get(key, [])
        if allow_str and isinstance(val, str):
            val = [val]
        if not isinstance(val, list) or not all(isinstance(x, str) for x in val):
            self.err(kp, f"expected a list of strings, got {toml_kind(val)}")
            return ()
        return tuple(val)

    def strtable(self, d: dict, key: str, kp: tuple) -> dict[str, str]:
        val = d.get(key, {})
        if not isinstance(val, dict) or not all(isinstance(x, str) for x in val.values()):
            self.err(kp, f"expected a table of strings, got {toml_kind(val)}")
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
            self.err(("schema",), f"unsupported schema {safe(repr(schema))}; this sandman reads "
                     f"schema {SCHEMA}")
        tool = self.string(data, "tool", ("tool",), required=True)
        if tool is not None:
            if not NAME_RE.match(tool):
                self.err(("tool",), f"{quoted(tool)} is not a valid name (lower case letters, "
                         "digits, . _ -)")
            elif tool != folder_name:
                self.err(("tool",), f"{quoted(tool)} does not match its folder name "
                         f"{quoted(folder_name)}")
        description = self.string(data, "description", ("description",), required=True)
        homepage = self.string(data, "homepage", ("homepage",))
        defaults = self.runtime(data, (), Runtime())
        top_check = self.version_check(data["version_check"], ("version_check",)) \
            if "version_check" in data else None
        versions_raw = data.get("versions")
        versions: list[Version] = []
        if versions_raw is None:
            self.err((), "missing required table 'versions' (add: [versions.\"1.0\"])")
        elif not isinstance(versions_raw, dict) or not versions_raw:
            self.err(("versions",), "expected a table with one table per version")
        else:
            taken = {name: "a version" for name in versions_raw}
            for name, vdata in versions_raw.items():
                kp = ("versions", name)
                if not VERSION_RE.match(name):
                    self.err(kp, f"{quoted(name)} is not a valid version (letters, digits, . _ + -)")
                if not isinstance(vdata, dict):
                    self.err(kp, f"expected a table, got {toml_kind(vdata)}")
                    continue
                self.unknown(vdata, VERSION_KEYS, kp)
                build = self.build(vdata, kp)
                runtime = self.runtime(vdata, kp, defaults)
                if "aliases" in vdata:
                    runtime = Runtime(**{**runtime.__dict__, "aliases": self.aliases(
                        vdata["aliases"], (*kp, "aliases"), taken, name)})
                full = self.string(vdata, "full_version", (*kp, "full_version"))
                if full is not None and not VERSION_RE.match(full):
                    self.err((*kp, "full_version"), f"{quoted(full)} is not a valid version "
                             "(letters, digits, . _ + -)")
                    full = None
                raw_check, ckp = top_check, ("version_check",)
                if vdata.get("version_check") is False:  # this version opts out of the default
                    raw_check = None
                elif "version_check" in vdata:
                    ckp = (*kp, "version_check")
                    raw_check = self.version_check(vdata["version_check"], ckp)
                check = self.expand_check(raw_check, ckp, name, full)
                versions.append(Version(name, build, runtime, check, full))
        if self.errors:
            return None
        return Recipe(str(tool), str(description), homepage, self.path, tuple(versions))

    def runtime(self, d: dict, kp: tuple, base: Runtime) -> Runtime:
        values: dict[str, Any] = {}
        if "entrypoint" in d:
            values["entrypoint"] = self.strlist(d, "entrypoint", (*kp, "entrypoint"), allow_str=True)
        if "commands" in d:
            values["commands"], values["command_run"] = self.commands(d["commands"], (*kp, "commands"))
        if "env" in d:
            env = self.strtable(d, "env", (*kp, "env"))
            for k in env:
                if not ENV_NAME_RE.match(k):
                    self.err((*kp, "env"), f"{quoted(k)} is not a valid environment variable name")
            values["env"] = env
        if "pass_env" in d:
            names = self.strlist(d, "pass_env", (*kp, "pass_env"))
            for k in names:
                if not ENV_NAME_RE.match(k):
                    self.err((*kp, "pass_env"), f"{quoted(k)} is not a valid environment variable name")
            values["pass_env"] = names
        if "path_env" in d:
            pe = self.strtable(d, "path_env", (*kp, "path_env"))
            for k, mode in pe.items():
                if not ENV_NAME_RE.match(k):
                    self.err((*kp, "path_env"), f"{quoted(k)} is not a valid environment variable name")
                if mode not in MODES:
                    self.err((*kp, "path_env", k), f"expected \"ro\" or \"rw\", got {safe(repr(mode))}")
            values["path_env"] = pe
        if "path_args" in d:
            pa = d["path_args"]
            if pa not in PATH_ARG_MODES:
                self.err((*kp, "path_args"), f"expected \"ro\", \"rw\" or \"off\", got {safe(repr(pa))}")
            else:
                values["path_args"] = pa
        if "network" in d:
            net = network_value(d["network"])
            if net is None:
                self.err((*kp, "network"), f"expected \"none\", \"bridge\", \"host\", true or false, "
                         f"got {safe(repr(d['network']))}")
            else:
                values["network"] = net
        if "home_files" in d:
            values["home_files"] = self.home_files(d, (*kp, "home_files"))
        if "devices" in d:
            devices = self.strlist(d, "devices", (*kp, "devices"))
            for dev in devices:
                if problem := device_problem(dev):
                    self.err((*kp, "devices"), problem)
            values["devices"] = devices
        if "cap_add" in d:
            caps = self.strlist(d, "cap_add", (*kp, "cap_add"))
            values["cap_add"] = tuple(dict.fromkeys(c.upper().removeprefix("CAP_") for c in caps))
            for c in caps:
                if problem := capability_problem(c):
                    self.err((*kp, "cap_add"), problem)
        if "alias_shims" in d:
            if not isinstance(d["alias_shims"], bool):
                self.err((*kp, "alias_shims"), f"expected true or false, got {toml_kind(d['alias_shims'])}")
            else:
                values["alias_shims"] = d["alias_shims"]
        if "platform" in d:
            from sandman.platforms import known_names, lookup

            found = lookup(d["platform"]) if isinstance(d["platform"], str) else None
            if found is None:
                self.err((*kp, "platform"), f"unknown platform {safe(repr(d['platform']))}; "
                         f"sandman knows {known_names()}")
            else:
                values["platform"] = found.name
        if "smoke" in d:
            values["smoke"] = self.strlist(d, "smoke", (*kp, "smoke"), allow_str=True)
        if "mounts" in d:
            values["mounts"] = self.mounts(d["mounts"], (*kp, "mounts"))
        return Runtime(**{**base.__dict__, **values})

    def commands(self, raw: Any, kp: tuple) -> tuple[tuple[str, ...], dict[str, str]]:
        """`["jq", { shim = "db_dump", run = "db5.3_dump" }]`: shim names, and the run names
        that differ from them."""
        if not isinstance(raw, list):
            self.err(kp, f"expected an array of names or {{ shim, run }} tables, got {toml_kind(raw)}")
            return (), {}
        names: list[str] = []
        run: dict[str, str] = {}
        for i, entry in enumerate(raw):
            if isinstance(entry, dict):
                self.unknown(entry, COMMAND_KEYS, (*kp, i))
                shim = self.string(entry, "shim", (*kp, i, "shim"), required=True)
                target = self.string(entry, "run", (*kp, i, "run"), required=True)
                if target is not None and not RUN_RE.match(target):
                    self.err((*kp, i, "run"), f"{quoted(target)} is not a command name or an absolute "
                             "path in the image")
                    target = None
            elif isinstance(entry, str):
                shim, target = entry, entry
            else:
                self.err((*kp, i), f"expected a name or a {{ shim, run }} table, got {toml_kind(entry)}")
                continue
            if shim is None:
                continue
            if not COMMAND_RE.match(shim):
                self.err((*kp, i) if isinstance(entry, dict) else kp,
                         f"{quoted(shim)} is not a valid command name for a shim")
                continue
            if shim in names:
                self.err(kp, f"{quoted(shim)} is listed twice")
                continue
            names.append(shim)
            if target is not None and target != shim:
                run[shim] = target
        return tuple(names), run

    def home_files(self, d: dict, kp: tuple) -> tuple[str, ...]:
        """Paths relative to HOME (`.my.cnf`, `.symapi/config`): never absolute, never `..`,
        never the home itself."""
        out: list[str] = []
        for rel in self.strlist(d, "home_files", kp):
            if problem := home_file_problem(rel):
                self.err(kp, problem)
            elif rel.rstrip("/") not in out:
                out.append(rel.rstrip("/"))
        return tuple(out)

    def aliases(self, raw: Any, kp: tuple, taken: dict[str, str], version: str) -> tuple[str, ...]:
        """Other names of `version`; `taken` (name -> what holds it) spans the whole recipe."""
        if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
            self.err(kp, f"expected a list of strings, got {toml_kind(raw)}")
            return ()
        out: list[str] = []
        for name in raw:
            if not VERSION_RE.match(name):
                self.err(kp, f"{quoted(name)} is not a valid version (letters, digits, . _ + -)")
            elif name in taken and taken[name] != version:
                self.err(kp, f"{quoted(name)} is already {taken[name]}")
            elif name == version or name in out:
                self.err(kp, f"{quoted(name)} is listed twice (or is the version itself)")
            else:
                taken[name] = f"an alias of {quoted(version)}"
                out.append(name)
        return tuple(out)

    def version_check(self, raw: Any, kp: tuple) -> tuple[tuple[str, ...], str] | None:
        """`{ command = [...], expect = "regex" }` as written (placeholders not yet replaced)."""
        if not isinstance(raw, dict):
            self.err(kp, f"expected a table {{ command = [...], expect = \"...\" }}, got {toml_kind(raw)}")
            return None
        self.unknown(raw, CHECK_KEYS, kp)
        if "command" not in raw:
            self.err(kp, "missing required key 'command'")
        command = self.strlist(raw, "command", (*kp, "command"), allow_str=True)
        if "command" in raw and not command:
            self.err((*kp, "command"), "expected at least one word")
        expect = self.string(raw, "expect", (*kp, "expect"), required=True)
        if not command or expect is None:
            return None
        return command, expect

    def expand_check(self, raw: tuple[tuple[str, ...], str] | None, kp: tuple, version: str,
                     full: str | None) -> VersionCheck | None:
        """The check for one version: placeholders replaced (regex-escaped), the regex compiled."""
        if raw is None:
            return None
        command, expect = raw
        used = set(PLACEHOLDER_RE.findall(expect))
        if "full_version" in used and full is None:
            self.err((*kp, "expect"), f"uses {{full_version}}, but version {quoted(version)} has no "
                     "full_version key")
            return None
        values = {"version": version, "full_version": full or ""}
        pattern = PLACEHOLDER_RE.sub(lambda m: re.escape(values[m.group(1)]), expect)
        try:
            re.compile(pattern, re.MULTILINE)
        except re.error as e:
            self.err((*kp, "expect"), f"not a valid regular expression: {safe(e)}")
            return None
        return VersionCheck(command, pattern)

    def sources(self, raw: Any, kp: tuple) -> tuple[Source, ...]:
        if not isinstance(raw, list) or not all(isinstance(x, dict) for x in raw):
            self.err(kp, f"expected an array of {{ url, sha256, file? }} tables, got {toml_kind(raw)}")
            return ()
        out: list[Source] = []
        names: set[str] = set()
        for i, entry in enumerate(raw):
            skp = (*kp, i)
            self.unknown(entry, SOURCE_KEYS, skp)
            url = self.string(entry, "url", (*skp, "url"), required=True)
            sha = self.string(entry, "sha256", (*skp, "sha256"), required=True)
            name = self.string(entry, "file", (*skp, "file"))
            if sha is not None and not SHA256_RE.match(sha):
                self.err((*skp, "sha256"), "expected 64 lower-case hex digits")
                sha = None
            if url is not None and (problem := url_problem(url)):
                self.err((*skp, "url"), problem)
                url = None
            named_by = "file" if "file" in entry else "url"
            if name is None and url is not None:
                name = url_file_name(url)
            if name is not None and not SOURCE_FILE_RE.match(name):
                self.err((*skp, named_by), f"{quoted(name)} is not a plain file name (letters, digits, "
                         ". _ + ~ -)" + ("; add file = \"name.tar.gz\"" if named_by == "url" else ""))
                name = None
            if name is not None and name in names:
                self.err((*skp, named_by), f"a second source named {quoted(name)}; give one a "
                         "different `file`")
                name = None
            if url and sha and name:
                names.add(name)
                out.append(Source(url, sha, name))
        return tuple(out)

    def mounts(self, raw: Any, kp: tuple) -> tuple[Mount, ...]:
        if not isinstance(raw, list) or not all(isinstance(m, dict) for m in raw):
            self.err(kp, f"expected an array of tables ([[mounts]]), got {toml_kind(raw)}")
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
                    self.err((*mkp, "name"), f"{quoted(name)} is not a valid mount name ([a-z0-9_-]+)")
                if name in seen:
                    self.err((*mkp, "name"), f"duplicate mount name {quoted(name)}")
                seen.add(name)
            if target is not None and not target.startswith("/"):
                self.err((*mkp, "target"), f"{quoted(target)} must be an absolute path")
            if source is not None and not (source.startswith("/") or source.startswith("~")):
                self.err((*mkp, "source"), f"{quoted(source)} must be an absolute path or start with ~")
            if mode not in MODES:
                self.err((*mkp, "mode"), f"expected \"ro\" or \"rw\", got {safe(repr(mode))}")
            if not isinstance(optional, bool):
                self.err((*mkp, "optional"), f"expected true or false, got {toml_kind(optional)}")
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
        if dockerfile:
            problem = input_problem(self.path.parent, dockerfile, allow_dir=False)
            if problem is None:
                size = (self.path.parent / dockerfile).stat().st_size
                if size > MAX_DOCKERFILE_BYTES:
                    problem = f"{quoted(dockerfile)} is larger than {MAX_DOCKERFILE_BYTES} bytes", True
            if problem:
                self.err((*kp, "dockerfile"), problem[0], unsafe=problem[1])
        for rel in files:
            problem = input_problem(self.path.parent, rel)
            if problem:
                self.err((*kp, "files"), problem[0], unsafe=problem[1])
        for pkg in packages:
            if not PACKAGE_RE.match(pkg):
                self.err((*kp, "packages"), f"{quoted(pkg)} is not a valid Debian package name")
        kits: list[Kit] = []
        raw_kits = d.get("kits", [])
        if not isinstance(raw_kits, list) or not all(isinstance(k, dict) for k in raw_kits):
            self.err((*kp, "kits"), "expected an array of { file, sha256 } tables, got "
                     f"{toml_kind(raw_kits)}")
            raw_kits = []
        for i, k in enumerate(raw_kits):
            kkp = (*kp, "kits", i)
            self.unknown(k, KIT_KEYS, kkp)
            f = self.string(k, "file", (*kkp, "file"), required=True)
            sha = self.string(k, "sha256", (*kkp, "sha256"), required=True)
            if f is not None and ("/" in f or f in (".", "..")):
                self.err((*kkp, "file"), f"{quoted(f)} must be a plain file name")
            if sha is not None and not SHA256_RE.match(sha):
                self.err((*kkp, "sha256"), "expected 64 lower-case hex digits")
            if f and sha and SHA256_RE.match(sha):
                kits.append(Kit(f, sha))
        sources = self.sources(d["sources"], (*kp, "sources")) if "sources" in d else ()
        return BuildSpec(base, packages, run, dockerfile, build_args, files, tuple(kits), sources)


def network_value(raw: Any) -> str | None:
    """A recipe's or config.toml's `network` as a mode: the boolean stays none/bridge."""
    if isinstance(raw, bool):
        return "bridge" if raw else "none"
    return raw if raw in NETWORK_MODES else None


def device_problem(dev: str) -> str | None:
    """Why `dev` cannot be a `devices` entry, or None (existence is checked on the host that runs it)."""
    if not DEVICE_RE.match(dev) or "/../" in dev + "/" or "/./" in dev + "/":
        return (f"{quoted(dev)} is not a device: expected /dev/NAME, /dev/NAME:/dev/NAME or "
                "either with :PERMS (r, w, m)")
    return None


def capability_problem(cap: str) -> str | None:
    """Why `cap` is not a Linux capability name (SYS_RAWIO or CAP_SYS_RAWIO), or None."""
    if cap.upper().removeprefix("CAP_") in CAPABILITIES:
        return None
    close = difflib.get_close_matches(cap.upper().removeprefix("CAP_"), sorted(CAPABILITIES), n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"{quoted(cap)} is not a Linux capability{hint}; see capabilities(7)"


def home_file_problem(rel: str) -> str | None:
    """Why `rel` cannot be a `home_files` entry, or None."""
    parts = rel.rstrip("/").split("/")
    if rel.startswith("/") or rel.startswith("~"):
        return f"{quoted(rel)} must be a path relative to your home (like \".my.cnf\"), not absolute"
    if any(p in ("", ".", "..") for p in parts):
        return f"{quoted(rel)} must name a file or folder inside your home, without . or .. or //"
    if has_control(rel):
        return f"{quoted(rel)} has a control character"
    return None


def url_problem(url: str) -> str | None:
    """Why `url` cannot be a source's URL, or None."""
    if has_control(url) or any(c.isspace() for c in url):
        return f"{quoted(url)} has spaces or control characters; percent-encode them"
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in SOURCE_SCHEMES:
        # never a file of this host: a recipe could read any of them into an image, or learn
        # its sha256 from the mismatch; a local file goes into the cache (or a mirror) by hand
        return (f"{quoted(url)} is not an http:// or https:// URL (a file of this host goes "
                "into the source cache, or a sources_mirror folder)")
    if not parts.hostname:
        return f"{quoted(url)} has no host"
    return None


def toml_kind(val: Any) -> str:
    """The TOML name of a value's type, for "expected a table, got array": shared with
    config.py, whose messages about config.toml read like the recipe's."""
    return {
        str: "string", int: "integer", float: "float", bool: "boolean", list: "array",
        dict: "table",
    }.get(type(val), type(val).__name__)


_APT_FAMILIES = re.compile(r"^(docker\.io/)?(library/)?(debian|ubuntu)(:|@|$)")


def bases_to_check(recipes: Iterable[Recipe]) -> list[tuple[Recipe, Version]]:
    """The versions whose `packages` sit on a base not named as Debian's or Ubuntu's: only
    those are worth a look (a lint, not a trust decision: a base named debian that lacks
    apt-get only fails its build). The common case needs no engine at all."""
    return [(r, v) for r in recipes for v in r.versions
            if v.build.packages and v.build.base and not _APT_FAMILIES.match(v.build.base)]
