"""Warm mode: shims `docker exec` into a long-lived container with the cold container's isolation.

Each test gets its own SANDMAN_HOME with the runtime probe (rtprobe@1, from the runtime kit's
recipes: a cache hit) so warm containers, their state folder and the reaper are private to it.
Signals, exit codes, bytes and paths in warm mode are also covered by the runtime fidelity tests
(tests/integration/test_runtime_*.py, parametrized over cold and warm).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import paths_of, warm_dir

pytest.register_assert_rewrite("runtime_helpers")
from runtime_helpers import Kit, ensure_agent, stop_reaper, token, tool_processes, wait_for  # noqa: E402

pytestmark = pytest.mark.docker


@dataclass(frozen=True)
class WarmHome:
    home: Path
    env: dict[str, str]
    work: Path

    @property
    def shim(self) -> str:
        return str(paths_of(self.home).bin_dir / "rtprobe-1")

    def run(self, *args: str, warm: str | None = "1", cwd: Path | None = None,
            input: bytes | None = None, **extra: str) -> subprocess.CompletedProcess:
        env = dict(self.env, **extra)
        if warm is not None:
            env["SANDMAN_WARM"] = warm
        return subprocess.run([self.shim, *args], env=env, cwd=cwd or self.work, input=input,
                              capture_output=True, timeout=120)

    def sandman(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "sandman", *args], env=self.env,
                              cwd=self.work, capture_output=True, text=True, timeout=600)

    def containers(self, all_states: bool = False) -> list[dict]:
        ids = subprocess.run(
            ["docker", "ps", *(["-a"] if all_states else []), "-q", "--no-trunc",
             "--filter", "label=io.sandman.role=warm",
             "--filter", f"label=io.sandman.home={warm_dir(self.home)}"],
            capture_output=True, text=True, check=True).stdout.split()
        if not ids:
            return []
        # the reaper may remove one between the two calls: inspect reports the rest (and fails
        # for the gone one), so its exit status says nothing here; its JSON is what exists
        out = subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True)
        return json.loads(out.stdout or "[]")


def remove_warm(home: Path) -> None:
    ids = subprocess.run(["docker", "ps", "-aq", "--filter", "label=io.sandman.role=warm",
                          "--filter", f"label=io.sandman.home={warm_dir(home)}"],
                         capture_output=True, text=True).stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)


def warm_home(kit: Kit, tmp_path: Path, agent: bool = False) -> Iterator[WarmHome]:
    """A fresh SANDMAN_HOME with rtprobe@1 installed; its warm containers and reaper end after.

    Warm calls go through `docker exec`, or with agent=True through the warm agent (its binary
    built first, so that every warm container of the home runs it)."""
    home = tmp_path / "home"
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SANDMAN_", "DOCKER_"))}
    env.update(SANDMAN_HOME=str(home), SANDMAN_RECIPE_PATH=str(kit.recipes),
               PATH=f"{paths_of(home).bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
               SANDMAN_AGENT="0")  # the `docker exec` path; the agent's: test_agent.py
    proc = subprocess.run([sys.executable, "-m", "sandman", "-q", "install", "rtprobe@1"], env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    if agent:
        del env["SANDMAN_AGENT"]
        ensure_agent(home)
    w = WarmHome(home, env, work)
    try:
        yield w
    finally:
        remove_warm(home)
        stop_reaper(home)


@pytest.fixture
def wh(kit: Kit, tmp_path: Path) -> Iterator[WarmHome]:
    yield from warm_home(kit, tmp_path)


def test_first_call_starts_one_isolated_container_later_calls_reuse_it(wh: WarmHome) -> None:
    first = wh.run("sh", "-c", "echo one")
    assert (first.returncode, first.stdout) == (0, b"one\n"), first.stderr
    [c] = wh.containers()
    second = wh.run("sh", "-c", "echo two")
    assert (second.returncode, second.stdout) == (0, b"two\n"), second.stderr
    assert [x["Id"] for x in wh.containers()] == [c["Id"]], "the second call must reuse it"
    labels = c["Config"]["Labels"]
    uid, gid = os.geteuid(), os.getegid()
    assert labels["io.sandman.role"] == "warm"
    assert (labels["io.sandman.tool"], labels["io.sandman.version"]) == ("rtprobe", "1")
    assert labels["io.sandman.uid"] == str(uid)
    assert c["Name"].lstrip("/").startswith(f"sandman-warm-{uid}-rtprobe-1-")
    hc = c["HostConfig"]
    assert hc["CapDrop"] == ["ALL"] and "no-new-privileges" in hc["SecurityOpt"]
    assert hc["NetworkMode"] == "none" and hc["Init"] is True and hc["AutoRemove"] is True
    assert c["Config"]["User"] == f"{uid}:{gid}"
    assert not any(m.get("Source") in ("/", str(Path.home()), "/var/run/docker.sock")
                   for m in c["Mounts"])


def test_warm_call_sees_what_a_cold_call_sees(wh: WarmHome) -> None:
    probe = ("id -u; id -g; pwd; cat /data/hello.txt; env | grep -v '^HOSTNAME=' | sort; "
             "echo x > made-here; stat -c %u:%g made-here; rm made-here; "
             "(echo no > /data/nope) 2>/dev/null || echo data-ro")
    extra = {"RT_PASS": "passed through", "NOT_PASSED": "secret"}
    cold = wh.run("sh", "-c", probe, warm="0", **extra)
    warm = wh.run("sh", "-c", probe, **extra)
    assert cold.returncode == 0 and warm.returncode == 0, (cold.stderr, warm.stderr)
    assert warm.stdout == cold.stdout
    assert b"RT_PASS=passed through" in warm.stdout and b"secret" not in warm.stdout
    assert b"data-ro" in warm.stdout
    assert len(wh.containers()) == 1


def test_exit_status_and_stdin_pass_through(wh: WarmHome) -> None:
    data = bytes(range(256)) * 64
    r = wh.run("sh", "-c", "cat; exit 42", input=data)
    assert r.returncode == 42 and r.stdout == data
    r = wh.run("sh", "-c", "kill -KILL $$")
    assert r.returncode == 128 + signal.SIGKILL


def test_concurrent_first_calls_end_up_with_one_container(wh: WarmHome) -> None:
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda i: wh.run("sh", "-c", f"echo {i}"), range(6)))
    for i, r in enumerate(results):
        assert (r.returncode, r.stdout) == (0, f"{i}\n".encode()), r.stderr
    assert len(wh.containers()) == 1


def test_another_directory_gets_its_own_container_with_its_own_mounts(wh: WarmHome,
                                                                       tmp_path: Path) -> None:
    other = tmp_path / "other dir"
    other.mkdir()
    (other / "only-here.txt").write_text("here\n")
    a = wh.run("sh", "-c", "pwd; ls")
    b = wh.run("sh", "-c", "pwd; cat only-here.txt; ls ../work >/dev/null 2>&1 || echo not-visible",
               cwd=other)
    assert a.stdout == f"{wh.work}\n".encode(), a.stderr
    assert b.stdout == f"{other}\nhere\nnot-visible\n".encode(), b.stderr
    assert len(wh.containers()) == 2


def test_signal_reaches_the_tool_in_warm_mode(wh: WarmHome) -> None:
    tok = token()
    p = subprocess.Popen([wh.shim, "bash", "-c",
                          f'trap "echo got-TERM; exit 7" TERM; echo ready; '
                          f'while :; do sleep 0.1; done # {tok}'],
                         env=dict(wh.env, SANDMAN_WARM="1"), cwd=wh.work,
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert p.stdout is not None
        assert p.stdout.readline() == b"ready\n"
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
    finally:
        p.kill()
    assert p.returncode == 7, err
    assert out == b"got-TERM\n"
    assert wait_for(lambda: not tool_processes(tok), 10)
    assert len(wh.containers()) == 1, "the warm container stays for the next call"


def test_sandman_warm_zero_forces_cold_and_config_bakes_warm(wh: WarmHome) -> None:
    paths_of(wh.home).config_file.write_text("[tools.rtprobe]\nwarm = true\n")
    r = wh.run("true", warm="0")  # the changed config makes the shim rewrite itself first
    assert r.returncode == 0, r.stderr
    assert "SM_WARM=1" in Path(wh.shim).read_text()
    assert wh.containers() == []
    r = wh.run("true", warm=None)
    assert r.returncode == 0, r.stderr
    assert len(wh.containers()) == 1


def test_idle_container_stops_by_itself(wh: WarmHome) -> None:
    r = wh.run("true", SANDMAN_WARM_IDLE_SECONDS="2")
    assert r.returncode == 0, r.stderr
    assert len(wh.containers()) == 1
    assert wait_for(lambda: not wh.containers(all_states=True), 30, interval=0.5), \
        "an idle warm container must stop after its idle time"
    again = wh.run("sh", "-c", "echo back")
    assert (again.returncode, again.stdout) == (0, b"back\n"), again.stderr


def test_busy_container_is_not_stopped_while_a_call_runs(wh: WarmHome) -> None:
    r = wh.run("sh", "-c", "sleep 6; echo finished", SANDMAN_WARM_IDLE_SECONDS="1")
    assert (r.returncode, r.stdout) == (0, b"finished\n"), r.stderr


def test_list_and_stop(wh: WarmHome) -> None:
    assert wh.run("true").returncode == 0
    listed = json.loads(wh.sandman("warm", "list", "--json").stdout)
    assert [w["key"] for w in listed] == ["rtprobe@1"]
    assert any(m.startswith(f"{wh.work} -> {wh.work} (rw)") for m in listed[0]["mounts"])
    table = wh.sandman("warm", "list").stdout
    assert "rtprobe@1" in table and listed[0]["name"] in table
    stopped = wh.sandman("warm", "stop", "rtprobe@1")
    assert stopped.returncode == 0, stopped.stderr
    assert wait_for(lambda: not wh.containers(all_states=True), 15)
    assert json.loads(wh.sandman("warm", "list", "--json").stdout) == []
    r = wh.run("sh", "-c", "echo again")
    assert (r.returncode, r.stdout) == (0, b"again\n"), r.stderr


def test_container_removed_behind_the_shims_back_is_replaced(wh: WarmHome) -> None:
    assert wh.run("true").returncode == 0
    [c] = wh.containers()
    subprocess.run(["docker", "rm", "-f", c["Id"]], capture_output=True, check=True)
    t = time.monotonic()
    r = wh.run("sh", "-c", "echo fine")
    assert (r.returncode, r.stdout) == (0, b"fine\n"), r.stderr
    assert [x["Id"] for x in wh.containers()] != [c["Id"]]
    assert time.monotonic() - t < 30


# -- parallel builds (`sandman install A B C`) --------------------------------------------------
PB_RECIPE = """\
schema = 1
tool = "pbtest"
description = "parallel build test"
entrypoint = ["cat", "/etc/debian_version"]

