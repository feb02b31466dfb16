"""engine_choice.py without a daemon: which engine a process gets and why, where Podman's socket is,
the subordinate-id check, and the host problems sandman recognises with their fix.

The PATH, the environment and the Docker socket are all fakes in tmp_path: a fake `docker` or
`podman` is an executable file (choose only looks it up), a Docker socket that answers is a
real unix socket bound and listening in tmp.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandman import engine_choice, runtime_rules
from sandman.commands import status
from sandman.config import Config
from sandman.context import Context
from sandman.errors import EngineNotInstalledError, NoEngineError, StaleSocketError
from sandman.paths import Paths

ROOT = Path(__file__).resolve().parents[2]


def fake_bin(tmp_path: Path, *names: str) -> str:
    d = tmp_path / ("bin-" + "-".join(names or ("empty",)))
    d.mkdir(exist_ok=True)
    for n in names:
        f = d / n
        f.write_text("#!/bin/sh\nexit 0\n")
        f.chmod(0o755)
    return str(d)


@pytest.fixture
def listening(tmp_path: Path) -> Iterator[str]:
    """A unix socket something listens on (what a running daemon looks like to choose)."""
    path = str(tmp_path / "d.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(4)
    yield path
    s.close()


@pytest.fixture
def dead_socket(tmp_path: Path) -> str:
    """A socket file nothing listens on (a daemon that died, a stale podman.sock)."""
    path = str(tmp_path / "dead.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.close()
    return path


@pytest.fixture(autouse=True)
def no_docker_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts on a host without a Docker socket (this machine has a real one)."""
    monkeypatch.setattr(engine_choice, "DOCKER_SOCKET", str(tmp_path / "no-docker.sock"))


# -- choose -------------------------------------------------------------------------------------
def test_auto_prefers_a_docker_socket_that_answers(tmp_path, listening, monkeypatch) -> None:
    monkeypatch.setattr(engine_choice, "DOCKER_SOCKET", listening)
    c = engine_choice.choose({"PATH": fake_bin(tmp_path, "docker", "podman")})
    assert (c.kind, c.base_url, c.rootless) == ("docker", f"unix://{listening}", False)
    assert c.cli == f"{fake_bin(tmp_path, 'docker', 'podman')}/docker"
    assert c.why == f"auto: the Docker socket {listening} answers"
    assert c.label == "Docker" and c.socket_path == listening


def test_auto_takes_podman_when_the_docker_socket_is_dead(tmp_path, dead_socket, monkeypatch) -> None:
    monkeypatch.setattr(engine_choice, "DOCKER_SOCKET", dead_socket)
    path = fake_bin(tmp_path, "docker", "podman")
    c = engine_choice.choose({"PATH": path, "XDG_RUNTIME_DIR": "/xdg"})
    assert c.kind == "podman" and c.cli == f"{path}/podman"
    assert c.why == f"auto: no usable Docker socket at {dead_socket}, Podman is installed"
    if os.geteuid() == 0:
        assert (c.base_url, c.rootless, c.label) == (
            "unix:///run/podman/podman.sock", False, "Podman (rootful)")
    else:
        assert (c.base_url, c.rootless, c.label) == (
            "unix:///xdg/podman/podman.sock", True, "Podman (rootless)")


def test_auto_docker_host_wins_over_everything(tmp_path) -> None:
    c = engine_choice.choose({"PATH": fake_bin(tmp_path, "podman"), "DOCKER_HOST": "tcp://10.0.0.1:2375"})
    assert (c.kind, c.base_url, c.why) == ("docker", "tcp://10.0.0.1:2375", "auto: DOCKER_HOST is set")


def test_auto_docker_installed_but_down_stays_docker(tmp_path) -> None:
    """No daemon yet (dockerd not started): Docker's own error (115) says what to start."""
    c = engine_choice.choose({"PATH": fake_bin(tmp_path, "docker")})
    assert (c.kind, c.why) == ("docker", "auto: Docker is installed (its daemon does not answer)")


def test_auto_nothing_installed_is_92(tmp_path) -> None:
    with pytest.raises(NoEngineError) as e:
        engine_choice.choose({"PATH": fake_bin(tmp_path)})
    assert e.value.exit_code == NoEngineError.exit_code
    assert "neither Docker nor Podman is installed" in e.value.message
    assert "podman uidmap" in e.value.message


