"""Which version an unversioned command (`sqlite3`) runs, and the project's lock file.

The choice, first match wins: `SANDMAN_<TOOL>_VERSION` (one command), the nearest
`.sandman.toml` walking up from the current directory that names the tool, then the global
choice (`<config>/versions.toml`). The unversioned shim (shims/default.bash) makes the same
choice with bash builtins only, so the pin files are read line by line, not as full TOML:
`tool = "version"` lines under `[tools]`. `scan` here is the same reader, rule for rule and
message for message: a line the shim cannot read stops both with `FILE:LINE: ...` (exit 123),
so a broken pin never lets the plain command fall through to the host's tool. Python also
parses the file as TOML and refuses one where TOML would see something else, so
`sandman which` never disagrees with the shim.

`sandman.lock` beside the project file records, per tool, the recipe source, the repository
commit, the portable fingerprint (the same on every machine: no local id goes into it), and the
image and its bases by digest (the config digest, which a registry push and pull keep). A
teammate's install checks the fingerprint before anything is built or pulled (exit 110 when it
would get another recipe), then compares the digests of what it got: the same image when it came
from the registry, or a warning naming each digest that differs when it had to be built here.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandman import aliases, installs, pinfiles, repos, shims
from sandman.catalog import Spec
from sandman.context import Context
from sandman.errors import (
    USAGE,
    LockError,
    NotFoundError,
    PinError,
    SandmanError,
    StateError,
    UsageError,
)
from sandman.paths import Paths, shim_templates_dir
from sandman.recipes import VERSION_RE, tomllib
from sandman.text import safe

PROJECT_FILE = ".sandman.toml"
LOCK_FILE = "sandman.lock"
LOCK_SCHEMA = 2  # 2: portable fingerprints, image and base digests
# The shim's regular expressions (shims/default.bash), in Python's spelling.
PIN_RE = re.compile(r"""^(?:([A-Za-z0-9_-]+)|"([A-Za-z0-9._-]+)"|'([A-Za-z0-9._-]+)')"""
                    r"""[ \t\r\v\f]*=[ \t\r\v\f]*(?:"([^"]*)"|'([^']*)')[ \t\r\v\f]*(?:#.*)?\Z""")
HEAD_RE = re.compile(r"^\[(\[?)([^][#]*)\](\]?)[ \t\r\v\f]*(?:#.*)?\Z")
BARE_KEY_RE = re.compile(r"^[A-Za-z0-9_-]+$")
SPACE = " \t\r\v\f"  # bash's [[:space:]] within a line


def global_file(paths: Paths) -> Path:
    return paths.config_dir / "versions.toml"


def env_var(tool: str) -> str:
    return shims.env_prefix(tool) + "_VERSION"


def cwd_of(env: dict[str, str]) -> Path:
    """$PWD when it is the current directory (as bash sees it, symlinks kept), else getcwd."""
    real = os.getcwd()
    pwd = env.get("PWD")
    if pwd and os.path.isabs(pwd):
        try:
            if os.path.samefile(pwd, real):
                return Path(pwd)
        except OSError:
            pass
    return Path(real)