[versions.ok1]
base = "debian:bookworm-slim"
run = ["echo {tok}-ok1 > /tmp/stamp"]

[versions.ok2]
base = "debian:bullseye-slim"
run = ["echo {tok}-ok2 > /tmp/stamp"]

[versions.bad]
base = "debian:bookworm-slim"
run = ["echo {tok}-bad; exit 3"]
"""


def test_parallel_install_keeps_the_good_results_and_reports_each_failure(
        docker_client, tmp_path: Path) -> None:
    recipes = tmp_path / "recipes"
    (recipes / "pbtest").mkdir(parents=True)
    (recipes / "pbtest" / "recipe.toml").write_text(PB_RECIPE.format(tok=token()))
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANDMAN_")}
    env.update(SANDMAN_HOME=str(home), SANDMAN_RECIPE_PATH=str(recipes))
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "sandman", "install", "pbtest@ok1", "pbtest@bad", "pbtest@nope",
             "pbtest@ok2"], env=env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 114, proc.stderr  # the first failure's code: a build failure
        assert "pbtest@bad" in proc.stderr and "pbtest@nope" in proc.stderr
        assert "installed pbtest@ok1" in proc.stderr and "installed pbtest@ok2" in proc.stderr
        for v in ("ok1", "ok2"):
            r = subprocess.run([str(paths_of(home).bin_dir / f"pbtest-{v}")], env=env, cwd=tmp_path,
                               capture_output=True, text=True, timeout=120)
            assert r.returncode == 0 and r.stdout.strip(), r.stderr
        assert not (paths_of(home).bin_dir / "pbtest-bad").exists()
    finally:
        ids = subprocess.run(["docker", "images", "-q", "--filter", "label=io.sandman.tool=pbtest"],
                             capture_output=True, text=True).stdout.split()
        if ids:
            subprocess.run(["docker", "rmi", "-f", *sorted(set(ids))], capture_output=True)
        stop_reaper(home)


# -- the hot path forks nothing ---------------------------------------------------------------
def traced(shim: Path, env: dict[str, str], cwd: Path, *args: str,
           docker: str = "/bin/true") -> list[str]:
    """Process-creating syscalls of one shim run under strace (its docker replaced by `docker`)."""
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed")
    fake = cwd / f"{shim.name}-fake"
    text = shim.read_text()
    fake.write_text(re.sub(r"(?m)^SM_DOCKER=.*$", f"SM_DOCKER={docker}", text))
    fake.chmod(0o755)
    log = cwd / "strace.log"
    proc = subprocess.run(["strace", "-f", "-qq", "-e", "trace=fork,vfork,clone,clone3,execve",
                           "-o", str(log), str(fake), *args], env=env, cwd=cwd,
                          capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [ln for ln in log.read_text().splitlines() if "resumed" not in ln]


def test_cold_shim_forks_nothing_before_exec_docker(wh: WarmHome) -> None:
    assert wh.run("true", warm="0").returncode == 0  # the reaper runs: its check does not fork
    calls = traced(Path(wh.shim), dict(wh.env, SANDMAN_WARM="0"), wh.work, "true")
    execs = [ln for ln in calls if "execve(" in ln]
    assert len(execs) == 2, calls  # the shim itself, then docker (here /bin/true)
    assert '"/bin/true", "run"' in execs[1]
    assert not [ln for ln in calls if re.search(r"\b(fork|vfork|clone3?)\(", ln)], calls


def test_warm_shim_forks_once_the_docker_exec(wh: WarmHome) -> None:
    assert wh.run("true").returncode == 0  # the warm container runs now
    [wd] = [d for d in warm_dir(wh.home).glob("sandman-warm-*") if d.is_dir()]
    # A stand-in for `docker exec` that does what the wrapper in the container does first:
    # write the tool's pid into the call file (a warm call is trusted only when it is there).
    fake = wh.work / "fake-docker"
    fake.write_text('#!/bin/bash\nfor a; do case $a in /run/sandman-warm/calls/*)\n'
                    f'  printf "1\\n" >"{wd}/calls/${{a##*/}}" ;; esac; done\n')
    fake.chmod(0o755)
    calls = traced(Path(wh.shim), dict(wh.env, SANDMAN_WARM="1"), wh.work, "true",
                   docker=str(fake))
    execs = [ln for ln in calls if "execve(" in ln]
    forks = [ln for ln in calls if re.search(r"\b(fork|vfork|clone3?)\(", ln)]
    assert len(execs) == 2 and f'execve("{fake}", ' in execs[1], calls
    assert len(forks) == 1, calls  # the background `docker exec`, nothing else


def test_uninstall_stops_the_versions_warm_containers(wh: WarmHome) -> None:
    assert wh.run("true").returncode == 0
    assert len(wh.containers()) == 1
    proc = wh.sandman("uninstall", "rtprobe@1")
    assert proc.returncode == 0, proc.stderr
    assert wait_for(lambda: not wh.containers(all_states=True), 15)


def test_warm_as_a_non_root_user_who_owns_the_install(kit: Kit, user_home: Path) -> None:
    """A user without a passwd entry: the warm container runs as them, files are theirs."""
    from runtime_helpers import TEST_GID, TEST_UID, run, user_env

    root = kit.scratch("warm-user")
    home, work = root / "home", root / "work"
    work.mkdir()
    os.chown(work, TEST_UID, TEST_GID)
    env = user_env(kit, "warm", user_home, SANDMAN_HOME=str(home))
    env["PATH"] = f"{paths_of(home).bin_dir}:/usr/local/bin:/usr/bin:/bin"
    root_env = {k: v for k, v in os.environ.items() if not k.startswith("SANDMAN_")}
    root_env.update(SANDMAN_HOME=str(home), SANDMAN_RECIPE_PATH=str(kit.recipes))
    proc = subprocess.run([sys.executable, "-m", "sandman", "-q", "install", "rtprobe@1"],
                          env=root_env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    for dirpath, dirnames, filenames in os.walk(home):
        for n in dirnames + filenames:
            p = Path(dirpath, n)
            p.chmod(p.stat().st_mode | (0o055 if p.is_dir() else 0o044))
    os.chown(warm_dir(home), TEST_UID, TEST_GID)  # their own install, in effect
    shim = str(paths_of(home).bin_dir / "rtprobe-1")
    try:
        outs = []
        for name in ("first", "second"):
            p = run([shim, "sh", "-c", f"touch {name}.txt && id -u && id -g && id -un"],
                    env=env, cwd=work, user=True)
            assert p.returncode == 0, p.stderr
            outs.append(p.stdout.split())
        assert outs[0] == outs[1] and outs[0][:2] == [str(TEST_UID).encode(), str(TEST_GID).encode()]
        for name in ("first", "second"):
            st = os.stat(work / f"{name}.txt")
            assert (st.st_uid, st.st_gid) == (TEST_UID, TEST_GID)
        ids = subprocess.run(["docker", "ps", "-q", "--filter", "label=io.sandman.role=warm",
                              "--filter", f"label=io.sandman.home={warm_dir(home)}"],
                             capture_output=True, text=True, check=True).stdout.split()
        assert len(ids) == 1, "both calls go to one warm container"
        info = json.loads(subprocess.run(["docker", "inspect", ids[0]], capture_output=True,
                                         text=True, check=True).stdout)[0]
        assert info["Config"]["User"] == f"{TEST_UID}:{TEST_GID}"
        assert info["Config"]["Labels"]["io.sandman.uid"] == str(TEST_UID)
    finally:
        remove_warm(home)
        stop_reaper(home)
        shutil.rmtree(root, ignore_errors=True)


def test_tool_writing_into_a_closed_pipe_is_not_left_running(wh: WarmHome) -> None:
    tok = token()
    proc = subprocess.run(f"{wh.shim} sh -c 'while :; do echo {tok}; done' | head -1",
                          shell=True, env=dict(wh.env, SANDMAN_WARM="1"), cwd=wh.work,
                          capture_output=True, timeout=60)
    assert proc.stdout == f"{tok}\n".encode()
    assert wait_for(lambda: not tool_processes(tok), 20), tool_processes(tok)


# -- the reaper's pidfile, keyed by home and daemon (issue 9, item 9) --------------------------
def reapers(pidfile: Path) -> list[int]:
    """Live reaper processes on duty for (or starting with) this pidfile."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            argv = (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"sandman.reaper" in argv and str(pidfile).encode() in argv:
            out.append(int(d.name))
    return out


