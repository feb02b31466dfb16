"""The slow side of warm mode, offline: call bookkeeping, mount parsing, shim values."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
from fakes import FakeEngine
from helpers import paths_of

from sandman import warm
from sandman.engine import ContainerInfo
from sandman.names import LABEL_HOME, LABEL_HOST, LABEL_IDLE, LABEL_ROLE, LABEL_TOOL, LABEL_VERSION
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
    assert warm.warm_dir(paths).is_dir()
    assert warm.shim_values(paths, None, 10)["SM_WARM"] == "0"


def ctr(paths: Paths, folder: str, idle: str = "60", home: Path | None = None,
        wid: str = "0123abcd4567", make: bool = True) -> ContainerInfo:
    """A warm container `<folder>-<id>` with its folder (as shims/warm.bash makes them)."""
    base = warm.daemon_dir(paths)
    if make:
        (base / folder / "calls").mkdir(parents=True, exist_ok=True)
        (base / folder / "used").touch()
        (base / folder / "id").write_text(wid + "\n")
    name = f"{folder}-{wid}"
    return ContainerInfo(name, name, {LABEL_ROLE: "warm",
                                      LABEL_HOME: str(home or warm.warm_dir(paths)),
                                      LABEL_HOST: "h", LABEL_IDLE: idle,
                                      LABEL_TOOL: "t", LABEL_VERSION: "1"},
                         "running")


def age(path: Path, seconds: float = 100) -> None:
    old = time.time() - seconds
    os.utime(path, (old, old))


def test_sweep_stops_only_idle_containers_of_this_home(tmp_path: Path) -> None:
    paths = Paths.from_env({"SANDMAN_HOME": str(tmp_path)})
    base = warm.warm_dir(paths)
    idle, fresh = ctr(paths, "idle"), ctr(paths, "fresh", "600")
    other = ctr(paths, "other", "1", tmp_path / "x")
    age(base / "idle" / "used")
    busy = ctr(paths, "busy")
    age(base / "busy" / "used")
    (base / "busy" / "calls" / my_token()).write_text("12\n")
    eng = FakeEngine(containers=[idle, fresh, other, busy])
    assert warm.sweep(eng, paths, "h") == 2
    assert eng.called("remove_container") == [idle.id]
    assert not (base / "idle").exists() and not (base / warm.RETIRED / idle.name).exists()
    assert [w.name for w in warm.list_warm(eng, paths)] == [busy.name, fresh.name, idle.name]


def test_a_container_whose_folder_is_gone_or_made_again_is_an_orphan(tmp_path: Path) -> None:
    """`rm -rf state/warm/sandman-warm-*` under a running container: it is never used again."""
    paths = Paths.from_env({"SANDMAN_HOME": str(tmp_path)})
    base = warm.warm_dir(paths)
    gone, remade, ok = ctr(paths, "gone"), ctr(paths, "remade"), ctr(paths, "ok", "600")
    shutil.rmtree(base / "gone")
    (base / "remade" / "id").write_text("ffffeeeedddd\n")  # made again: another id
    eng = FakeEngine(containers=[gone, remade, ok])
    states = {w.name: (w.state, w.status) for w in warm.list_warm(eng, paths)}
    assert states[gone.name] == states[remade.name] == (warm.ORPHAN, "orphaned")
    assert states[ok.name] == (warm.LIVE, "running")
    assert warm.sweep(eng, paths, "h") == 1
    assert sorted(eng.called("remove_container")) == sorted([gone.id, remade.id])
    assert (base / "remade" / "id").exists(), "the new folder stays for its own container"


def test_stop_moves_the_folder_aside_at_once_and_waits_for_calls_running(tmp_path: Path) -> None:
    paths = Paths.from_env({"SANDMAN_HOME": str(tmp_path)})
    base = warm.warm_dir(paths)
    c = ctr(paths, "t1")
    call = base / "t1" / "calls" / my_token()  # a call of a live shim (this process)
    call.write_text("")
    eng = FakeEngine(containers=[c])
    ended: list[float] = []

    def finish() -> None:
        time.sleep(0.5)
        (base / warm.RETIRED / c.name / "calls" / call.name).write_text("done\n")
        ended.append(time.monotonic())

    t = threading.Thread(target=finish)
    t.start()
    stopped = warm.stop(eng, paths)
    t.join()
    assert [w.name for w in stopped] == [c.name] and eng.called("remove_container") == [c.id]
    assert ended and eng.called("remove_container"), "removed only after the call ended"
    assert not (base / "t1").exists() and not (base / warm.RETIRED / c.name).exists()


def test_stop_gives_up_waiting_after_its_limit(tmp_path: Path) -> None:
    paths = Paths.from_env({"SANDMAN_HOME": str(tmp_path)})
    c = ctr(paths, "t1")
    (warm.daemon_dir(paths) / "t1" / "calls" / my_token()).write_text("5\n")
    eng = FakeEngine(containers=[c])
    t = time.monotonic()
    warm.stop(eng, paths, wait=0.3)
    assert eng.called("remove_container") == [c.id] and 0.3 <= time.monotonic() - t < 5


def test_sweep_never_waits_for_a_stopping_container(tmp_path: Path) -> None:
    """The reaper moves an idle container aside; a call that registered just before keeps it
    until the call ends (next pass), and the reaper does not block on it."""
    paths = Paths.from_env({"SANDMAN_HOME": str(tmp_path)})
    base = warm.daemon_dir(paths)
    c = ctr(paths, "t1")
    age(base / "t1" / "used")
    warm.begin_retire(base, c.name)  # as if a stopper was interrupted after the move
    grave = base / warm.RETIRED / c.name
    (grave / "calls" / my_token()).write_text("77\n")
    eng = FakeEngine(containers=[c])
    assert warm.sweep(eng, paths, "h") == 1 and eng.called("remove_container") == []
    (grave / "calls" / my_token()).write_text("done\n")
    assert warm.sweep(eng, paths, "h") == 0 and eng.called("remove_container") == [c.id]
    assert not grave.exists()


def test_sweep_forgets_folders_of_containers_already_removed(tmp_path: Path) -> None:
    paths = Paths.from_env({"SANDMAN_HOME": str(tmp_path)})
    base = warm.daemon_dir(paths)
    (base / warm.RETIRED / "sandman-warm-0-t-1-aaa-bbb" / "calls").mkdir(parents=True)
    warm.sweep(FakeEngine(containers=[]), paths, "h")
    assert list((base / warm.RETIRED).iterdir()) == []


def test_begin_retire_moves_only_the_folder_of_that_container(tmp_path: Path) -> None:
    """Two stoppers at once: the second must not move the folder a new container now uses."""
    paths = Paths.from_env({"SANDMAN_HOME": str(tmp_path)})
    base = warm.daemon_dir(paths)
    c = ctr(paths, "t1")
    warm.begin_retire(base, c.name)
    ctr(paths, "t1", wid="999999999999")  # a shim made the folder again for a new container
    warm.begin_retire(base, c.name)  # the second stopper, late
    assert (base / "t1" / "id").read_text().strip() == "999999999999"


# -- keyed by daemon ----------------------------------------------------------------------------
WARM_BASH = Path(__file__).resolve().parents[2] / "shims" / "warm.bash"


def bash_daemon_key(docker_host: str | None) -> str:
    """What shims/warm.bash computes for this DOCKER_HOST (its first block, run by bash)."""
    text = WARM_BASH.read_text()
    block = text[text.index("sm_dhost="):text.index("\nfi\n") + 4]
    env = {"PATH": os.environ["PATH"]}
    if docker_host is not None:
        env["DOCKER_HOST"] = docker_host
    script = f"SM_DAEMON_DEFAULT={shlex.quote(warm.DEFAULT_DOCKER_HOST)}\n{block}printf %s \"$sm_dkey\""
    return subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True,
                          check=True).stdout


@pytest.mark.parametrize("host", [None, "", "unix:///var/run/docker.sock", "unix:///run/docker.sock",
                                  "unix:///tmp/a b/50%/docker.sock", "tcp://10.0.0.1:2375",
                                  "ssh://me@box"])
def test_shim_and_python_key_the_daemon_the_same_way(host: str | None) -> None:
    assert bash_daemon_key(host) == warm.daemon_key(host)


def test_daemon_keys_differ_by_socket_and_default_keeps_the_plain_names(tmp_path: Path) -> None:
    paths = Paths.from_env({"SANDMAN_HOME": str(tmp_path)})
    default = warm.reaper_pidfile(paths, None)
    assert default == paths.reaper_pidfile == warm.reaper_pidfile(paths, warm.DEFAULT_DOCKER_HOST)
    assert warm.daemon_dir(paths, "unix:///var/run/docker.sock") == warm.warm_dir(paths)
    keys = {warm.daemon_key(h) for h in ("unix:///a/b", "unix:///a%2Fb", "unix:///a_b", "tcp://a/b")}
    assert len(keys) == 4, "distinct hosts never share a key"
    other = warm.reaper_pidfile(paths, "unix:///run/user/1000/docker.sock")
    assert other.parent == paths.state_dir and other != default
    assert other.name == "reaper@unix:%2F%2F%2Frun%2Fuser%2F1000%2Fdocker.sock.pid"
    assert warm.daemon_dir(paths, "unix:///x.sock").parent == warm.warm_dir(paths)


# -- the reaper keeps its pidfile true ----------------------------------------------------------
def test_reaper_writes_its_pid_back_over_garbage(tmp_path: Path) -> None:
    from sandman import reaper

    pidfile = paths_of(tmp_path).reaper_pidfile
    fd = reaper._open_pidfile(pidfile)
    try:
        pidfile.write_text("1\n")  # what an attacker or a bad script leaves
        assert reaper.hold_pidfile(fd, pidfile) == fd
        assert pidfile.read_text() == f"{os.getpid()}\n"
    finally:
        os.close(fd)


def test_reaper_makes_a_deleted_pidfile_again_or_leaves_when_another_holds_it(
        tmp_path: Path) -> None:
    import fcntl

    from sandman import reaper

    pidfile = paths_of(tmp_path).reaper_pidfile
    fd = reaper._open_pidfile(pidfile)
    shutil.rmtree(paths_of(tmp_path).state_dir)
    fd = reaper.hold_pidfile(fd, pidfile)
    assert fd is not None and pidfile.read_text() == f"{os.getpid()}\n"
    pidfile.unlink()
    other = reaper._open_pidfile(pidfile)  # a new reaper took the new file
    fcntl.flock(other, fcntl.LOCK_EX)
    try:
        assert reaper.hold_pidfile(fd, pidfile) is None
    finally:
        os.close(other)
        os.close(fd)
