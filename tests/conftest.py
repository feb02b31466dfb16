"""Shared fixtures: a private SANDMAN_HOME per test, the CLI in a subprocess, a real daemon.

Tests marked `docker` need a Docker daemon. Without one they are skipped on a developer's
machine, but with CI=true a missing daemon fails them: CI must never go green by skipping.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import base_env

ROOT = Path(__file__).resolve().parent.parent
BASES = ("debian:bullseye-slim", "debian:bookworm-slim", "debian:trixie-slim")
_daemon: dict[str, object] = {}


def daemon_problem() -> str | None:
    """None when a daemon answers, else why not (cached for the session)."""
    if "problem" not in _daemon:
        try:
            import docker

            docker.from_env().ping()
            _daemon["problem"] = None
        except Exception as e:
            _daemon["problem"] = f"{type(e).__name__}: {e}"
    return _daemon["problem"]  # type: ignore[return-value]


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("docker") is None:
        return
    problem = daemon_problem()
    if problem is None:
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"Docker daemon not reachable and CI=true (never skipped in CI): {problem}")
    pytest.skip(f"no Docker daemon: {problem}")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private SANDMAN_HOME, also set in this process's environment."""
    h = tmp_path / "sandman-home"
    h.mkdir()
    for k in list(os.environ):
        if k.startswith("SANDMAN_"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("SANDMAN_HOME", str(h))
    return h


Runner = Callable[..., subprocess.CompletedProcess]


@pytest.fixture
def sandman(home: Path) -> Runner:
    """Run the sandman CLI in a subprocess: sandman("install", "sqlite3@3.34")."""

    def run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
            input: bytes | str | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
        e = base_env(home)
        e.update(env or {})
        return subprocess.run(
            [sys.executable, "-m", "sandman", *args], cwd=cwd, env=e, input=input,
            capture_output=True, text=not isinstance(input, bytes), timeout=timeout,
        )

    return run


@pytest.fixture
def shim_env(home: Path) -> dict[str, str]:
    """The environment a user's shell would give a shim: the bin dir on PATH."""
    return base_env(home)


def require_bases() -> None:
    import docker

    client = docker.from_env()
    missing = []
    for b in BASES:
        try:
            client.images.get(b)
        except docker.errors.ImageNotFound:
            missing.append(b)
    if missing:
        pytest.fail(f"base images missing: {', '.join(missing)}; run: sandman bootstrap {' '.join(missing)}")


@pytest.fixture(scope="session")
def docker_client():
    problem = daemon_problem()
    if problem is not None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"Docker daemon not reachable and CI=true: {problem}")
        pytest.skip(f"no Docker daemon: {problem}")
    import docker

    require_bases()
    return docker.from_env()


@pytest.fixture(scope="session")
def shared_home(request: pytest.FixtureRequest, docker_client) -> Path:
    """One SANDMAN_HOME for the session with sqlite3@3.34, sqlite3@3.46 and python2@2.7 installed.

    Tests that only *use* shims share it (installing is a cache hit after the first time, but
    even that is worth doing once); tests that change state make their own `home`.
    """
    # World-traversable (pytest's own tmp root is 0700) so tests can run shims as another uid.
    h = Path(tempfile.mkdtemp(prefix="sandman-shared-home-"))
    h.chmod(0o755)
    request.addfinalizer(lambda: shutil.rmtree(h, ignore_errors=True))
    env = base_env(h)
    proc = subprocess.run(
        [sys.executable, "-m", "sandman", "install", "sqlite3@3.34", "sqlite3@3.46", "python2@2.7"],
        env=env, capture_output=True, text=True, timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr
    return h


@pytest.fixture
def public_tmp() -> Path:
    """A temp dir that other uids can enter (pytest's tmp_path is under a 0700 root)."""
    d = Path(tempfile.mkdtemp(prefix="sandman-test-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def shared_env(shared_home: Path) -> dict[str, str]:
    return base_env(shared_home)


def bash() -> str:
    return shutil.which("bash") or "/bin/bash"


def _ours(home: str, basetemp: Path) -> bool:
    """A test home this session is done with: under its own basetemp, or a /tmp/sandman-*
    one that is gone (each fixture removes its folder first). Another session running at the
    same time keeps its reaper and warm containers: its homes are still there."""
    if not home:
        return False
    if home.startswith(str(basetemp)):
        return True
    return home.startswith(str(Path(tempfile.gettempdir()) / "sandman-")) and not Path(home).exists()


@pytest.fixture(scope="session", autouse=True)
def _stop_what_tests_started(tmp_path_factory: pytest.TempPathFactory):
    """At the end: stop reapers and warm containers that belong to test homes.

    Each test home has its own reaper (one per SANDMAN_HOME, as for a real user) and may have
    warm containers idling for minutes; neither should outlive the test session.
    """
    yield
    basetemp = tmp_path_factory.getbasetemp()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if b"sandman.reaper" not in (proc / "cmdline").read_bytes():
                continue
            env = dict(item.split(b"=", 1) for item in (proc / "environ").read_bytes().split(b"\0") if b"=" in item)
        except OSError:
            continue
        if _ours(env.get(b"SANDMAN_HOME", b"").decode(errors="replace"), basetemp):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc.name), signal.SIGTERM)
    if daemon_problem() is None:
        import docker

        client = docker.from_env()
        for c in client.containers.list(all=True, filters={"label": "io.sandman.role=warm"},
                                           ignore_removed=True):
            if _ours(c.labels.get("io.sandman.home", ""), basetemp):
                with contextlib.suppress(docker.errors.DockerException):
                    c.remove(force=True)
