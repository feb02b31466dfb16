"""Which container engine sandman uses, Docker or Podman, and how it reaches it.

Image work (inspect, tag, push, pull, save, load, events) goes through the Docker SDK: to
dockerd, or to Podman's Docker-compatible API socket (`podman system service`), which sandman
starts for the user when it is not running. Builds on a local Podman run its client instead
(engine.py, `_podman_build`: the service goes on with a build whose client went away). Shims
exec the engine's own client (`docker run`, `podman run`): Podman's client needs no service at
all, so the hot path never waits for one.

Rootless Podman is the point: an ordinary user with no `docker` group (which is root on that
host) gets every feature, each user with a private image store. The choice is made here, once,
from the first of `--engine`, SANDMAN_ENGINE, config.toml's
`engine`, and "auto": a reachable Docker socket, else Podman. Nothing here imports the SDK.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import pwd
import shlex
import shutil
import socket
import stat
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from sandman import runtime_rules
from sandman.errors import (
    DaemonUnavailableError,
    EngineNotInstalledError,
    EngineSetupError,
    NoEngineError,
    StaleSocketError,
    SubidError,
)
from sandman.names import DOCKER_SOCKET, LABEL_ROLE, ROLE_PROBE
from sandman.paths import shim_templates_dir

DOCKER, PODMAN, AUTO = "docker", "podman", "auto"
ENGINES = (DOCKER, PODMAN, AUTO)
# Every container sandman starts, on either engine, is locked down the same way: setuid binaries
# in an image gain nothing, and every capability is dropped (a recipe adds back what it needs,
# cap_add, in the launch plan: sandman/plan.py).
SECURITY_OPT = ("no-new-privileges",)
CAP_DROP = ("ALL",)
SERVICE_IDLE_SECONDS = 600  # a service sandman started exits after this long without requests
SERVICE_START_SECONDS = 20.0


@dataclass(frozen=True)
class EngineChoice:
    """The engine this process uses, chosen once (`choose`), and every way engines differ.

    Docker and Podman are its two kinds; the rest of sandman asks this object (its network
    mapping, its service, its socket, its values for the shims) and never tests which kind it
    is, so a difference lives in one method here, not in branches across modules.
    """

    cli: str  # the client shims exec (absolute path), "" when it is not installed
    base_url: str  # what the SDK connects to: unix:///..., tcp://... (Docker's DOCKER_HOST)
    rootless: bool  # Podman as a non-root user: its own store, --userns=keep-id in shims
    why: str  # how it was chosen, for doctor and --debug
    kind: ClassVar[str] = ""
    sdk_from_env: ClassVar[bool] = False  # the SDK reads DOCKER_HOST and its TLS settings
    # `run --pidfile` writes the container's host pid: a warm start then needs no inspect
    run_pidfile: ClassVar[bool] = False

    @property
    def socket_path(self) -> str:
        return self.base_url[len("unix://"):] if self.base_url.startswith("unix://") else ""

    @property
    def label(self) -> str:
        """"Docker", "Podman (rootless)", "Podman (rootful)": for messages."""
        return "Docker"

    def network_mode(self, network: str) -> str:
        """The engine's network for a container that asks for `network` (none, bridge, host)."""
        return network

    def userns(self) -> str:
        """The user namespace mode of a shim's container ("": the engine's default)."""
        return ""

    def command_prefix(self, shell: bool) -> list[str]:
        """Words before a cold call's command (shell: the image has /bin/sh)."""
        return []

    def for_caller(self, *, root: bool) -> EngineChoice:
        """This engine as a shim's caller meets it (a shim one user wrote, another may run)."""
        return self

    def check_usable(self) -> None:
        """Refuse, before anything is created, an engine this user cannot run containers with."""

    def socket_state(self) -> str:
        """The API socket: "answers", "absent", "restartable" or "stale" (see Podman's)."""
        return "answers"

    def ensure_service(self, log: Path | None = None,
                       say: Callable[[str], None] | None = None) -> bool:
        """The API answers when this returns; True when sandman had to start it."""
        return False

    def ready(self, log: Path | None = None, say: Callable[[str], None] | None = None) -> None:
        """What talking to the engine takes first, with the SDK or without it (Engine.connect,
        Context.image_reads): refused when unusable, its API service answering."""
        self.check_usable()
        self.ensure_service(log, say)

    def builds_with_cli(self, env: Mapping[str, str]) -> bool:
        """Whether a build runs the engine's client rather than the API (see Podman's)."""
        return False

    def plain_http_api(self, repo: str) -> bool:
        """Whether a push/pull of repo must ask the engine's own API for plain HTTP."""
        return False

    def daemon_host(self) -> str | None:
        """The daemon a shim's warm files are keyed by: Docker's is the call's DOCKER_HOST
        (None: the environment's), Podman's its API socket (shims/warm.bash)."""
        return None

    def shim_values(self) -> dict[str, str]:
        """What a shim needs to reach this engine, decided here and never again by the shim."""
        return {"SM_ENGINE": self.kind, "SM_DOCKER": self.cli or self.kind,
                "SM_RUN_PIDFILE": "1" if self.run_pidfile else ""}


