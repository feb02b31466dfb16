"""Warm containers: long-lived containers that shims `docker exec` into (docs/performance.md).

The shim does the hot work in bash; this module is the slow side: the values a shim needs to
find its warm containers, what `sandman warm list|stop` show and end, and the reaper's sweep
that stops idle ones and kills the tool of a call whose shim was killed hard.

On disk, each warm container has a folder `<state>/warm/<container name>/`, mounted in the
container at /run/sandman-warm:

- `key`      the exact container options (mounts, user, groups, network, image) it was made of
- `mounts`   its `--mount` values, one per line (for `warm list`)
- `pid`      the host pid of its init, which the shim checks in /proc instead of asking docker
- `used`     touched by every call: its mtime is the last use
- `signals`  a FIFO read by the container's main loop: a line `SIG PID` becomes `kill -s SIG PID`
- `nap`      a FIFO nobody writes to; `read -t` on it is how bash sleeps without a fork
- `calls/<shim pid>-<shim start time>`  one per call: empty until the tool starts, then the
  tool's pid in the container, then `done`
"""

from __future__ import annotations

import contextlib
import csv
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sandman.paths import Paths

if TYPE_CHECKING:  # the docker SDK stays out of shim rendering and the reaper's start
    from sandman.engine import ContainerInfo, Engine

TARGET = "/run/sandman-warm"
DEFAULT_IDLE_SECONDS = 600
DEAD_CALL_GRACE_SECONDS = 10.0


def warm_dir(paths: Paths) -> Path:
    return paths.state_dir / "warm"


def shim_values(paths: Paths, warm: bool | None, idle_minutes: int) -> dict[str, str]:
    """The bash values a shim needs for warm mode (already quoted for the shim template)."""
    import shlex

    base = warm_dir(paths)
    with contextlib.suppress(OSError):
        base.mkdir(parents=True, exist_ok=True, mode=0o700)
    return {
        "SM_WARM": "1" if warm else "0",
        "SM_WARM_DIR": shlex.quote(str(base)),
        "SM_WARM_IDLE": str(int(idle_minutes) * 60),
    }


@dataclass(frozen=True)
class WarmContainer:
    name: str
    tool: str
    version: str
    container_id: str
    status: str
    idle_seconds: float
    active_calls: int
    mounts: tuple[str, ...]  # "SRC -> DST (ro|rw)"
    idle_limit: int

    @property
    def key(self) -> str:
        return f"{self.tool}@{self.version}"


def _mine(c: ContainerInfo, base: Path, host: str | None) -> bool:
    labels = c.labels
    return (labels.get("io.sandman.role") == "warm" and labels.get("io.sandman.home") == str(base)
            and (host is None or labels.get("io.sandman.host") == host))


def parse_mount(spec: str) -> str:
    """`type=bind,"source=/a",target=/b,readonly` -> `/a -> /b (ro)`."""
    fields = next(csv.reader([spec]))
    kv = dict(f.split("=", 1) if "=" in f else (f, "") for f in fields)
    mode = "ro" if "readonly" in kv or kv.get("readonly") == "true" else "rw"
    return f"{kv.get('source', '?')} -> {kv.get('target', '?')} ({mode})"


def _read_mounts(wd: Path) -> tuple[str, ...]:
    try:
        lines = (wd / "mounts").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ()
    out = []
    for ln in lines:
        if ln:
            try:
                out.append(parse_mount(ln))
            except (csv.Error, StopIteration):
                out.append(ln)
    return tuple(out)


def shim_alive(token: str) -> bool | None:
    """Is the shim of call `token` (`<pid>-<start time>`) still running? None: bad token."""
    pid, _, start = token.partition("-")
    if not pid.isdigit() or not start.isdigit():
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat.rsplit(")", 1)[-1].split()
    return len(fields) > 19 and fields[19] == start