class PinSyntaxError(ValueError):
    """A line of a pin file that the shim cannot read: `line` is 1-based."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"{line}: {message}")
        self.line = line
        self.message = message


def _name(text: str) -> str:
    """A table or key name as the shim compares it: spaces and quotes taken out."""
    return "".join(c for c in text if c not in SPACE + "\"'")


def scan(text: str) -> dict[str, str]:
    """The pins as the shim reads them, checking every line the way the shim does.

    `tool = "version"` lines in the one [tools] table; comments, blank lines and other tables
    are passed over. A malformed table header, a table inside [tools], a second [tools], a
    top-level `tools` key, a [tools] line that is not a pin, a tool pinned twice or a value
    that is not a version raise PinSyntaxError with the line number.
    """
    pins: dict[str, str] = {}
    section = ""
    had_tools = False
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for n, raw in enumerate(lines, 1):
        line = raw.strip(SPACE)
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            h = HEAD_RE.match(line)
            if not h or len(h.group(1)) != len(h.group(3)):
                raise PinSyntaxError(n, "malformed table header")
            name = _name(h.group(2))
            section = "other"
            if name.startswith("tools.") or (name == "tools" and h.group(1)):
                raise PinSyntaxError(n, '[tools] holds only tool = "version" lines, not tables')
            if name == "tools":
                if had_tools:
                    raise PinSyntaxError(n, "a second [tools] table")
                section, had_tools = "tools", True
            continue
        if section == "tools":
            m = PIN_RE.match(line)
            if not m:
                raise PinSyntaxError(n, 'write each pin as tool = "version"')
            key = m.group(1) or m.group(2) or m.group(3)
            version = m.group(4) if m.group(4) is not None else m.group(5)
            if key in pins:
                raise PinSyntaxError(n, f"{key} is pinned twice")
            if not VERSION_RE.match(version):
                raise PinSyntaxError(n, f"{key}: not a version (letters, digits and . _ + - only)")
            pins[key] = version
        elif not section:
            name = _name(line.split("=", 1)[0])
            if name == "tools" or name.startswith("tools."):
                raise PinSyntaxError(n, "pins go in a [tools] table")
    return pins


def read_pins(file: Path) -> dict[str, str]:
    """file's pins; StateError `FILE:LINE: ...` for what the shim would stop on, and for TOML
    that reads differently from the shim's lines."""
    try:
        raw = file.read_bytes()
    except OSError as e:
        raise StateError(f"{file}: cannot read: {e.strerror}") from e
    return pins_of(file, raw)


def pins_of(file: Path, raw: bytes) -> dict[str, str]:
    """read_pins on content that is (or is about to be) file's."""
    text = raw.decode("utf-8", "replace")
    try:
        pins = scan(text)
    except PinSyntaxError as e:
        raise StateError(f"{file}:{e.line}: {e.message}") from e
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise StateError(f"{file}:{line}: invalid TOML: not UTF-8") from e
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"\s*\(at (?:line (\d+), column \d+|end of document)\)", str(e))
        line = int(m.group(1)) if m and m.group(1) else text.rstrip("\n").count("\n") + 1
        why = str(e)[: m.start()] if m else str(e)
        raise StateError(f"{file}:{line}: invalid TOML: {safe(why)}") from e
    if data.get("tools", {}) != pins:
        at = next((n for n, raw_line in enumerate(text.split("\n"), 1)
                   if _name(raw_line.split("]", 1)[0]) == "[tools"), 1)
        raise StateError(f"{file}:{at}: [tools] reads differently as TOML than as "
                         'tool = "version" lines; write each pin as one such line')
    return pins


def find_project(start: Path) -> Path | None:
    for d in (start, *start.parents):
        f = d / PROJECT_FILE
        if f.is_file():
            return f
    return None


@dataclass(frozen=True)
class Choice:
    tool: str
    version: str | None
    origin: str  # "env" | "project" | "global" | "none"
    where: str | None  # the variable name or the file that decided


def choose(paths: Paths, tool: str, cwd: Path, env: dict[str, str]) -> Choice:
    var = env_var(tool)
    if env.get(var):
        return Choice(tool, env[var], "env", var)
    for d in (cwd, *cwd.parents):
        f = d / PROJECT_FILE
        if f.is_file():
            pins = read_pins(f)
            if tool in pins:
                return Choice(tool, pins[tool], "project", str(f))
        for name in (pinfiles.TOOL_VERSIONS, *pinfiles.MISE_FILES):  # asdf's and mise's pins:
            f = d / name  # .sandman.toml wins where both speak (sandman/pinfiles.py)
            if f.is_file():
                version = pinfiles.read_pin(f, tool)
                if version is not None:
                    return Choice(tool, version, "project", str(f))
    g = global_file(paths)
    if g.is_file():
        pins = read_pins(g)
        if tool in pins:
            return Choice(tool, pins[tool], "global", str(g))
    return Choice(tool, None, "none", None)