@dataclass(frozen=True)
class Docker(EngineChoice):
    """dockerd, through its socket or DOCKER_HOST; images built by the API."""

    kind: ClassVar[str] = DOCKER
    sdk_from_env: ClassVar[bool] = True


@dataclass(frozen=True)
class Podman(EngineChoice):
    """Podman: rootless as any user but root (a private store, no daemon, no group that is
    root in disguise); the SDK talks to its API service, which sandman starts when needed."""

    kind: ClassVar[str] = PODMAN
    run_pidfile: ClassVar[bool] = True

    @property
    def label(self) -> str:
        return f"Podman ({'rootless' if self.rootless else 'rootful'})"

    def network_mode(self, network: str) -> str:
        """Rootless Podman's "bridge" is a CNI network that needs a logind run-time folder (no
        XDG_RUNTIME_DIR: it fails); its own rootless default, slirp4netns, gives the same
        outbound-only network everywhere."""
        return "slirp4netns" if self.rootless and network == "bridge" else network

    def userns(self) -> str:
        """Rootless: the caller's uid and gid are the same numbers inside (files made in the
        current directory are theirs); only they are mapped, so no supplementary group goes."""
        return "keep-id" if self.rootless else ""

    def command_prefix(self, shell: bool) -> list[str]:
        """Podman's --init (catatonit) exits 1 when it cannot exec the command; a shell, and
        Docker's --init, say 127 (not found) or 126 (not executable). In an image with /bin/sh
        a cold call goes through `sh -c 'exec "$@"'`: the shell replaces itself with the tool
        (same pid, argv, stdin, signals), or exits 127/126 with its message. Warm calls go
        through sh already."""
        return ["/bin/sh", "-c", 'exec "$@"', "sh"] if shell else []

    def for_caller(self, *, root: bool) -> EngineChoice:
        """Podman is rootless for every caller but root."""
        return dataclasses.replace(self, rootless=not root)

    def check_usable(self) -> None:
        if self.rootless:
            uid = os.geteuid()
            if problem := subid_problem(_user_name(uid), uid):
                raise SubidError(problem)

    def socket_state(self) -> str:
        """"restartable": left by sandman's service, which is gone (sandman starts it again);
        "stale": a file nothing listens on, not sandman's (the user's to look at)."""
        sock = self.socket_path
        if not sock or _answers(sock):
            return "answers"
        if not os.path.lexists(sock):
            return "absent"
        pid = ""
        with contextlib.suppress(OSError):
            pid = _pidfile(sock).read_text().strip()
        return "restartable" if pid.isdigit() and not _alive(pid) else "stale"

    def ensure_service(self, log: Path | None = None,
                       say: Callable[[str], None] | None = None) -> bool:
        """A socket file nothing listens on is only replaced when sandman's own service made it
        (its pidfile names a process that is gone); any other is the user's to look at."""
        sock = self.socket_path
        state = self.socket_state()
        if state == "answers":
            return False
        if state == "stale":
            raise StaleSocketError(stale_message(sock))
        if state == "restartable":
            with contextlib.suppress(OSError):
                os.unlink(sock)
        self.check_usable()
        Path(sock).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if say is not None:
            say(f"starting Podman's API service on {sock} (it stops after "
                f"{SERVICE_IDLE_SECONDS // 60} idle minutes)")
        failure = _start_service(self.cli, sock, log)
        if failure and (done := revive(self.cli)):
            if say is not None:
                say(done)
            with contextlib.suppress(OSError):
                os.unlink(sock)
            failure = _start_service(self.cli, sock, log)
        if failure:
            raise DaemonUnavailableError(
                f"Podman's API service did not start on {sock}{': ' + failure.strip(': ')} "
                "(run `sandman doctor`)")
        return True

    def daemon_host(self) -> str | None:
        return self.base_url

    def builds_with_cli(self, env: Mapping[str, str]) -> bool:
        """Podman on this machine, its client at hand: CONTAINER_HOST (or a named connection)
        makes `podman` a remote client, which cannot stop a build either, so those keep the API.
        The client and the service are the same user's Podman: one image store."""
        return bool(self.cli) and not env.get("CONTAINER_HOST") and not env.get("CONTAINER_CONNECTION")

    def plain_http_api(self, repo: str) -> bool:
        """A registry on this machine: plain HTTP is fine there (Docker's own default, which
        Podman's compat API does not share: it asks for TLS unless told per call)."""
        host = repo.split("/", 1)[0].rpartition(":")[0] or repo.split("/", 1)[0]
        return "/" in repo and (host in ("localhost", "[::1]") or host.startswith("127."))


