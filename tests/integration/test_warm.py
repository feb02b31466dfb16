"""Warm mode: shims `docker exec` into a long-lived container with the cold container's isolation.

The tests run the runtime probe (rtprobe@1, from the runtime kit's recipes: a cache hit) in a
warm home (warm_helpers.py). Those that only make calls share one home and one folder to call
from (`wh`: one warm container for all of them); a test that needs a container of its own (the
first call's, one it breaks, one the reaper stops) calls from a folder of its own in that home
(`own`); a test that stops, lists, uninstalls or reconfigures everything a home has, or plays
with its reaper, gets a home of its own (`private`). Everything a home started is removed with it.
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
from pathlib import Path

import pytest
from helpers import SeedPool, paths_of, require_program, run_sandman, stop_reapers, warm_dir

pytest.register_assert_rewrite("runtime_helpers", "warm_helpers")
from runtime_helpers import Kit, token, tool_processes, wait_for  # noqa: E402
from warm_helpers import WarmHome, empty, remove_warm, warm_home  # noqa: E402

from sandman.errors import BuildError  # noqa: E402
from sandman.names import LABEL_HOME, LABEL_ROLE, LABEL_TOOL, LABEL_UID, LABEL_VERSION  # noqa: E402

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def shared(kit: Kit, tmp_path_factory: pytest.TempPathFactory,
           seed_pool: SeedPool) -> Iterator[WarmHome]:
    """The module's warm home: installed once; its containers and reaper end with the module."""
    yield from warm_home(kit, tmp_path_factory.mktemp("warm-shared"), seed=seed_pool)


@pytest.fixture
def wh(shared: WarmHome) -> WarmHome:
    """The shared home, its folder emptied of what the last test left there."""
    empty(shared.work)
    return shared


@pytest.fixture
def own(tmp_path: Path) -> Path:
    """A folder of this test's own to call from: a warm container of its own in `wh`."""
    d = tmp_path / "own"
    d.mkdir()
    return d


@pytest.fixture
def private(kit: Kit, tmp_path: Path, seed_pool: SeedPool) -> Iterator[WarmHome]:
    """A warm home of this test's own."""
    yield from warm_home(kit, tmp_path, seed=seed_pool)


def test_first_call_starts_one_isolated_container_later_calls_reuse_it(wh: WarmHome,
                                                                       own: Path) -> None:
    first = wh.run("sh", "-c", "echo one", cwd=own)
    assert (first.returncode, first.stdout) == (0, b"one\n"), first.stderr
    [c] = wh.containers(cwd=own)
    second = wh.run("sh", "-c", "echo two", cwd=own)
    assert (second.returncode, second.stdout) == (0, b"two\n"), second.stderr
    assert [x["Id"] for x in wh.containers(cwd=own)] == [c["Id"]], "the second call must reuse it"
    labels = c["Config"]["Labels"]
    uid, gid = os.geteuid(), os.getegid()
    assert labels[LABEL_ROLE] == "warm"
    assert (labels[LABEL_TOOL], labels[LABEL_VERSION]) == ("rtprobe", "1")
    assert labels[LABEL_UID] == str(uid)
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
    assert len(wh.containers(cwd=wh.work)) == 1


def test_exit_status_and_stdin_pass_through(wh: WarmHome) -> None:
    data = bytes(range(256)) * 64
    r = wh.run("sh", "-c", "cat; exit 42", input=data)
    assert r.returncode == 42 and r.stdout == data
    r = wh.run("sh", "-c", "kill -KILL $$")
    assert r.returncode == 128 + signal.SIGKILL


def test_concurrent_first_calls_end_up_with_one_container(wh: WarmHome, own: Path) -> None:
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda i: wh.run("sh", "-c", f"echo {i}", cwd=own), range(6)))
    for i, r in enumerate(results):
        assert (r.returncode, r.stdout) == (0, f"{i}\n".encode()), r.stderr
    assert len(wh.containers(cwd=own)) == 1


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
    [mine], [theirs] = wh.containers(cwd=wh.work), wh.containers(cwd=other)
    assert mine["Id"] != theirs["Id"]


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
    assert len(wh.containers(cwd=wh.work)) == 1, "the warm container stays for the next call"