def on_duty(pidfile: Path) -> int | None:
    """The pid the pidfile names, if that is a live reaper for this very pidfile."""
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid in reapers(pidfile) else None


def test_garbage_in_the_reaper_pidfile_stops_costing_forks(wh: WarmHome) -> None:
    """`echo 1 > reaper.pid` (pid 1 is alive, and not a reaper): calls must not fork a reaper
    each, with a reaper on duty (it writes its pid back) or without one (the next one does)."""
    pidfile = paths_of(wh.home).reaper_pidfile
    assert wh.run("true", warm="0").returncode == 0
    assert wait_for(lambda: on_duty(pidfile), 20)
    for with_reaper in (True, False):
        if not with_reaper:
            stop_reaper(wh.home)
            assert wait_for(lambda: not reapers(pidfile), 20)
        pidfile.write_text("1\n")
        for _ in range(5):
            assert wh.run("true", warm="0").returncode == 0
        assert wait_for(lambda: on_duty(pidfile), 20), pidfile.read_text()
        assert len(reapers(pidfile)) == 1, "one reaper on duty, no pile of them"
        calls = traced(Path(wh.shim), dict(wh.env, SANDMAN_WARM="0"), wh.work, "true")
        assert not [ln for ln in calls if re.search(r"\b(fork|vfork|clone3?)\(", ln)], calls


