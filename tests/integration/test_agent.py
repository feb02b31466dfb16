"""The warm agent (shims/agent.c, sandman/agent.py): warm calls without a `docker exec`.

The whole runtime fidelity suite also runs through the agent (the `agent` mode of the `mode`
fixture); this file holds what is the agent's own: who may talk to it, that a client killed
hard leaves nothing running, Ctrl-C in a real terminal (tmux), bytes and exit codes, and a loop
of real sqlite3 calls that leaves the agent as it found it.

The tests call from one folder of the module's (one warm container for them all), except those
that break their container or count its processes: they call from a folder of their own. The
warm containers made for these folders are removed when the module ends.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import SeedPool, paths_of, require_program, run_sandman, stop_reapers, warm_dir

pytest.register_assert_rewrite("runtime_helpers", "warm_helpers")
from runtime_helpers import (  # noqa: E402
    AGENT_PATH,
    ROOT,
    TEST_UID,
    Kit,
    as_test_user,
    docker,
    ensure_agent,
    run,
    token,
    tool_processes,
    wait_for,
    warm_mains,
)
from warm_helpers import empty, remove_serving  # noqa: E402

from sandman import errors, names  # noqa: E402

pytestmark = pytest.mark.docker


@pytest.fixture
def agent_env(kit: Kit) -> dict[str, str]:
    ensure_agent(kit.home)
    return kit.env("agent")


@pytest.fixture(scope="module")
def called_from(kit: Kit) -> Iterator[list[Path]]:
    """The folders this module's tests call from. When the module ends, the warm containers
    made for them go (the kit's home, and its other containers, are the session's)."""
    folders: list[Path] = []
    yield folders
    remove_serving(kit.home, folders)


@pytest.fixture(scope="module")
def module_work(kit: Kit, called_from: list[Path]) -> Iterator[Path]:
    d = kit.scratch("agent-work")
    called_from.append(d)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def shared_work(module_work: Path) -> Path:
    """The module's folder to call from, emptied of what the last test left there."""
    empty(module_work)
    return module_work


@pytest.fixture
def own_work(work: Path, called_from: list[Path]) -> Path:
    """A folder of this test's own: a warm container of its own."""
    called_from.append(work)
    return work


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
                                                                  own_work: Path) -> None:
    parent = '{ tr "\\0" " " </proc/$PPID/cmdline; } 2>/dev/null; echo " ppid=$PPID"'
    p = run([kit.shim("rtprobe-1"), "sh", "-c", parent], env=agent_env, cwd=own_work)
    assert p.returncode == 0 and p.stderr == b"", p.stderr
    assert p.stdout.startswith(f"{AGENT_PATH} serve".encode()), p.stdout
    assert warm_mains(kit.home) and set(warm_mains(kit.home)) == {AGENT_PATH}
    # the same container, through `docker exec` (SANDMAN_AGENT=0): not the agent's child but
    # its `reap`'s, the call's own subreaper, itself what `docker exec` started (no parent inside)
    p = run([kit.shim("rtprobe-1"), "sh", "-c", parent], env=kit.env("warm"), cwd=own_work)
    assert p.returncode == 0 and p.stderr == b"", p.stderr
    assert p.stdout.startswith(f"{AGENT_PATH} reap -- sh -c ".encode()), p.stdout
    assert p.stdout.endswith(b" ppid=" + p.stdout.rsplit(b"ppid=", 1)[1]) and b" serve " not in p.stdout
    # an agent that is gone (its socket left behind) costs nothing but time: same result
    sock = warm_folder(kit.home, own_work) / "sock" / "agent.sock"
    moved = sock.with_name("moved.sock")
    sock.rename(moved)
    sock.symlink_to("/nonexistent/agent.sock")  # -S is false: the shim takes `docker exec`
    try:
        p = run([kit.shim("rtprobe-1"), "sh", "-c", "echo fine"], env=agent_env, cwd=own_work)
    finally:
        sock.unlink()
        moved.rename(sock)
    assert (p.returncode, p.stdout, p.stderr) == (0, b"fine\n", b"")


