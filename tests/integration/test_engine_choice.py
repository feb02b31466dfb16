"""Engine choice, for real: the bad inputs of issue 11 and what `doctor` says about Podman.

Each bad input is one line `sandman: ...` with its own exit code (92 no engine, 93 the named
engine is not installed, 94 rootless Podman without subordinate ids, 95 a stale Podman
socket), refused before anything is made: no SANDMAN_HOME folder, no Podman service, no
container. They run as real users through setpriv (no docker group) with real PATHs.

doctor recognises this machine kind's two Podman failures by starting a real container:
CONTAINERS_CONF (which Podman reads instead of /etc/containers/containers.conf) brings back
crun (hybrid cgroups) and a nofile ulimit above the hard limit. Every Podman service these
tests may start listens on a private socket (SANDMAN_PODMAN_SOCKET) and is stopped at the end:
a service started with a broken CONTAINERS_CONF must never serve other tests.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import PODMAN, paths_of, remove_images, run_sandman, sandman_argv
from podman_helpers import PodmanUser, ensure_bases, ensure_podman_user

from sandman import engine_choice
from sandman.errors import (
    CHECK_FAILED,
    EngineNotInstalledError,
    NoEngineError,
    StaleSocketError,
    StateError,
    SubidError,
)

pytestmark = pytest.mark.docker

NOSUBID_USER = "sandman-nosubid"
CI_CONF = '[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n'
CRUN_CONF = f'[containers]\ndefault_ulimits = []\n{CI_CONF}runtime = "crun"\n'
ULIMIT_CONF = f'[containers]\ndefault_ulimits = ["nofile=100000:100000"]\n{CI_CONF}runtime = "runc"\n'


def one_line(stderr: str | bytes) -> str:
    text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else stderr
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in text, f"expected one line, got:\n{text}"
    assert lines[0].startswith("sandman: "), lines[0]
    return lines[0]


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A folder other users can enter (pytest's tmp_path is root's alone)."""
    d = Path(tempfile.mkdtemp(prefix="sandman-engine-choice-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def nosubid() -> PodmanUser:
    """A user with no docker group and no subordinate uid/gid ranges."""
    return ensure_podman_user(NOSUBID_USER, subids=False)


def as_user(user: PodmanUser, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """sandman as user, whatever the PATH in env (setpriv itself is found on ours)."""
    argv = user.argv(sandman_argv(*args, python=user.python))
    argv[0] = shutil.which("setpriv") or "/usr/bin/setpriv"
    return subprocess.run(argv, env=env, capture_output=True, timeout=300, cwd="/")


def owned_dir(parent: Path, name: str, user: PodmanUser) -> Path:
    d = parent / name
    d.mkdir()
    os.chown(d, user.uid, user.gid)
    return d


def root_cli(*args: str, env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess:
    """sandman as root with exactly this environment (no inherited SANDMAN_*/DOCKER_*)."""
    return run_sandman(*args, env=env, timeout=timeout, cwd="/")


def plain_env(home: Path, path: str, **extra: str) -> dict[str, str]:
    root = str(Path(__file__).resolve().parents[2])
    return {"HOME": "/root", "PATH": path, "SANDMAN_HOME": str(home), "LANG": "C.UTF-8",
            "PYTHONPATH": root, **extra}


def tree(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*")) if d.exists() else ["<absent>"]


def stop_service(sock: Path) -> None:
    """Stop the Podman service sandman started on sock (its pidfile names it)."""
    with contextlib.suppress(OSError, ValueError):
        pid = int(engine_choice._pidfile(str(sock)).read_text())
        if engine_choice._alive(str(pid)):
            os.kill(pid, signal.SIGTERM)


# -- 92: no engine at all ------------------------------------------------------------------------
def test_no_engine_for_this_user_is_92_and_doctor_says_it_in_one_line(nosubid: PodmanUser,
                                                                         shared_tmp: Path) -> None:
    """No docker group (the socket is not theirs), neither docker nor podman on PATH."""
    home = shared_tmp / "home"  # sandman must not create it
    empty = owned_dir(shared_tmp, "empty-bin", nosubid)
    env = nosubid.env(SANDMAN_HOME=str(home), PATH=str(empty))
    p = as_user(nosubid, "install", "sqlite3@3.46", env=env)
    assert p.returncode == NoEngineError.exit_code
    assert one_line(p.stderr) == (
        "sandman: no container engine this user can use: the Docker socket /var/run/docker.sock "
        "is not open to them and Podman is not installed; install Podman (apt-get/dnf install "
        "podman uidmap: rootless, no group needed, see docs/guide.md) or join the docker group "
        "(root on this host)")
    assert not home.exists()
    for args in (["list"], ["--engine", "auto", "gc", "--dry-run"], ["bootstrap", "debian:bookworm-slim"]):
        q = as_user(nosubid, *args, env=env)
        assert (q.returncode, one_line(q.stderr)) == (NoEngineError.exit_code, one_line(p.stderr)), args
    assert not home.exists()

    doc = as_user(nosubid, "doctor", env=env)
    assert doc.returncode == CHECK_FAILED
    out = doc.stdout.decode()
    engine_lines = [ln for ln in out.splitlines() if "engine" in ln.split(":")[0] or "docker" in ln.split(":")[0]]
    assert engine_lines == [f"FAIL  engine: {one_line(p.stderr).removeprefix('sandman: ')}"], out


# -- 93: the engine named is not installed ---------------------------------------------------------
def test_named_engine_not_installed_is_93_before_anything_is_made(tmp_path: Path) -> None:
    only_docker = tmp_path / "bin"
    only_docker.mkdir()
    (only_docker / "docker").symlink_to(shutil.which("docker") or "/usr/bin/docker")
    home = tmp_path / "home"
    env = plain_env(home, str(only_docker))
    want = ('sandman: engine "podman" ({}) is not installed here: install Podman (apt-get install '
            'podman uidmap, or dnf install podman), or use engine = "docker"')
    p = root_cli("install", "sqlite3@3.46", env={**env, "SANDMAN_ENGINE": "podman"})
    assert (p.returncode, one_line(p.stderr)) == (EngineNotInstalledError.exit_code, want.format("SANDMAN_ENGINE"))
    p = root_cli("--engine", "podman", "install", "sqlite3@3.46", env=env)
    assert (p.returncode, one_line(p.stderr)) == (EngineNotInstalledError.exit_code, want.format("--engine"))
    assert not home.exists()

    # --engine with a name that is no engine: the same code (a typo in SANDMAN_ENGINE or
    # config.toml is no usage error either), said before anything is made
    p = root_cli("--engine", "nosuch", "list", env=env)
    assert (p.returncode, one_line(p.stderr)) == (
        EngineNotInstalledError.exit_code, "sandman: unknown engine 'nosuch' (from --engine): use \"docker\", \"podman\" or \"auto\"")
    assert not home.exists()

    config = paths_of(home).config_file
    config.parent.mkdir(parents=True)
    config.write_text('# chosen by the admin\nengine = "podman"\n')
    before = tree(home)
    p = root_cli("install", "sqlite3@3.46", env=env)
    assert (p.returncode, one_line(p.stderr)) == (EngineNotInstalledError.exit_code, want.format("config.toml engine"))
    assert tree(home) == before

    # not an engine at all in config.toml: config.py's own check, with file:line (123)
    config.write_text('# chosen by the admin\nengine = "bogus"\n')
    p = root_cli("list", env=env)
    assert (p.returncode, one_line(p.stderr)) == (
        StateError.exit_code, f'sandman: {config}:2: engine: expected "docker", "podman" or "auto"')


# -- 94: rootless Podman without subordinate ids ---------------------------------------------------
def test_rootless_podman_without_subids_is_94_before_anything_is_made(nosubid: PodmanUser,
                                                                        shared_tmp: Path) -> None:
    home = shared_tmp / "home"
    env = nosubid.env(SANDMAN_HOME=str(home))  # PATH has podman: auto picks it (no docker group)
    want = ("sandman: rootless Podman needs subordinate uid and gid ranges for sandman-nosubid "
            "(/etc/subuid has none): an admin runs `usermod --add-subuids 100000-165535 "
            "--add-subgids 100000-165535 sandman-nosubid`, then `podman system migrate`")
    for args in (["install", "sqlite3@3.46"], ["--engine", "podman", "list"]):
        p = nosubid.sandman(*args, env=env)
        assert (p.returncode, one_line(p.stderr)) == (SubidError.exit_code, want), args
    assert not home.exists()
    assert not Path(f"/tmp/podman-run-{nosubid.uid}/podman").exists()  # no service started


# -- 95: a stale Podman socket --------------------------------------------------------------------
def test_a_stale_podman_socket_is_95(shared_tmp: Path) -> None:
    """A socket file nothing listens on at the user's socket path, not made by sandman: the
    user's to look at (rm). Rootless Podman's socket path follows XDG_RUNTIME_DIR."""
    user = ensure_podman_user()
    runtime = owned_dir(shared_tmp, "xdg", user)
    sock = runtime / "podman" / "podman.sock"
    sock.parent.mkdir()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(sock))
    s.close()
    for p in (sock.parent, sock):  # the user's own (a socket of another user is refused, 96)
        os.chown(p, user.uid, user.gid)
    home = shared_tmp / "home"
    env = user.env(SANDMAN_HOME=str(home), XDG_RUNTIME_DIR=str(runtime))
    p = user.sandman("install", "sqlite3@3.46", env=env)
    assert (p.returncode, one_line(p.stderr)) == (
        StaleSocketError.exit_code, f"sandman: the Podman socket {sock} is stale (nothing listens on it): remove it "
            f"(rm {sock}) or restart the service (podman system service), then try again")
    assert not home.exists() and sorted(os.listdir(sock.parent)) == ["podman.sock"]


# -- doctor: the two failures of this machine kind, recognised with their fix ---------------------
@pytest.fixture(scope="module")
def root_bases() -> None:
    ensure_bases(None)


@pytest.mark.parametrize(("conf", "runtime", "fix"), [
    (CRUN_CONF, "crun", 'crun cannot run containers on this host\'s hybrid cgroup layout: set '
                        'runtime = "runc" under [engine] in containers.conf'),
    (ULIMIT_CONF, "runc", "Podman's default ulimits exceed this host's hard limits: set "
                          "default_ulimits = [] under [containers] in containers.conf"),
])
def test_doctor_recognises_this_hosts_podman_failures(root_bases, tmp_path: Path, conf: str,
                                                      runtime: str, fix: str) -> None:
    conf_file = tmp_path / "containers.conf"
    conf_file.write_text(conf)
    sock = tmp_path / "run" / "podman.sock"  # a private service, stopped below
    env = plain_env(tmp_path / "home", os.environ["PATH"], SANDMAN_ENGINE="podman",
                    SANDMAN_PODMAN_SOCKET=str(sock), CONTAINERS_CONF=str(conf_file))
    try:
        doc = root_cli("doctor", env=env, timeout=300)
    finally:
        stop_service(sock)
    lines = doc.stdout.splitlines()
    assert doc.returncode == CHECK_FAILED, doc.stdout + doc.stderr
    assert f"ok    engine: Podman (rootful) at unix://{sock} (SANDMAN_ENGINE says podman)" in lines
    [oci] = [ln for ln in lines if ln.startswith("ok    OCI runtime: ")]
    assert oci.startswith(f"ok    OCI runtime: {runtime} (")  # Podman read CONTAINERS_CONF
    [run] = [ln for ln in lines if "podman run:" in ln]
    assert run.startswith(f"FAIL  podman run: {fix}"), run
    assert "(podman said: Error: " in run


def test_doctor_rootless_podman_in_full(shared_tmp: Path) -> None:
    """As the rootless user: which engine and why, the version and mode, the ranges, the
    socket (sandman starts the service and says so), the runtime, a real container; then the
    same user under crun gets the fix."""
    user = ensure_podman_user()
    ensure_bases(user)
    run_dir = owned_dir(shared_tmp, "run", user)
    sock = run_dir / "podman.sock"
    home = owned_dir(shared_tmp, "home", user)
    conf_file = shared_tmp / "crun.conf"
    conf_file.write_text(CRUN_CONF)
    conf_file.chmod(0o644)
    env = user.env(SANDMAN_HOME=str(home), SANDMAN_PODMAN_SOCKET=str(sock))
    try:
        doc = user.sandman("doctor", env=env, timeout=300)
        lines = doc.stdout.decode().splitlines()
        assert lines[0] == (f"ok    engine: Podman (rootless) at unix://{sock} (auto: no usable "
                            "Docker socket at /var/run/docker.sock, Podman is installed)")
        assert lines[1].startswith("ok    podman: /usr/bin/podman, version ")
        assert lines[1].endswith(f"rootless as {user.name}: a private image store, shims run "
                                 "with --userns keep-id")
        assert lines[2].startswith("ok    subordinate ids: subuid ") and ", subgid " in lines[2]
        assert lines[3] == (f"ok    podman API socket: {sock} not running: sandman starts `podman "
                            f"system service` there when a command needs it (it stops after 10 "
                            "idle minutes)")
        assert lines[4].startswith("ok    OCI runtime: runc (")
        assert lines[5] == "ok    podman run: a container from debian:bookworm-slim ran"
        assert lines[6].startswith("ok    podman API service: Podman ")
        assert f"starting Podman's API service on {sock}" in doc.stderr.decode()

        crun = user.sandman("doctor", env={**env, "CONTAINERS_CONF": str(conf_file)}, timeout=300)
        out = crun.stdout.decode()
        assert crun.returncode == CHECK_FAILED
        assert f"ok    podman API socket: {sock} answers" in out  # the service started above
        assert "FAIL  podman run: crun cannot run containers on this host's hybrid cgroup layout" in out
    finally:
        stop_service(sock)


# -- a Podman install: its shim's refusals, and a service sandman restarts -------------------------
RECIPE = ('schema = 1\ntool = "{tool}"\ndescription = "engine choice test"\n[versions."1"]\n'
          'base = "debian:bookworm-slim"\ncommands = ["true"]\n')


def test_podman_shim_refusals_and_the_service_sandman_restarts(root_bases, shared_tmp: Path,
                                                               nosubid: PodmanUser) -> None:
    tool = f"engc{uuid.uuid4().hex[:8]}"
    recipes = shared_tmp / "recipes"
    (recipes / tool).mkdir(parents=True)
    (recipes / tool / "recipe.toml").write_text(RECIPE.format(tool=tool))
    pbin = shared_tmp / "pbin"  # podman, where the install finds it (removed later: uninstalled)
    pbin.mkdir()
    (pbin / "podman").symlink_to(shutil.which("podman") or "/usr/bin/podman")
    sock = shared_tmp / "run" / "podman.sock"
    home = shared_tmp / "home"
    env = plain_env(home, f"{pbin}:{os.environ['PATH']}", SANDMAN_ENGINE="podman",
                    SANDMAN_PODMAN_SOCKET=str(sock), SANDMAN_RECIPE_PATH=str(recipes))
    try:
        p = root_cli("install", f"{tool}@1", env=env)
        assert p.returncode == 0, p.stderr
        assert f"starting Podman's API service on {sock}" in p.stderr
        shim = paths_of(home).bin_dir / "true-1"
        r = subprocess.run([str(shim)], env=env, capture_output=True, text=True, timeout=120)
        assert (r.returncode, r.stderr) == (0, "")

        # sandman's own service died (killed: the socket file stays behind): sandman starts it again
        pid = int(engine_choice._pidfile(str(sock)).read_text())
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        # a killed multi-threaded process's leader is a zombie before its last thread has let go
        # of the fd table: the socket may answer a moment longer (under load, it did)
        while ((engine_choice._alive(str(pid)) or engine_choice._answers(str(sock)))
               and time.monotonic() < deadline):
            time.sleep(0.05)
        assert sock.is_socket() and not engine_choice._answers(str(sock)), subprocess.run(
            ["ss", "-xlp"], capture_output=True, text=True).stdout
        p = root_cli("list", env=env)
        assert p.returncode == 0, p.stderr
        assert f"starting Podman's API service on {sock}" in p.stderr
        assert f"{tool}" in p.stdout and "current" in p.stdout
        assert int(engine_choice._pidfile(str(sock)).read_text()) != pid

        # the same shim, run by a user without subordinate ids: 94, one line, no container
        for d in (home, *home.rglob("*")):  # the home, readable to that user (root's install)
            if d.is_dir():
                d.chmod(0o755)
        r = subprocess.run(nosubid.argv([str(shim)]), env=nosubid.env(), capture_output=True,
                           text=True, timeout=60, cwd="/")
        assert r.returncode == SubidError.exit_code
        assert one_line(r.stderr) == (
            f"sandman: rootless Podman needs subordinate uid and gid ranges for {nosubid.name} "
            f"(/etc/subuid has none): an admin runs `usermod --add-subuids 100000-165535 "
            f"--add-subgids 100000-165535 {nosubid.name}`, then `podman system migrate`")

        # podman uninstalled since: the shim says so (93), it does not exec a missing file
        (pbin / "podman").unlink()
        r = subprocess.run([str(shim)], env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == EngineNotInstalledError.exit_code
        assert one_line(r.stderr) == (
            f"sandman: {tool}@1: this shim runs Podman, which is not installed here (install "
            "podman, or set engine = \"docker\" in config.toml and run sandman reshim --all)")
    finally:
        stop_service(sock)
        remove_images(tool, engine=PODMAN)