def send_signal(wd: Path, sig: str, pid: str) -> None:
    """Queue `kill -s SIG PID` for the container's main loop (never blocks)."""
    try:
        fd = os.open(wd / "signals", os.O_RDWR | os.O_NONBLOCK)
    except OSError:
        return
    try:
        os.write(fd, f"{sig} {pid}\n".encode())
    except OSError:
        pass
    finally:
        os.close(fd)


def tend_calls(wd: Path, now: float | None = None) -> tuple[int, float]:
    """Clean up finished calls, kill the tools of calls whose shim is gone.

    Returns (calls still running, the newest activity time seen).
    """
    now = time.time() if now is None else now
    active, newest = 0, 0.0
    with contextlib.suppress(OSError):
        newest = (wd / "used").stat().st_mtime
    calls = wd / "calls"
    try:
        entries = list(calls.iterdir())
    except OSError:
        return 0, newest
    for f in entries:
        try:
            st = f.stat()
            content = f.read_text().strip()
        except OSError:
            continue
        newest = max(newest, st.st_mtime)
        if content == "done":
            with contextlib.suppress(OSError):
                f.unlink()
            continue
        alive = shim_alive(f.name)
        if alive:
            active += 1
            continue
        if content.isdigit():
            send_signal(wd, "KILL", content)  # its shim was killed hard: so is the tool
        elif now - st.st_mtime < DEAD_CALL_GRACE_SECONDS:
            active += 1  # the exec may still be starting: look again next time
            continue
        with contextlib.suppress(OSError):
            f.unlink()
    return active, newest


def list_warm(engine: Engine, paths: Paths, host: str | None = None) -> list[WarmContainer]:
    base = warm_dir(paths)
    now = time.time()
    out = []
    for c in engine.containers(role="warm"):
        if not _mine(c, base, host):
            continue
        wd = base / c.name
        active, newest = tend_calls(wd, now)
        try:
            limit = int(c.labels.get("io.sandman.idle", DEFAULT_IDLE_SECONDS))
        except ValueError:
            limit = DEFAULT_IDLE_SECONDS
        out.append(WarmContainer(
            name=c.name, tool=c.labels.get("io.sandman.tool", "?"),
            version=c.labels.get("io.sandman.version", "?"), container_id=c.id, status=c.status,
            idle_seconds=max(0.0, now - newest) if newest else 0.0, active_calls=active,
            mounts=_read_mounts(wd), idle_limit=limit,
        ))
    return sorted(out, key=lambda w: (w.tool, w.version, w.name))


def retire(engine: Engine, paths: Paths, name: str, container_id: str) -> None:
    """Stop a warm container and forget it: its folder goes first, so new calls start afresh."""
    base = warm_dir(paths)
    wd = base / name
    graveyard = base / ".retired"
    moved = None
    with contextlib.suppress(OSError):
        graveyard.mkdir(exist_ok=True)
        moved = graveyard / f"{name}-{uuid.uuid4().hex[:8]}"
        os.rename(wd, moved)
    engine.remove_container(container_id)
    if moved is not None:
        shutil.rmtree(moved, ignore_errors=True)


def stop(engine: Engine, paths: Paths, keys: list[str] | None = None) -> list[WarmContainer]:
    """Stop this user's warm containers (all, or those of the given tool@version keys)."""
    stopped = []
    for w in list_warm(engine, paths):
        if keys and w.key not in keys and w.tool not in keys:
            continue
        retire(engine, paths, w.name, w.container_id)
        stopped.append(w)
    return stopped


def sweep(engine: Engine, paths: Paths, host: str) -> int:
    """The reaper's pass: stop idle warm containers; return how many still run."""
    running = 0
    for w in list_warm(engine, paths, host):
        gone = w.status not in ("running", "created", "restarting")
        if gone or (w.active_calls == 0 and w.idle_seconds >= w.idle_limit):
            retire(engine, paths, w.name, w.container_id)
        else:
            running += 1
    return running