def set_pin(file: Path, tool: str, version: str) -> None:
    """Add or change one line of the [tools] table, keeping the rest of the file as it is.

    A file the shim cannot read is left alone (its FILE:LINE error says what to fix); the new
    content is checked before it replaces the old.
    """
    old = None
    if file.exists():
        try:
            old = file.read_bytes()
        except OSError as e:
            raise StateError(f"{file}: cannot read: {e.strerror}") from e
        pins_of(file, old)
    lines = old.decode("utf-8").splitlines() if old is not None else []
    key = tool if BARE_KEY_RE.match(tool) else json.dumps(tool)
    new = f'{key} = "{version}"'
    section, tools_at, done = "", None, False
    for i, raw in enumerate(lines):
        line = raw.strip(SPACE)
        if line.startswith("["):
            h = HEAD_RE.match(line)
            section = "tools" if h and not h.group(1) and _name(h.group(2)) == "tools" else "other"
            if section == "tools":
                tools_at = i
            continue
        m = PIN_RE.match(line)
        if section == "tools" and m and (m.group(1) or m.group(2) or m.group(3)) == tool:
            lines[i] = new
            done = True
            break
    if not done:
        if tools_at is None:
            lines += ([""] if lines and lines[-1].strip() else []) + ["[tools]", new]
        else:
            lines.insert(tools_at + 1, new)
    data = ("\n".join(lines) + "\n").encode()
    pins_of(file, data)  # what the shim will read is what we meant
    installs.atomic_write(file, data)


# -- the unversioned shims ---------------------------------------------------------------------
def default_names(ctx: Context, tool: str, version: str) -> list[str]:
    """The unversioned names for tool@version: the tool and each of its commands."""
    rec = installs.load(ctx.paths, tool, version)
    if rec is not None:
        versioned = list(rec.shims)
    else:
        _, _, v = ctx.catalog.resolve(Spec(tool, version))
        versioned = shims.shim_names(tool, version, v.runtime)
    suffix = f"-{version}"
    return [n[: -len(suffix)] for n in versioned if n.endswith(suffix)]


def installed_version(paths: Paths, tool: str, name: str) -> str | None:
    """The installed version a pin (or `SANDMAN_<TOOL>_VERSION`) of `name` runs: the version
    called so, else the installed one that has it among its aliases; None when neither."""
    try:
        if installs.load(paths, tool, name) is not None:
            return name
    except StateError:
        return name  # installed, with a record `list` says how to repair
    return aliases.installed_aliases(paths, tool).get(name)


def render_default(paths: Paths, tool: str, command: str) -> str:
    template = (shim_templates_dir() / "default.bash").read_text(encoding="utf-8")
    values = {
        "SM_TOOL": shlex.quote(tool),
        "SM_CMD": shlex.quote(command),
        "SM_BIN": shlex.quote(str(paths.bin_dir)),
        "SM_VAR": env_var(tool),
        "SM_GLOBAL": shlex.quote(str(global_file(paths))),
        "SM_ALIASES": shlex.quote(str(aliases.alias_file(paths, tool))),
        "SM_EXIT_USAGE": str(USAGE),
        "SM_EXIT_NOT_FOUND": str(NotFoundError.exit_code),
        "SM_EXIT_STATE": str(StateError.exit_code),
        "SM_MARKER": shlex.quote(shims.MARKER),
    }
    text = template.replace(shims.MARKER, f"{shims.MARKER}\n# for: {tool}", 1)
    return text.replace("@@VALUES@@", "\n".join(f"{k}={v}" for k, v in values.items()), 1)