def test_an_agent_call_forks_nothing_the_shim_execs_the_client(kit: Kit, agent_env: dict,
                                                                shared_work: Path) -> None:
    require_program("strace")
    assert run([kit.shim("rtprobe-1"), "true"], env=agent_env, cwd=shared_work).returncode == 0
    log = shared_work / "strace.log"
    p = subprocess.run(["strace", "-f", "-o", str(log), "-e", "trace=execve,fork,vfork,clone,clone3",
                        kit.shim("rtprobe-1"), "true"], env=agent_env, cwd=shared_work,
                       capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr
    calls = [ln for ln in log.read_text().splitlines() if "resumed" not in ln]
    execs = [ln for ln in calls if "execve(" in ln]
    # the shim (sh), the shim in bash (no route for a tool with data mounts), the client
    assert len(execs) == 3 and "/sandman-agent-" in execs[2] and '"call"' in execs[2], calls
    assert execs[1].split(", [")[0].endswith('execve("/bin/bash"'), calls
    assert not [ln for ln in calls if re.search(r"\b(fork|vfork|clone3?)\(", ln)], calls


@pytest.fixture
def lone_agent(kit: Kit) -> Iterator[Path]:
    """An agent run by root in a container, its socket left open to everyone (a mistake)."""
    binary = ensure_agent(kit.home)
    d = Path(tempfile.mkdtemp(prefix="agent-peer-", dir=kit.root))
    d.chmod(0o777)
    name = f"sandman-test-agent-{token()}"
    docker("run", "-d", "--rm", "--name", name, "--label", f"{names.LABEL_ROLE}=test-agent",
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
                                                                  own_work: Path) -> None:
    tok = token()
    p = subprocess.Popen([kit.shim("rtprobe-1"), "sh", "-c", f"sleep 300 & sleep 301; : {tok}"],
                         env=agent_env, cwd=own_work, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert wait_for(lambda: bool(tool_processes(tok, home=kit.home)), 30)
        assert wait_for(lambda: len(container_pids(kit.home, own_work)) >= 3, 30), container_pids(kit.home, own_work)
        assert tool_processes(tok, home=kit.home)
        p.kill()
        p.wait(timeout=10)
    finally:
        p.kill()
    assert wait_for(lambda: not container_pids(kit.home, own_work), 10), container_pids(kit.home, own_work)
    assert set(warm_mains(kit.home)) == {AGENT_PATH}  # the agent itself lives on
    q = run([kit.shim("rtprobe-1"), "echo", "next"], env=agent_env, cwd=own_work)
    assert (q.returncode, q.stdout, q.stderr) == (0, b"next\n", b"")


def tmux(server: str, *args: str, check: bool = False) -> str:
    """tmux on a server of the test's own (-L): the default one is shared with every other
    tmux user of the machine, other test sessions included, and a server that one of them
    ends or replaces takes the test's pane with it."""
    return subprocess.run(["tmux", "-L", server, *args], capture_output=True, text=True,
                          timeout=30, check=check).stdout


def test_ctrl_c_in_a_real_terminal_stops_the_tool_not_the_agent(kit: Kit, agent_env: dict,
                                                                 shared_work: Path) -> None:
    require_program("tmux")
    tok = token()
    session = f"sandman-agent-{tok}"
    script = shared_work / "t.sh"
    exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in agent_env.items()
                      if k.startswith("SANDMAN_") or k == "PATH")
    script.write_text(
        "#!/bin/bash\nunset SANDMAN_AGENT\n" + exports + f"cd {shlex.quote(str(shared_work))}\n"
        f"{kit.shim('rtprobe-1')} bash -c 'trap \"echo got-INT; exit 9\" INT; "
        f"[ -t 0 ] && [ -t 1 ] && echo tty-ok; echo ready; while :; do sleep 0.1; done # {tok}'\n"
        "echo status=$?\n"
        f"{kit.shim('rtprobe-1')} sh -c 'sleep 30 # {tok}-2'\n"
        "echo status2=$?\n"
        "sleep 60\n")
    script.chmod(0o755)
    tmux(session, "new-session", "-d", "-s", session, "-x", "100", "-y", "30", str(script),
         check=True)
    try:
        screen = lambda: tmux(session, "capture-pane", "-p", "-t", session)  # noqa: E731
        assert wait_for(lambda: "ready" in screen(), 60), screen()
        assert "tty-ok" in screen()  # the tool has the terminal itself
        tmux(session, "send-keys", "-t", session, "C-c")
        assert wait_for(lambda: "status=" in screen(), 20), screen()
        assert "got-INT" in screen() and "status=9" in screen(), screen()
        # a second call in the same terminal, interrupted while it does not trap INT: 130
        assert wait_for(lambda: bool(tool_processes(f"{tok}-2", home=kit.home)), 30)
        tmux(session, "send-keys", "-t", session, "C-c")
        assert wait_for(lambda: "status2=" in screen(), 20), screen()
        assert "status2=130" in screen(), screen()
        assert wait_for(lambda: not tool_processes(tok, home=kit.home), 10)
        assert set(warm_mains(kit.home)) == {AGENT_PATH}  # the agent was not interrupted
    finally:
        sock = tmux(session, "display-message", "-p", "#{socket_path}").strip()
        tmux(session, "kill-server")
        if sock:  # the server leaves it behind
            Path(sock).unlink(missing_ok=True)


def test_binary_data_is_byte_exact_both_ways(kit: Kit, agent_env: dict, shared_work: Path) -> None:
    data = bytes(range(256)) * 2048 + os.urandom(100_000) + b"\0\r\n\x1b[0m"
    p = run([kit.shim("rtprobe-1"), "sh", "-c", "cat; cat /dev/null >&2"], env=agent_env,
            cwd=shared_work, input=data)
    assert p.returncode == 0 and p.stdout == data and p.stderr == b""
    p = run([kit.shim("rtprobe-1"), "sh", "-c", "cat >&2"], env=agent_env, cwd=shared_work, input=data)
    assert p.returncode == 0 and p.stderr == data and p.stdout == b""


# Exit codes through the agent. Its call process sends the tool's status as a text line,
# `exit N` with N = WEXITSTATUS (0-255) or `signal N` (shims/agent.c, serve_call), and the client
# exits with N, or 128+N; the shim execs the client, so no bash looks at it either. No value is
# special on that path: not a byte on the wire, but a value that fits one, 0-255 in and out.
# This test used to run every code from 0 to 255 (265 calls, ~5 s) and so proved no more than
# one call per kind of value: both ends of the byte; 1 and 2; 125-127, which the agent itself
# exits with when the tool cannot run (a tool's own must pass unchanged); 128+N from a tool that
# was not killed; and sandman's reserved range, both ends and every code the shim runtime reports
# itself, which a tool may still return as its own. Deaths by signal: one of each kind treated
# apart (INT and TERM, which the client relays; KILL, which nothing catches; SEGV, whose default
# action dumps core; PIPE, which the agent ignores and resets for the tool in run_tool).
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL, signal.SIGSEGV, signal.SIGPIPE)
RESERVED = sorted(c for c in errors.EXIT_CODES if errors.USAGE < c < 125)
CODES = sorted({0, 1, errors.USAGE, 125, 126, 127, *(128 + s.value for s in SIGNALS), 255,
                RESERVED[0], RESERVED[-1], *errors.RUNTIME_CODES.values()})


