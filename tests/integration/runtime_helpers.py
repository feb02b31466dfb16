"""Shared kit for the runtime fidelity tests (tests/integration/test_runtime_*.py).

One session-wide SANDMAN_HOME in a world-readable folder (a non-root test user must be able to
run its shims) with small test tools installed from recipes written here:

- ``rtprobe@1``: Debian bookworm with nothing added; the first argument is the command to run.
  It declares a read-only data mount, a read-write output mount, path-valued variables
  (``RT_DATA`` ro, ``RT_OUT`` rw), ``pass_env`` and ``env``: enough surface for every promise.
- ``rtprobe@net``: the same tool with ``network = true``.
- ``rtecho@1``: prints its argv NUL-separated (``path_args = "off"``), for the argv property test.

Every fidelity test takes the ``mode`` fixture, so it runs three times: through the cold path
(``docker run``), in warm mode through ``docker exec`` (``SANDMAN_WARM=1 SANDMAN_AGENT=0``) and
in warm mode through the warm agent (``SANDMAN_WARM=1``, the agent's binary built first: the
fixture checks afterwards that the home's warm containers really ran the agent).

And each runs once per engine (the ``kit`` fixture is parametrized in test_runtime_*.py):
``docker`` (root, the Docker daemon) and ``podman`` (rootless Podman: the ``sandman-podman``
user of podman_helpers.py, no docker group, its own image store). A Kit knows its engine: the
test runs shims through ``kit.run``/``kit.popen`` (as the Podman user for the podman kit),
sandman through ``kit.sandman`` and the engine's CLI through ``kit.cli``.

The fixtures (``kit``, ``mode``, ``work``, ``user_home``) live in tests/integration/conftest.py;
this module keeps the plain functions and constants the tests import.
"""

from __future__ import annotations

import contextlib
import grp
import hashlib
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from helpers import EngineCLI, paths_of, run_sandman, warm_dir
from podman_helpers import PodmanUser

from sandman.names import LABEL_HOME, LABEL_PID, LABEL_ROLE, LABEL_TOOL

ROOT = Path(__file__).resolve().parents[2]
TEST_UID = 54321  # a user with no passwd entry on the host, like a fresh LDAP account
TEST_GID = 54321
TOOLS = ("rtprobe", "rtecho")

PROBE_RECIPE = """\
schema = 1
tool = "rtprobe"
description = "runtime probe for sandman's own tests"
pass_env = ["RT_PASS"]
env = {{ RT_FIXED = "fixed value" }}
path_env = {{ RT_DATA = "ro", RT_OUT = "rw" }}

[[mounts]]
name = "data"
source = "{data}"
target = "/data"
mode = "ro"

[[mounts]]
name = "out"
source = "{out}"
target = "/out"
mode = "rw"

[versions."1"]
base = "debian:bookworm-slim"
run = ["echo sandman-runtime-probe"]

[versions.net]
base = "debian:bookworm-slim"
run = ["echo sandman-runtime-probe"]
network = true
"""

ECHO_RECIPE = """\
schema = 1
tool = "rtecho"
description = "prints its argv, NUL-separated"
path_args = "off"
entrypoint = ["bash", "-c", 'printf "%s\\\\0" "$@"', "rtecho"]

[versions."1"]
base = "debian:bookworm-slim"
run = ["echo sandman-runtime-echo"]
"""


