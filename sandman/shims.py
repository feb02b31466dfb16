"""Generating shims: small scripts on PATH that run one tool@version in its container.

All the thinking happens here, at install time: the recipe's runtime settings, the user's
config, the image's facts (locales, passwd) are rendered into shell assignments. A shim starts
in /bin/sh, whose few lines (shims/front.sh) take a warm call straight to the agent's client
or run the file again in bash; bash reads the values and `source`s one shared runtime
(shims/shim.bash with shims/warm.bash, plus the names of sandman/names.py), written once per
content to `<data>/runtime/shim-<sha12>.bash`: a new sandman writes a new file and old shims
keep theirs until they are rewritten, which `sandman list` reports (`shim-stale: runtime`).
So a running shim only does cheap builtin work before `exec docker`. Shims are written
all-or-nothing and never over a file sandman did not write.
"""

from __future__ import annotations

import contextlib
import functools
import grp
import hashlib
import json
import os
import shlex
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from sandman import names, plan, runtime_rules, warm
from sandman.config import PROXY_VARS, ToolSettings
from sandman.engine_choice import Docker, EngineChoice
from sandman.errors import RUNTIME_CODES, ConflictError, MountError
from sandman.installs import MARKER, owner_of
from sandman.names import DOCKER_SOCKET
from sandman.paths import Paths, shim_templates_dir
from sandman.recipes import Runtime, shim_names, shim_plan  # noqa: F401
from sandman.state import unchanged, write_if_changed

DEFAULT_ENGINE = Docker("", f"unix://{DOCKER_SOCKET}", False, "the default")  # unit tests
# the recipe's runtime fields a shim bakes in (smoke is only run by install)
RECIPE_FIELDS = ("entrypoint", "commands", "env", "pass_env", "path_env", "path_args", "mounts",
                 "network", "command_run", "home_files", "devices", "cap_add", "aliases",
                 "alias_shims", "platform")


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
    engine: EngineChoice = DEFAULT_ENGINE  # the command's engine: whose client the shim execs
    shell: bool = True  # the image has /bin/sh (images.ImageFacts.shell)
    image_platform: str = ""  # the image's os/architecture (images.ImageFacts.platform)


def env_prefix(tool: str) -> str:
    return "SANDMAN_" + tool.upper().replace("-", "_").replace(".", "_")


# -- the shared runtime ----------------------------------------------------------------------
# (text, digest) by the templates' (path, mtime, size): `reshim --all` renders every install's
# shims in one process, and read and hashed the same 40 KB for each (issue 24)
_runtime_memo: dict[tuple, tuple[str, str]] = {}


def _runtime() -> tuple[str, str]:
    folder = shim_templates_dir()
    files = (folder / "shim.bash", folder / "warm.bash")
    key = tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in files)
    if key not in _runtime_memo:
        template = files[0].read_text(encoding="utf-8")
        warm_part = files[1].read_text(encoding="utf-8")
        template = template.replace("@@WARM@@\n", warm_part.split("\n", 1)[1], 1)
        values = "\n".join(f"{k}={v}" for k, v in runtime_values().items())
        text = template.replace("@@NAMES@@", values, 1)
        _runtime_memo.clear()
        _runtime_memo[key] = (text, hashlib.sha256(text.encode()).hexdigest()[:12])
    return _runtime_memo[key]


def runtime_values() -> dict[str, str]:
    """`SM_LABEL_<NAME>` and `SM_EXIT_<NAME>` for the runtime, already quoted for bash: label
    names from sandman/names.py, exit codes from sandman/errors.py, each typed there once."""
    out = {f"SM_LABEL_{k}": shlex.quote(v) for k, v in names.LABELS.items()}
    out.update({f"SM_EXIT_{k}": str(v) for k, v in RUNTIME_CODES.items()})
    out["SM_WARM_RETIRED"] = shlex.quote(names.WARM_RETIRED)
    return out