def pin_target(paths: Paths, tool: str, command: str, version: str) -> Path | None:
    """What the plain shim `command` of tool runs for a pinned version: the versioned shim
    sandman wrote for tool (`<command>-<version>`, its lines 2 and 3 saying so), else None.

    A pin comes from a file in the project, which anyone may have written; the bin folder may
    hold other programs named `<command>-<something>` (another tool's shims, `python2-config`)
    that would run outside any container. The same rule as shims/default.bash (a unit test
    feeds both the same cases). A version without a shim of its own name that is an alias of
    an installed version (alias_file) runs that version's shim, as `install` resolves it.
    """
    target = paths.bin_dir / f"{command}-{version}"
    if not target.is_file():
        with contextlib.suppress(OSError, UnicodeDecodeError):
            for line in aliases.alias_file(paths, tool).read_text(encoding="utf-8").splitlines():
                a, _, v = line.partition(" ")
                if a == version and VERSION_RE.match(v):
                    target = paths.bin_dir / f"{command}-{v}"
                    break
    try:
        if not (target.is_file() and os.access(target, os.X_OK)):
            return None
        with target.open("rb") as f:
            lines = [f.readline(limit).decode("utf-8", "replace").rstrip("\n")
                     for limit in (64, 64, 512)]
    except OSError:
        return None
    owner = f"# for: {tool}@"
    ok = lines[1] == shims.MARKER and lines[2].startswith(owner) and len(lines[2]) > len(owner)
    return target if ok else None


def write_defaults(ctx: Context, tool: str, version: str) -> list[Path]:
    names = default_names(ctx, tool, version)
    written = shims.write_shims(ctx.paths.bin_dir,
                                {n: render_default(ctx.paths, tool, n) for n in names}, tool)
    for n in names:
        other = shims.shadowed(ctx.paths.bin_dir, n)
        if other:
            ctx.out.warn(f"{n}: {other} comes earlier on PATH and will run instead")
        hidden = _hidden_host_tool(ctx.paths.bin_dir, n)
        if hidden:
            ctx.out.info(f"{n}: where no version of {tool} is chosen, {hidden} still runs")
    return written


def _hidden_host_tool(bin_dir: Path, name: str) -> str | None:
    after = False
    for d in os.environ.get("PATH", "").split(os.pathsep):
        if d and Path(d).resolve() == bin_dir.resolve():
            after = True
            continue
        c = Path(d) / name if d else None
        if after and c is not None and c.is_file() and os.access(c, os.X_OK):
            return str(c)
    return None


@dataclass(frozen=True)
class UseResult:
    file: Path
    shims: list[Path]
    installed: bool


def use(ctx: Context, tool: str, version: str, *, global_: bool, cwd: Path,
        tool_versions: bool = False) -> UseResult:
    """Pin tool@version and write its plain shims: the shims first, so a pin never exists
    without them (a plain command whose shim is missing would run the host's tool instead).
    tool_versions: the pin goes into the nearest `.tool-versions` (asdf's format), else a new
    one in cwd; a `.sandman.toml` that names the tool in the same folder or nearer still wins."""
    version = ctx.catalog.resolve(Spec(tool, version))[2].version  # exists; an alias pins its version
    if tool_versions and global_:
        raise UsageError("--tool-versions writes the project's .tool-versions; --global writes "
                         f"{global_file(ctx.paths)}: choose one")
    if tool_versions:
        file = next((d / pinfiles.TOOL_VERSIONS for d in (cwd, *cwd.parents)
                     if (d / pinfiles.TOOL_VERSIONS).is_file()), cwd / pinfiles.TOOL_VERSIONS)
        data = pinfiles.set_tool_versions(file, tool, version)  # a broken line stops here
    else:
        file = global_file(ctx.paths) if global_ else (find_project(cwd) or cwd / PROJECT_FILE)
        if file.exists():
            read_pins(file)  # a broken pin file stops here, before any shim is written
    written = write_defaults(ctx, tool, version)
    if tool_versions:
        installs.atomic_write(file, data)
        c = choose(ctx.paths, tool, cwd, {})
        if c.where != str(file):
            ctx.out.warn(f"{c.where} pins {tool} {c.version} and wins over {file} here")
    else:
        set_pin(file, tool, version)
    return UseResult(file, written, installs.load(ctx.paths, tool, version) is not None)


def plain_names(paths: Paths, tool: str, version: str) -> list[str]:
    """The plain commands a pin of tool@version makes: the tool, and the installed version's
    commands (from its install record; only the tool's name when it is not installed)."""
    try:
        rec = installs.load(paths, tool, version)
    except StateError:
        rec = None
    suffix = f"-{version}"
    names = [n[: -len(suffix)] for n in (rec.shims if rec else ()) if n.endswith(suffix)]
    return list(dict.fromkeys([tool, *names]))


