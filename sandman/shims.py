"""Generating shims: small bash scripts on PATH that run one tool@version in its container.

All the thinking happens here, at install time: the recipe's runtime settings, the user's
config, the image's facts (locales, passwd) are rendered into bash assignments at the top of
the template in shims/, so a running shim only does cheap builtin work before `exec docker`.
Shims are written all-or-nothing and never over a file sandman did not write.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sandman import warm
from sandman.config import ToolSettings
from sandman.errors import ConflictError, MountError
from sandman.paths import Paths, shim_templates_dir
from sandman.recipes import Runtime

MARKER = "# sandman-shim v1"
DOCKER_SOCKET = "/var/run/docker.sock"


@dataclass(frozen=True)
class ShimContext:
    """Where and with what a shim runs: resolved once per install."""

    tool: str
    version: str
    image: str
    runtime: Runtime
    settings: ToolSettings
    locales: tuple[str, ...]
    utf8_locale: str
    passwd_uid: int | None
    passwd_dir: Path | None
    paths: Paths
    extra_mounts: tuple[str, ...] = ()  # HOST:CONTAINER[:ro|rw] from `sandman run --mount`
    refresh: bool = True  # shims on PATH refresh when config.toml changes; `sandman run` does not
    warm_idle_minutes: int = 10  # config.toml `warm_idle_minutes`: warm containers stop after this


def env_prefix(tool: str) -> str:
    return "SANDMAN_" + tool.upper().replace("-", "_").replace(".", "_")


def shim_names(tool: str, version: str, runtime: Runtime) -> list[str]:
    names = [f"{tool}-{version}"]
    for cmd in runtime.commands:
        name = f"{cmd}-{version}"
        if name not in names:
            names.append(name)
    return names


def parse_mount_spec(spec: str) -> tuple[str, str, str]:
    """HOST:CONTAINER[:ro|rw] -> (host, container, mode)."""
    parts = spec.split(":")
    mode = "rw"
    if len(parts) == 3 and parts[2] in ("ro", "rw"):
        mode = parts.pop()
    if len(parts) != 2 or not parts[0] or not parts[1].startswith("/"):
        raise MountError(f"'{spec}' is not HOST:CONTAINER[:ro|rw] with an absolute CONTAINER path")
    host = os.path.abspath(os.path.expanduser(parts[0]))
    return host, parts[1], mode


def _arr(values: Iterable[str]) -> str:
    return "(" + " ".join(shlex.quote(v) for v in values) + ")"


def _check_field(value: str, what: str) -> str:
    if "|" in value or "\n" in value:
        raise MountError(f"{what} '{value}' contains '|' or a newline, which sandman cannot mount")
    return value


def render_values(ctx: ShimContext, prefix: Sequence[str], needcmd: bool) -> str:
    rt, st = ctx.runtime, ctx.settings
    mounts = []
    for m in rt.mounts:
        src = st.mounts.get(m.name, m.source)
        mounts.append("|".join([
            m.name, _check_field(src, f"mount {m.name} source"),
            _check_field(m.target, f"mount {m.name} target"), m.mode, "1" if m.optional else "0",
        ]))
    extras = []
    for spec in (*st.extra_mounts, *ctx.extra_mounts):
        host, target, mode = parse_mount_spec(spec)
        extras.append("|".join([_check_field(host, "mount source"),
                                _check_field(target, "mount target"), mode]))
    env = {**rt.env, **st.env}
    socket_real = os.path.realpath(DOCKER_SOCKET)
    home_env = [f"{k}={os.environ[k]}" for k in ("SANDMAN_HOME", "SANDMAN_BIN_DIR",
                                                 "SANDMAN_RECIPE_PATH") if os.environ.get(k)]
    refresh = (["env", *home_env] if home_env else []) + [
        sys.executable, "-m", "sandman", "-q", "reshim", f"{ctx.tool}@{ctx.version}"]
    reaper = ["env", *home_env, sys.executable, "-m", "sandman.reaper"]
    values = {
        "SM_TOOL": shlex.quote(ctx.tool),
        "SM_VERSION": shlex.quote(ctx.version),
        "SM_NAME": shlex.quote(f"{ctx.tool}-{ctx.version}".replace("+", "_")),
        "SM_IMAGE": shlex.quote(ctx.image),
        "SM_PREFIX": _arr(prefix),
        "SM_NEEDCMD": "1" if needcmd else "0",
        "SM_COMMANDS": _arr(rt.commands),
        "SM_NETWORK": "bridge" if rt.network else "none",
        "SM_PATH_ARGS": rt.path_args,
        "SM_ENV": _arr(f"{k}={v}" for k, v in env.items()),
        "SM_PASS_ENV": _arr(rt.pass_env),
        "SM_PATH_ENV": _arr(f"{k}:{v}" for k, v in rt.path_env.items()),
        "SM_MOUNTS": _arr(mounts),
        "SM_EXTRA_MOUNTS": _arr(extras),
        "SM_ENV_PREFIX": env_prefix(ctx.tool),
        "SM_LOCALES": _arr(ctx.locales),
        "SM_UTF8_LOCALE": shlex.quote(ctx.utf8_locale),
        "SM_PASSWD_UID": str(ctx.passwd_uid if ctx.passwd_uid is not None else -1),
        "SM_PASSWD_DIR": shlex.quote(str(ctx.passwd_dir or "")),
        "SM_DOCKER": shlex.quote(shutil.which("docker") or "docker"),
        "SM_SOCKET": shlex.quote(DOCKER_SOCKET),
        "SM_SOCKET_REAL": _arr([socket_real] if socket_real != DOCKER_SOCKET else []),
        "SM_HOST": shlex.quote(socket.gethostname()),
        "SM_CONFIG": shlex.quote(str(ctx.paths.config_file) if ctx.refresh else ""),
        "SM_REFRESH": _arr(refresh),
        "SM_REAPER": _arr(reaper),
        "SM_REAPER_PIDFILE": shlex.quote(str(ctx.paths.reaper_pidfile)),
        **warm.shim_values(ctx.paths, ctx.settings.warm, ctx.warm_idle_minutes),
    }
    return "\n".join(f"{k}={v}" for k, v in values.items())


def render(ctx: ShimContext, name: str) -> str:
    """The script for shim `name` (`tool-version` or `command-version`)."""
    template = (shim_templates_dir() / "shim.bash").read_text(encoding="utf-8")
    warm_part = (shim_templates_dir() / "warm.bash").read_text(encoding="utf-8")
    template = template.replace("@@WARM@@\n", warm_part.split("\n", 1)[1], 1)
    rt = ctx.runtime
    tool_shim = name == f"{ctx.tool}-{ctx.version}"
    if tool_shim:
        prefix, needcmd = list(rt.entrypoint), not rt.entrypoint
    else:
        prefix, needcmd = [name[: -len(ctx.version) - 1]], False
    header = f"{MARKER}\n# for: {ctx.tool}@{ctx.version}"
    text = template.replace(MARKER, header, 1)
    return text.replace("@@VALUES@@", render_values(ctx, prefix, needcmd), 1)


def owner_of(path: Path) -> str | None:
    """`tool@version` of the sandman shim at path, '' for a foreign file, None if absent."""
    try:
        with path.open("rb") as f:
            head = f.read(256).decode("utf-8", "replace").splitlines()
    except FileNotFoundError:
        return None
    except (IsADirectoryError, PermissionError):
        return ""
    if len(head) >= 3 and head[1] == MARKER and head[2].startswith("# for: "):
        return head[2][len("# for: "):]
    return ""


def check_targets(bin_dir: Path, names: Iterable[str], owner: str) -> None:
    """Raise ConflictError if any shim would replace a file that is not owner's shim."""
    for name in names:
        current = owner_of(bin_dir / name)
        if current == "":
            raise ConflictError(f"{bin_dir / name} exists and was not written by sandman; "
                                "remove it or choose another bin_dir")
        if current is not None and current != owner:
            raise ConflictError(f"{bin_dir / name} is the shim of {current}; "
                                f"uninstall that first to install {owner}")