def runtime_text() -> str:
    """The runtime every shim sources: shim.bash, warm.bash at @@WARM@@, names at @@NAMES@@."""
    return _runtime()[0]


def runtime_digest(text: str | None = None) -> str:
    """The runtime's name: the first 12 hex digits of the sha256 of its content."""
    if text is None:
        return _runtime()[1]
    return hashlib.sha256(text.encode()).hexdigest()[:12]


# The shim's front (shims/front.sh) reads these values, so they come before it in the shim;
# each is a scalar in POSIX quoting (shlex.quote), which sh and bash read alike.
FRONT_VALUES = ("SM_NAME", "SM_WARM", "SM_WARM_DIR", "SM_AGENT", "SM_CONFIG")


@functools.cache
def front_text() -> str:
    """shims/front.sh without its comments: the part of every shim that sh runs (the fast
    path). It is in the shim itself, not the runtime: its digest is in made_from, so a new
    front makes shims stale."""
    text = (shim_templates_dir() / "front.sh").read_text(encoding="utf-8")
    return "".join(ln for ln in text.splitlines(keepends=True) if not ln.lstrip().startswith("#"))


def front_digest() -> str:
    return hashlib.sha256(front_text().encode()).hexdigest()[:12]


def runtime_dir(paths: Paths) -> Path:
    return paths.data_dir / "runtime"


def runtime_path(paths: Paths, digest: str) -> Path:
    return runtime_dir(paths) / f"shim-{digest}.bash"


_written: set[Path] = set()


def write_runtime(paths: Paths) -> Path:
    """Write the current runtime (if that content is not there yet): temp file, then rename.
    Once per process and file: `reshim --all` asks for every install."""
    text, digest = _runtime()
    path = runtime_path(paths, digest)
    if path not in _written:
        write_if_changed(path, text.encode(), 0o644, dir_mode=0o755)
        _written.add(path)
    return path


def unused_runtimes(paths: Paths, bin_dirs: Iterable[Path]) -> list[Path]:
    """Runtime files no shim of this home sources any more (the current one always stays).

    Old runtimes are left behind by upgrades; a shim names its runtime on its SM_RUNTIME line,
    so one read of each sandman shim tells which are still in use.
    """
    folder = runtime_dir(paths)
    if not folder.is_dir():
        return []
    used = {runtime_path(paths, runtime_digest()).name}
    for d in bin_dirs:
        with contextlib.suppress(OSError):
            for f in d.iterdir():
                if not owner_of(f):
                    continue
                with contextlib.suppress(OSError, UnicodeDecodeError):
                    for line in f.read_text(encoding="utf-8").splitlines():
                        if line.startswith("SM_RUNTIME="):
                            used.add(shlex.split(line[len("SM_RUNTIME="):])[0].rsplit("/", 1)[-1])
    return sorted(f for f in folder.glob("shim-*.bash") if f.name not in used)


# -- config.toml env values: a private file, never in the shim ---------------------------------
def env_file(paths: Paths, tool: str, version: str) -> Path:
    return paths.state_dir / "env" / f"{tool}@{version}.env"


def env_file_content(env: dict[str, str]) -> bytes:
    return b"".join(f"{k}={v}".encode() + b"\0" for k, v in env.items())


def write_env_file(paths: Paths, tool: str, version: str, env: dict[str, str]) -> Path | None:
    """config.toml's env for tool@version in a 0600 file of a 0700 folder (None when empty).

    Values in config.toml may be secrets (a password, a token); shims are 0755 files on PATH,
    so the values stay out of them and the runtime reads this file when the owner runs a shim.
    """
    path = env_file(paths, tool, version)
    if not env:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return None
    data = env_file_content(env)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    write_if_changed(path, data, 0o600, dir_mode=0o700)
    return path


# -- mounts ------------------------------------------------------------------------------------
def socket_paths() -> list[str]:
    """The Docker socket as configured and as it really is (/var/run/docker.sock -> /run/...)."""
    return list(_socket_paths())


