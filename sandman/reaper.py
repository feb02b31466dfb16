"""The per-user reaper: removes containers whose shim is gone.

A shim execs `docker run`, so when it is killed with SIGKILL nobody is left to stop the
container. Each shim labels its container with its pid and host, and names it with a random
suffix that also appears on the docker client's command line. This small process, started
on demand by a shim when it is not already running (one pidfile read on the hot path), polls
the daemon and removes a container when that pid no longer runs that docker client. It exits
by itself after a while with nothing to watch.

There is one reaper per SANDMAN_HOME and daemon (`warm.reaper_pidfile`): a reaper connected to
one daemon cannot see the orphans of another. Its command line carries its pidfile and
DOCKER_HOST, which is how a shim tells it from garbage or a recycled pid in the pidfile.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import sys
import time
from pathlib import Path

from sandman import names
from sandman.paths import Paths

POLL_SECONDS = 2.0
IDLE_EXIT_SECONDS = float(os.environ.get("SANDMAN_REAPER_IDLE_SECONDS", "300"))
GRACE_SECONDS = 3.0
HANDOVER_SECONDS = 30.0


def client_alive(pid: int, container_name: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return False
    except PermissionError:
        return True  # cannot tell: never remove what might still be in use
    return container_name.encode() in cmdline.split(b"\0")


def orphans(containers: list, host: str, uid: int | None = None) -> list:
    """Containers started by a shim on this host whose docker client has gone.

    A reaper that is not root only judges its own user's containers: with /proc mounted
    hidepid, other users' processes look gone when they are not.
    """
    out = []
    for c in containers:
        labels = c.labels
        if labels.get(names.LABEL_ROLE) != names.ROLE_RUN or labels.get(names.LABEL_HOST) != host:
            continue
        if uid not in (None, 0) and labels.get(names.LABEL_UID) != str(uid):
            continue
        try:
            pid = int(labels.get(names.LABEL_PID, ""))
        except ValueError:
            continue
        if not client_alive(pid, c.name.lstrip("/")):
            out.append(c)
    return out


def sweep(engine, host: str, pidfile: Path | None = None) -> tuple[int, int]:
    """One pass: remove orphans; return (orphans removed, this reaper's containers still running).

    Any orphan this reaper may judge is removed, but only the containers of shims that report
    to this reaper's pidfile keep it alive: another user's or another SANDMAN_HOME's work must
    not keep every reaper on the machine polling the daemon.
    """
    found = engine.containers(role=names.ROLE_RUN)
    gone = orphans(found, host, os.geteuid())
    for c in gone:
        engine.remove_container(c.id)
    gone_ids = {c.id for c in gone}
    mine = [c for c in found if c.id not in gone_ids
            and (pidfile is None or c.labels.get(names.LABEL_REAPER) == str(pidfile))]
    return len(gone), len(mine)


def _take_duty(fd: int, pidfile: Path) -> bool:
    """Hold the pidfile lock, or return False when another reaper is on duty.

    A reaper that is leaving empties the pidfile before it lets go of the lock, so a shim that
    sees no pid starts a new reaper: that one waits for the lock instead of giving up, and no
    container started in that moment goes unwatched.
    """
    deadline = time.monotonic() + HANDOVER_SECONDS
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            pass
        try:
            holder = pidfile.read_text().strip()
        except OSError:
            holder = ""
        if holder or time.monotonic() > deadline:
            return False  # a reaper on duty (not leaving): nothing to do
        time.sleep(0.2)


def _open_pidfile(pidfile: Path) -> int:
    pidfile.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    return os.open(pidfile, os.O_RDWR | os.O_CREAT, 0o644)  # only a pid: shims of other users read it


def _write_pid(fd: int) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)


def hold_pidfile(fd: int, pidfile: Path) -> int | None:
    """Keep the pidfile naming this reaper; return the fd to keep, or None to leave.

    Shims start a reaper whenever the pidfile does not name a live one, so anything else in it
    (garbage, a stale pid) is overwritten; a pidfile deleted or replaced is made again, unless
    another reaper holds the new one: then that one is on duty and this one leaves.
    """
    try:
        same = os.path.samestat(os.fstat(fd), os.stat(pidfile))
    except OSError:
        same = False
    if not same:
        try:
            new = _open_pidfile(pidfile)
        except OSError:
            return fd  # cannot make it now: keep watching, try again next pass
        try:
            fcntl.flock(new, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(new)
            return None
        os.close(fd)
        fd = new
    if os.pread(fd, 64, 0) != f"{os.getpid()}\n".encode():
        _write_pid(fd)
    return fd


def _log_to(path: Path) -> None:
    """What the reaper has to say (junk in a warm container's folder, sandman/warm.py) goes to
    the home's log folder: the reaper has no terminal. Private (0600), never through a link."""
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        handler = logging.StreamHandler(os.fdopen(fd, "a", encoding="utf-8"))
        handler.setFormatter(logging.Formatter("%(asctime)s reaper[%(process)d] %(message)s"))
        logger = logging.getLogger("sandman")
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def main(argv: list[str] | None = None) -> int:
    """`python -m sandman.reaper [PIDFILE DOCKER_HOST]`, as shims/warm.bash starts it.

    Both arguments say which daemon this reaper watches (one reaper per home and daemon); they
    are on its command line so that shims recognise it in /proc. Without them: the home's
    pidfile for $DOCKER_HOST.
    """
    from sandman import warm

    args = sys.argv[1:] if argv is None else argv
    paths = Paths.from_env()
    docker_host = args[1] if len(args) > 1 and args[1] else (
        os.environ.get("DOCKER_HOST") or names.DEFAULT_DOCKER_HOST)
    # the engine talks to the daemon it was started for (a shim of Podman passes its API socket)
    if os.environ.get("SANDMAN_ENGINE") == "podman" and docker_host.startswith("unix://"):
        os.environ["SANDMAN_PODMAN_SOCKET"] = docker_host[len("unix://"):]
    else:
        os.environ["DOCKER_HOST"] = docker_host
    pidfile = Path(args[0]) if args and args[0] else warm.reaper_pidfile(paths, docker_host)
    label = str(paths.reaper_pidfile)  # what shims put in names.LABEL_REAPER (one per home)
    try:
        fd = _open_pidfile(pidfile)
    except OSError:
        return 1
    if not _take_duty(fd, pidfile):
        return 0
    _write_pid(fd)
    from sandman.engine import Engine
    from sandman.engine_choice import choose
    from sandman.errors import SandmanError

    host = socket.gethostname()
    idle_since = time.monotonic()
    # Another user's reaper for a shared home (its pidfile in that user's temp folder) cannot
    # see into the owner's private warm folders: to it they would all look orphaned.
    try:
        own_warm = paths.state_dir.stat().st_uid == os.geteuid()
    except OSError:
        own_warm = False
    if own_warm:
        _log_to(paths.log_dir / "reaper.log")
    try:
        engine = Engine.connect(choose())  # SANDMAN_ENGINE: the shim's engine, passed on
    except SandmanError:
        os.ftruncate(fd, 0)
        return 1
    leaving = False
    while True:
        try:
            _, watched = sweep(engine, host, Path(label))
        except SandmanError:
            watched = 0
        if own_warm:  # warm: stop idle ones, kill hard-killed calls
            with contextlib.suppress(SandmanError):
                watched += warm.sweep(engine, paths, host, docker_host)
        now = time.monotonic()
        if watched:
            idle_since = now
            leaving = False  # a shim started while we were leaving: stay on duty
        elif leaving:
            break
        elif now - idle_since > IDLE_EXIT_SECONDS:
            # Empty the pidfile first, then look once more after a grace period: a shim that
            # read our pid just before has started its container by then.
            leaving = True
            os.ftruncate(fd, 0)
            time.sleep(GRACE_SECONDS)
            continue
        if not leaving:
            kept = hold_pidfile(fd, pidfile)
            if kept is None:
                return 0
            fd = kept
        time.sleep(POLL_SECONDS)
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