def write_shims(bin_dir: Path, scripts: dict[str, str], owner: str) -> list[Path]:
    """Write every shim or none: check all targets first, then rename into place."""
    check_targets(bin_dir, scripts, owner)
    bin_dir.mkdir(parents=True, exist_ok=True)
    staged: list[tuple[str, Path]] = []
    try:
        for name, text in scripts.items():
            fd, tmp = tempfile.mkstemp(dir=bin_dir, prefix=f".{name}.", suffix=".tmp")
            staged.append((tmp, bin_dir / name))
            with os.fdopen(fd, "wb") as f:
                f.write(text.encode())
            os.chmod(tmp, 0o755)
        for tmp, path in staged:
            os.replace(tmp, path)
    finally:
        for tmp, _ in staged:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    return [path for _, path in staged]


def remove_shims(bin_dir: Path, names: Iterable[str], owner: str) -> list[Path]:
    removed = []
    for name in names:
        path = bin_dir / name
        if owner_of(path) == owner:
            path.unlink()
            removed.append(path)
    return removed


def shadowed(bin_dir: Path, name: str) -> str | None:
    """Another executable of that name earlier on PATH, which would win over the shim."""
    for d in os.environ.get("PATH", "").split(os.pathsep):
        if not d:
            continue
        if Path(d).resolve() == bin_dir.resolve():
            return None
        candidate = Path(d) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None