@dataclass(frozen=True)
class Kit:
    root: Path  # world-readable scratch folder for the session
    home: Path  # SANDMAN_HOME with the test tools installed
    recipes: Path  # SANDMAN_RECIPE_PATH
    data: Path  # source of the probe's read-only `data` mount
    out: Path  # source of the probe's read-write `out` mount
    engine: str = "docker"  # "docker": as root; "podman": rootless as `user`, or rootful
    user: PodmanUser | None = None  # the rootless Podman user (None: root)

    @property
    def bin(self) -> Path:
        return paths_of(self.home).bin_dir

    @property
    def podman(self) -> bool:
        return self.engine == "podman"

    @property
    def invoker(self) -> tuple[int, int]:
        """uid:gid of a `user=True` run: TEST_UID for Docker; rootless, the Podman user itself
        (each rootless user has a private store: another uid would not see this kit's images)."""
        if self.user is not None:
            return self.user.uid, self.user.gid
        return TEST_UID, TEST_GID

    @property
    def invoker_name(self) -> str:
        return self.user.name if self.user is not None else "rtuser"

    @property
    def runner(self) -> tuple[int, int]:
        """uid:gid the shims of a plain (not `user=True`) run have: root, or the Podman user."""
        return self.invoker if self.user is not None else (0, 0)

    def shim(self, name: str) -> str:
        return str(self.bin / name)

    @property
    def engine_host(self) -> str | None:
        """Podman: the user's API socket (shims/shim.bash's rule, no XDG_RUNTIME_DIR, no
        /run/user here), or root's; warm containers and the reaper's pidfile are keyed by it."""
        if not self.podman:
            return None
        if self.user is None:
            return "unix:///run/podman/podman.sock"
        return f"unix:///tmp/podman-run-{self.user.uid}/podman/podman.sock"

    def warm_label(self, home: Path | None = None) -> str:
        """The `io.sandman.home` label of the warm containers of home (default: the kit's)."""
        from sandman import warm

        return str(warm.daemon_dir(paths_of(home or self.home), self.engine_host))

    def reaper_pidfile(self, home: Path | None = None) -> Path:
        from sandman import warm

        return warm.reaper_pidfile(paths_of(home or self.home), self.engine_host)

    def env(self, mode: str = "cold", **extra: str) -> dict[str, str]:
        """What a user's shell gives a shim: bin dir on PATH, no stray SANDMAN_* settings."""
        if self.user is not None:
            e = self.user.env(SANDMAN_ENGINE="podman")
            e.update(SANDMAN_HOME=str(self.home), SANDMAN_RECIPE_PATH=str(self.recipes),
                     PATH=f"{self.bin}{os.pathsep}{e['PATH']}")
        else:
            e = {k: v for k, v in os.environ.items()
                 if not k.startswith(("SANDMAN_", "DOCKER_", "LC_", "LANG"))}
            e.update(SANDMAN_HOME=str(self.home), SANDMAN_RECIPE_PATH=str(self.recipes),
                     PATH=f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}")
            if self.podman:  # rootful Podman
                e["SANDMAN_ENGINE"] = "podman"
        if mode in ("warm", "agent"):
            e["SANDMAN_WARM"] = "1"
        if mode == "warm":
            e["SANDMAN_AGENT"] = "0"  # the `docker exec` path, even where an agent is built
        e.update(extra)
        return e

    def argv(self, argv: list[str], *, user: bool = False, docker_group: bool = True) -> list[str]:
        """argv as the kit's invoker: the Podman user always; for Docker root, or with user
        the test user (with or without the docker group)."""
        if self.user is not None:
            return self.user.argv(argv)
        return as_test_user(argv, docker_group=docker_group) if user else argv

    def run(self, argv: list[str], *, env: dict[str, str], cwd: Path | str | None = None,
            input: bytes | None = None, timeout: float = 120, user: bool = False,
            docker_group: bool = True) -> subprocess.CompletedProcess:
        """Run argv (a shim and its arguments) in a subprocess as the kit's invoker."""
        return subprocess.run(self.argv(argv, user=user, docker_group=docker_group), env=env,
                              cwd=cwd, input=input, capture_output=True, timeout=timeout)

    def popen(self, argv: list[str], **kw) -> subprocess.Popen:
        """Popen of argv as the kit's invoker (setpriv execs: the pid is the shim's own)."""
        return subprocess.Popen(self.argv(argv), **kw)

    def sandman(self, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
                timeout: float = 600, input: bytes | None = None) -> subprocess.CompletedProcess:
        """The sandman CLI as the kit's invoker (env: the kit's own by default)."""
        env = self.env() if env is None else env
        if self.user is not None:
            return self.user.sandman(*args, env=env, cwd=cwd, timeout=timeout, input=input)
        return sandman_cli(*args, env=env, cwd=cwd, timeout=timeout, input=input)

    @property
    def engine_cli(self) -> EngineCLI:
        """The image store this kit builds into, for helpers.remove_images."""
        return self.user.podman_cli if self.user is not None else EngineCLI((self.engine,))

    def cli(self, *args: str, timeout: float = 60, check: bool = True) -> str:
        """The engine's CLI (`docker ...`, or `podman ...` as the Podman user); its stdout."""
        if self.user is not None:
            return self.user.podman(*args, timeout=timeout, check=check)
        p = subprocess.run([self.engine, *args], capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"{self.engine} {' '.join(args)}: {p.stderr}")
        return p.stdout

    def own(self, *paths: Path, user: bool = True) -> None:
        """chown paths to the invoker of a `user=True` run (or of a plain one: user=False)."""
        uid, gid = self.invoker if user else self.runner
        for p in paths:
            os.chown(p, uid, gid)

    def scratch(self, name: str = "t") -> Path:
        """A fresh world-accessible folder for one test (the Podman user's, for Podman)."""
        d = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.root))
        d.chmod(0o755)
        if self.user is not None:
            os.chown(d, self.user.uid, self.user.gid)
        return d

    def mkdirs(self, path: Path) -> Path:
        """mkdir -p, each new folder the runner's (a rootless shim may write in it)."""
        missing = []
        p = path
        while not p.exists():
            missing.append(p)
            p = p.parent
        for d in reversed(missing):
            d.mkdir()
            self.own(d, user=False)
        return path


