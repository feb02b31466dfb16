"""Warm containers: long-lived containers that shims `docker exec` into (docs/performance.md).

The shim does the hot work in bash (shims/warm.bash); this module is the slow side: the values a
shim needs to find its warm containers, what `sandman warm list|stop` show and end, and the
reaper's sweep that stops idle ones, removes orphans and kills the tool of a call whose shim was
killed hard.

Warm containers belong to a SANDMAN_HOME and a daemon: the folder `<state>/warm/` holds those of
the default daemon, `<state>/warm/@<daemon key>/` those of another one (`daemon_key`). Each warm
container has a folder `<daemon folder>/<folder name>/`, mounted in the container at
/run/sandman-warm, and is named `<folder name>-<id>`:

- `id`       random, made with the folder: a folder deleted and made again gets another id, so
             a container whose folder is gone is never used again (an orphan, removed here)
- `key`      the exact container options (mounts, user, groups, network, image) it was made of
- `mounts`   its `--mount` values, one per line (for `warm list`)
- `pid`      the host pid of its init, which the shim checks in /proc instead of asking docker
- `used`     touched by every call: its mtime is the last use
- `signals`  a FIFO read by the container's main loop: a line `SIG PID` becomes `kill -s SIG PID`
- `sock/agent.sock`  the warm agent's socket, when the container runs the agent (sandman/agent.py)
- `nap`      a FIFO nobody writes to; `read -t` on it is how bash sleeps without a fork
- `calls/<shim pid>-<shim start time>`  one per call: empty until the tool starts, then the
  tool's pid in the container, then `done`

Stopping one (`retire`) first moves its folder to `.retired/<container name>` (new calls then
start a new container), waits until the calls registered in it have ended, then removes the
container. A shim registers its call before it checks the folder's id (shims/warm.bash), so a
call is either seen by the stop or sees the stop: no call ever execs into a container being
removed.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import fcntl
import functools
import logging
import os
import shutil
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sandman import names, runtime_rules
from sandman.names import DEFAULT_DOCKER_HOST
from sandman.paths import Paths, shim_templates_dir

if TYPE_CHECKING:  # the docker SDK stays out of shim rendering and the reaper's start
    from sandman.engine import ContainerInfo, Engine

TARGET = "/run/sandman-warm"
DEFAULT_IDLE_SECONDS = 600
DEAD_CALL_GRACE_SECONDS = 10.0
STOP_WAIT_SECONDS = 10.0  # `warm stop` lets calls already running end for this long
RETIRED = names.WARM_RETIRED
log = logging.getLogger("sandman.warm")

# WarmContainer.state
LIVE, STOPPING, ORPHAN = "live", "stopping", "orphan"


@functools.lru_cache(maxsize=64)
def daemon_key(docker_host: str | None) -> str:
    """'' for the default daemon, else `@` and DOCKER_HOST escaped: a file-name part that tells
    daemons apart. A shim computes it on every call, so its one copy is shims/warm.bash's (the
    daemon key block), run here; the reaper asks once per daemon, not once per pass."""
    text = (shim_templates_dir() / "warm.bash").read_text(encoding="utf-8")
    script = runtime_rules.block(text, "the daemon key") + 'printf %s "$sm_dkey"\n'
    env = {"SM_DAEMON_DEFAULT": DEFAULT_DOCKER_HOST}
    if docker_host:
        env["DOCKER_HOST"] = docker_host
    p = runtime_rules.run(script, env=env)
    if p.returncode != 0 or p.stderr:
        raise OSError(f"shims/warm.bash's daemon key failed: {runtime_rules.text_of(p.stderr)}")
    return runtime_rules.text_of(p.stdout)


def _docker_host(docker_host: str | None) -> str:
    return docker_host or os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST


def _engine_host(engine: Engine) -> str | None:
    """Podman's containers are keyed by its API socket (as shims/warm.bash does), Docker's by
    DOCKER_HOST."""
    return engine.choice.daemon_host()


def warm_dir(paths: Paths) -> Path:
    """The home's warm folder (the default daemon's containers live right in it)."""
    return paths.state_dir / "warm"


def daemon_dir(paths: Paths, docker_host: str | None = None) -> Path:
    """Where the warm containers of this home on that daemon (default: $DOCKER_HOST) live.

    Their `io.sandman.home` label says this folder: one daemon reached by two paths (a
    symlinked socket) gets two sets of warm containers, neither taking the other's for orphans.
    """
    key = daemon_key(_docker_host(docker_host))
    return warm_dir(paths) / key if key else warm_dir(paths)


def reaper_pidfile(paths: Paths, docker_host: str | None = None) -> Path:
    """The pidfile of this home's reaper for that daemon (default: $DOCKER_HOST)."""
    base = paths.reaper_pidfile
    key = daemon_key(_docker_host(docker_host))
    return base.with_name(f"{base.stem}{key}{base.suffix}") if key else base