@functools.lru_cache(maxsize=1)
def _socket_paths() -> tuple[str, ...]:
    """Once per process: a command renders every install's shims with it (issue 24)."""
    real = os.path.realpath(DOCKER_SOCKET)
    return (DOCKER_SOCKET, *([real] if real != DOCKER_SOCKET else []))


def podman_socket_paths() -> list[str]:
    """Podman's API sockets this user could reach: rootful, and this user's own (rootless)."""
    from sandman.engine_choice import podman_paths

    return sorted(set(podman_paths().all_sockets))


def socket_gids() -> list[int]:
    """Groups that may use the Docker socket: its owning group and the `docker` group."""
    return list(_socket_gids())


@functools.lru_cache(maxsize=1)
def _socket_gids() -> tuple[int, ...]:
    gids: list[int] = []
    with contextlib.suppress(OSError):
        gids.append(os.stat(DOCKER_SOCKET).st_gid)
    with contextlib.suppress(KeyError):
        gids.append(grp.getgrnam("docker").gr_gid)
    return tuple(sorted({g for g in gids if g != 0}))


_refusal_memo: dict[tuple[str, ...], str | None] = {}


def refusal(real: str) -> str | None:
    """Why the real host path may not be mounted as a declared mount, or None.

    The rule is the shim runtime's (shims/shim.bash, sm_refused: its one copy), run on this
    host's values: the home, the Docker socket as configured and as it really is, Podman's
    sockets, and SANDMAN_ALLOW_ROOT / SANDMAN_ALLOW_HOME. So `sandman run --mount` and
    config.toml's extra_mounts are refused at once with the words a shim would use.
    """
    home = os.path.realpath(os.path.expanduser("~"))
    allow = {k: os.environ[k] for k in ("SANDMAN_ALLOW_ROOT", "SANDMAN_ALLOW_HOME")
             if k in os.environ}
    docker, podman = socket_paths(), podman_socket_paths()
    key = (runtime_digest(), real, home, *docker, "", *podman, "",
           *(f"{k}={v}" for k, v in allow.items()))
    if key not in _refusal_memo:  # a reshim renders one install's mounts once per shim
        script = (runtime_rules.assign("sm_home", home)
                  + runtime_rules.assign("sm_socks", docker)
                  + runtime_rules.assign("sm_psocks", podman)
                  + runtime_rules.block(runtime_text(), "the refusal rule")
                  + 'if sm_refused "$1"; then printf %s "$sm_why"; fi\n')
        p = runtime_rules.run(script, [real], env=allow)
        if p.returncode != 0 or p.stderr:
            raise MountError(f"could not check the mount {real}: "
                             f"{runtime_rules.text_of(p.stderr).strip() or f'bash exit {p.returncode}'}")
        _refusal_memo[key] = runtime_rules.text_of(p.stdout) or None
    return _refusal_memo[key]


def parse_mount_spec(spec: str) -> tuple[str, str, str]:
    """HOST:CONTAINER[:ro|rw] -> (real host path, container, mode); refused sources fail here.

    The host path is resolved (symlinks, `.`, `..`, `//`) before it is checked, and that real
    path is what gets mounted (the shim resolves it again when it runs).
    """
    parts = spec.split(":")
    mode = "rw"
    if len(parts) == 3 and parts[2] in ("ro", "rw"):
        mode = parts.pop()
    if len(parts) != 2 or not parts[0] or not parts[1].startswith("/"):
        raise MountError(f"'{spec}' is not HOST:CONTAINER[:ro|rw] with an absolute CONTAINER path")
    host = os.path.realpath(os.path.expanduser(parts[0]))
    why = refusal(host)
    if why:
        raise MountError(f"will not mount {parts[0]} (really {host}): {why}")
    return host, parts[1], mode