def sandman_cli(*args: str, env: dict[str, str], cwd: Path | None = None, timeout: float = 600,
                input: bytes | None = None) -> subprocess.CompletedProcess:
    """The CLI as root, bytes out: the kit's checks compare raw output (one_line_error...)."""
    return run_sandman(*args, env=env, cwd=cwd, input=input, timeout=timeout, text=False)


def run(argv: list[str], *, env: dict[str, str], cwd: Path | str | None = None,
        input: bytes | None = None, timeout: float = 120, user: bool = False,
        docker_group: bool = True) -> subprocess.CompletedProcess:
    """Run argv (a shim and its arguments) in a subprocess, optionally as the test user."""
    if user:
        argv = as_test_user(argv, docker_group=docker_group)
    return subprocess.run(argv, env=env, cwd=cwd, input=input, capture_output=True,
                          timeout=timeout)


def docker_gid() -> int:
    try:
        return grp.getgrnam("docker").gr_gid
    except KeyError:
        return os.stat("/var/run/docker.sock").st_gid


def as_test_user(argv: list[str], *, docker_group: bool = True) -> list[str]:
    """argv run as TEST_UID:TEST_GID (with or without the docker group), via setpriv."""
    groups = ["--groups", str(docker_gid())] if docker_group else ["--clear-groups"]
    return ["setpriv", f"--reuid={TEST_UID}", f"--regid={TEST_GID}", *groups, *argv]


def user_env(kit: Kit, mode: str, home: Path, **extra: str) -> dict[str, str]:
    """A shim environment for the test user: its own HOME and TMPDIR, a name, no root paths.

    For the podman kit the invoker is the Podman user with its own login environment: rootless
    Podman finds its store from HOME (and its runtime folder from TMPDIR), so they stay.
    """
    if kit.user is not None:
        return kit.env(mode, **extra)
    tmp = home / "tmp"
    tmp.mkdir(exist_ok=True)
    os.chown(tmp, TEST_UID, TEST_GID)
    e = kit.env(mode, HOME=str(home), TMPDIR=str(tmp), USER="rtuser", LOGNAME="rtuser")
    e["PATH"] = f"{kit.bin}:/usr/local/bin:/usr/bin:/bin"
    e.update(extra)
    return e


def docker(*args: str, timeout: float = 60) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True,
                          timeout=timeout).stdout


def _cli(kit: Kit | None, *args: str, check: bool = True) -> str:
    return docker(*args) if kit is None else kit.cli(*args, check=check)


def _warm_label(home: Path, kit: Kit | None) -> str:
    return str(warm_dir(home)) if kit is None else kit.warm_label(home)


def run_containers(pid: int | None = None, tool: str | None = None, *,
                   kit: Kit | None = None) -> list[str]:
    """Ids of shim containers (role=run), optionally of one shim pid or one tool."""
    filters = ["--filter", f"label={LABEL_ROLE}=run"]
    if pid is not None:
        filters += ["--filter", f"label={LABEL_PID}={pid}"]
    if tool is not None:
        filters += ["--filter", f"label={LABEL_TOOL}={tool}"]
    return _cli(kit, "ps", "-aq", "--no-trunc", *filters).split()