def test_auto_a_docker_socket_this_user_cannot_open_and_no_podman_is_92(tmp_path, monkeypatch) -> None:
    sock = tmp_path / "closed.sock"
    sock.write_text("")
    monkeypatch.setattr(engine_choice, "DOCKER_SOCKET", str(sock))
    monkeypatch.setattr(engine_choice.os, "access", lambda p, mode: p != str(sock))
    with pytest.raises(NoEngineError) as e:
        engine_choice.choose({"PATH": fake_bin(tmp_path, "docker")})
    assert f"the Docker socket {sock} is not open to them" in e.value.message
    assert "install Podman" in e.value.message and "docker group" in e.value.message


@pytest.mark.parametrize(("env", "config", "origin"), [
    ({"SANDMAN_ENGINE": "podman"}, None, "SANDMAN_ENGINE"),
    ({}, "podman", "config.toml engine"),
    ({"SANDMAN_ENGINE": "podman"}, "docker", "SANDMAN_ENGINE"),  # the environment wins
])
def test_named_podman_not_installed_is_93(tmp_path, env, config, origin) -> None:
    with pytest.raises(EngineNotInstalledError) as e:
        engine_choice.choose({"PATH": fake_bin(tmp_path, "docker"), **env}, config)
    assert e.value.exit_code == EngineNotInstalledError.exit_code
    assert e.value.message.startswith(f'engine "podman" ({origin}) is not installed here')


def test_named_docker_not_installed_is_93(tmp_path) -> None:
    with pytest.raises(EngineNotInstalledError) as e:
        engine_choice.choose({"PATH": fake_bin(tmp_path, "podman")}, "docker")
    assert e.value.message.startswith('engine "docker" (config.toml engine) is not installed here')


def test_unknown_engine_name_is_93(tmp_path) -> None:
    with pytest.raises(EngineNotInstalledError) as e:
        engine_choice.choose({"PATH": fake_bin(tmp_path, "docker", "podman"), "SANDMAN_ENGINE": "nosuch"})
    assert e.value.message == "unknown engine 'nosuch' (from SANDMAN_ENGINE): use \"docker\", \"podman\" or \"auto\""


def test_named_engines_are_taken_as_said(tmp_path, listening, monkeypatch) -> None:
    monkeypatch.setattr(engine_choice, "DOCKER_SOCKET", listening)
    path = fake_bin(tmp_path, "docker", "podman")
    c = engine_choice.choose({"PATH": path, "SANDMAN_PODMAN_SOCKET": "/tmp/x.sock"}, "podman")
    assert (c.kind, c.base_url, c.why) == ("podman", "unix:///tmp/x.sock", "config.toml engine says podman")
    c = engine_choice.choose({"PATH": path, "SANDMAN_ENGINE": " docker "}, "podman")
    assert (c.kind, c.why) == ("docker", "SANDMAN_ENGINE says docker")
    assert engine_choice.choose({"PATH": path, "SANDMAN_ENGINE": "auto"}, "podman").kind == "docker"


def test_requested_order() -> None:
    assert engine_choice.requested({"SANDMAN_ENGINE": "podman"}, "docker") == ("podman", "SANDMAN_ENGINE")
    assert engine_choice.requested({"SANDMAN_ENGINE": "  "}, "docker") == ("docker", "config.toml engine")
    assert engine_choice.requested({}, None) == ("auto", "auto")


# -- where Podman's socket is: the shims' rule (shims/shim.bash), run as the user it is about --
def _paths_as(uid: int, env: dict[str, str]) -> list[str]:
    """The Podman folder rule run by bash as uid (setpriv): what sandman.engine_choice reads."""
    text = (ROOT / "shims" / "shim.bash").read_text()
    script = (runtime_rules.block(text, "the Podman folder rule")
              + 'sm_podman_paths; printf "%s\\n" "$sm_prun" "$sm_psock" "${sm_psocks[@]}"\n')
    p = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                        "/bin/bash", "-c", script], env={"PATH": "/usr/bin:/bin", **env},
                       capture_output=True, text=True, timeout=30, cwd="/")
    assert p.returncode == 0 and p.stderr == "", p.stderr
    return p.stdout.splitlines()