def shim_values(paths: Paths, warm: bool | None, idle_minutes: int) -> dict[str, str]:
    """The bash values a shim needs for warm mode (already quoted for the shim template)."""
    import shlex

    from sandman import agent

    base = warm_dir(paths)
    with contextlib.suppress(OSError):
        base.mkdir(parents=True, exist_ok=True, mode=0o700)
    return {
        "SM_WARM": "1" if warm else "0",
        "SM_WARM_DIR": shlex.quote(str(base)),
        "SM_WARM_IDLE": str(int(idle_minutes) * 60),
        "SM_DAEMON_DEFAULT": shlex.quote(DEFAULT_DOCKER_HOST),
        **agent.shim_values(paths),
    }


@dataclass(frozen=True)
class WarmContainer:
    name: str
    tool: str
    version: str
    container_id: str
    status: str  # docker's, or "stopping" / "orphaned"
    idle_seconds: float
    active_calls: int
    mounts: tuple[str, ...]  # "SRC -> DST (ro|rw)"
    idle_limit: int
    state: str = LIVE  # LIVE, STOPPING (moved aside, calls ending) or ORPHAN (its folder is gone)

    @property
    def key(self) -> str:
        return f"{self.tool}@{self.version}"


def _mine(c: ContainerInfo, home: Path, host: str | None) -> bool:
    labels = c.labels
    return (labels.get(names.LABEL_ROLE) == "warm" and labels.get(names.LABEL_HOME) == str(home)
            and (host is None or labels.get(names.LABEL_HOST) == host))


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


def _read_id(wd: Path) -> str:
    try:
        return (wd / "id").read_text().strip()
    except OSError:
        return ""


def locate(base: Path, name: str) -> tuple[str, Path]:
    """(state, folder) of the warm container `name` under the daemon folder `base`."""
    folder, _, wid = name.rpartition("-")
    live = base / folder
    if folder and wid and _read_id(live) == wid:
        return LIVE, live
    grave = base / RETIRED / name
    if grave.is_dir():
        return STOPPING, grave
    return ORPHAN, grave


def shim_alive(token: str) -> bool | None:
    """Is the shim of call `token` (`<pid>-<start time>[-<random>]`) still running? None: bad
    token."""
    parts = token.split("-")
    if len(parts) not in (2, 3) or not all(p.isdigit() for p in parts[:2]) or (
            len(parts) == 3 and not _is_hex(parts[2])):
        return None
    pid, start = parts[0], parts[1]
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = text.rsplit(")", 1)[-1].split()
    return len(fields) > 19 and fields[19] == start


def _is_hex(s: str) -> bool:
    return 0 < len(s) <= 32 and all(c in "0123456789abcdef" for c in s)


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


# What a call file may hold: "", "<pid>", "agent <pid>", "done" (shims/warm.bash, agent.c).
CALL_FILE_MAX = 64
_junk_seen: set[tuple[str, str]] = set()  # logged once per entry, not once per pass


def _junk(calls_fd: int, calls: Path, name: str, why: str) -> None:
    """An entry of `calls/` that no shim made (the tool can write there): drop it (unlink never
    follows a link) and say so once. The name is the tool's: logged escaped."""
    try:
        os.unlink(name, dir_fd=calls_fd)
        gone = True
    except OSError:
        gone = False
    key = (str(calls), name)
    if key in _junk_seen and not gone:
        return
    if len(_junk_seen) < 4096:
        _junk_seen.add(key)
    log.warning("warm: %s: ignored %s in %s (%s)", "removed" if gone else "kept",
                ascii(name), calls, why)


