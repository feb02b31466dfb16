"""The rootless Podman side of the benchmark: an ordinary user, run through setpriv.

Issue 11's Podman rows are rootless: a user with subordinate uid ranges, no `docker` group, its
own image store. The benchmark runs as root (CI) and times that user's commands by prefixing
them with `setpriv`, so both engines share one round robin and one load. The user is the one
the integration tests use (`sandman-podman`, made the same way and idempotently, see
tests/integration/podman_helpers.py, which uses this module's functions); the benchmark does
not import the tests.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
USER = "sandman-podman"
SUBID_START = 400000  # the tests' range for this user: clear of what useradd hands out


@dataclass(frozen=True)
class Runner:
    """Who runs an engine's commands: the current user (prefix empty) or another, via setpriv."""

    engine: str  # "docker" or "podman"
    prefix: tuple[str, ...]  # argv put in front of every command (setpriv ...), or ()
    env: dict[str, str]  # the environment of that user, without SANDMAN_*
    python: str  # an interpreter that user can run sandman with
    owner: tuple[int, int] | None  # uid, gid the benchmark's folders are given to (None: ours)
    rootless: bool

    def argv(self, argv: list[str]) -> list[str]:
        return [*self.prefix, *argv]

    def run(self, argv: list[str], env: dict[str, str] | None = None, cwd: Path | str = "/",
            timeout: float = 1800) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(argv), env=self.env if env is None else env, cwd=cwd,
                              capture_output=True, text=True, timeout=timeout)

    def give(self, path: Path) -> None:
        """Make a folder the benchmark made (as root) this runner's user's, recursively."""
        if self.owner is None:
            return
        uid, gid = self.owner
        for dirpath, _dirs, files in os.walk(path):
            os.chown(dirpath, uid, gid)
            for f in files:
                os.chown(Path(dirpath, f), uid, gid, follow_symlinks=False)


def has_subid_range(path: str, name: str) -> bool:
    with contextlib.suppress(OSError):
        return any(ln.split(":")[0] == name for ln in Path(path).read_text().splitlines())
    return False


def ensure_user(name: str = USER) -> pwd.struct_passwd:
    """The user, with subordinate uid/gid ranges (rootless Podman needs them)."""
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "-m", "-s", "/bin/bash", name], check=True, capture_output=True)
        pw = pwd.getpwnam(name)
    for path, opt in (("/etc/subuid", "--add-subuids"), ("/etc/subgid", "--add-subgids")):
        if not has_subid_range(path, name):
            subprocess.run(["usermod", opt, f"{SUBID_START}-{SUBID_START + 65535}", name],
                           check=True, capture_output=True)
    return pw


def requirement_closure(name: str, seen: set[str]) -> None:
    """name and every distribution it requires (extras left out), into seen."""
    key = re.sub(r"[-_.]+", "-", name).lower()
    if key in seen:
        return
    try:
        requires = importlib.metadata.requires(name) or []
    except importlib.metadata.PackageNotFoundError:
        return
    seen.add(key)
    for req in requires:
        m = re.match(r"[A-Za-z0-9._-]+", req)
        if m and "extra ==" not in req:
            requirement_closure(m.group(0), seen)


def python_for(uid: int, gid: int, scratch: Path) -> tuple[str, str]:
    """(interpreter, PYTHONPATH) with which that user runs this checkout's sandman.

    Where this python is private (pyenv under /root), the same version from /usr/bin runs a
    world-readable copy of sandman's dependencies, made in scratch (removed with it).
    """
    probe = ["-c", "import sandman.cli, docker"]
    setpriv = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": "/"}
    if subprocess.run([*setpriv, sys.executable, *probe], env=env, capture_output=True,
                      cwd="/").returncode == 0:
        return sys.executable, str(ROOT)
    site = scratch / "site"
    names: set[str] = set()
    requirement_closure("sandman", names)
    names.discard("sandman")
    for name in sorted(names):
        for f in importlib.metadata.distribution(name).files or []:
            if ".." in f.parts:
                continue
            dst = site / f
            dst.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                shutil.copy2(f.locate(), dst)
    for dirpath, _dirs, filenames in os.walk(scratch):
        os.chmod(dirpath, 0o755)
        for n in filenames:
            os.chmod(Path(dirpath, n), 0o644)
    interp = f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{site}"
    p = subprocess.run([*setpriv, interp, *probe], env=env, capture_output=True, text=True,
                       cwd="/")
    if p.returncode != 0:
        raise RuntimeError(f"no python the user uid {uid} can run sandman with: {p.stderr[-300:]}")
    return interp, env["PYTHONPATH"]