@pytest.mark.skipif(os.geteuid() != 0, reason="runs the rule as other users (setpriv)")
def test_podman_folder_rules(tmp_path) -> None:
    assert _paths_as(0, {"XDG_RUNTIME_DIR": "/xdg"}) == ["/run", *["/run/podman/podman.sock"] * 3]
    assert _paths_as(4242, {"XDG_RUNTIME_DIR": "/xdg"}) == [
        "/xdg", "/xdg/podman/podman.sock", "/run/podman/podman.sock", "/xdg/podman/podman.sock"]
    # no XDG_RUNTIME_DIR, no /run/user/<uid> of theirs: /tmp, never TMPDIR (it would split state)
    assert _paths_as(4242, {"TMPDIR": str(tmp_path)})[:2] == [
        "/tmp/podman-run-4242", "/tmp/podman-run-4242/podman/podman.sock"]
    # Python reads the same rule (as root here: root's folder and socket)
    found = engine_choice.podman_paths({"XDG_RUNTIME_DIR": "/xdg"})
    assert (found.run_dir, found.socket, found.problem) == ("/run", "/run/podman/podman.sock", "")


@pytest.mark.skipif(os.geteuid() != 0, reason="makes /run/user/<uid> for another user")
def test_podman_folder_is_run_user_only_when_it_is_theirs() -> None:
    """/run/user/<uid> (systemd-logind's) counts only when that user owns it and may write."""
    uid = 4242
    run_user = Path(f"/run/user/{uid}")
    if run_user.exists():
        pytest.skip(f"{run_user} exists on this host")
    run_user.mkdir(mode=0o700, parents=True)
    try:
        os.chown(run_user, uid, uid)
        assert _paths_as(uid, {})[0] == str(run_user)
        os.chown(run_user, 0, 0)  # someone else's folder: Podman's fallback
        assert _paths_as(uid, {})[0] == f"/tmp/podman-run-{uid}"
    finally:
        run_user.rmdir()


# -- subordinate ids: the shims' rule, run by sandman --------------------------------------------
def test_subid_ranges(tmp_path) -> None:
    uid_f, gid_f = tmp_path / "subuid", tmp_path / "subgid"
    uid_f.write_text("alice:100000:65536\n4243:200000:65536\n")
    gid_f.write_text("alice:100000:65536\n")
    files = (str(uid_f), str(gid_f))
    assert engine_choice.subid_ranges("alice", 4242, files) == (["100000+65536", "100000+65536"], "")
    ranges, bob = engine_choice.subid_ranges("bob", 4243, files)  # by uid in subuid, none in subgid
    assert ranges == ["200000+65536", ""]
    assert bob == (f"rootless Podman needs subordinate uid and gid ranges for bob ({gid_f} has "
                   "none): an admin runs `usermod --add-subuids 100000-165535 --add-subgids "
                   "100000-165535 bob`, then `podman system migrate`")
    ranges, carol = engine_choice.subid_ranges("carol", 4244, files)
    assert ranges == ["", ""] and f"({uid_f} has none)" in carol  # the first file missing is said
    # a prefix of a name is not the name, a malformed line is no range, a missing file has none
    uid_f.write_text("alice2:100000:65536\nalice:garbage\nalice:1:2:3\n")
    assert f"({uid_f} has none)" in engine_choice.subid_ranges("alice", 4242, files)[1]
    gone = (str(tmp_path / "nope1"), str(tmp_path / "nope2"))
    assert "nope1 has none" in engine_choice.subid_ranges("alice", 4242, gone)[1]
    # a name with spaces and quotes reaches the rule as one word
    uid_f.write_text("a b'c:5:6\n")
    gid_f.write_text("a b'c:7:8\n")
    assert engine_choice.subid_ranges("a b'c", 1, files) == (["5+6", "7+8"], "")


# -- the host problems sandman recognises --------------------------------------------------------
@pytest.mark.parametrize(("said", "in_fix"), [
    ("Error: OCI runtime error: crun: cgroups in hybrid mode not supported, drop all controllers "
     "from cgroupv2", 'runtime = "runc"'),
    ("Error: runc: runc create failed: unable to start container process: error during container "
     "init: error setting rlimits for ready process: error setting rlimit type 7: operation not "
     "permitted: OCI permission denied", "default_ulimits = []"),
    ("Error: cannot find UID/GID for user bob: no subuid ranges found", "usermod --add-subuids"),
    ("Error: systemd cgroup flag passed, but systemd support for managing cgroups is not available",
     'cgroup_manager = "cgroupfs"'),
    ('level=error msg="invalid internal status, try resetting the pause process with \\"podman '
     'system migrate\\": could not find any running process: no such process"',
     "podman system migrate marks them stopped"),
])
def test_setup_fix_recognises_host_problems(said: str, in_fix: str) -> None:
    assert in_fix in engine_choice.setup_fix(said)
    assert in_fix in engine_choice.setup_fix(said.upper())  # podman versions differ in case