def _read_call(calls_fd: int, name: str) -> tuple[os.stat_result, str] | str:
    """(stat, content) of the call file `name`, or why it is junk. Never follows a link, never
    blocks (a FIFO), never reads more than CALL_FILE_MAX bytes."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY
                     | os.O_CLOEXEC, dir_fd=calls_fd)
    except FileNotFoundError:
        return "gone"
    except OSError as e:
        return "a link" if e.errno == errno.ELOOP else f"cannot open: {e.strerror}"
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return "not a regular file"
        if st.st_size > CALL_FILE_MAX:
            return f"{st.st_size} bytes"
        data = os.read(fd, CALL_FILE_MAX + 1)
    except OSError as e:
        return f"cannot read: {e.strerror}"
    finally:
        os.close(fd)
    if len(data) > CALL_FILE_MAX:
        return "too long"
    return st, data.decode("ascii", "replace").strip()


def tend_calls(wd: Path, now: float | None = None) -> tuple[int, float]:
    """Clean up finished calls, kill the tools of calls whose shim is gone.

    Returns (calls still running or starting, the newest activity time seen). `calls/` is
    writable by the tool: entries that are not a shim's call file are dropped (_read_call).
    """
    now = time.time() if now is None else now
    active, newest = 0, 0.0
    with contextlib.suppress(OSError):
        newest = min(now, (wd / "used").stat().st_mtime)
    calls = wd / "calls"
    try:
        calls_fd = os.open(calls, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return 0, newest
    try:
        with os.scandir(calls_fd) as it:
            entries = [e.name for e in it]
        for name in entries:
            alive = shim_alive(name)
            if alive is None:
                _junk(calls_fd, calls, name, "not a call's name")
                continue
            got = _read_call(calls_fd, name)
            if isinstance(got, str):
                if got != "gone":
                    _junk(calls_fd, calls, name, got)
                continue
            st, content = got
            mtime = min(st.st_mtime, now)  # a date in the future is no activity
            newest = max(newest, mtime)
            if content.startswith("done"):
                with contextlib.suppress(OSError):
                    os.unlink(name, dir_fd=calls_fd)
                continue
            if alive:
                active += 1
                continue
            if content.isdigit():
                send_signal(wd, "KILL", content)  # its shim was killed hard: so is the tool
            elif st.st_mtime <= now and now - st.st_mtime < DEAD_CALL_GRACE_SECONDS:
                active += 1  # the exec may still be starting: look again next time
                continue
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=calls_fd)
    except OSError:
        pass
    finally:
        os.close(calls_fd)
    return active, newest


def list_warm(engine: Engine, paths: Paths, host: str | None = None,
              docker_host: str | None = None) -> list[WarmContainer]:
    """This home's warm containers on the engine's daemon (docker_host: the one it talks to)."""
    base = daemon_dir(paths, docker_host or _engine_host(engine))
    now = time.time()
    out = []
    for c in engine.containers(role="warm"):
        if not _mine(c, base, host):
            continue
        state, wd = locate(base, c.name)
        active, newest = tend_calls(wd, now) if state != ORPHAN else (0, 0.0)
        try:
            limit = int(c.labels.get(names.LABEL_IDLE, DEFAULT_IDLE_SECONDS))
        except ValueError:
            limit = DEFAULT_IDLE_SECONDS
        status = {LIVE: c.status, STOPPING: "stopping", ORPHAN: "orphaned"}[state]
        out.append(WarmContainer(
            name=c.name, tool=c.labels.get(names.LABEL_TOOL, "?"),
            version=c.labels.get(names.LABEL_VERSION, "?"), container_id=c.id, status=status,
            idle_seconds=max(0.0, now - newest) if newest else 0.0, active_calls=active,
            mounts=_read_mounts(wd), idle_limit=limit, state=state,
        ))
    return sorted(out, key=lambda w: (w.tool, w.version, w.name))


@contextlib.contextmanager
def _retire_lock(base: Path) -> Iterator[None]:
    """Serialises the stoppers (the reaper, `warm stop`): each moves only the folder it checked."""
    fd = os.open(base / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def begin_retire(base: Path, name: str) -> Path:
    """Take the live container `name` out of service: its folder moves aside. Returns where."""
    state, wd = locate(base, name)
    if state != LIVE:
        return wd
    grave = base / RETIRED / name
    with contextlib.suppress(OSError), _retire_lock(base):
        if locate(base, name)[0] == LIVE:  # still the folder of this container
            grave.parent.mkdir(exist_ok=True, mode=0o700)
            os.rename(wd, grave)
    return grave


def drained(grave: Path) -> bool:
    """Have the calls registered in a retired folder ended (or their shims gone)?"""
    return tend_calls(grave)[0] == 0 if grave.is_dir() else True


def finish_retire(engine: Engine, grave: Path, container_id: str) -> None:
    """Remove the container, then its folder. Another stopper (the reaper, a second
    `warm stop`) may be removing it at the same time: that is not an error."""
    from sandman.errors import SandmanError

    try:
        engine.remove_container(container_id)
    except SandmanError as e:
        if "No such container" not in str(e) and "is already in progress" not in str(e):
            raise
    shutil.rmtree(grave, ignore_errors=True)


def retire(engine: Engine, paths: Paths, name: str, container_id: str,
           wait: float = STOP_WAIT_SECONDS, docker_host: str | None = None) -> None:
    """Stop a warm container: no new call from now on, calls running end (up to `wait` s)."""
    base = daemon_dir(paths, docker_host)
    grave = begin_retire(base, name)
    deadline = time.monotonic() + wait
    while not drained(grave) and time.monotonic() < deadline:
        time.sleep(0.05)
    finish_retire(engine, grave, container_id)


def stop(engine: Engine, paths: Paths, keys: list[str] | None = None,
         wait: float = STOP_WAIT_SECONDS) -> list[WarmContainer]:
    """Stop this user's warm containers (all, or those of the given tool@version keys).

    New calls go elsewhere at once; calls already running may end first, for up to `wait`
    seconds, then the containers are removed.
    """
    base = daemon_dir(paths, _engine_host(engine))
    chosen = [w for w in list_warm(engine, paths)
              if not keys or w.key in keys or w.tool in keys]
    pending = {w.name: (w, begin_retire(base, w.name)) for w in chosen}
    deadline = time.monotonic() + wait
    while pending:
        late = time.monotonic() >= deadline
        for name, (w, grave) in list(pending.items()):
            if late or drained(grave):
                finish_retire(engine, grave, w.container_id)
                del pending[name]
        if pending:
            time.sleep(0.05)
    return chosen


def sweep(engine: Engine, paths: Paths, host: str, docker_host: str | None = None) -> int:
    """The reaper's pass: stop idle warm containers, remove orphans; return how many still run.

    Never waits: a stopping container whose calls still run is looked at again next pass.
    """
    docker_host = docker_host or _engine_host(engine)
    base = daemon_dir(paths, docker_host)
    graves: list[Path] = []
    with contextlib.suppress(OSError):  # listed before the containers: see below
        graves = [g for g in (base / RETIRED).iterdir() if g.is_dir()]
    items = list_warm(engine, paths, host, docker_host)
    running = 0
    for w in items:
        gone = w.status not in ("running", "created", "restarting", "stopping")
        if w.state == ORPHAN or gone:
            grave = begin_retire(base, w.name)
            finish_retire(engine, grave, w.container_id)
            continue
        if w.state == LIVE and (w.active_calls or w.idle_seconds < w.idle_limit):
            running += 1
            continue
        grave = begin_retire(base, w.name)
        if drained(grave):
            finish_retire(engine, grave, w.container_id)
        else:
            running += 1
    # A folder moved aside before the containers were listed, whose container was not listed,
    # belongs to a container removed since (a stopper was interrupted): forget it.
    names = {c.name for c in engine.containers(role="warm")} if graves else set()
    for g in graves:
        if g.name not in names:
            shutil.rmtree(g, ignore_errors=True)
    return running
