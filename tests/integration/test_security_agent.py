"""The warm agent and the reaper against the tool they serve (issue 19, items 3 and 6).

The tool inside a warm container is not trusted (docs/security.md, "Threat review"). Each test
replays an attack as it was reported:

- a leftover of a call (a `setsid` child the tool left running) reads the user's terminal after
  the call returned: the next command line, a password typed at a `read -s` prompt;
- a call leaves processes behind (other sessions, other groups, double forks, a file of the
  cwd held open): promise 14 of the guarantees, cold and through the agent;
- the tool plants links in the warm folder's `calls/` (mounted read-write in the container):
  one to /dev/zero that made `sandman warm list` and the reaper eat memory, one named like the
  next call's file that made the shim write `done` over a file of the user's.
"""

from __future__ import annotations

import os
import re
import resource
import shlex
import subprocess
import time
from pathlib import Path

import pytest
from helpers import require_program, warm_dir
from ptyrun import run_on_pty

pytest.register_assert_rewrite("runtime_helpers")
from runtime_helpers import (  # noqa: E402
    Kit,
    reaper_paused,
    token,
    tool_processes,
    wait_for,
)

pytestmark = pytest.mark.docker

PASSWORD = "hunter2-Secret"


def held_by_anyone(path: Path) -> list[str]:
    """Host processes with a descriptor open on path. (Not on anything in its folder: in warm
    and agent modes that folder is the kit's, where other tests' kept containers hold theirs.)"""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            continue
        out += [f"{pid}: {ln}" for ln in links if ln == str(path)]
    return out


@pytest.mark.parametrize("stdout_tty", [True, False], ids=["tty", "stdout-piped"])
def test_a_leftover_cannot_read_the_users_terminal(kit: Kit, mode: str, work: Path,
                                                   stdout_tty: bool) -> None:
    """The replay of item 3: the tool keeps its stdin in a child of its own session and
    returns; a second later that child reads whatever the user types at the host's shell."""
    tok = token()
    captured = work / "captured.txt"
    # (the short sleep lets the child reach its setsid before the tool returns: without it,
    # the end of the tool's process group could kill it first, and the replay would be luck)
    attack = ('exec 3<&0; setsid sh -c "sleep 1; dd bs=1 count=400 of=captured.txt; : '
              f'{tok}" <&3 >/dev/null 2>&1 & sleep 0.3; echo tool-done')
    script = work.parent / f"capture-{tok}.sh"
    script.write_text(
        f"cd {shlex.quote(str(work))}\n"
        f"{shlex.quote(kit.shim('rtprobe-1'))} sh -c {shlex.quote(attack)}\n"
        "echo rc=$? >&2\n"
        "sleep 1.5; echo type-now >&2\n"  # the leftover, if any, reads the terminal by now
        "sleep 1.5\n"  # ... while the user types the next line at the host's shell
        "read -r -t 5 -s line; echo \"host-got=[$line]\" >&2\n")
    script.chmod(0o755)
    fallbacks = work.parent / f"fallbacks-{tok}.log"  # the agent's client notes any hand-back
    try:
        code, seen, _ = run_on_pty(kit.argv(["bash", str(script)]), cwd=work,
                                   env=kit.env(mode, SANDMAN_AGENT_LOG=str(fallbacks)),
                                   stdout_tty=stdout_tty, timeout=120,
                                   replies={b"type-now": PASSWORD.encode() + b"\n"})
    finally:
        script.unlink()
    assert code == 0 and b"rc=0" in seen, seen
    assert not fallbacks.exists(), fallbacks.read_text()  # the agent took the call
    size = captured.stat().st_size if captured.exists() else 0
    assert size == 0, f"a leftover captured {captured.read_bytes()!r}"
    assert f"host-got=[{PASSWORD}]".encode() in seen, seen  # the user's shell got it all
    assert not tool_processes(tok, home=kit.home, kit=kit)