def test_sandman_warm_zero_forces_cold_and_config_bakes_warm(private: WarmHome) -> None:
    paths_of(private.home).config_file.write_text("[tools.rtprobe]\nwarm = true\n")
    r = private.run("true", warm="0")  # the changed config makes the shim rewrite itself first
    assert r.returncode == 0, r.stderr
    assert "SM_WARM=1" in Path(private.shim).read_text()
    assert private.containers() == []
    r = private.run("true", warm=None)
    assert r.returncode == 0, r.stderr
    assert len(private.containers()) == 1


def test_idle_container_stops_by_itself(wh: WarmHome, own: Path) -> None:
    r = wh.run("true", cwd=own, SANDMAN_WARM_IDLE_SECONDS="2")
    assert r.returncode == 0, r.stderr
    assert len(wh.containers(cwd=own)) == 1
    assert wait_for(lambda: not wh.containers(all_states=True, cwd=own), 30, interval=0.5), \
        "an idle warm container must stop after its idle time"
    again = wh.run("sh", "-c", "echo back", cwd=own)
    assert (again.returncode, again.stdout) == (0, b"back\n"), again.stderr


def test_busy_container_is_not_stopped_while_a_call_runs(wh: WarmHome, own: Path,
                                                         tmp_path: Path) -> None:
    """The call runs until the reaper has stopped another container, idle since after this
    call began: the sweep that did it saw this one past its 1 s idle limit too, and kept it
    for its running call. (Waiting for that, not for a fixed time, is what proves a sweep
    looked at it at all.)"""
    canary = tmp_path / "canary"
    canary.mkdir()
    env = dict(wh.env, SANDMAN_WARM="1", SANDMAN_WARM_IDLE_SECONDS="1")
    busy = subprocess.Popen([wh.shim, "sh", "-c",
                             "echo running; while [ ! -e go ]; do sleep 0.1; done; echo finished"],
                            env=env, cwd=own, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        assert busy.stdout is not None and busy.stdout.readline() == b"running\n"
        [c] = wh.containers(cwd=own)
        r = wh.run("true", cwd=canary, SANDMAN_WARM_IDLE_SECONDS="1")
        assert r.returncode == 0, r.stderr
        assert wait_for(lambda: not wh.containers(all_states=True, cwd=canary), 30, interval=0.2), \
            "the reaper must stop the idle canary"
        (own / "go").touch()
        out, err = busy.communicate(timeout=30)
    finally:
        busy.kill()
    assert (busy.returncode, out) == (0, b"finished\n"), err
    assert [x["Id"] for x in wh.containers(cwd=own)] == [c["Id"]]


def test_list_and_stop(private: WarmHome) -> None:
    assert private.run("true").returncode == 0
    listed = json.loads(private.sandman("warm", "list", "--json").stdout)
    assert [w["key"] for w in listed] == ["rtprobe@1"]
    assert any(m.startswith(f"{private.work} -> {private.work} (rw)") for m in listed[0]["mounts"])
    table = private.sandman("warm", "list").stdout
    assert "rtprobe@1" in table and listed[0]["name"] in table
    stopped = private.sandman("warm", "stop", "rtprobe@1")
    assert stopped.returncode == 0, stopped.stderr
    assert wait_for(lambda: not private.containers(all_states=True), 15)
    assert json.loads(private.sandman("warm", "list", "--json").stdout) == []
    r = private.run("sh", "-c", "echo again")
    assert (r.returncode, r.stdout) == (0, b"again\n"), r.stderr


def test_container_removed_behind_the_shims_back_is_replaced(wh: WarmHome, own: Path) -> None:
    assert wh.run("true", cwd=own).returncode == 0
    [c] = wh.containers(cwd=own)
    subprocess.run(["docker", "rm", "-f", c["Id"]], capture_output=True, check=True)
    t = time.monotonic()
    r = wh.run("sh", "-c", "echo fine", cwd=own)
    assert (r.returncode, r.stdout) == (0, b"fine\n"), r.stderr
    assert [x["Id"] for x in wh.containers(cwd=own)] != [c["Id"]]
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
        proc = run_sandman("install", "pbtest@ok1", "pbtest@bad", "pbtest@nope", "pbtest@ok2",
                           env=env)
        assert proc.returncode == BuildError.exit_code, proc.stderr  # the first failure's code: a build failure
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
        stop_reapers(home)


# -- the hot path forks nothing ---------------------------------------------------------------
def traced(shim: Path, env: dict[str, str], cwd: Path, *args: str,
           docker: str = "/bin/true") -> list[str]:
    """Process-creating syscalls of one shim run under strace (its docker replaced by `docker`)."""
    require_program("strace")
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
    """Nothing but the one `stat` that gives the pinned mount sources' device and inode (for
    the container's check before the tool runs: issue 19 item 2), one for all of them."""
    assert wh.run("true", warm="0").returncode == 0  # the reaper runs: its check does not fork
    calls = traced(Path(wh.shim), dict(wh.env, SANDMAN_WARM="0"), wh.work, "true")
    execs = [ln for ln in calls if "execve(" in ln]
    forks = [ln for ln in calls if re.search(r"\b(fork|vfork|clone3?)\(", ln)]
    # the shim (its front, in sh), the shim again in bash, stat, docker (/bin/true)
    assert len(execs) == 4 and len(forks) == 1, calls
    assert execs[1].split(", [")[0].endswith('execve("/bin/bash"'), calls
    assert '/stat", ["stat", "-c", "%d %i %F"' in execs[2], calls
    assert '"/bin/true", "run"' in execs[3]


def test_warm_shim_forks_once_the_docker_exec(wh: WarmHome) -> None:
    assert wh.run("true").returncode == 0  # the warm container runs now
    wd = wh.folder(wh.work)
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
    # the shim (sh), the shim in bash (a call without a route), the `docker exec` stand-in
    assert len(execs) == 3 and f'execve("{fake}", ' in execs[2], calls
    assert execs[1].split(", [")[0].endswith('execve("/bin/bash"'), calls
    assert len(forks) == 1, calls  # the background `docker exec`, nothing else


def test_uninstall_stops_the_versions_warm_containers(private: WarmHome) -> None:
    assert private.run("true").returncode == 0
    assert len(private.containers()) == 1
    proc = private.sandman("uninstall", "rtprobe@1")
    assert proc.returncode == 0, proc.stderr
    assert wait_for(lambda: not private.containers(all_states=True), 15)


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
    proc = run_sandman("-q", "install", "--yes", "rtprobe@1", env=root_env)
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
        assert info["Config"]["Labels"][LABEL_UID] == str(TEST_UID)
    finally:
        remove_warm(home)
        stop_reapers(home)
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


def test_garbage_in_the_reaper_pidfile_stops_costing_forks(private: WarmHome) -> None:
    """`echo 1 > reaper.pid` (pid 1 is alive, and not a reaper): calls must not fork a reaper
    each, with a reaper on duty (it writes its pid back) or without one (the next one does)."""
    pidfile = paths_of(private.home).reaper_pidfile
    assert private.run("true", warm="0").returncode == 0
    assert wait_for(lambda: on_duty(pidfile), 20)
    for with_reaper in (True, False):
        if not with_reaper:
            stop_reapers(private.home)
            assert wait_for(lambda: not reapers(pidfile), 20)
        pidfile.write_text("1\n")
        for _ in range(5):
            assert private.run("true", warm="0").returncode == 0
        assert wait_for(lambda: on_duty(pidfile), 20), pidfile.read_text()
        assert len(reapers(pidfile)) == 1, "one reaper on duty, no pile of them"
        calls = traced(Path(private.shim), dict(private.env, SANDMAN_WARM="0"), private.work, "true")
        forks = [ln for ln in calls if re.search(r"\b(fork|vfork|clone3?)\(", ln)]
        assert len(forks) == 1, calls  # the mount sources' one `stat` (issue 19 item 2), no reaper


def test_another_homes_reaper_in_the_pidfile_does_not_count(private: WarmHome) -> None:
    """A recycled pid that now belongs to a reaper of another home is not this home's reaper."""
    pidfile = paths_of(private.home).reaper_pidfile
    stop_reapers(private.home)
    impostor = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "-m",
                                 "sandman.reaper", "/elsewhere/state/reaper.pid",
                                 "unix:///var/run/docker.sock"])
    try:
        assert wait_for(lambda: b"sandman.reaper" in Path(f"/proc/{impostor.pid}/cmdline").read_bytes(), 10)
        pidfile.write_text(f"{impostor.pid}\n")
        assert private.run("true", warm="0").returncode == 0
        assert wait_for(lambda: on_duty(pidfile), 20), "this home's reaper must be started"
        assert on_duty(pidfile) != impostor.pid
    finally:
        impostor.kill()
        impostor.wait()