def tool_processes(tok: str, tool: str = "rtprobe", *, pid: int | None = None,
                   home: Path | None = None, kit: Kit | None = None) -> list[str]:
    """Processes whose command line holds tok, in running containers of tool (cold or warm).

    With pid and/or home, only that shim's own container and that home's warm containers are
    looked at (cheaper, and blind to other sessions on the same daemon). kit: its engine's
    containers (Docker's when None).
    """
    if pid is None and home is None:
        cids = _cli(kit, "ps", "-q", "--filter", f"label={LABEL_TOOL}={tool}").split()
    else:
        cids = []
        if pid is not None:
            cids += _cli(kit, "ps", "-q", "--filter", f"label={LABEL_PID}={pid}").split()
        if home is not None:
            cids += _cli(kit, "ps", "-q", "--filter",
                         f"label={LABEL_HOME}={_warm_label(home, kit)}").split()
    found = []
    for cid in cids:
        # Podman's own descriptors (`-eo` would run ps in the image, which has none)
        args = ["pid", "args"] if kit is not None and kit.podman else ["-eo", "pid,args"]
        top = _cli(kit, "top", cid, *args, check=False) if kit is not None else \
            subprocess.run(["docker", "top", cid, *args], capture_output=True, text=True).stdout
        found += [f"{cid[:12]}: {ln}" for ln in top.splitlines() if tok in ln]
    return found


def leftovers(pid: int, tok: str, home: Path | None = None, *,
              kit: Kit | None = None) -> list[str]:
    """What a finished shim left behind: its own container, or its tool still running."""
    if home is None:
        return run_containers(pid=pid, kit=kit) + tool_processes(tok, kit=kit)
    return run_containers(pid=pid, kit=kit) + tool_processes(tok, pid=pid, home=home, kit=kit)


