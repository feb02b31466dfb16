"""Which version an unversioned command (`sqlite3`) runs, and the project's lock file.

The choice, first match wins: `SANDMAN_<TOOL>_VERSION` (one command), the nearest
`.sandman.toml` walking up from the current directory that names the tool, then the global
choice (`<config>/versions.toml`). The unversioned shim (shims/default.bash) makes the same
choice with bash builtins only, so the pin files are read line by line, not as full TOML:
`tool = "version"` lines under `[tools]`. Python reads them with the same rule and refuses a
file where full TOML would see something else, so `sandman which` never disagrees with the shim.

`sandman.lock` beside the project file records, per tool, the recipe source, the repository
commit and the fingerprint an install produced, so a teammate's install can tell when it would
get a different image.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandman import installs, repos, shims
from sandman.catalog import Spec
from sandman.context import Context
from sandman.errors import LockError, NotFoundError, StateError, UsageError
from sandman.paths import Paths, shim_templates_dir
from sandman.recipes import VERSION_RE, tomllib

PROJECT_FILE = ".sandman.toml"
LOCK_FILE = "sandman.lock"
LOCK_SCHEMA = 1
LINE_RE = re.compile(r"""^["']?([A-Za-z0-9._-]+)["']?[ \t]*=[ \t]*("([^"]*)"|'([^']*)')[ \t]*(#.*)?$""")
BARE_KEY_RE = re.compile(r"^[A-Za-z0-9_-]+$")


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


def parse_lines(text: str) -> dict[str, str]:
    """The pins as the shim reads them: `key = "value"` lines in the [tools] table."""
    pins: dict[str, str] = {}
    section = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line[1:].split("]", 1)[0].strip()
            continue
        m = LINE_RE.match(line)
        if section == "tools" and m:
            pins.setdefault(m.group(1), m.group(3) if m.group(3) is not None else m.group(4))
    return pins


def read_pins(file: Path) -> dict[str, str]:
    try:
        text = file.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except OSError as e:
        raise StateError(f"{file}: cannot read: {e.strerror}") from e
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise StateError(f"{file}: invalid TOML: {e}") from e
    tools = data.get("tools", {})
    pins = parse_lines(text)
    if not isinstance(tools, dict) or tools != pins:
        raise StateError(f"{file}: write each pin as a line `tool = \"version\"` under [tools] "
                         "(the shims read that form only)")
    for tool, version in pins.items():
        if not VERSION_RE.match(version):
            raise StateError(f"{file}: tools.{tool}: '{version}' is not a version")
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
    g = global_file(paths)
    if g.is_file():
        pins = read_pins(g)
        if tool in pins:
            return Choice(tool, pins[tool], "global", str(g))
    return Choice(tool, None, "none", None)


def set_pin(file: Path, tool: str, version: str) -> None:
    """Add or change one line of the [tools] table, keeping the rest of the file as it is."""
    lines = file.read_text(encoding="utf-8").splitlines() if file.exists() else []
    key = tool if BARE_KEY_RE.match(tool) else json.dumps(tool)
    new = f'{key} = "{version}"'
    section, tools_at, done = None, None, False
    for i, raw in enumerate(lines):
        line = raw.strip()
        if line.startswith("["):
            section = line[1:].split("]", 1)[0].strip()
            if section == "tools":
                tools_at = i
            continue
        m = LINE_RE.match(line)
        if section == "tools" and m and m.group(1) == tool:
            lines[i] = new
            done = True
            break
    if not done:
        if tools_at is None:
            lines += ([""] if lines and lines[-1].strip() else []) + ["[tools]", new]
        else:
            lines.insert(tools_at + 1, new)
    installs.atomic_write(file, ("\n".join(lines) + "\n").encode())
    read_pins(file)  # what the shim will read is what we meant


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


def render_default(paths: Paths, tool: str, command: str) -> str:
    template = (shim_templates_dir() / "default.bash").read_text(encoding="utf-8")
    values = {
        "SM_TOOL": shlex.quote(tool),
        "SM_CMD": shlex.quote(command),
        "SM_BIN": shlex.quote(str(paths.bin_dir)),
        "SM_VAR": env_var(tool),
        "SM_GLOBAL": shlex.quote(str(global_file(paths))),
    }
    text = template.replace(shims.MARKER, f"{shims.MARKER}\n# for: {tool}", 1)
    return text.replace("@@VALUES@@", "\n".join(f"{k}={v}" for k, v in values.items()), 1)


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


def use(ctx: Context, tool: str, version: str, *, global_: bool, cwd: Path) -> UseResult:
    ctx.catalog.resolve(Spec(tool, version))  # a tool and version that exist
    file = global_file(ctx.paths) if global_ else (find_project(cwd) or cwd / PROJECT_FILE)
    set_pin(file, tool, version)
    written = write_defaults(ctx, tool, version)
    return UseResult(file, written, installs.load(ctx.paths, tool, version) is not None)


# -- the lock file -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Locked:
    tool: str
    version: str
    source: str
    commit: str  # the repository's pinned commit, "" for other sources
    fingerprint: str


def read_lock(file: Path) -> dict[str, Locked]:
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
        if data.get("schema") != LOCK_SCHEMA:
            raise StateError(f"{file}: lock schema {data.get('schema')}; this sandman reads "
                             f"schema {LOCK_SCHEMA}")
        return {tool: Locked(tool=tool, version=t["version"], source=t["source"],
                             commit=t.get("commit", ""), fingerprint=t["fingerprint"])
                for tool, t in data.get("tools", {}).items()}
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
                                                              "fingerprint")]
    return "\n".join(out) + "\n"


def _commit_of(paths: Paths, source: str) -> str:
    return next((r.commit for r in repos.load_all(paths) if r.name == source and r.kind == "repo"), "")


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
    results = []
    entries = dict(lock)
    for spec, source, commit in planned:
        res = core.install(ctx, spec, force=force, approve=approve)
        results.append(res)
        write_defaults(ctx, res.record.tool, res.record.version)
        entries[res.record.tool] = Locked(res.record.tool, res.record.version, source, commit,
                                          res.record.fingerprint)
    entries = {t: e for t, e in entries.items() if t in pins}
    text = render_lock(entries)
    old = lock_file.read_text(encoding="utf-8") if lock_file.exists() else None
    if text != old:
        installs.atomic_write(lock_file, text.encode())
    return ProjectInstall(project, lock_file, text != old, results)