def missing_plain_shims(paths: Paths, tool: str, version: str) -> list[str]:
    """The plain commands of a pin that have no unversioned shim of tool's in the bin dir:
    each of them runs whatever else is on PATH (the host's tool), not the pinned version."""
    return [n for n in plain_names(paths, tool, version)
            if shims.owner_of(paths.bin_dir / n) != tool]


@dataclass(frozen=True)
class Which:
    """What `sandman which` says: the choice, the installed version it runs (an alias resolved)."""

    choice: Choice
    installed: str | None  # the installed version the pin runs (None: not installed)
    shim: str | None
    plain_missing: list[str]
    problem: str | None  # why the chosen version cannot run (None when it can)

    def failure(self, bin_dir: Path) -> SandmanError | None:
        """Why the plain command does not run the chosen version, as the error `which` ends
        with: no version chosen, or the chosen one cannot run (111); a plain shim missing from
        bin_dir, so another tool (the host's) runs instead (105). None: it runs."""
        c = self.choice
        if c.version is None:
            return NotFoundError(f"{c.tool}: no version chosen here (no ${env_var(c.tool)}, no "
                                 f".sandman.toml naming it, no global choice)")
        if self.problem:
            where = f"${c.where}" if c.origin == "env" else c.where
            return NotFoundError(f"{c.tool} {c.version} (set by {where}) is {self.problem}")
        if self.plain_missing:
            return PinError(f"{', '.join(self.plain_missing)} in {bin_dir} is missing, so the "
                            f"plain command runs another {c.tool} (the host's) or none, not "
                            f"{c.version}; run: {fix_command(c)}")
        return None


def which(ctx: Context, tool: str, cwd: Path, env: dict[str, str]) -> Which:
    """The choice for tool in cwd, resolved as the plain shim and `install` resolve it."""
    c = choose(ctx.paths, tool, cwd, env)
    if c.version is None:
        return Which(c, None, None, [], None)
    version = installed_version(ctx.paths, tool, c.version)
    rec = None
    if version is not None:
        with contextlib.suppress(StateError):
            rec = installs.load(ctx.paths, tool, version)
    shim = str(Path(rec.bin_dir) / f"{tool}-{version}") if rec else None
    missing = missing_plain_shims(ctx.paths, tool, version or c.version)
    problem = None
    if version is None:
        problem = f"not installed; run: sandman install {tool}@{c.version}"
        try:
            ctx.catalog.resolve(Spec(tool, c.version))
        except NotFoundError as e:
            problem = f"not installed, and no recipe has it: {e.message}"
        except SandmanError:
            pass  # a recipe that does not load: `install` says why
    return Which(c, version, shim, missing, problem)


def fix_command(c: Choice) -> str:
    """The command that writes the plain shims of a choice (and keeps the pin as it is)."""
    return f"sandman use {c.tool} {c.version}" + (" --global" if c.origin == "global" else "")


def doctor_checks(paths: Paths, cwd: Path, env: dict[str, str]) -> list[tuple[bool, str, str]]:
    """(ok, what, detail) for each pin that applies in cwd: a readable pin file, the plain
    shims written, the version installed. `sandman doctor` adds them to its checks."""
    files = [d / PROJECT_FILE for d in (cwd, *cwd.parents) if (d / PROJECT_FILE).is_file()]
    if global_file(paths).is_file():
        files.append(global_file(paths))
    out: list[tuple[bool, str, str]] = []
    tools: list[str] = []
    for f in files:
        try:
            tools += read_pins(f)
        except StateError as e:
            out.append((False, f"pin file {f}", e.message))
    for tool in dict.fromkeys(tools):
        try:
            c = choose(paths, tool, cwd, env)
        except StateError:
            continue  # a broken file on the way: reported above
        if c.version is None:
            continue
        what = f"pin {tool} {c.version}"
        runs = installed_version(paths, tool, c.version)  # an alias: its installed version
        missing = missing_plain_shims(paths, tool, runs or c.version)
        if missing:
            out.append((False, what, f"set by {c.where}, but {', '.join(missing)} in "
                        f"{paths.bin_dir} is missing, so the plain command runs another "
                        f"{tool} (the host's) or none; run: {fix_command(c)}"))
        elif runs is None:
            out.append((False, what, f"set by {c.where}, not installed; run: sandman install "
                        f"{tool}@{c.version}"))
        else:
            out.append((True, what, f"set by {c.where}: {paths.bin_dir / tool}"))
    return out