def test_another_homes_reaper_in_the_pidfile_does_not_count(wh: WarmHome) -> None:
    """A recycled pid that now belongs to a reaper of another home is not this home's reaper."""
    pidfile = paths_of(wh.home).reaper_pidfile
    stop_reaper(wh.home)
    impostor = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "-m",
                                 "sandman.reaper", "/elsewhere/state/reaper.pid",
                                 "unix:///var/run/docker.sock"])
    try:
        assert wait_for(lambda: b"sandman.reaper" in Path(f"/proc/{impostor.pid}/cmdline").read_bytes(), 10)
        pidfile.write_text(f"{impostor.pid}\n")
        assert wh.run("true", warm="0").returncode == 0
        assert wait_for(lambda: on_duty(pidfile), 20), "this home's reaper must be started"
        assert on_duty(pidfile) != impostor.pid
    finally:
        impostor.kill()
        impostor.wait()


def test_reaper_and_warm_containers_are_keyed_by_the_daemon(wh: WarmHome, tmp_path: Path) -> None:
    """DOCKER_HOST names the daemon: another socket path gets its own reaper (started with that
    DOCKER_HOST) and its own warm containers; the default socket spelt out is the default."""
    link_dir = tmp_path / "sock dir"
    link_dir.mkdir()
    (link_dir / "docker.sock").symlink_to("/var/run/docker.sock")
    other = f"unix://{link_dir}/docker.sock"
    state = paths_of(wh.home).state_dir
    default_pidfile = paths_of(wh.home).reaper_pidfile
    key = "@" + other.replace("%", "%25").replace("/", "%2F")
    other_pidfile = state / f"reaper{key}.pid"
    try:
        for host in (None, "unix:///var/run/docker.sock", other):
            env = {"DOCKER_HOST": host} if host else {}
            r = wh.run("sh", "-c", "echo hi", **env)
            assert (r.returncode, r.stdout, r.stderr) == (0, b"hi\n", b""), r
        assert wait_for(lambda: on_duty(default_pidfile) and on_duty(other_pidfile), 20)
        assert len(reapers(default_pidfile)) == 1, "the default socket spelt out is the same daemon"
        argv = Path(f"/proc/{on_duty(other_pidfile)}/cmdline").read_bytes().split(b"\0")
        assert other.encode() in argv, "the reaper connects with the DOCKER_HOST it was started for"
        homes = sorted(c["Config"]["Labels"]["io.sandman.home"]
                       for c in json.loads(subprocess.run(
                           ["docker", "inspect", *subprocess.run(
                               ["docker", "ps", "-q", "--filter", "label=io.sandman.role=warm",
                                "--filter", f"label=io.sandman.uid={os.geteuid()}"],
                               capture_output=True, text=True, check=True).stdout.split()],
                           capture_output=True, text=True, check=True).stdout)
                       if c["Config"]["Labels"]["io.sandman.home"].startswith(str(state)))
        assert homes == [str(warm_dir(wh.home)), str(warm_dir(wh.home) / key)]
        assert list((warm_dir(wh.home) / key).glob("sandman-warm-*/calls"))
        # Each side lists and stops only its own.
        listed = json.loads(subprocess.run(
            [sys.executable, "-m", "sandman", "warm", "list", "--json"], env=dict(wh.env, DOCKER_HOST=other),
            capture_output=True, text=True, check=True).stdout)
        assert [w["state"] for w in listed] == ["live"]
        assert wh.sandman("warm", "stop").returncode == 0
        assert len(wh.containers()) == 0
        left = subprocess.run(["docker", "ps", "-q", "--filter",
                               f"label=io.sandman.home={state / 'warm' / key}"],
                              capture_output=True, text=True, check=True).stdout.split()
        assert len(left) == 1
    finally:
        ids = subprocess.run(["docker", "ps", "-aq", "--filter",
                              f"label=io.sandman.home={state / 'warm' / key}"],
                             capture_output=True, text=True).stdout.split()
        if ids:
            subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)
        pid = on_duty(other_pidfile)
        if pid:
            os.kill(pid, signal.SIGTERM)