def make(kind: str, cli: str, base_url: str, rootless: bool, why: str) -> EngineChoice:
    """The choice of that kind (tests and callers that know the kind already)."""
    return (Podman if kind == PODMAN else Docker)(cli, base_url, rootless, why)


def stale_message(sock: str) -> str:
    return (f"the Podman socket {sock} is stale (nothing listens on it): remove it (rm {sock}) "
            "or restart the service (podman system service), then try again")


def requested(env: Mapping[str, str] | None = None, config_engine: str | None = None,
              option: str | None = None) -> tuple[str, str]:
    """(engine name, where it was said): --engine > SANDMAN_ENGINE > config.toml > auto."""
    env = os.environ if env is None else env
    if option is not None and option.strip():
        return option.strip(), "--engine"
    if value := env.get("SANDMAN_ENGINE", "").strip():
        return value, "SANDMAN_ENGINE"
    if config_engine:
        return config_engine, "config.toml engine"
    return AUTO, "auto"


def _shim_rule(name: str, call: str, env: Mapping[str, str], *, before: str = "") -> list[str]:
    """Run one rule of the shim runtime (shims/shim.bash: its one copy) and return the lines it
    prints. A fork of bash, paid once by a sandman command, never by a shim call."""
    text = (shim_templates_dir() / "shim.bash").read_text(encoding="utf-8")
    keep = {k: env[k] for k in ("XDG_RUNTIME_DIR",) if env.get(k)}
    p = runtime_rules.run(runtime_rules.block(text, name) + before + call, env=keep)
    if p.returncode != 0 or p.stderr:
        raise EngineSetupError(f"shims/shim.bash's {name} failed: "
                               f"{runtime_rules.text_of(p.stderr).strip() or p.returncode}")
    return runtime_rules.text_of(p.stdout).split("\n")[:-1]


@dataclass(frozen=True)
class PodmanPaths:
    """Where Podman keeps this user's run-time state and API socket, by Podman's own rule."""

    run_dir: str
    socket: str
    all_sockets: tuple[str, ...]  # rootful and this user's: no mount may expose one
    problem: str  # why sandman may not use run_dir (rootless), "" when it may