LEFTOVERS = (
    "setsid sleep 300 & "                                   # its own session
    "(trap '' HUP TERM INT; exec sleep 301) & "             # deaf to the polite signals
    "sh -c 'sleep 302 & exit 0' & "                         # double fork: an orphan
    "set -m; sleep 303 & set +m; "                          # its own process group
    "sleep 304 >>held.txt 2>&1 </dev/null & "               # a file of the cwd held open
    "sleep 0.3; echo started")


def test_a_finished_call_leaves_no_process_behind(kit: Kit, mode: str, work: Path) -> None:
    """Promise 14: when a call returns, every process it started is gone, whatever sessions or
    groups they made, cold or warm; none holds the user's terminal or files."""
    tok = token()
    # each `sleep 30N` of this call sleeps 30N.<digits of this test>: the kit's kept containers
    # serve other tests too, and a `docker exec` call's leftovers (open, see docs/security.md)
    # live until their container stops; only this call's are looked for
    mark = str(int(tok, 16) % 10**8).rjust(8, "0")
    script = re.sub(r"sleep (30\d)\b", lambda m: f"sleep {m.group(1)}.{mark}", LEFTOVERS)
    assert script.count(f".{mark}") == 5
    out = work / f"out-{tok}"  # a file, not a pipe: a pipe held by a leftover would keep
    with out.open("wb") as f:  # a reader waiting, not show what is left
        p = kit.popen([kit.shim("rtprobe-1"), "bash", "-c", f"{script} # {tok}"],
                      env=kit.env(mode), cwd=work, stdin=subprocess.DEVNULL, stdout=f,
                      stderr=subprocess.STDOUT)
        code = p.wait(timeout=120)
    returned = time.monotonic()
    assert (code, out.read_bytes()) == (0, b"started\n")
    time.sleep(max(0.0, 1.0 - (time.monotonic() - returned)))  # 1 s after the call returned
    # the leftovers carry `sleep 30N.<mark>` on their command lines, the shell tok
    left = (tool_processes(f".{mark}", pid=p.pid, home=kit.home, kit=kit)
            + tool_processes(tok, pid=p.pid, home=kit.home, kit=kit))
    assert left == [], left
    assert held_by_anyone(out) == []  # the call's file: the leftovers had it as stdout
    out.unlink()


def _as_limited(limit: int):
    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return cap