def wait_for(predicate, timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


@contextlib.contextmanager
def reaper_paused(kit: Kit) -> Iterator[int]:
    """Hold the kit's reaper still (SIGSTOP) for a test that plants junk in a warm folder and
    then checks who handles it: a pass of the reaper (every 2 s, warm.tend_calls) removes the
    junk too, and once removed it before the test's next step ran (CI, under load). A stopped
    reaper still counts as running, so no shim starts another meanwhile. Yields its pid."""
    pidfile = kit.reaper_pidfile()

    def on_duty() -> int | None:
        try:
            pid = int(pidfile.read_text().strip())
            alive = b"sandman.reaper" in Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        return pid if alive else None

    assert wait_for(lambda: on_duty() is not None, 20), f"no reaper on duty ({pidfile})"
    pid = on_duty()
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        yield pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def one_line_error(stderr: bytes, code_text: str | None = None) -> str:
    """The stderr of a sandman failure: exactly one line, no traceback; returned for asserts."""
    text = stderr.decode("utf-8", "replace")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line, got:\n{text}"
    assert "Traceback" not in text
    assert lines[0].startswith("sandman: "), lines[0]
    if code_text is not None:
        assert code_text in lines[0], lines[0]
    return lines[0]


def build_kit(root: Path, engine: str = "docker", user: PodmanUser | None = None) -> Kit:
    """The kit's folders, recipes and installed tools; for Podman, all the Podman user's."""
    recipes = root / "recipes"
    data, out = root / "data", root / "out"
    for d in (recipes / "rtprobe", recipes / "rtecho", data / "nested", out):
        d.mkdir(parents=True, exist_ok=True)
    (data / "hello.txt").write_text("hello from data\n")
    (data / "nested" / "deep.txt").write_text("deep\n")
    out.chmod(0o777)
    (recipes / "rtprobe" / "recipe.toml").write_text(PROBE_RECIPE.format(data=data, out=out))
    (recipes / "rtecho" / "recipe.toml").write_text(ECHO_RECIPE)
    kit = Kit(root=root, home=root / "home", recipes=recipes, data=data, out=out, engine=engine,
              user=user)
    if user is not None:
        for dirpath, dirnames, filenames in os.walk(root):
            for n in [".", *dirnames, *filenames]:
                os.chown(Path(dirpath, n), user.uid, user.gid)
    proc = kit.sandman("install", "--yes", "rtprobe@1", "rtprobe@net", "rtecho@1", timeout=900)
    assert proc.returncode == 0, proc.stderr.decode()
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = Path(dirpath, n)
            if not p.is_symlink():
                p.chmod(p.stat().st_mode | 0o055 if p.is_dir() else p.stat().st_mode | 0o044)
    return kit


AGENT_PATH = "/run/sandman-agent/agent"  # where a warm container runs the agent (shims/warm.bash)
_agents_built: set[Path] = set()
# The agent is built only from a base the home's `sandman bootstrap` recorded (sandman/agent.py).
# Tests never run mmdebstrap: the session's bases were bootstrapped when the machine was set up,
# so this stands in for that bootstrap's record, in the home's own store and state.
RECORD_BASE = ("from sandman import provenance; from sandman.engine import Engine; "
               "from sandman.engine_choice import choose; from sandman.paths import Paths; "
               "ref = 'debian:bookworm-slim'; "
               "provenance.record_made(Paths.from_env(), ref, Engine.connect(choose()).image(ref).id)")


def ensure_agent(home: Path, kit: Kit | None = None) -> Path:
    """The warm agent's binary for this home (built once; quick when the toolchain is cached).

    For the podman kit it is built as the Podman user, in its own store (its toolchain image).
    """
    if home not in _agents_built:
        if kit is not None and kit.user is not None:
            argv = kit.user.argv([kit.user.python, "-m", "sandman.agent", "build"])
            record = kit.user.argv([kit.user.python, "-c", RECORD_BASE])
            env = kit.env()
        else:
            argv = [sys.executable, "-m", "sandman.agent", "build"]
            record = [sys.executable, "-c", RECORD_BASE]
            env = {k: v for k, v in os.environ.items() if not k.startswith("SANDMAN_")}
            env["SANDMAN_HOME"] = str(home)
        proc = subprocess.run(record, env=env, capture_output=True, timeout=300, cwd=ROOT)
        assert proc.returncode == 0, proc.stderr.decode()
        t0 = time.monotonic()
        proc = subprocess.run(argv, env=env, capture_output=True, timeout=900, cwd=ROOT)
        assert proc.returncode == 0, proc.stderr.decode()
        print(f"agent for {home} built in {time.monotonic() - t0:.1f} s")
        _agents_built.add(home)
    from sandman import agent

    binary = agent.binary_path(paths_of(home))
    assert binary.is_file(), binary
    return binary


def warm_mains(home: Path, kit: Kit | None = None) -> list[str]:
    """The main program of each warm container of this home (the agent's, or /bin/sh)."""
    label = f"label={LABEL_HOME}={_warm_label(home, kit)}"
    if kit is not None and kit.podman:
        # Podman's ps shows the command without the entrypoint: inspect's Path and Args do
        # (after its init, `/run/podman-init -- MAIN ...`)
        mains = []
        for cid in kit.cli("ps", "-q", "--no-trunc", "--filter", label).split():
            out = kit.cli("inspect", "--format", "{{json .Path}} {{json .Args}}", cid,
                          check=False)  # the reaper may remove one meanwhile
            if not out.strip():
                continue
            path, args = out.split(" ", 1)
            argv = [json.loads(path), *json.loads(args)]
            if argv[0].endswith("podman-init") and "--" in argv:
                argv = argv[argv.index("--") + 1:]
            mains.append(argv[0])
        return mains
    out = docker("ps", "--no-trunc", "--filter", label,
                 "--format", "{{.Command}}")  # one call: the reaper may remove one meanwhile
    return [line.strip('"').split()[0] for line in out.splitlines() if line.strip('"')]


def remove_test_containers(home: Path, tools: tuple[str, ...] = TOOLS, *,
                           kit: Kit | None = None) -> None:
    """Warm containers of this home, and shim containers of these tools whose shim is gone.

    Another session may be running these tests at the same time: its containers stay.
    """
    ids = _cli(kit, "ps", "-aq", "--filter", f"label={LABEL_HOME}={_warm_label(home, kit)}").split()
    podman = kit is not None and kit.podman
    pid_of = f'{{{{index .Labels "{LABEL_PID}"}}}}' if podman else f'{{{{.Label "{LABEL_PID}"}}}}'
    for tool in tools:
        out = _cli(kit, "ps", "-a", "--filter", f"label={LABEL_TOOL}={tool}",
                   "--filter", f"label={LABEL_ROLE}=run", "--format", f"{{{{.ID}}}} {pid_of}")
        for line in out.splitlines():
            cid, _, pid = line.partition(" ")
            if not pid.isdigit() or not Path(f"/proc/{pid}").exists():
                ids.append(cid)
    if ids:
        _cli(kit, "rm", "-f", *ids, check=False)




def token() -> str:
    return uuid.uuid4().hex[:10]


# Promise 7 (a read-only mount stays untouched): the writes each engine's run must refuse, shared
# by the fidelity suite (test_runtime_readonly.py) and rootful Podman (test_podman_rootful.py).
ATTEMPTS = {
    "create": "echo x > {d}/new.txt",
    "append": "echo x >> {d}/hello.txt",
    "truncate": ": > {d}/hello.txt",
    "unlink": "rm {d}/hello.txt",
    "rename": "mv {d}/hello.txt {d}/renamed.txt",
    "mkdir": "mkdir {d}/newdir",
    "nested-create": "echo x > {d}/nested/new.txt",
    "nested-unlink": "rm {d}/nested/deep.txt",
    "nested-rename": "mv {d}/nested {d}/moved",
    "rmdir": "rm -rf {d}/nested",
    "chmod": "chmod 777 {d}/hello.txt",
    "touch": "touch {d}/hello.txt",
    "symlink": "ln -s /etc/passwd {d}/nested/link",
}


def manifest(root: Path) -> dict[str, str]:
    """sha256 (or link target), mode and mtime of every entry under root."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            p = Path(dirpath, name)
            st = p.lstat()
            what = os.readlink(p) if p.is_symlink() else (
                hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir")
            out[str(p.relative_to(root))] = f"{what} {st.st_mode:o} {st.st_mtime_ns}"
    return out


def attempt_all(kit: Kit, env: dict[str, str], cwd: Path, d: str, user: bool) -> dict[str, int]:
    script = "; ".join(f'( {cmd.format(d=d)} ) 2>/dev/null; echo "{name} $?"'
                       for name, cmd in ATTEMPTS.items())
    p = kit.run([kit.shim("rtprobe-1"), "sh", "-c", script], env=env, cwd=cwd, user=user)
    assert p.returncode == 0, p.stderr
    got = dict(line.rsplit(" ", 1) for line in p.stdout.decode().splitlines())
    return {k: int(v) for k, v in got.items()}


# Podman 4.3's `podman run` starts its signal proxy only after the container has started; a
# signal in between ends podman with exit 0 and leaves the tool running until the reaper
# removes it (docs/runtime.md, "Known limits of the engines": reproduced with a bare `podman
# run`, no sandman, 3-4 calls in 25 under load). So a cold Podman call is signalled once its
# proxy runs, known by a round trip: the tool echoes a SIGWINCH, which podman ignores before
# its proxy runs and forwards after. Every other path relays signals from its first moment.
SETTLE = "w=0; trap 'w=1; echo winch' WINCH; echo ready; while [ $w = 0 ]; do sleep 0.05; done; "


def ready(kit: Kit, mode: str) -> str:
    """The tool's `echo ready`, then, on a cold Podman call, its wait for the proxy's answer."""
    return SETTLE if (kit.engine, mode) == ("podman", "cold") else "echo ready; "


def settle(kit: Kit, mode: str, p: subprocess.Popen) -> None:
    """After `ready`: on a cold Podman call, SIGWINCH until the tool says it arrived."""
    if (kit.engine, mode) != ("podman", "cold"):
        return
    deadline = time.monotonic() + 30
    buf = b""
    while b"winch" not in buf:
        assert time.monotonic() < deadline, f"no SIGWINCH reached the tool in 30 s: {buf!r}"
        p.send_signal(signal.SIGWINCH)
        if select.select([p.stdout], [], [], 0.1)[0]:
            buf += os.read(p.stdout.fileno(), 4096)