def podman_paths(env: Mapping[str, str] | None = None, *, make: bool = False) -> PodmanPaths:
    """This user's Podman folder and sockets; with make, the folder is made (0700) if missing.

    The rule is the shims' (shims/shim.bash, the Podman folder rule), run here, so sandman and
    its shims always agree on which folder a user's containers live in and when to refuse it.
    Asked once per process and XDG_RUNTIME_DIR: every mount sandman checks asks it again
    (the sockets no mount may expose), and a reshim of 200 installs would fork 200 times.
    """
    env = os.environ if env is None else env
    return _podman_paths(env.get("XDG_RUNTIME_DIR") or "", make, os.geteuid())


@functools.lru_cache(maxsize=8)
def _podman_paths(xdg: str, make: bool, euid: int) -> PodmanPaths:
    out = _shim_rule("the Podman folder rule", (
        'sm_podman_paths; printf "%s\\n" "$sm_prun" "$sm_psock" "${#sm_psocks[@]}" "${sm_psocks[@]}"\n'
        f'(( ! EUID )) || sm_podman_folder {"make" if make else "look"} || printf "%s\\n" "$sm_why"\n'),
        {"XDG_RUNTIME_DIR": xdg})
    count = int(out[2])
    return PodmanPaths(out[0], out[1], tuple(out[3:3 + count]), "".join(out[3 + count:]))


def socket_problem(path: str, uid: int) -> str:
    """Why sandman may not talk to the API socket at path as uid ("" when absent or the user's)."""
    try:
        st = os.lstat(path)
    except OSError:
        return ""
    if st.st_uid != uid:
        return (f"Podman's API socket {path} belongs to uid {st.st_uid}, not to you; sandman "
                "does not talk to it: remove it (an admin, if it is not yours)")
    return ""


def _answers(path: str) -> bool:
    """Is something listening on the unix socket at path (not just a file left behind)?"""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2.0)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def _docker_reachable(path: str) -> bool:
    try:
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            return False
    except OSError:
        return False
    return os.access(path, os.R_OK | os.W_OK) and _answers(path)


def choose(env: Mapping[str, str] | None = None, config_engine: str | None = None,
           option: str | None = None) -> EngineChoice:
    """The engine for this process; raises when the one asked for cannot be had.

    Called once per process (sandman.context.Context.choice); everything after asks the
    object it returns.

    Only cheap checks (a PATH lookup, a socket connect): the SDK connection, and starting
    Podman's service, come later (`ensure_service`).
    """
    env = os.environ if env is None else env
    name, origin = requested(env, config_engine, option)
    uid = os.geteuid()
    docker_cli = shutil.which("docker", path=env.get("PATH")) or ""
    podman_cli = shutil.which("podman", path=env.get("PATH")) or ""
    docker_host = env.get("DOCKER_HOST", "")
    if name not in ENGINES:
        raise EngineNotInstalledError(
            f"unknown engine {name!r} (from {origin}): use \"docker\", \"podman\" or \"auto\"")

    def docker_choice(why: str) -> EngineChoice:
        return Docker(docker_cli, docker_host or f"unix://{DOCKER_SOCKET}", False, why)

    def podman_choice(why: str) -> EngineChoice:
        found = podman_paths(env, make=env is os.environ)
        sock = env.get("SANDMAN_PODMAN_SOCKET") or found.socket
        if uid:
            if found.problem:
                raise EngineSetupError(found.problem)
            if not env.get("XDG_RUNTIME_DIR") and env is os.environ:
                os.environ["XDG_RUNTIME_DIR"] = found.run_dir  # as the shims do
        if problem := socket_problem(sock, uid):
            raise EngineSetupError(problem)
        return Podman(podman_cli, f"unix://{sock}", uid != 0, why)

    if name == DOCKER:
        if not docker_cli and not docker_host and not os.path.exists(DOCKER_SOCKET):
            raise EngineNotInstalledError(
                f"engine \"docker\" ({origin}) is not installed here: install Docker (the "
                "docker.io or docker-ce package), or use Podman (engine = \"podman\")")
        return docker_choice(f"{origin} says docker")
    if name == PODMAN:
        if not podman_cli:
            raise EngineNotInstalledError(
                f"engine \"podman\" ({origin}) is not installed here: install Podman (apt-get "
                "install podman uidmap, or dnf install podman), or use engine = \"docker\"")
        return podman_choice(f"{origin} says podman")
    # auto
    if docker_host:
        return docker_choice("auto: DOCKER_HOST is set")
    if _docker_reachable(DOCKER_SOCKET):
        return docker_choice(f"auto: the Docker socket {DOCKER_SOCKET} answers")
    if podman_cli:
        return podman_choice(f"auto: no usable Docker socket at {DOCKER_SOCKET}, Podman is installed")
    if os.path.exists(DOCKER_SOCKET) and not os.access(DOCKER_SOCKET, os.R_OK | os.W_OK):
        raise NoEngineError(
            f"no container engine this user can use: the Docker socket {DOCKER_SOCKET} is not "
            "open to them and Podman is not installed; install Podman (apt-get/dnf install "
            "podman uidmap: rootless, no group needed, see docs/guide.md) or join the docker "
            "group (root on this host)")
    if docker_cli or os.path.exists(DOCKER_SOCKET):
        return docker_choice("auto: Docker is installed (its daemon does not answer)")
    raise NoEngineError(
        "no container engine: neither Docker nor Podman is installed; install one (Podman "
        "works without root: apt-get/dnf install podman uidmap), see docs/guide.md")