def test_links_planted_in_calls_are_never_followed(kit: Kit, mode: str, work: Path) -> None:
    """The replay of item 6, from inside the tool: a link to /dev/zero in `calls/`, then
    `sandman warm list`; and a link named like the next call's file, pointing at a file of
    the user's, then that call."""
    shim = kit.shim("rtprobe-1")
    env = kit.env(mode)
    victim = work.parent / f"victim-{token()}"
    victim.write_text("precious\n")
    assert kit.run([shim, "true"], env=env, cwd=work).returncode == 0  # the container, a reaper
    # The reaper's passes drop such links too (the same reader): held still, it leaves them to
    # the code under test, whatever the load
    with reaper_paused(kit):
        # (paths inside the script's text: an absolute path argument would be mounted, and so
        # make another warm container)
        p = kit.run([shim, "sh", "-c", "ln -s /dev/zero /run/sandman-warm/calls/999-1"],
                    env=env, cwd=work)
        assert p.returncode == 0, p.stderr
        [calls] = [d / "calls" for d in warm_dir(kit.home).glob("sandman-warm-*")
                   if (d / "calls" / "999-1").is_symlink()]
        t = time.monotonic()
        listing = subprocess.run([*kit.argv(["sandman", "warm", "list"])], env=env, cwd=work,
                                 capture_output=True, timeout=60,
                                 preexec_fn=_as_limited(1 << 30))
        assert listing.returncode == 0, listing.stderr[-800:]
        assert time.monotonic() - t < 30
        assert not os.path.lexists(calls / "999-1")
        # The next call's file is `calls/<shim pid>-<its start time>...`: the shim below is
        # this bash, exec'd, so the tool run first knows both and plants the link under that
        # name.
        plant = ('read -r s </proc/$$/stat; s=${s##*) }; read -r -a f <<<"$s"; '
                 'tok=$$-${f[19]}; '
                 f'{shlex.quote(shim)} sh -c "ln -s {victim} /run/sandman-warm/calls/$tok" '
                 f'|| exit 9; exec {shlex.quote(shim)} sh -c "echo second"')
        p = kit.run(["bash", "-c", plant], env=env, cwd=work)
        assert (p.returncode, p.stdout, p.stderr) == (0, b"second\n", b"")
        assert victim.read_text() == "precious\n"
    assert wait_for(lambda: not [c for c in calls.iterdir() if c.is_symlink()], 10)
    victim.unlink()
    if mode != "agent":
        return
    # `sock/` is the tool's to write too: the client connects to a socket, never through a
    # link (here one to the agent's own socket, moved aside: it would work if followed)
    sock = calls.parent / "sock" / "agent.sock"
    moved = sock.with_name("moved.sock")
    fallbacks = work.parent / f"fallbacks-{token()}.log"
    sock.rename(moved)
    sock.symlink_to(moved)
    try:
        p = kit.run([shim, "sh", "-c", "echo third"], cwd=work,
                    env=kit.env(mode, SANDMAN_AGENT_LOG=str(fallbacks)))
    finally:
        sock.unlink()
        moved.rename(sock)
    assert (p.returncode, p.stdout, p.stderr) == (0, b"third\n", b"")
    assert "fallback: not a socket" in fallbacks.read_text()  # it went through `docker exec`
    fallbacks.unlink()


def tmux(server: str, *args: str) -> str:
    """tmux on a server of the test's own (-L): on the default one, another worker's test
    ending its last session stopped the server as this one started ("server exited
    unexpectedly", exit 1)."""
    return subprocess.run(["tmux", "-L", server, *args], capture_output=True, text=True,
                          timeout=30).stdout


def test_the_pty_follows_the_terminals_size(kit: Kit, mode: str, work: Path) -> None:
    """Through the agent the tool's terminal is a pty of the agent's, relayed: its size is the
    caller's at the start and follows it (SIGWINCH), as with `docker run -t`."""
    require_program("tmux")
    session = f"sandman-winch-{token()}"
    tool = ('trap "echo winch; stty size" WINCH; stty size; echo ready; '
            'for i in $(seq 150); do sleep 0.1; done')
    exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in kit.env(mode).items()
                      if k.startswith("SANDMAN_") or k == "PATH")
    script = work.parent / f"{session}.sh"
    script.write_text(f"#!/bin/bash\n{exports}cd {shlex.quote(str(work))}\n"
                      f"{shlex.quote(kit.shim('rtprobe-1'))} bash -c {shlex.quote(tool)}\n"
                      "sleep 60\n")
    script.chmod(0o755)
    subprocess.run(["tmux", "-L", session, "new-session", "-d", "-s", session, "-x", "100",
                    "-y", "30", str(script)], check=True, timeout=30)
    try:
        screen = lambda: tmux(session, "capture-pane", "-p", "-t", session)  # noqa: E731
        assert wait_for(lambda: "ready" in screen(), 60), screen()
        rows, cols = tmux(session, "display", "-p", "-t", session,
                          "#{pane_height} #{pane_width}").split()
        assert f"{rows} {cols}" in screen(), screen()
        tmux(session, "resize-window", "-t", session, "-x", "120", "-y", "40")
        rows, cols = tmux(session, "display", "-p", "-t", session,
                          "#{pane_height} #{pane_width}").split()
        assert cols == "120", (rows, cols)
        assert wait_for(lambda: f"winch\n{rows} {cols}" in screen(), 20), screen()
    finally:
        tmux(session, "kill-server")
        script.unlink()
