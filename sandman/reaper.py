"""The per-user reaper: removes containers whose shim is gone.

A shim execs `docker run`, so when it is killed with SIGKILL nobody is left to stop the
container. Each shim labels its container with its pid and host, and names it with a random
suffix that also appears on the docker client's command line. This small process, started
on demand by a shim when it is not already running (one pidfile read on the hot path), polls
the daemon and removes a container when that pid no longer runs that docker client. It exits
by itself after a while with nothing to watch.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import sys
import time
from pathlib import Path

from sandman.paths import Paths

POLL_SECONDS = 2.0
IDLE_EXIT_SECONDS = 300.0


def client_alive(pid: int, container_name: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    return container_name.encode() in cmdline.split(b"\0")


def orphans(containers: list, host: str) -> list:
    """Containers started by a shim on this host whose docker client has gone."""
    out = []
    for c in containers:
        labels = c.labels
        if labels.get("io.sandman.role") != "run" or labels.get("io.sandman.host") != host:
            continue
        try:
            pid = int(labels.get("io.sandman.pid", ""))
        except ValueError:
            continue
        if not client_alive(pid, c.name.lstrip("/")):
            out.append(c)
    return out


def sweep(engine, host: str) -> tuple[int, int]:
    """One pass: remove orphans; return (orphans removed, containers still watched)."""
    found = engine.containers(role="run")
    gone = orphans(found, host)
    for c in gone:
        engine.remove_container(c.id)
    return len(gone), len(found) - len(gone)


def main(argv: list[str] | None = None) -> int:
    paths = Paths.from_env()
    paths.state_dir.mkdir(parents=True, exist_ok=True)
    pidfile = paths.reaper_pidfile
    fd = os.open(pidfile, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return 0  # another reaper is on duty
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    from sandman.engine import Engine
    from sandman.errors import SandmanError

    host = socket.gethostname()
    idle_since = time.monotonic()
    try:
        engine = Engine.connect()
    except SandmanError:
        return 1
    while True:
        try:
            _, watched = sweep(engine, host)
        except SandmanError:
            watched = 0
        now = time.monotonic()
        if watched:
            idle_since = now
        elif now - idle_since > IDLE_EXIT_SECONDS:
            break
        time.sleep(POLL_SECONDS)
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