def subid_ranges(user: str, uid: int, files: tuple[str, ...] = ()) -> tuple[list[str], str]:
    """The account's subordinate ranges ("start+count", "" where a file has none: /etc/subuid,
    then /etc/subgid) and why rootless Podman cannot map its users ("" when it can).

    The rule is the shims' (shims/shim.bash, the subordinate id rule: one reader of those
    files); `files` replaces the two files, for tests."""
    before = runtime_rules.assign("sm_subid_files", list(files)) if files else ""
    out = _shim_rule("the subordinate id rule", (
        'sm_subids "$1" "$2"; printf "%s\\n" "${#sm_ranges[@]}" "${sm_ranges[@]}" "$sm_why"\n'),
        {}, before=before + f"set -- {shlex.quote(user)} {uid}\n")
    count = int(out[0])
    return out[1:1 + count], "".join(out[1 + count:])


def subid_problem(user: str, uid: int) -> str:
    """Why rootless Podman cannot map users for this account, or "" when it can."""
    return subid_ranges(user, uid)[1]


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _pidfile(sock: str) -> Path:
    return Path(sock).with_name("sandman-service.pid")


def _alive(pid: str) -> bool:
    """Does process pid still run? A zombie does not: where PID 1 never reaps (some VMs and
    containers), a killed service stays one, and its socket is still sandman's to replace."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat_line.rpartition(")")[2].split()[:1] != ["Z"]


def _start_service(cli: str, sock: str, log: Path | None) -> str:
    """"" once the service answers on sock, else why not (the last line of its log, or ":")."""
    if log is not None:
        try:
            log.parent.mkdir(parents=True, exist_ok=True)
            out = open(log, "ab")  # noqa: SIM115
        except OSError:
            log = None
    if log is None:
        out = subprocess.DEVNULL
    try:
        proc = subprocess.Popen(
            [cli, "system", "service", f"--time={SERVICE_IDLE_SECONDS}", f"unix://{sock}"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True, cwd="/")
    finally:
        if log is not None:
            out.close()
    with contextlib.suppress(OSError):
        _pidfile(sock).write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + SERVICE_START_SECONDS
    while time.monotonic() < deadline:
        if _answers(sock):
            return ""
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    tail = ""
    if log is not None:
        with contextlib.suppress(OSError, IndexError):
            tail = log.read_text(errors="replace").strip().splitlines()[-1]
    return tail or ":"


# Podman 4's words when no process its rootless user namespace can be joined through is left (the
# pause process, and the conmon of each container it still counts as running, are gone or
# zombies), which a kill -9 of the user's processes, an OOM kill or logind's KillUserProcesses
# at logout leave behind. Podman then refuses every command ("could not find any running
# process", or "cannot re-exec process to join the existing user namespace" while the dead are
# unreaped) and names its own fix, `podman system migrate`: it marks those containers stopped.
DEAD_NAMESPACE = "invalid internal status, try resetting the pause process"


def revive(cli: str) -> str:
    """Run `podman system migrate` when Podman is stuck on processes that are gone; what was
    done, for the user, or "" (Podman is fine, or stuck on something else)."""
    try:
        probe = subprocess.run([cli, "info", "--format", "{{.Host.Arch}}"], capture_output=True,
                               text=True, timeout=60, stdin=subprocess.DEVNULL, cwd="/")
        if probe.returncode == 0 or DEAD_NAMESPACE not in probe.stderr:
            return ""
        fixed = subprocess.run([cli, "system", "migrate"], capture_output=True, text=True,
                               timeout=120, stdin=subprocess.DEVNULL, cwd="/")
    except (OSError, subprocess.SubprocessError):
        return ""
    if fixed.returncode != 0:
        return ""
    return ("Podman counted containers as running whose processes were gone (killed at logout, "
            "by the OOM killer or kill -9): sandman ran `podman system migrate` to mark them "
            "stopped")


# Podman failures that are this host's configuration, with the fix (doctor and the engine)
SETUP_PROBLEMS = (
    ("cgroups in hybrid mode not supported",
     "crun cannot run containers on this host's hybrid cgroup layout: set runtime = \"runc\" "
     "under [engine] in containers.conf (/etc/containers/ or ~/.config/containers/)"),
    ("error setting rlimit",
     "Podman's default ulimits exceed this host's hard limits: set default_ulimits = [] under "
     "[containers] in containers.conf"),
    ("RLIMIT_NOFILE",
     "Podman's default nofile ulimit exceeds this host's hard limit: set default_ulimits = [] "
     "under [containers] in containers.conf"),
    ("cannot find UID/GID for user",
     "no subordinate uid/gid ranges for this user: usermod --add-subuids 100000-165535 "
     "--add-subgids 100000-165535 $USER, then podman system migrate"),
    ("/dev/net/tun",
     "rootless Podman's network (slirp4netns) cannot open /dev/net/tun: an admin makes it "
     "usable by users (chmod 0666 /dev/net/tun, the mode Debian's and RHEL's udev rules give)"),
    (DEAD_NAMESPACE,
     "Podman counts containers as running whose processes were killed (at logout, by the OOM "
     "killer, kill -9): podman system migrate marks them stopped (sandman does it itself when "
     "it starts Podman's service)"),
    ("systemd cgroup",
     "no systemd session here: set cgroup_manager = \"cgroupfs\" under [engine] in containers.conf"),
)


def setup_fix(text: str) -> str:
    """The fix for a Podman failure caused by this host's setup, or ""."""
    low = text.lower()
    for needle, fix in SETUP_PROBLEMS:
        if needle.lower() in low:
            return fix
    return ""


def security_args() -> list[str]:
    """The security options as `run` flags (a shim's launch plan, doctor's container check)."""
    args: list[str] = []
    for opt in SECURITY_OPT:
        args += ["--security-opt", opt]
    for cap in CAP_DROP:
        args += ["--cap-drop", cap]
    return args


def probe_options(engine: EngineChoice, *, network: bool) -> dict[str, object]:
    """SDK create() options of a short container sandman starts itself (a probe of an image,
    a smoke test): the same security options as a shim's, its own role label."""
    mode = engine.network_mode("bridge" if network else "none")
    return {"security_opt": list(SECURITY_OPT), "cap_drop": list(CAP_DROP),
            "network_mode": None if mode == "bridge" else mode,  # None: the engine's default
            "labels": {LABEL_ROLE: ROLE_PROBE}}