def _arr(values: Iterable[str]) -> str:
    return "(" + " ".join(shlex.quote(v) for v in values) + ")"


def _check_field(value: str, what: str) -> str:
    if "|" in value or "\n" in value:
        raise MountError(f"{what} '{value}' contains '|' or a newline, which sandman cannot mount")
    return value


# -- what a shim is made from, for `sandman list` ------------------------------------------------
def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _home_env() -> list[str]:
    return [f"{k}={os.environ[k]}" for k in ("SANDMAN_HOME", "SANDMAN_BIN_DIR", "SANDMAN_RECIPE_PATH")
            if os.environ.get(k)]


_which_memo: dict[tuple[str, str], str | None] = {}


def _which(name: str) -> str | None:
    """shutil.which, once per name and PATH in a process: a command rendering every install's
    shims asked it five times per install (issue 24)."""
    key = (name, os.environ.get("PATH", ""))
    if key not in _which_memo:
        _which_memo[key] = shutil.which(name)
    return _which_memo[key]


def _real_program(name: str) -> str | None:
    path = _which(name)
    return os.path.realpath(path) if path else None


_host_memo: dict[tuple[str, str, str], str] = {}


def _host_digest() -> str:
    """The host part of made_from, once per PATH and interpreter in a process: the same for
    every install a command renders (`reshim --all` of 200 asked 200 times, issue 24)."""
    key = (os.environ.get("PATH", ""), sys.executable, sys.prefix)
    if key not in _host_memo:
        host = {"docker": _real_program("docker") or "docker",
                "podman": _real_program("podman") or "",
                "python": [os.path.realpath(sys.executable), sys.prefix],
                "hostname": socket.gethostname(), "sockets": socket_paths(), "gids": socket_gids()}
        _host_memo[key] = _digest(host)
    return _host_memo[key]


def made_from(settings: ToolSettings, warm_idle_minutes: int, *,
              runtime: str | None = None) -> dict[str, str]:
    """Digests of what a shim bakes in besides the recipe: the runtime, config.toml, the host.

    Stored in the install record; `sandman list` compares them with today's to name the reason
    a shim is stale. config.toml's env values are not in here (only their names): they are
    compared with the private env file instead. The host is which programs run, not how they
    were spelt: `python -m sandman` and `python3 -m sandman` of one venv (or /bin/docker and
    /usr/bin/docker) are the same host, by their real paths and the venv (sys.prefix).
    """
    config = {"mounts": settings.mounts, "extra_mounts": list(settings.extra_mounts),
              "env": sorted(settings.env), "warm": settings.warm, "idle": warm_idle_minutes}
    if (settings.network, settings.devices, settings.cap_add) != (None, None, None):
        config["grants"] = [settings.network, settings.devices, settings.cap_add]
    if settings.proxy_env is False:  # the default (on) leaves earlier digests as they were
        config["proxy_env"] = False
    return {"runtime": runtime or runtime_digest(), "front": front_digest(),
            "config": _digest(config), "host": _host_digest(),
            # what config.toml grants beyond the recipe, kept as is: consent.granted reads it
            "grants": json.dumps([settings.network, settings.devices, settings.cap_add])}


def stale_reasons(recorded: dict[str, str], recorded_runtime: dict, paths: Paths,
                  current: dict[str, str], current_runtime: Runtime | None, tool: str,
                  version: str, env: dict[str, str]) -> list[str]:
    """The fields whose shim content is out of date: runtime, config, host, env, mounts..."""
    out = []
    if (recorded.get("runtime") != current["runtime"]
            or recorded.get("front") != current["front"]  # the shim's own part of it
            or not runtime_path(paths, recorded.get("runtime", "-")).is_file()):
        out.append("runtime")
    if current_runtime is not None:
        now = asdict(current_runtime)
        # a record from before a key existed holds its default; the old boolean network, none/bridge
        then = asdict(Runtime(**{k: v for k, v in (recorded_runtime or {}).items() if k in now
                                 and k != "mounts"}))
        then["mounts"] = (recorded_runtime or {}).get("mounts", [])
        out += [f for f in RECIPE_FIELDS if _digest(then.get(f)) != _digest(now.get(f))]
    config_ok = recorded.get("config") == current["config"]
    if config_ok and env:
        try:
            config_ok = env_file(paths, tool, version).read_bytes() == env_file_content(env)
        except OSError:
            config_ok = False
    if not config_ok:
        out.append("config")
    if recorded.get("host") != current["host"]:
        out.append("host")
    return out


