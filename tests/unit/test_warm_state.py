"""The slow side of warm mode, offline: call bookkeeping, mount parsing, shim values."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from sandman import warm
from sandman.engine import ContainerInfo
from sandman.paths import Paths


def my_token() -> str:
    stat = Path(f"/proc/{os.getpid()}/stat").read_text()
    return f"{os.getpid()}-{stat.rsplit(')', 1)[-1].split()[19]}"


def warm_folder(tmp_path: Path) -> Path:
    wd = tmp_path / "sandman-warm-0-tool-1-abc"
    (wd / "calls").mkdir(parents=True)
    os.mkfifo(wd / "signals")
    return wd


def read_fifo(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        return os.read(fd, 4096)
    except BlockingIOError:
        return b""
    finally:
        os.close(fd)


def test_shim_alive_checks_pid_and_start_time() -> None:
    assert warm.shim_alive(my_token()) is True
    pid, start = my_token().split("-")
    assert warm.shim_alive(f"{pid}-{int(start) + 1}") is False  # same pid, another process
    dead = subprocess.Popen(["true"])
    dead.wait()
    assert warm.shim_alive(f"{dead.pid}-1") is False
    assert warm.shim_alive("garbage") is None


def test_tend_calls_counts_live_calls_and_removes_finished(tmp_path: Path) -> None:
    wd = warm_folder(tmp_path)
    (wd / "calls" / my_token()).write_text("123\n")
    (wd / "calls" / "1-1").write_text("done")
    active, newest = warm.tend_calls(wd)
    assert active == 1
    assert newest > 0
    assert sorted(p.name for p in (wd / "calls").iterdir()) == [my_token()]


def test_tend_calls_kills_the_tool_of_a_hard_killed_shim(tmp_path: Path) -> None:
    wd = warm_folder(tmp_path)
    keep = os.open(wd / "signals", os.O_RDWR)  # the container's loop holds it open
    try:
        (wd / "calls" / "999999-5").write_text("77\n")  # no such shim
        active, _ = warm.tend_calls(wd)
        assert active == 0
        assert os.read(keep, 100) == b"KILL 77\n"
        assert not (wd / "calls" / "999999-5").exists()
    finally:
        os.close(keep)


def test_tend_calls_waits_for_a_call_that_is_still_starting(tmp_path: Path) -> None:
    wd = warm_folder(tmp_path)
    f = wd / "calls" / "999999-5"
    f.write_text("")
    assert warm.tend_calls(wd)[0] == 1  # young and empty: the exec may be on its way
    old = time.time() - warm.DEAD_CALL_GRACE_SECONDS - 5
    os.utime(f, (old, old))
    assert warm.tend_calls(wd)[0] == 0
    assert not f.exists()


def test_send_signal_never_blocks_without_a_reader(tmp_path: Path) -> None:
    wd = warm_folder(tmp_path)
    warm.send_signal(wd, "INT", "5")  # nobody reads: must return, not hang
    warm.send_signal(tmp_path / "missing", "INT", "5")
    assert read_fifo(wd / "signals") == b""


def test_parse_mount_reads_the_shims_csv_quoting() -> None:
    assert warm.parse_mount('type=bind,"source=/a b","target=/a b"') == "/a b -> /a b (rw)"
    assert warm.parse_mount('type=bind,"source=/x,""y""",target=/etc/passwd,readonly') == \
        '/x,"y" -> /etc/passwd (ro)'


def test_shim_values_make_the_state_folder(tmp_path: Path) -> None:
    paths = Paths.from_env({"SANDMAN_HOME": str(tmp_path)})
    v = warm.shim_values(paths, True, 3)
    assert v["SM_WARM"] == "1" and v["SM_WARM_IDLE"] == "180"
    assert (tmp_path / "state" / "warm").is_dir()
    assert warm.shim_values(paths, None, 10)["SM_WARM"] == "0"


class FakeEngine:
    def __init__(self, containers: list[ContainerInfo]) -> None:
        self._containers = containers
        self.removed: list[str] = []

    def containers(self, **labels: str) -> list[ContainerInfo]:
        return [c for c in self._containers if c.labels.get("io.sandman.role") == labels.get("role")]

    def remove_container(self, ident: str) -> None:
        self.removed.append(ident)


def test_sweep_stops_only_idle_containers_of_this_home(tmp_path: Path) -> None:
    paths = Paths.from_env({"SANDMAN_HOME": str(tmp_path)})
    base = warm.warm_dir(paths)

    def ctr(name: str, idle: str, home: Path = base) -> ContainerInfo:
        (base / name / "calls").mkdir(parents=True, exist_ok=True)
        (base / name / "used").touch()
        return ContainerInfo(name, name, {"io.sandman.role": "warm", "io.sandman.home": str(home),
                                          "io.sandman.host": "h", "io.sandman.idle": idle,
                                          "io.sandman.tool": "t", "io.sandman.version": "1"},
                             "running")

    old = time.time() - 100
    idle, fresh, other = ctr("idle", "60"), ctr("fresh", "600"), ctr("other", "1", tmp_path / "x")
    os.utime(base / "idle" / "used", (old, old))
    busy = ctr("busy", "60")
    os.utime(base / "busy" / "used", (old, old))
    (base / "busy" / "calls" / my_token()).write_text("12\n")
    eng = FakeEngine([idle, fresh, other, busy])
    assert warm.sweep(eng, paths, "h") == 2
    assert eng.removed == ["idle"]
    assert not (base / "idle").exists()
    assert [w.name for w in warm.list_warm(eng, paths)] == ["busy", "fresh", "idle"]