def test_reaper_and_warm_containers_are_keyed_by_the_daemon(private: WarmHome, tmp_path: Path) -> None:
    """DOCKER_HOST names the daemon: another socket path gets its own reaper (started with that
    DOCKER_HOST) and its own warm containers; the default socket spelt out is the default."""
    link_dir = tmp_path / "sock dir"
    link_dir.mkdir()
    (link_dir / "docker.sock").symlink_to("/var/run/docker.sock")
    other = f"unix://{link_dir}/docker.sock"
    state = paths_of(private.home).state_dir
    default_pidfile = paths_of(private.home).reaper_pidfile
    key = "@" + other.replace("%", "%25").replace("/", "%2F")
    other_pidfile = state / f"reaper{key}.pid"
    try:
        for host in (None, "unix:///var/run/docker.sock", other):
            env = {"DOCKER_HOST": host} if host else {}
            r = private.run("sh", "-c", "echo hi", **env)
            assert (r.returncode, r.stdout, r.stderr) == (0, b"hi\n", b""), r
        assert wait_for(lambda: on_duty(default_pidfile) and on_duty(other_pidfile), 20)
        assert len(reapers(default_pidfile)) == 1, "the default socket spelt out is the same daemon"
        argv = Path(f"/proc/{on_duty(other_pidfile)}/cmdline").read_bytes().split(b"\0")
        assert other.encode() in argv, "the reaper connects with the DOCKER_HOST it was started for"
        homes = sorted(c["Config"]["Labels"][LABEL_HOME]
                       for c in json.loads(subprocess.run(
                           ["docker", "inspect", *subprocess.run(
                               ["docker", "ps", "-q", "--filter", "label=io.sandman.role=warm",
                                "--filter", f"label=io.sandman.uid={os.geteuid()}"],
                               capture_output=True, text=True, check=True).stdout.split()],
                           capture_output=True, text=True, check=True).stdout)
                       if c["Config"]["Labels"][LABEL_HOME].startswith(str(state)))
        assert homes == [str(warm_dir(private.home)), str(warm_dir(private.home) / key)]
        assert list((warm_dir(private.home) / key).glob("sandman-warm-*/calls"))
        # Each side lists and stops only its own.
        p = run_sandman("warm", "list", "--json", env=dict(private.env, DOCKER_HOST=other))
        assert p.returncode == 0, p.stderr
        listed = json.loads(p.stdout)
        assert [w["state"] for w in listed] == ["live"]
        assert private.sandman("warm", "stop").returncode == 0
        assert len(private.containers()) == 0
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