def test_setup_fix_says_nothing_of_other_failures() -> None:
    assert engine_choice.setup_fix("Error: short-name resolution enforced") == ""
    assert engine_choice.setup_fix("") == ""


# -- doctor's socket rule and the commands' early check (status.py) ---------------------------
def podman_at(sock: str) -> engine_choice.EngineChoice:
    return engine_choice.Podman("/bin/true", f"unix://{sock}", True, "test")


def test_socket_state(tmp_path, listening, dead_socket) -> None:
    assert podman_at(listening).socket_state() == "answers"
    assert podman_at(str(tmp_path / "none.sock")).socket_state() == "absent"
    assert podman_at(dead_socket).socket_state() == "stale"
    # sandman's own service wrote its pid beside it; that process is gone: restartable
    pidfile = engine_choice._pidfile(dead_socket)
    pidfile.write_text("999999999\n")
    assert podman_at(dead_socket).socket_state() == "restartable"
    pidfile.write_text(f"{os.getpid()}\n")  # the process lives: not sandman's to replace
    assert podman_at(dead_socket).socket_state() == "stale"


def fresh_context(tmp_path: Path) -> Context:
    """A command's Context as the CLI makes it: its engine chosen from this environment."""
    return Context(paths=Paths.from_env({"SANDMAN_HOME": str(tmp_path / "home")}), config=Config(),
                   env=dict(os.environ))


def test_preflight_refuses_a_stale_podman_socket(tmp_path, dead_socket, monkeypatch) -> None:
    monkeypatch.setenv("PATH", fake_bin(tmp_path, "podman"))
    monkeypatch.setenv("SANDMAN_ENGINE", "podman")
    monkeypatch.setenv("SANDMAN_PODMAN_SOCKET", dead_socket)
    monkeypatch.setattr(engine_choice.Podman, "check_usable", lambda self: None)  # subids: not this test
    with pytest.raises(StaleSocketError) as e:
        status.preflight(fresh_context(tmp_path))
    assert e.value.exit_code == StaleSocketError.exit_code
    assert f"(rm {dead_socket})" in e.value.message
    monkeypatch.setenv("SANDMAN_PODMAN_SOCKET", str(tmp_path / "none.sock"))
    assert status.preflight(fresh_context(tmp_path)).socket_path == str(tmp_path / "none.sock")


def test_a_zombie_service_is_gone(tmp_path, dead_socket) -> None:
    """Where PID 1 never reaps (this CI machine kind), a killed service stays a zombie: its
    socket is still sandman's to replace, not a stale one to refuse."""
    import signal
    import subprocess
    import time

    p = subprocess.Popen(["sleep", "60"])
    try:
        assert engine_choice._alive(str(p.pid))
        p.send_signal(signal.SIGKILL)
        deadline = time.monotonic() + 10
        while engine_choice._alive(str(p.pid)) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert Path(f"/proc/{p.pid}").exists()  # not reaped yet: a zombie
        assert not engine_choice._alive(str(p.pid))
        engine_choice._pidfile(dead_socket).write_text(f"{p.pid}\n")
        assert podman_at(dead_socket).socket_state() == "restartable"
    finally:
        p.kill()
        p.wait()
    assert not engine_choice._alive(str(p.pid))


