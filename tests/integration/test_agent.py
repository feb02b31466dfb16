"""The warm agent (shims/agent.c, sandman/agent.py): warm calls without a `docker exec`.

The whole runtime fidelity suite also runs through the agent (the `agent` mode of the `mode`
fixture); this file holds what is the agent's own: who may talk to it, that a client killed
hard leaves nothing running, Ctrl-C in a real terminal (tmux), bytes and every exit code, and
a long loop of real sqlite3 calls.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import paths_of, warm_dir
from runtime_helpers import (
    AGENT_PATH,
    ROOT,
    TEST_UID,
    Kit,
    as_test_user,
    docker,
    ensure_agent,
    run,
    stop_reaper,
    token,
    tool_processes,
    wait_for,
    warm_mains,
)

pytestmark = pytest.mark.docker
LOOP_CALLS = int(os.environ.get("SANDMAN_TEST_AGENT_LOOP", "2000"))  # the benchmark runs 10,000


@pytest.fixture
def agent_env(kit: Kit) -> dict[str, str]:
    ensure_agent(kit.home)
    return kit.env("agent")


def warm_folder(home: Path, work: Path) -> Path:
    """The warm folder of the container that calls from `work` use (its key names `work`)."""
    [d] = [d for d in warm_dir(home).glob("sandman-warm-*")
           if (d / "key").is_file() and str(work) in (d / "key").read_text()]
    return d


def container_pids(home: Path, work: Path | None = None) -> list[str]:
    """`docker top` lines of this home's warm containers (or only the one used from `work`),
    without their init and agent."""
    if work is None:
        cids = docker("ps", "-q", "--filter", f"label=io.sandman.home={warm_dir(home)}").split()
    else:
        d = warm_folder(home, work)
        cids = [f"{d.name}-{(d / 'id').read_text().strip()}"]
    out = []
    for cid in cids:
        top = docker("top", cid, "-eo", "pid,args")
        out += [ln for ln in top.splitlines()[1:]
                if "docker-init" not in ln and f"{AGENT_PATH} serve" not in ln]
    return out


def test_calls_are_served_by_the_agent_and_exec_mode_still_works(kit: Kit, agent_env: dict,
                                                                  work: Path) -> None:
    parent = '{ tr "\\0" " " </proc/$PPID/cmdline; } 2>/dev/null; echo " ppid=$PPID"'
    p = run([kit.shim("rtprobe-1"), "sh", "-c", parent], env=agent_env, cwd=work)
    assert p.returncode == 0 and p.stderr == b"", p.stderr
    assert p.stdout.startswith(f"{AGENT_PATH} serve".encode()), p.stdout
    assert warm_mains(kit.home) and set(warm_mains(kit.home)) == {AGENT_PATH}
    # the same container, through `docker exec` (SANDMAN_AGENT=0): not the agent's child
    p = run([kit.shim("rtprobe-1"), "sh", "-c", parent], env=kit.env("warm"), cwd=work)
    assert p.returncode == 0 and p.stderr == b"", p.stderr
    assert p.stdout == b" ppid=0\n", p.stdout  # a `docker exec` process has no parent inside
    # an agent that is gone (its socket left behind) costs nothing but time: same result
    sock = warm_folder(kit.home, work) / "sock" / "agent.sock"
    moved = sock.with_name("moved.sock")
    sock.rename(moved)
    sock.symlink_to("/nonexistent/agent.sock")  # -S is false: the shim takes `docker exec`
    try:
        p = run([kit.shim("rtprobe-1"), "sh", "-c", "echo fine"], env=agent_env, cwd=work)
    finally:
        sock.unlink()
        moved.rename(sock)
    assert (p.returncode, p.stdout, p.stderr) == (0, b"fine\n", b"")


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")
def test_an_agent_call_forks_nothing_the_shim_execs_the_client(kit: Kit, agent_env: dict,
                                                                work: Path) -> None:
    assert run([kit.shim("rtprobe-1"), "true"], env=agent_env, cwd=work).returncode == 0
    log = work / "strace.log"
    p = subprocess.run(["strace", "-f", "-o", str(log), "-e", "trace=execve,fork,vfork,clone,clone3",
                        kit.shim("rtprobe-1"), "true"], env=agent_env, cwd=work,
                       capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr
    calls = [ln for ln in log.read_text().splitlines() if "resumed" not in ln]
    execs = [ln for ln in calls if "execve(" in ln]
    assert len(execs) == 2 and "/sandman-agent-" in execs[1] and '"call"' in execs[1], calls
    assert not [ln for ln in calls if re.search(r"\b(fork|vfork|clone3?)\(", ln)], calls


@pytest.fixture
def lone_agent(kit: Kit) -> Iterator[Path]:
    """An agent run by root in a container, its socket left open to everyone (a mistake)."""
    binary = ensure_agent(kit.home)
    d = Path(tempfile.mkdtemp(prefix="agent-peer-", dir=kit.root))
    d.chmod(0o777)
    name = f"sandman-test-agent-{token()}"
    docker("run", "-d", "--rm", "--name", name, "--label", "io.sandman.role=test-agent",
           "--user", "0:0", "--network", "none",
           "--mount", f"type=bind,source={binary},target=/agent,readonly",
           "--mount", f"type=bind,source={d},target=/s", "--entrypoint", "/agent",
           "debian:bookworm-slim", "serve", "/s/a.sock", "", name)
    try:
        assert wait_for(lambda: (d / "a.sock").is_socket(), 20)
        os.chmod(d / "a.sock", 0o777)
        yield d
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
        shutil.rmtree(d, ignore_errors=True)


def test_a_peer_with_another_uid_is_refused(kit: Kit, lone_agent: Path) -> None:
    binary = str(ensure_agent(kit.home))
    sock = str(lone_agent / "a.sock")
    marker = "/s/ran-" + token()
    # the fallback "shim" is echo: what runs when the agent will not take the call
    argv = [binary, "call", sock, "-1", "/bin/echo", "0", "--", "sh", "-c", f"touch {marker}; echo RAN"]
    env = {"PATH": "/usr/bin:/bin"}
    other = subprocess.run(as_test_user(argv), env=env, cwd="/", capture_output=True, timeout=30)
    assert other.stdout == f"sh -c touch {marker}; echo RAN\n".encode(), other.stdout
    assert not (lone_agent / marker.rsplit("/", 1)[1]).exists(), "another uid ran a command"
    owner = subprocess.run(argv, env=env, cwd="/", capture_output=True, timeout=30)
    assert owner.stdout == b"RAN\n", owner  # the control: the agent's own uid is served
    assert (lone_agent / marker.rsplit("/", 1)[1]).exists()
    assert os.geteuid() != TEST_UID


def test_sigkill_of_the_client_leaves_no_process_in_the_container(kit: Kit, agent_env: dict,
                                                                  work: Path) -> None:
    tok = token()
    p = subprocess.Popen([kit.shim("rtprobe-1"), "sh", "-c", f"sleep 300 & sleep 301; : {tok}"],
                         env=agent_env, cwd=work, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert wait_for(lambda: bool(tool_processes(tok, home=kit.home)), 30)
        assert wait_for(lambda: len(container_pids(kit.home, work)) >= 3, 30), container_pids(kit.home, work)
        assert tool_processes(tok, home=kit.home)
        p.kill()
        p.wait(timeout=10)
    finally:
        p.kill()
    assert wait_for(lambda: not container_pids(kit.home, work), 10), container_pids(kit.home, work)
    assert set(warm_mains(kit.home)) == {AGENT_PATH}  # the agent itself lives on
    q = run([kit.shim("rtprobe-1"), "echo", "next"], env=agent_env, cwd=work)
    assert (q.returncode, q.stdout, q.stderr) == (0, b"next\n", b"")


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, timeout=30).stdout


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_ctrl_c_in_a_real_terminal_stops_the_tool_not_the_agent(kit: Kit, agent_env: dict,
                                                                 work: Path) -> None:
    tok = token()
    session = f"sandman-agent-{tok}"
    script = work / "t.sh"
    exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in agent_env.items()
                      if k.startswith("SANDMAN_") or k == "PATH")
    script.write_text(
        "#!/bin/bash\nunset SANDMAN_AGENT\n" + exports + f"cd {shlex.quote(str(work))}\n"
        f"{kit.shim('rtprobe-1')} bash -c 'trap \"echo got-INT; exit 9\" INT; "
        f"[ -t 0 ] && [ -t 1 ] && echo tty-ok; echo ready; while :; do sleep 0.1; done # {tok}'\n"
        "echo status=$?\n"
        f"{kit.shim('rtprobe-1')} sh -c 'sleep 30 # {tok}-2'\n"
        "echo status2=$?\n"
        "sleep 60\n")
    script.chmod(0o755)
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "100", "-y", "30",
                    str(script)], check=True, timeout=30)
    try:
        screen = lambda: tmux("capture-pane", "-p", "-t", session)  # noqa: E731
        assert wait_for(lambda: "ready" in screen(), 60), screen()
        assert "tty-ok" in screen()  # the tool has the terminal itself
        tmux("send-keys", "-t", session, "C-c")
        assert wait_for(lambda: "status=" in screen(), 20), screen()
        assert "got-INT" in screen() and "status=9" in screen(), screen()
        # a second call in the same terminal, interrupted while it does not trap INT: 130
        assert wait_for(lambda: bool(tool_processes(f"{tok}-2", home=kit.home)), 30)
        tmux("send-keys", "-t", session, "C-c")
        assert wait_for(lambda: "status2=" in screen(), 20), screen()
        assert "status2=130" in screen(), screen()
        assert wait_for(lambda: not tool_processes(tok, home=kit.home), 10)
        assert set(warm_mains(kit.home)) == {AGENT_PATH}  # the agent was not interrupted
    finally:
        tmux("kill-session", "-t", session)


def test_binary_data_is_byte_exact_both_ways(kit: Kit, agent_env: dict, work: Path) -> None:
    data = bytes(range(256)) * 2048 + os.urandom(100_000) + b"\0\r\n\x1b[0m"
    p = run([kit.shim("rtprobe-1"), "sh", "-c", "cat; cat /dev/null >&2"], env=agent_env,
            cwd=work, input=data)
    assert p.returncode == 0 and p.stdout == data and p.stderr == b""
    p = run([kit.shim("rtprobe-1"), "sh", "-c", "cat >&2"], env=agent_env, cwd=work, input=data)
    assert p.returncode == 0 and p.stderr == data and p.stdout == b""


def test_every_exit_code_and_death_by_signal(kit: Kit, agent_env: dict, work: Path) -> None:
    loop = (f"for n in $(seq 0 255); do {kit.shim('rtprobe-1')} sh -c \"exit $n\"; echo $?; done; "
            f"for s in HUP INT QUIT ABRT KILL USR1 SEGV PIPE TERM; do "
            f"{kit.shim('rtprobe-1')} sh -c \"kill -$s \\$\\$\"; echo $?; done")
    p = subprocess.run(["bash", "-c", loop], env=agent_env, cwd=work, capture_output=True,
                       timeout=600)
    codes = [int(x) for x in p.stdout.split()]
    sigs = [signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGABRT, signal.SIGKILL,
            signal.SIGUSR1, signal.SIGSEGV, signal.SIGPIPE, signal.SIGTERM]
    assert codes == [*range(256), *(128 + s.value for s in sigs)]
    assert p.stderr == b"", p.stderr


@pytest.fixture(scope="module")
def sqlite_home() -> Iterator[tuple[Path, dict[str, str]]]:
    tmp = Path(tempfile.mkdtemp(prefix="sandman-agent-sql-"))
    home = tmp / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANDMAN_")}
    env.update(SANDMAN_HOME=str(home), SANDMAN_WARM="1",
               PATH=f"{paths_of(home).bin_dir}{os.pathsep}{env.get('PATH', '')}")
    try:
        p = subprocess.run([sys.executable, "-m", "sandman", "-q", "install", "sqlite3@3.46"],
                           env=env, cwd=ROOT, capture_output=True, timeout=1800)
        assert p.returncode == 0, p.stderr.decode()
        ensure_agent(home)
        yield tmp, env
    finally:
        ids = docker("ps", "-aq", "--filter", f"label=io.sandman.home={warm_dir(home)}").split()
        if ids:
            subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)
        stop_reaper(home)
        shutil.rmtree(tmp, ignore_errors=True)


def test_a_long_loop_of_sqlite3_calls(sqlite_home: tuple[Path, dict[str, str]]) -> None:
    """The user's loop, `for f in dumps/*.db; do sqlite3-3.46 "$f" ...; done`, many times."""
    tmp, env = sqlite_home
    dumps = tmp / "work" / "dumps"
    dumps.mkdir(parents=True)
    for i in range(50):
        with sqlite3.connect(dumps / f"c{i:02}.db") as db:
            db.execute("create table t (k text, v integer)")
            db.executemany("insert into t values (?, ?)", [(f"k{j}", j) for j in range(i + 1)])
        db.close()
    rounds = max(1, LOOP_CALLS // 50)
    loop = (f"for r in $(seq {rounds}); do for f in dumps/*.db; do "
            "sqlite3-3.46 \"$f\" 'select count(*), sum(v) from t;' || echo FAIL $?; done; done")
    sqlite3_calls = rounds * 50
    run(["sqlite3-3.46", "dumps/c00.db", "select 1;"], env=env, cwd=dumps.parent)  # warm up
    fallbacks = tmp / "fallbacks.log"  # the client notes there any call it hands back
    t = time.perf_counter()
    p = subprocess.run(["bash", "-c", loop], env={**env, "SANDMAN_AGENT_LOG": str(fallbacks)},
                       cwd=dumps.parent, capture_output=True, timeout=3600)
    elapsed = time.perf_counter() - t
    print(f"{sqlite3_calls} sqlite3 calls through the agent: {elapsed:.1f} s, "
          f"{elapsed / sqlite3_calls * 1000:.2f} ms per call")
    lines = p.stdout.decode().splitlines()
    expected = [f"{i + 1}|{i * (i + 1) // 2}" for i in range(50)] * rounds
    assert p.returncode == 0
    assert lines == expected, ([ln for ln in lines if ln not in expected][:5], p.stderr[:300],
                               fallbacks.exists() and fallbacks.read_text()[:300])
    assert p.stderr == b"", p.stderr[:500]
    assert not fallbacks.exists(), fallbacks.read_text()[:500]
    home = tmp / "home"
    assert set(warm_mains(home)) == {AGENT_PATH}
    assert wait_for(lambda: not container_pids(home), 10), container_pids(home)
