"""Promise 2: INT, TERM and HUP sent to the shim reach the tool; nothing is left behind.

The tool traps the signal, prints which one arrived and exits 7, so a pass cannot come from
docker killing the container. Afterwards no container with the shim's pid label remains,
and when the shim itself is SIGKILLed the reaper removes its orphaned container.
"""

from __future__ import annotations

import dataclasses
import os
import select
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from ptyrun import run_on_pty

pytest.register_assert_rewrite("runtime_helpers")
from helpers import stop_reapers  # noqa: E402
from runtime_helpers import Kit, leftovers, ready, settle, token, tool_processes, wait_for  # noqa: E402

from sandman.names import LABEL_HOST, LABEL_PID, LABEL_ROLE, LABEL_UID  # noqa: E402

pytestmark = pytest.mark.docker

TRAP = ('for s in INT TERM HUP; do trap "echo got-$s; exit 7" $s; done; {ready}'
        'while :; do sleep 0.1; done # {tok}')

def start(kit: Kit, mode: str, work: Path, *args: str) -> subprocess.Popen:
    return kit.popen([kit.shim("rtprobe-1"), *args], env=kit.env(mode), cwd=work,
                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def read_until(p: subprocess.Popen, marker: bytes, timeout: float = 60) -> bytes:
    assert p.stdout is not None
    buf = b""
    deadline = time.monotonic() + timeout
    while marker not in buf and time.monotonic() < deadline:
        r, _, _ = select.select([p.stdout], [], [], 0.5)
        if r:
            chunk = os.read(p.stdout.fileno(), 4096)
            if not chunk:
                break
            buf += chunk
    assert marker in buf, buf
    return buf


def seen_running(kit: Kit, tok: str, pid: int) -> bool:
    """The tool's process, as the engine lists it, a few seconds at most after it wrote "ready".

    Not a retry: the daemon records a container as running only after its process has started
    (dockerd marks it so when containerd's start returns, and the attached streams already
    carry the tool's output by then), so under load "ready" can arrive while `docker ps`
    still lists the container as created and `docker top` refuses it."""
    return wait_for(lambda: tool_processes(tok, pid=pid, home=kit.home, kit=kit), 10)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_signal_reaches_the_tool(kit: Kit, mode: str, work: Path, sig: signal.Signals,
                                 request: pytest.FixtureRequest) -> None:
    tok = token()
    p = start(kit, mode, work, "bash", "-c", TRAP.format(tok=tok, ready=ready(kit, mode)))
    try:
        read_until(p, b"ready")
        settle(kit, mode, p)
        assert seen_running(kit, tok, p.pid), "the tool should be running now"
        masks = {k: v.strip() for k, v in (ln.split(":", 1) for ln in
                 Path(f"/proc/{p.pid}/status").read_text().splitlines() if ln.startswith("Sig"))}
        p.send_signal(sig)
        try:
            out, err = p.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail(f"no exit 30 s after {sig.name}; the shim's signal masks then: {masks}")
    finally:
        p.kill()
    assert p.returncode == 7, err
    assert out.endswith(f"got-{sig.name[3:]}\n".encode()), out
    assert wait_for(lambda: not leftovers(p.pid, tok, kit.home, kit=kit), 10), \
        leftovers(p.pid, tok, kit.home, kit=kit)


def test_untrapped_term_kills_the_tool_with_143(kit: Kit, mode: str, work: Path,
                                                request: pytest.FixtureRequest) -> None:
    tok = token()
    p = start(kit, mode, work, "sh", "-c", f"{ready(kit, mode)}exec sleep 60 # {tok}")
    try:
        read_until(p, b"ready")
        settle(kit, mode, p)
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=30)
    finally:
        p.kill()
    assert p.returncode == 143, err
    assert wait_for(lambda: not leftovers(p.pid, tok, kit.home, kit=kit), 10), \
        leftovers(p.pid, tok, kit.home, kit=kit)