# -- rendering ---------------------------------------------------------------------------------
def render_values(ctx: ShimContext, prefix: Sequence[str], needcmd: bool) -> dict[str, str]:
    """Every value of a shim, already quoted: scalars in POSIX quoting (the front reads some in
    sh), arrays in bash's."""
    st = ctx.settings
    rt = st.apply(ctx.runtime)  # this host's network, devices and cap_add (config.toml)
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
    # config.toml's env stays out of the shim (it may hold secrets): see write_env_file
    env = {k: v for k, v in rt.env.items() if k not in st.env}
    envf = env_file(ctx.paths, ctx.tool, ctx.version) if st.env else None
    sockets = socket_paths()
    home_env = _home_env()
    refresh = (["env", *home_env] if home_env else []) + [
        sys.executable, "-m", "sandman", "-q", "reshim", f"{ctx.tool}@{ctx.version}"]
    reaper = ["env", *home_env, sys.executable, "-m", "sandman.reaper"]
    launch = plan.LaunchPlan(
        tool=ctx.tool, version=ctx.version, image=ctx.image, network=rt.network,
        platform=rt.platform or "", cap_add=tuple(rt.cap_add), devices=tuple(rt.devices),
        host=socket.gethostname(), reaper_pidfile=str(ctx.paths.reaper_pidfile))
    run_root, run_user = launch.run_args_by_caller(ctx.engine)
    values = {
        "SM_TOOL": shlex.quote(ctx.tool),
        "SM_VERSION": shlex.quote(ctx.version),
        "SM_NAME": shlex.quote(f"{ctx.tool}-{ctx.version}".replace("+", "_")),
        "SM_IMAGE": shlex.quote(ctx.image),
        "SM_PREFIX": _arr(prefix),
        "SM_NEEDCMD": "1" if needcmd else "0",
        "SM_COMMANDS": _arr(rt.commands),
        "SM_NETWORK": shlex.quote(rt.network),
        "SM_RUN": _arr(run_root),  # sandman/plan.py: the words of `run` no call changes
        "SM_RUN_USER": _arr(run_user),  # the same, for a caller other than root
        "SM_EXEC": _arr(ctx.engine.command_prefix(ctx.shell)),
        "SM_PLATFORM": shlex.quote(rt.platform or ""),
        "SM_IMAGE_PLATFORM": shlex.quote(ctx.image_platform),  # a warm start needs no inspect
        "SM_RUN_AS": _arr(f"{k}={v}" for k, v in rt.command_run.items()),
        "SM_HOME_FILES": _arr(rt.home_files),
        "SM_DEVICES": _arr(rt.devices),
        "SM_PATH_ARGS": rt.path_args,
        "SM_ENV": _arr(f"{k}={v}" for k, v in env.items()),
        "SM_ENV_FILE": shlex.quote(str(envf or "")),
        "SM_PASS_ENV": _arr(rt.pass_env),
        "SM_PROXY_ENV": _arr(PROXY_VARS if st.proxy_env is not False else ()),
        "SM_PATH_ENV": _arr(f"{k}:{v}" for k, v in rt.path_env.items()),
        "SM_MOUNTS": _arr(mounts),
        "SM_EXTRA_MOUNTS": _arr(extras),
        "SM_ENV_PREFIX": env_prefix(ctx.tool),
        "SM_LOCALES": _arr(ctx.locales),
        "SM_UTF8_LOCALE": shlex.quote(ctx.utf8_locale),
        "SM_SHELL": "1" if ctx.shell else "0",
        "SM_PASSWD_UID": str(ctx.passwd_uid if ctx.passwd_uid is not None else -1),
        "SM_PASSWD_DIR": shlex.quote(str(ctx.passwd_dir or "")),
        **{k: shlex.quote(v) for k, v in ctx.engine.shim_values().items()},
        "SM_SOCKET": shlex.quote(DOCKER_SOCKET),
        "SM_SOCKET_REAL": _arr(sockets[1:]),
        "SM_SOCKET_GIDS": _arr(str(g) for g in socket_gids()),
        "SM_HOST": shlex.quote(socket.gethostname()),
        "SM_CONFIG": shlex.quote(str(ctx.paths.config_file) if ctx.refresh else ""),
        "SM_REFRESH": _arr(refresh),
        "SM_REAPER": _arr(reaper),
        "SM_REAPER_PIDFILE": shlex.quote(str(ctx.paths.reaper_pidfile)),
        **warm.shim_values(ctx.paths, ctx.settings.warm, ctx.warm_idle_minutes),
    }
    return values


