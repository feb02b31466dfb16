"""Podman for the tests: a rootless user, a python it can run sandman with, bases in its store.

Rootless Podman is the point of issue 11: an ordinary user, no `docker` group, subordinate uid
ranges, a private image store under its home. The tests make that user (idempotently: CI is a
fresh machine), run sandman and its shims as it through setpriv, and fill its store with the
Debian bases the Docker daemon already has (`docker save | podman load`: bootstrap's own path
into Podman is tested on its own, it takes minutes).

Rootful Podman is root's store (/var/lib/containers); it is used as is.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # the benchmark's rootless plumbing is shared, not copied
    sys.path.insert(0, str(ROOT))
from helpers import EngineCLI, ensure_unix_user, run_sandman  # noqa: E402

from benchmarks import rootless  # noqa: E402

PODMAN_USER = "sandman-podman"
SUBID_START = 400000  # clear of the ranges useradd hands out and of other tests' users
BASES = ("debian:bookworm-slim",)


@dataclass(frozen=True)
class PodmanUser:
    name: str
    uid: int
    gid: int
    home: Path  # its passwd home (Podman's store lives under it)
    python: str  # an interpreter it can run
    pythonpath: str  # this checkout and, where needed, a world-readable copy of the deps

    def argv(self, argv: list[str]) -> list[str]:
        """argv as this user, with no supplementary group (no docker group)."""
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups", *argv]

    def env(self, **extra: str) -> dict[str, str]:
        """A login-like environment: its HOME, USER, a plain PATH, no SANDMAN_*/DOCKER_*."""
        e = {"HOME": str(self.home), "USER": self.name, "LOGNAME": self.name,
             "PATH": "/usr/local/bin:/usr/bin:/bin", "PYTHONPATH": self.pythonpath,
             "LANG": "C.UTF-8"}
        e.update(extra)
        return e

    def sandman(self, *args: str, env: dict[str, str], cwd: Path | str | None = None,
                timeout: float = 900, input: bytes | None = None) -> subprocess.CompletedProcess:
        """The CLI as this user, bytes out; cwd / by default (root's folders are closed to it)."""
        return run_sandman(*args, prefix=self.argv([]), python=self.python, env=env,
                           cwd=cwd or "/", input=input, timeout=timeout, text=False)

    @property
    def podman_cli(self) -> EngineCLI:
        """Its private image store's CLI, for helpers.remove_images."""
        return EngineCLI(tuple(self.argv(["podman"])), self.env())

    def podman(self, *args: str, timeout: float = 120, check: bool = True) -> str:
        p = subprocess.run(self.argv(["podman", *args]), env=self.env(), cwd="/",
                           capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} as {self.name}: {p.stderr}")
        return p.stdout


_python: tuple[str, str] | None = None


def python_for(uid: int, gid: int) -> tuple[str, str]:
    """(interpreter, PYTHONPATH) with which another user runs this checkout's sandman.

    In CI sandman is installed into a system python everyone can run. Where the test's python
    lives in a private folder (pyenv under /root), the same python version from /usr/bin runs
    a world-readable copy of sandman's dependencies (made once per session).
    """
    global _python
    if _python is not None:
        return _python
    scratch = Path(tempfile.mkdtemp(prefix="sandman-user-site-"))
    scratch.chmod(0o755)
    atexit.register(shutil.rmtree, scratch, True)
    _python = rootless.python_for(uid, gid, scratch)
    return _python


def ensure_podman_user(name: str = PODMAN_USER, *, subids: bool = True,
                       start: int = SUBID_START) -> PodmanUser:
    """A Unix user (home under /home) with, or without, subordinate uid/gid ranges."""
    pw = ensure_unix_user(name, "-s", "/bin/bash")
    for path, opt in (("/etc/subuid", "--add-subuids"), ("/etc/subgid", "--add-subgids")):
        has = rootless.has_subid_range(path, name)
        if subids and not has:
            subprocess.run(["usermod", opt, f"{start}-{start + 65535}", name], check=True,
                           capture_output=True)
        elif not subids and has:
            lines = [ln for ln in Path(path).read_text().splitlines() if ln.split(":")[0] != name]
            Path(path).write_text("".join(f"{ln}\n" for ln in lines))
    python, pythonpath = python_for(pw.pw_uid, pw.pw_gid)
    user = PodmanUser(name, pw.pw_uid, pw.pw_gid, Path(pw.pw_dir), python, pythonpath)
    if subids:
        # The user outlives the sessions that use it: one killed whole (a CI stop kills every
        # process) leaves its Podman refusing every command. sandman's own repair runs first.
        p = subprocess.run(user.argv([python, "-c", rootless.REVIVE]), env=user.env(), cwd="/",
                           capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, f"sandman.engine_choice.revive as {name}: {p.stderr[-500:]}"
    return user


def ensure_bases(user: PodmanUser | None, bases: tuple[str, ...] = BASES) -> None:
    """The Debian bases in this user's Podman store (None: root's, rootful), from Docker's: the
    same content (the same id), so a base re-made by `sandman bootstrap` reaches them too."""
    for ref in bases:
        want = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", ref],
                              capture_output=True, text=True, timeout=60).stdout.strip()
        argv = ["podman", "image", "inspect", "-f", "{{.Id}}", ref]
        if user is None:
            have = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        else:
            have = subprocess.run(user.argv(argv), env=user.env(), cwd="/", capture_output=True,
                                  text=True, timeout=60)
        if have.returncode == 0 and want and have.stdout.strip() in (want, want.removeprefix("sha256:")):
            continue
        fd, tar = tempfile.mkstemp(prefix="sandman-base-", suffix=".tar")
        os.close(fd)
        try:
            subprocess.run(["docker", "save", "-o", tar, ref], check=True, capture_output=True,
                           timeout=300)
            os.chmod(tar, 0o644)
            argv = ["podman", "load", "-q", "-i", tar]
            if user is None:
                subprocess.run(argv, check=True, capture_output=True, timeout=300)
            else:
                subprocess.run(user.argv(argv), env=user.env(), cwd="/", check=True,
                               capture_output=True, timeout=300)
        finally:
            os.unlink(tar)


def podman_containers(user: PodmanUser | None, *filters: str) -> list[str]:
    """Ids of containers (all states) matching `--filter` values, in that user's Podman."""
    argv = ["podman", "ps", "-aq", "--no-trunc", *(a for f in filters for a in ("--filter", f))]
    if user is None:
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.split()
    return user.podman(*argv[1:]).split()


def ensure_tun() -> None:
    """/dev/net/tun usable by everyone, as Debian's udev rule makes it (crw-rw-rw-).

    Rootless Podman gives a container with a network (a recipe's `network = true`) a
    slirp4netns user-mode network, which opens /dev/net/tun as the user. This VM kind ships it
    0600 root: `podman run` with a network then fails with `open("/dev/net/tun"): Permission
    denied`. A device node property of the machine, set back to the distribution's default.
    """
    tun = Path("/dev/net/tun")
    if tun.exists() and tun.stat().st_mode & 0o666 != 0o666:
        tun.chmod(0o666)