# -- the lock file -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Locked:
    tool: str
    version: str
    source: str
    commit: str  # the repository's pinned commit, "" for other sources
    fingerprint: str  # portable: recipe content, inputs and base references
    image: str = ""  # the image's digest (its id, the config digest): "" in a schema-1 lock
    bases: dict = field(default_factory=dict)  # base ref -> digest the image was built on
    schema: int = LOCK_SCHEMA  # 1: an older sandman's, whose fingerprints held local base ids


def read_lock(file: Path) -> dict[str, Locked]:
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
        schema = data.get("schema")
        if schema not in (1, LOCK_SCHEMA):
            raise StateError(f"{file}: lock schema {schema}; this sandman reads schemas 1 and "
                             f"{LOCK_SCHEMA}")
        out = {}
        for tool, t in data.get("tools", {}).items():
            bases = t.get("bases", {})
            if not isinstance(bases, dict) or not all(isinstance(v, str) for v in bases.values()):
                raise TypeError(f"tools.{tool}.bases is not a table of digests")
            out[tool] = Locked(tool=tool, version=t["version"], source=t["source"],
                               commit=t.get("commit", ""), fingerprint=t["fingerprint"],
                               image=str(t.get("image", "")), bases=dict(bases), schema=schema)
        return out
    except OSError as e:
        raise StateError(f"{file}: cannot read: {e.strerror}") from e
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as e:
        raise StateError(f"{file}: unreadable lock file ({e})") from e


def render_lock(entries: dict[str, Locked]) -> str:
    out = ["# Written by `sandman install`; commit it with .sandman.toml.", f"schema = {LOCK_SCHEMA}"]
    for tool in sorted(entries):
        e = entries[tool]
        key = tool if BARE_KEY_RE.match(tool) else json.dumps(tool)
        out += ["", f"[tools.{key}]"]
        out += [f"{k} = {json.dumps(getattr(e, k))}" for k in ("version", "source", "commit",
                                                              "fingerprint", "image")]
        pairs = ", ".join(f"{json.dumps(r)} = {json.dumps(d)}" for r, d in sorted(e.bases.items()))
        out.append(f"bases = {{ {pairs} }}" if pairs else "bases = {}")
    return "\n".join(out) + "\n"


def differences(locked: Locked, rec: installs.InstallRecord, lock_file: Path) -> str | None:
    """What differs between the lock's image and bases and an install's, by digest; None when
    the install is exactly the locked image (or the lock names none)."""
    if not locked.image or locked.image == rec.image_id:
        return None

    def on(bases: dict) -> str:
        return ", ".join(f"{r} {d[:19]}" for r, d in sorted(bases.items())) or "unknown bases"
    why = {"built": "built here: the registry had no image of that fingerprint (push it from "
                    "where the lock was made)",
           "registry": "the registry holds another build of that fingerprint (pushed again "
                       "since the lock was made?)"}.get(
        rec.origin, "this daemon already had another build of that fingerprint")
    return (f"{rec.key}: image {rec.image_id[:19]} on {on(rec.bases)} here, {lock_file} has "
            f"{locked.image[:19]} on {on(locked.bases)}; {why}; the lock keeps its digests "
            "(sandman install --update-lock takes these)")


def _commit_of(paths: Paths, source: str) -> str:
    return next((r.commit for r in repos.load_all(paths) if r.name == source and r.kind == "repo"), "")


