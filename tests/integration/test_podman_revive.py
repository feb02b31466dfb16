"""A rootless Podman whose processes were all killed, for real, and sandman bringing it back.

kill -9 of a user's processes, the OOM killer, or logind's KillUserProcesses at logout take the
conmon of each running container with them; Podman 4.3 then refuses every command ("could not
find any running process") until `podman system migrate`. This is what a CI stop does to the
tests' own Podman user, and what a user meets the morning after. sandman's commands repair it
(engine_choice.revive, when Podman's API service does not start) and so does doctor.

The user is a scratch one of its own (its processes are killed here, the kit's user's must not
be), with bases loaded from Docker's store.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from podman_helpers import SUBID_START, PodmanUser, ensure_bases, ensure_podman_user

from sandman import engine_choice

pytestmark = pytest.mark.docker

USER = "sandman-podkill"
BASE = "debian:bookworm-slim"


@pytest.fixture(scope="module")
def user() -> PodmanUser:
    u = ensure_podman_user(USER, start=SUBID_START + 8 * 65536)
    ensure_bases(u, (BASE,))
    return u


@pytest.fixture
def home(user: PodmanUser) -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="sandman-revive-"))
    d.chmod(0o755)
    h = d / "home"
    h.mkdir()
    shutil.chown(h, user.uid, user.gid)
    yield h
    kill_all(user)  # the service sandman started, and anything else of this user's
    shutil.rmtree(d, ignore_errors=True)


def kill_all(user: PodmanUser) -> None:
    """Every process of the user killed at once, as at a logout or a CI stop; returns when the
    dead are reaped too. An init reaps at once; this VM's PID 1 takes its time, and while a
    killed conmon is an unreaped zombie Podman's state is another one (its migrate then times
    out waiting for the container's exit file): not the state a host is left in."""
    subprocess.run(["pkill", "-KILL", "-U", str(user.uid)], capture_output=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ps = subprocess.run(["ps", "-U", str(user.uid), "-o", "pid=,stat=,comm="],
                            capture_output=True, text=True).stdout.strip()
        if not ps:
            return
        time.sleep(0.2)
    raise AssertionError(f"processes of {user.name} not gone 120 s after SIGKILL:\n{ps}")


def break_podman(user: PodmanUser) -> str:
    """A running container, then every process of the user killed: Podman refuses everything.
    Returns the container's id."""
    cid = user.podman("run", "-d", "--rm=false", BASE, "sleep", "600").strip().splitlines()[-1]
    assert user.podman("inspect", "-f", "{{.State.Status}}", cid).strip() == "running"
    kill_all(user)
    stuck = subprocess.run(user.argv(["podman", "ps"]), env=user.env(), cwd="/",
                           capture_output=True, text=True, timeout=120)
    assert stuck.returncode != 0 and engine_choice.DEAD_NAMESPACE in stuck.stderr, stuck.stderr
    return cid


def test_the_next_sandman_command_repairs_a_killed_podman(user: PodmanUser, home: Path) -> None:
    env = user.env(SANDMAN_HOME=str(home), SANDMAN_ENGINE="podman")
    # this home's own bootstrap made BASE (the record `sandman bootstrap` keeps): the command
    # below is then a quick "already present", not a new mmdebstrap run
    made = user.podman("image", "inspect", "-f", "{{.Id}}", BASE).strip()
    made = made if made.startswith("sha256:") else f"sha256:{made}"
    record = ("import sys; from sandman import provenance; from sandman.paths import Paths; "
              "provenance.record_made(Paths.from_env(), sys.argv[1], sys.argv[2])")
    subprocess.run(user.argv([user.python, "-c", record, BASE, made]), env=env, cwd="/",
                   check=True, timeout=120)
    cid = break_podman(user)
    p = user.sandman("bootstrap", BASE, env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    err = p.stderr.decode()
    assert "sandman ran `podman system migrate`" in err and "Traceback" not in err, err
    assert f"{BASE}: already present" in p.stdout.decode() + err
    # the killed container no longer counts as running (Podman 4.3 says "stopping" for good,
    # `rm -f` removes it), and Podman runs containers again
    assert user.podman("inspect", "-f", "{{.State.Status}}", cid).strip() != "running"
    assert user.podman("run", "--rm", BASE, "echo", "alive").strip() == "alive"
    user.podman("rm", "-f", cid)


def test_doctor_repairs_a_killed_podman_and_says_so(user: PodmanUser, home: Path) -> None:
    cid = break_podman(user)
    env = user.env(SANDMAN_HOME=str(home), SANDMAN_ENGINE="podman")
    doc = user.sandman("doctor", env=env, timeout=300)
    lines = doc.stdout.decode().splitlines()
    [state] = [ln for ln in lines if "podman state:" in ln]
    assert state.startswith("ok    podman state: ") and "podman system migrate" in state, lines
    assert [ln for ln in lines if ln.startswith("ok    OCI runtime: ")], lines
    assert [ln for ln in lines if ln.startswith("ok    podman run: ")], lines
    assert user.podman("inspect", "-f", "{{.State.Status}}", cid).strip() != "running"
    user.podman("rm", "-f", cid)


def test_a_healthy_podman_is_not_migrated(user: PodmanUser, home: Path) -> None:
    """Running containers of a healthy Podman are never stopped by sandman's repair."""
    cid = user.podman("run", "-d", BASE, "sleep", "600").strip().splitlines()[-1]
    try:
        p = subprocess.run(user.argv([user.python, "-c", "from sandman.engine_choice import revive; "
                                      "print(repr(revive('podman')))"]),
                           env=user.env(), cwd="/", capture_output=True, text=True, timeout=120)
        assert (p.returncode, p.stdout.strip()) == (0, "''"), p.stderr
        assert user.podman("inspect", "-f", "{{.State.Status}}", cid).strip() == "running"
    finally:
        user.podman("rm", "-f", "-t", "0", cid)