def render(ctx: ShimContext, name: str) -> str:
    """The script for shim `name` (`tool-version` or `command-version`): the values the front
    reads, the front (sh), the other values, `source` of the runtime (bash).

    Writes what the script refers to first (the runtime, the private env file), so a shim
    never points at a file that is not there yet.
    """
    runtime = write_runtime(ctx.paths)
    write_env_file(ctx.paths, ctx.tool, ctx.version, ctx.settings.env)
    rt = ctx.runtime
    cmd = shim_plan(ctx.tool, ctx.version, rt).get(name, name[: -len(ctx.version) - 1])
    if cmd is None:  # the tool's own shim (of the version or an alias)
        prefix, needcmd = list(rt.entrypoint), not rt.entrypoint
    else:
        prefix, needcmd = [rt.run_name(cmd)], False
    key = f"{ctx.tool}@{ctx.version}"
    values = render_values(ctx, prefix, needcmd)
    front = {k: values.pop(k) for k in FRONT_VALUES}
    return "\n".join([
        "#!/bin/sh",
        MARKER,
        f"# for: {key}",
        "# Generated by sandman; do not edit (install, reshim and upgrade rewrite it).",
        "# The values its front reads, the front (sh: the fast path, or bash runs this file), the",
        "# other values, the shared runtime (docs/runtime.md): shell builtins only up to exec.",
        *(f"{k}={v}" for k, v in front.items()),
        "# the front: shims/front.sh",
        front_text().rstrip("\n"),
        *(f"{k}={v}" for k, v in values.items()),
        f"SM_RUNTIME={shlex.quote(str(runtime))}",
        "SM_SELF=${BASH_SOURCE[0]-}",
        "[[ -r $SM_RUNTIME ]] || { printf 'sandman: %s: the shim runtime %s is missing or "
        f"unreadable; run: sandman reshim --all\\n' {shlex.quote(key)} \"$SM_RUNTIME\" >&2; "
        f"exit {RUNTIME_CODES['STATE']}; }}",
        'source "$SM_RUNTIME"',
        "",
    ])


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
    """Write every shim or none: check all targets first, then rename into place.

    A shim that already is exactly the script (ours, 0755, same bytes) is left as it is: a
    `reshim --all` writes only what changed. Returns every shim's path, written or not."""
    check_targets(bin_dir, scripts, owner)
    bin_dir.mkdir(parents=True, exist_ok=True)
    staged: list[tuple[str, Path]] = []
    try:
        for name, text in scripts.items():
            if unchanged(bin_dir / name, text.encode(), 0o755):
                continue
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
    return [bin_dir / name for name in scripts]


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
