"""Which version an unversioned command (`sqlite3`) runs, and the project's lock file.

The choice, first match wins: `SANDMAN_<TOOL>_VERSION` (one command), the nearest pin file
walking up from the current directory that names the tool (sandman/pinfiles.py), then the global
choice (`<config>/versions.toml`). The unversioned shim (shims/default.bash) makes the choice on
every call with bash builtins only, so the pin files are read line by line, not as full TOML:
`tool = "version"` lines under `[tools]`. Its blocks are the one copy of the choice and of a
pin's target (issue 20): `choose` and `pin_target` run them (sandman/runtime_rules.py), so
`sandman which` never disagrees with the shim, and a line the shim cannot read stops both with
`FILE:LINE: ...` (exit 123): a broken pin never lets the plain command fall through to the
host's tool. Python also parses a .sandman.toml as TOML and refuses one where TOML would see
something else.

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
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandman import aliases, installs, pinfiles, repos, runtime_rules, shims
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
from sandman.pinfiles import PROJECT_FILE, PinSyntaxError
from sandman.text import safe

LOCK_FILE = "sandman.lock"
LOCK_SCHEMA = 2  # 2: portable fingerprints, image and base digests
BARE_KEY_RE = re.compile(r"^[A-Za-z0-9_-]+$")  # TOML's bare keys: how sandman writes a tool's name


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


def scan(text: str) -> dict[str, str]:
    """The pins of a .sandman.toml as the shim reads them, in order; PinSyntaxError (with the
    line number) for a line the shim stops on (shims/default.bash, sm_pin)."""
    return pinfiles.read(pinfiles.SANDMAN, text.encode()).pins


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
    return _reading(file, raw).pins


def _reading(file: Path, raw: bytes, tool: str = "") -> pinfiles.Reading:
    """What the shim reads in raw (file's content, or what is about to be), checked as TOML too."""
    text = raw.decode("utf-8", "replace")
    try:
        reading = pinfiles.read(pinfiles.SANDMAN, raw, tool)
    except PinSyntaxError as e:
        raise StateError(f"{file}:{e.line}: {e.message}") from e
    pins = reading.pins
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
        raise StateError(f"{file}:{reading.tools_line or 1}: [tools] reads differently as TOML "
                         'than as tool = "version" lines; write each pin as one such line')
    return reading


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


def _run_default(paths: Paths, tool: str, command: str, part: str, out: str, *,
                 env: dict[str, str], cwd: Path) -> tuple[int, str, list[str]]:
    """Run tool's unversioned shim for command as far as the end of one of its parts, then
    print the variables out names: (exit status, stderr, their values)."""
    script = runtime_rules.upto(render_default(paths, tool, command), part)
    script += "printf '%s\\0' " + " ".join(f'"${v}"' for v in out.split()) + "\n"
    try:
        p = runtime_rules.run(script, env=env, cwd=cwd)
    except OSError as e:  # the folder asked about is gone, or not ours to enter
        raise StateError(f"{cwd}: cannot look for pins there: {e.strerror}") from e
    return (p.returncode, runtime_rules.text_of(p.stderr),
            runtime_rules.text_of(p.stdout).split("\0")[:-1])


def choose(paths: Paths, tool: str, cwd: Path, env: dict[str, str]) -> Choice:
    """The choice the plain shim makes in cwd with env's SANDMAN_<TOOL>_VERSION: its own
    code runs (the choice part of shims/default.bash), so the two never disagree."""
    var = env_var(tool)
    given = {var: env[var]} if env.get(var) else {}
    code, err, out = _run_default(paths, tool, tool, "the choice", "sm_ver sm_from",
                                  env={"PWD": str(cwd), **given}, cwd=cwd)
    if code == StateError.exit_code and err.startswith("sandman: "):
        raise StateError(err[len("sandman: "):].rstrip("\n"))
    if code != 0 or len(out) != 2:
        raise StateError(f"the plain shim of {tool} could not choose: {err.strip() or code}")
    version, where = out
    if not where:
        return Choice(tool, None, "none", None)
    if where == f"${var}":
        return Choice(tool, version, "env", var)
    return Choice(tool, version, "global" if where == str(global_file(paths)) else "project",
                  where)


def set_pin(file: Path, tool: str, version: str) -> None:
    """Add or change one line of the [tools] table, keeping the rest of the file as it is.

    A file the shim cannot read is left alone (its FILE:LINE error says what to fix); the new
    content is checked before it replaces the old.
    """
    reading = pinfiles.Reading(None, None)
    lines: list[str] = []
    if file.exists():
        try:
            old = file.read_bytes()
        except OSError as e:
            raise StateError(f"{file}: cannot read: {e.strerror}") from e
        reading = _reading(file, old, tool)  # the lines of the tool's pin and of [tools]
        lines = [line.removesuffix("\r") for line in pinfiles.lines_of(old.decode("utf-8"))]
    key = tool if BARE_KEY_RE.match(tool) else json.dumps(tool)
    new = f'{key} = "{version}"'
    if reading.line is not None:
        lines[reading.line - 1] = new
    elif reading.tools_line is not None:
        lines.insert(reading.tools_line, new)
    else:
        lines += ([""] if lines and lines[-1].strip() else []) + ["[tools]", new]
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
        "SM_PROJECT_FILE": shlex.quote(PROJECT_FILE),
        "SM_TOOL_VERSIONS": shlex.quote(pinfiles.TOOL_VERSIONS),
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
    that would run outside any container. The rule is the plain shim's own (the target part of
    shims/default.bash), run here: a version without a shim of its own name that is an alias of
    an installed version (alias_file) runs that version's shim, as `install` resolves it.
    """
    code, _, out = _run_default(paths, tool, command, "the target", "sm_c",
                                env={env_var(tool): version}, cwd=Path("/"))
    return Path(out[0]) if code == 0 and out and out[0] else None


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
    from sandman.commands import install as core

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