def podman_runner(scratch: Path) -> Runner:
    """Rootless Podman: as the benchmark's user when run as root, else as the current user."""
    if os.geteuid() != 0:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SANDMAN_")}
        return revived(Runner("podman", (), env, sys.executable, None, True))
    pw = ensure_user()
    scratch.mkdir(parents=True, exist_ok=True)
    python, pythonpath = python_for(pw.pw_uid, pw.pw_gid, scratch)
    env = {"HOME": pw.pw_dir, "USER": pw.pw_name, "LOGNAME": pw.pw_name,
           "PATH": "/usr/local/bin:/usr/bin:/bin", "PYTHONPATH": pythonpath, "LANG": "C.UTF-8"}
    prefix = ("setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups")
    return revived(Runner("podman", prefix, env, python, (pw.pw_uid, pw.pw_gid), True))


REVIVE = "from sandman.engine_choice import revive; print(revive('podman'))"
RUN_DIR = ("from sandman.engine_choice import podman_paths; p = podman_paths(make=True); "
           "print(p.problem or p.run_dir)")


def revived(runner: Runner) -> Runner:
    """The runner, its Podman first repaired by sandman's own code (engine_choice.revive) when it is
    stuck on processes that were killed: this user outlives the sessions that use it, and a
    session killed whole (a CI stop, a logout) leaves Podman refusing every command."""
    p = runner.run([runner.python, "-c", REVIVE], timeout=300)
    if p.returncode != 0:
        raise RuntimeError(f"sandman.engine_choice.revive as {runner.env.get('USER')}: {p.stderr[-300:]}")
    if p.stdout.strip():
        print(f"benchmark: {p.stdout.strip()}", file=sys.stderr)
    return in_session(runner)


def in_session(runner: Runner) -> Runner:
    """The runner with XDG_RUNTIME_DIR, as a login session gives it: the folder sandman's own
    rule picks (and makes). Without it the shims export it themselves, and a warm call writes
    no route for the fast path (the route is for the environment as it came)."""
    if runner.env.get("XDG_RUNTIME_DIR"):
        return runner
    p = runner.run([runner.python, "-c", RUN_DIR], timeout=60)
    folder = p.stdout.strip()
    if p.returncode != 0 or not folder.startswith("/"):
        raise RuntimeError(f"Podman's run-time folder for {runner.env.get('USER')}: "
                           f"{folder or p.stderr[-300:]}")
    return dataclasses.replace(runner, env={**runner.env, "XDG_RUNTIME_DIR": folder})


def ensure_bases(runner: Runner, bases: tuple[str, ...]) -> None:
    """The Debian bases in that user's Podman store, from Docker's (`docker save | podman load`).

    `sandman bootstrap` is the way a user gets them; it takes minutes and is tested on its own.
    """
    for ref in bases:
        if runner.run(["podman", "image", "exists", ref], timeout=120).returncode == 0:
            continue
        fd, tar = tempfile.mkstemp(prefix="sandman-bench-base-", suffix=".tar")
        os.close(fd)
        try:
            p = subprocess.run(["docker", "save", "-o", tar, ref], capture_output=True, text=True,
                               timeout=600)
            if p.returncode != 0:
                raise RuntimeError(f"{ref} is not in Podman's store and docker save failed: "
                                   f"{p.stderr.strip()[:300]} (run `sandman bootstrap {ref}` "
                                   f"as that user)")
            os.chmod(tar, 0o644)
            p = runner.run(["podman", "load", "-q", "-i", tar], timeout=600)
            if p.returncode != 0:
                raise RuntimeError(f"podman load {ref}: {p.stderr.strip()[:300]}")
        finally:
            os.unlink(tar)