# -- a Podman stuck on processes that were killed (engine_choice.revive) -------------------------------
STUCK = r'''#!/bin/sh
# podman after every process of its user namespace was killed: each command fails until
# `system migrate`; then `system service unix://PATH` listens on PATH as the real one does
here=$(dirname "$0")
echo "$*" >>"$here/calls"
if [ "$1 $2" = "system migrate" ]; then
  [ -e "$here/migrate-fails" ] && { echo "Error: migrate broke" >&2; exit 125; }
  touch "$here/migrated"; echo "stopped 0565e415e132"; exit 0
fi
if [ ! -e "$here/migrated" ]; then
  echo 'time="2026-11-28T09:57:13Z" level=warning msg="\"/\" is not a shared mount"' >&2
  echo 'time="2026-11-28T09:57:13Z" level=error msg="invalid internal status, try resetting the pause process with \"podman system migrate\": could not find any running process: no such process"' >&2
  exit 1
fi
if [ "$1 $2" = "system service" ]; then
  exec python3 -c 'import socket, sys, time
s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(4); time.sleep(60)' "${4#unix://}"
fi
echo amd64
'''


@pytest.fixture
def stuck(tmp_path: Path) -> Path:
    d = tmp_path / "stuck"
    d.mkdir()
    (d / "podman").write_text(STUCK)
    (d / "podman").chmod(0o755)
    return d


def calls(d: Path) -> list[str]:
    return (d / "calls").read_text().splitlines()


def test_revive_migrates_a_podman_stuck_on_killed_processes(stuck: Path) -> None:
    said = engine_choice.revive(str(stuck / "podman"))
    assert "podman system migrate" in said
    assert calls(stuck)[-1] == "system migrate"
    assert engine_choice.revive(str(stuck / "podman")) == ""  # healthy now: nothing more is done
    assert calls(stuck).count("system migrate") == 1


def test_revive_leaves_a_healthy_or_otherwise_broken_podman_alone(stuck: Path) -> None:
    (stuck / "migrated").touch()
    assert engine_choice.revive(str(stuck / "podman")) == ""
    other = stuck / "other"
    other.write_text("#!/bin/sh\necho \"$*\" >>\"$(dirname \"$0\")/calls\"\n"
                     "echo 'Error: crun: cgroups in hybrid mode not supported' >&2; exit 125\n")
    other.chmod(0o755)
    assert engine_choice.revive(str(other)) == ""
    assert "system migrate" not in calls(stuck)
    assert engine_choice.revive(str(stuck / "no-such-podman")) == ""


def test_revive_knows_both_of_podmans_words_for_it(tmp_path: Path) -> None:
    """While the killed processes are unreaped zombies Podman says another thing."""
    d = tmp_path / "zombies"
    d.mkdir()
    (d / "podman").write_text(STUCK.replace(
        "could not find any running process: no such process",
        "cannot re-exec process to join the existing user namespace"))
    (d / "podman").chmod(0o755)
    assert "podman system migrate" in engine_choice.revive(str(d / "podman"))


def test_revive_says_nothing_when_migrate_fails(stuck: Path) -> None:
    (stuck / "migrate-fails").touch()
    assert engine_choice.revive(str(stuck / "podman")) == ""
    assert calls(stuck)[-1] == "system migrate"


def test_the_service_starts_after_sandman_revives_podman(stuck: Path, tmp_path: Path) -> None:
    sock = str(tmp_path / "run" / "podman.sock")
    choice = engine_choice.Podman(str(stuck / "podman"), f"unix://{sock}", False, "test")
    said: list[str] = []
    try:
        assert choice.ensure_service(tmp_path / "service.log", said.append) is True
        assert engine_choice._answers(sock)
        assert any("podman system migrate" in s for s in said), said
        assert calls(stuck)[0].startswith("system service")  # the first start failed...
        assert "system migrate" in calls(stuck)  # ...was repaired, and the second one answers
    finally:
        pid = engine_choice._pidfile(sock).read_text().strip()
        os.kill(int(pid), 9)


def test_a_service_that_fails_otherwise_is_not_retried(tmp_path: Path) -> None:
    bad = tmp_path / "podman"
    bad.write_text("#!/bin/sh\necho \"$*\" >>\"$(dirname \"$0\")/calls\"\n"
                   "echo 'Error: crun: cgroups in hybrid mode not supported' >&2; exit 125\n")
    bad.chmod(0o755)
    sock = str(tmp_path / "podman.sock")
    choice = engine_choice.Podman(str(bad), f"unix://{sock}", False, "test")
    with pytest.raises(engine_choice.DaemonUnavailableError, match="hybrid mode"):
        choice.ensure_service(tmp_path / "service.log")
    assert [c.split()[:2] for c in calls(tmp_path)] == [["system", "service"], ["info", "--format"]]