def test_exit_codes_and_death_by_signal(kit: Kit, agent_env: dict, shared_work: Path,
                                        tmp_path: Path) -> None:
    shim = kit.shim("rtprobe-1")
    loop = (f"for n in {' '.join(map(str, CODES))}; do {shim} sh -c \"exit $n\"; echo $?; done; "
            f"for s in {' '.join(s.name[3:] for s in SIGNALS)}; do "
            f"{shim} sh -c \"kill -$s \\$\\$\"; echo $?; done")
    fallbacks = tmp_path / "fallbacks.log"  # the client notes there any call it hands back
    p = subprocess.run(["bash", "-c", loop], env={**agent_env, "SANDMAN_AGENT_LOG": str(fallbacks)},
                       cwd=shared_work, capture_output=True, timeout=600)
    codes = [int(x) for x in p.stdout.split()]
    assert codes == [*CODES, *(128 + s.value for s in SIGNALS)]
    assert p.stderr == b"", p.stderr
    assert not fallbacks.exists(), fallbacks.read_text()  # every status came through the agent


@pytest.fixture(scope="module")
def sqlite_home(seed_pool: SeedPool) -> Iterator[tuple[Path, dict[str, str]]]:
    tmp = Path(tempfile.mkdtemp(prefix="sandman-agent-sql-"))
    home = tmp / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANDMAN_")}
    env.update(SANDMAN_HOME=str(home), SANDMAN_WARM="1",
               PATH=f"{paths_of(home).bin_dir}{os.pathsep}{env.get('PATH', '')}")
    seed_pool.seed(home)
    try:
        p = run_sandman("-q", "install", "sqlite3@3.46", env=env, cwd=ROOT, timeout=1800,
                        text=False)
        assert p.returncode == 0, p.stderr.decode()
        ensure_agent(home)
        seed_pool.harvest(home)
        yield tmp, env
    finally:
        ids = docker("ps", "-aq", "--filter", f"label=io.sandman.home={warm_dir(home)}").split()
        if ids:
            subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)
        stop_reapers(home)
        shutil.rmtree(tmp, ignore_errors=True)