def project_specs(cwd: Path) -> list[Spec]:
    """What the nearest .sandman.toml pins ([] without one): the versions a project install
    installs, for a terminal to offer trust in their repos first."""
    project = find_project(cwd)
    return [] if project is None else [Spec(t, v) for t, v in read_pins(project).items()]


@dataclass(frozen=True)
class ProjectInstall:
    project: Path
    lock: Path
    lock_changed: bool
    results: list  # install.InstallResult, in pin order


def install_project(ctx: Context, cwd: Path, *, update_lock: bool = False,
                    force: bool = False, approve: Any = None) -> ProjectInstall:
    """Install what the nearest .sandman.toml asks for; check and write sandman.lock beside it."""
    from sandman import install as core

    project = find_project(cwd)
    if project is None:
        raise UsageError(f"no {PROJECT_FILE} in {cwd} or above; name TOOL@VERSION to install, "
                         "or pin one with: sandman use TOOL VERSION")
    pins = read_pins(project)
    if not pins:
        raise UsageError(f"{project} pins no tools; add one with: sandman use TOOL VERSION")
    lock_file = project.parent / LOCK_FILE
    lock = read_lock(lock_file) if lock_file.exists() else {}
    if not update_lock and any(e.schema == 1 for e in lock.values()):
        raise LockError(f"{lock_file} was written by an older sandman (schema 1: its fingerprints "
                        "held this machine's base image ids, so they match nowhere else); run "
                        "`sandman install --update-lock` to rewrite it with portable ones")
    planned = []
    problems = []
    for tool, version in pins.items():
        locked = lock.get(tool)
        if locked is not None and locked.version != version:
            locked = None  # the pin moved: a new lock entry
        spec = Spec(tool, version, locked.source if locked and not update_lock else None)
        try:
            r = core.resolve(ctx, spec)
        except NotFoundError as e:
            raise NotFoundError(f"{e.message} ({lock_file} wants {tool}@{version} from "
                                f"'{spec.source}')" if spec.source else e.message) from e
        p = core.plan(ctx, r)
        commit = _commit_of(ctx.paths, r.entry.source.name)
        if locked is not None and not update_lock and p.fingerprint != locked.fingerprint:
            why = ""
            if commit != locked.commit:
                why = (f"; repo '{r.entry.source.name}' is at {commit[:12] or '?'}, the lock was "
                       f"made at {locked.commit[:12] or '?'}")
            problems.append(f"{tool}@{version}: fingerprint {p.fingerprint[:12]} here, {lock_file} "
                            f"has {locked.fingerprint[:12]}{why}")
        planned.append((spec, r.entry.source.name, commit))
    if problems:
        raise LockError(problems[0] + "; run `sandman install --update-lock` to accept the change",
                        detail="\n".join(problems[1:]) or None)
    for spec, _, _ in planned:  # first: a pin whose install stops below fails loudly, never
        write_defaults(ctx, spec.tool, spec.version or "")  # falls through to the host's tool
    results = []
    entries = dict(lock)
    for spec, source, commit in planned:
        res = core.install(ctx, spec, force=force, approve=approve)
        results.append(res)
        write_defaults(ctx, res.record.tool, res.record.version)  # the commands it has now
        new = Locked(res.record.tool, res.record.version, source, commit, res.record.fingerprint,
                     res.record.image_id, dict(res.record.bases))
        prev = entries.get(new.tool)
        if prev is None or not prev.image or (prev.version, prev.source, prev.fingerprint) != (
                new.version, new.source, new.fingerprint):
            entries[new.tool] = new
        elif prev.image != new.image:  # the same recipe, another build of it
            if update_lock:
                entries[new.tool] = Locked(**{**prev.__dict__, "image": new.image,
                                              "bases": new.bases})
            else:
                ctx.out.warn(differences(prev, res.record, lock_file) or "")
        # else the same install: the lock keeps its commit
    entries = {t: e for t, e in entries.items() if t in pins}
    text = render_lock(entries)
    old = lock_file.read_text(encoding="utf-8") if lock_file.exists() else None
    if text != old:
        installs.atomic_write(lock_file, text.encode())
    return ProjectInstall(project, lock_file, text != old, results)