def test_ctrl_c_on_a_terminal_reaches_the_tool(kit: Kit, mode: str, work: Path) -> None:
    """With a TTY, ^C typed at the terminal becomes SIGINT for the tool (not for docker).

    The pty is root's and its session has no controlling terminal: the shim's bash takes it
    as root, not as the rootless Podman user (EACCES), and then only the agent's client can
    (shims/agent.c: claim_terminal)."""
    code, buf, _ = run_on_pty(kit.argv([kit.shim("rtprobe-1"), "bash", "-c", TRAP.format(tok=token(), ready="echo ready; ")]),
                              env=kit.env(mode), cwd=work, replies={b"ready": b"\x03"}, timeout=60)
    assert b"got-INT" in buf, buf
    assert code == 7


def test_sigkilled_shim_leaves_no_container_within_30s(kit: Kit, mode: str, work: Path) -> None:
    tok = token()
    # sleep is not the container's main process (tini and sh are), and ignores no signal
    p = start(kit, mode, work, "sh", "-c", f"echo ready; sleep 300; : {tok}")
    try:
        read_until(p, b"ready")
        assert seen_running(kit, tok, p.pid)
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=10)
    finally:
        p.kill()
    t0 = time.monotonic()
    assert wait_for(lambda: not leftovers(p.pid, tok, kit.home, kit=kit), 30, interval=0.5), \
        f"still there 30 s after the shim was killed: {leftovers(p.pid, tok, kit.home, kit=kit)}"
    print(f"orphan removed after {time.monotonic() - t0:.1f} s")


def test_reaper_leaves_when_idle_and_the_next_shim_starts_another(kit: Kit, work: Path) -> None:
    """The reaper is started on demand, exits by itself, and is back for the next shim."""
    root = kit.scratch("reaper")
    home = root / "home"
    mine = dataclasses.replace(kit, root=root, home=home)
    assert mine.sandman("-q", "install", "--yes", "rtprobe@1").returncode == 0  # its rw `out` mount
    pidfile = mine.reaper_pidfile()
    env = mine.env(SANDMAN_REAPER_IDLE_SECONDS="1")  # the reaper inherits the shim's environment
    try:
        assert mine.run([mine.shim("rtprobe-1"), "true"], env=env, cwd=work).returncode == 0
        assert wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 20)
        first = int(pidfile.read_text())
        assert wait_for(lambda: not Path(f"/proc/{first}").exists(), 60), "the idle reaper stayed"
        assert pidfile.read_text().strip() == ""
        tok = token()
        p = mine.popen([mine.shim("rtprobe-1"), "sh", "-c", f"echo ready; sleep 300; : {tok}"],
                       env=env, cwd=work, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
        try:
            read_until(p, b"ready")
            # read while the call runs: once it has reaped the orphan, the second reaper idles
            # out too (1 s) and empties its pidfile
            assert wait_for(lambda: pidfile.read_text().strip() not in ("", str(first)), 20), \
                "no reaper came back for the next shim"
            second = int(pidfile.read_text())
            assert Path(f"/proc/{second}").exists()
            p.send_signal(signal.SIGKILL)
            p.wait(timeout=10)
        finally:
            p.kill()
        assert wait_for(lambda: not leftovers(p.pid, tok, home, kit=mine), 30), \
            leftovers(p.pid, tok, home, kit=mine)
    finally:
        stop_reapers(home)
        shutil.rmtree(root, ignore_errors=True)


def test_reaper_judges_only_what_it_can_see() -> None:
    """Unit level: other hosts and (for a non-root reaper) other users' containers are left."""
    from sandman.engine import ContainerInfo
    from sandman.reaper import orphans

    def c(name: str, **labels: str) -> ContainerInfo:
        base = {LABEL_ROLE: "run", LABEL_HOST: "h", LABEL_PID: "999999999",
                LABEL_UID: "1000"}
        return ContainerInfo(name, name, {**base, **labels}, "running")

    mine_gone = c("a")
    other_host = c("b", **{LABEL_HOST: "elsewhere"})
    other_user = c("c", **{LABEL_UID: "1001"})
    warm = c("d", **{LABEL_ROLE: "warm"})
    alive = c("e", **{LABEL_PID: str(os.getpid())})  # this pid runs no docker client "e"
    found = orphans([mine_gone, other_host, other_user, warm, alive], "h", 1000)
    assert [x.name for x in found] == ["a", "e"]
    assert [x.name for x in orphans([other_user], "h", 0)] == ["c"]  # root judges everyone