def agent_state(home: Path) -> tuple[str, list[str], list[str]]:
    """The agent of the home's one warm container, seen from the host: its pid, where its
    descriptors point and its children's pids."""
    [cid] = docker("ps", "-q", "--filter", f"label={names.LABEL_HOME}={warm_dir(home)}").split()
    init = docker("inspect", "-f", "{{.State.Pid}}", cid).strip()  # docker-init, its parent
    [pid] = Path(f"/proc/{init}/task/{init}/children").read_text().split()
    assert Path(f"/proc/{pid}/cmdline").read_bytes().startswith(f"{AGENT_PATH}\0serve".encode())
    fds = sorted(os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd"))
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return pid, fds, children


# What a loop of calls can show beyond each call's own result is a leak in the agent, which
# outlives them: per call its main process accepts one connection (a descriptor it closes
# once it has forked) and forks one process (reaped by the kernel: it ignores SIGCHLD), so a
# leak of either grows by one per call where it happens. The test compares the agent before and
# after the loop, so one pass over the 50 dumps shows a leak on every call as 50, and one on
# 1 call in 10 with 99.5 % odds. The 2,000 calls this test made before (~40 s) could not show
# one at all: no call fails until the descriptors run out, at `ulimit -n` in the container
# (20,000 on the CI machines, .ci/run). SANDMAN_TEST_AGENT_LOOP asks for more calls
# (benchmarks/shim.py runs 10,000 for its timing).
LOOP_CALLS = int(os.environ.get("SANDMAN_TEST_AGENT_LOOP", "50"))


def test_a_loop_of_sqlite3_calls_leaves_the_agent_as_it_was(
        sqlite_home: tuple[Path, dict[str, str]]) -> None:
    """The user's loop, `for f in dumps/*.db; do sqlite3-3.46 "$f" ...; done`."""
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
    first = run(["sqlite3-3.46", "dumps/c00.db", "select 1;"], env=env, cwd=dumps.parent)
    assert (first.returncode, first.stdout, first.stderr) == (0, b"1\n", b"")  # the agent runs now
    home = tmp / "home"
    # the warm-up's call process may still be exiting when its client has the status
    assert wait_for(lambda: agent_state(home)[2] == [], 10), agent_state(home)
    before = agent_state(home)
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
    assert set(warm_mains(home)) == {AGENT_PATH}
    assert wait_for(lambda: not container_pids(home), 10), container_pids(home)
    assert wait_for(lambda: agent_state(home) == before, 10), (
        "the same agent, with the same descriptors and no child", before, agent_state(home))


def test_a_container_started_before_the_agent_moves_to_it_on_the_next_call(
        kit: Kit, agent_env: dict, own_work: Path) -> None:
    """Issue 21.4: a warm container whose main is the shell loop (the agent was not built yet
    when it started) is retired by the first call that finds the agent, which starts one
    whose main is the agent: no waiting for the idle timeout."""
    binary = ensure_agent(kit.home)
    hidden = binary.with_name(binary.name + ".hidden")
    tried = Path(f"{binary}.try")
    made_try = not tried.exists()
    probe = '{ tr "\\0" " " </proc/$PPID/cmdline; } 2>/dev/null; echo " ppid=$PPID"'
    binary.rename(hidden)
    try:
        tried.touch()  # no background build of the agent while it is hidden
        p = run([kit.shim("rtprobe-1"), "sh", "-c", probe], env=agent_env, cwd=own_work)
        assert p.returncode == 0 and p.stderr == b"", p.stderr
        assert p.stdout == b" ppid=0\n", p.stdout  # `docker exec`: no agent in that container
    finally:
        hidden.rename(binary)
        if made_try:
            tried.unlink(missing_ok=True)
    old = warm_folder(kit.home, own_work)
    old_name = f"{old.name}-{(old / 'id').read_text().strip()}"
    p = run([kit.shim("rtprobe-1"), "sh", "-c", probe], env=agent_env, cwd=own_work)
    assert p.returncode == 0 and p.stderr == b"", p.stderr
    assert p.stdout.startswith(f"{AGENT_PATH} serve".encode()), p.stdout
    new = warm_folder(kit.home, own_work)
    new_name = f"{new.name}-{(new / 'id').read_text().strip()}"
    assert new_name != old_name  # the old one was retired (moved aside, as a stop does)
    # the agent's container stays: the next call uses it, no new start
    p = run([kit.shim("rtprobe-1"), "true"], env=agent_env, cwd=own_work)
    assert p.returncode == 0
    assert f"{new.name}-{(new / 'id').read_text().strip()}" == new_name
