"""The shim's front (shims/front.sh, issue 22 item 1): the fast path in sh, before any bash.

A warm call in a loop runs only the front: /bin/sh starts, reads five values, finds the route
and execs the agent's client. Everything else goes to bash, which runs the same file again and
skips the front. These tests run real shims (rendered, on disk, executable) under the shells
the kernel or a user could pick: the shebang's /bin/sh, dash by name, bash in POSIX mode (the
/bin/sh of other distributions) and bash itself. The agent is a stand-in that says how it was
called; the daemon is never reached.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from shim_helpers import ctx

from sandman import agent
from sandman.config import ToolSettings
from sandman.recipes import Runtime
from sandman.shims import front_text, render, runtime_text

SAYS = "fast path:"


@pytest.fixture
def shim(tmp_path: Path) -> Path:
    """demo-1.0, warm by default (config), its route written down, its agent a stand-in."""
    c = ctx(tmp_path, Runtime(entrypoint=("demo",)), ToolSettings(warm=True))
    path = c.paths.bin_dir / "demo-1.0"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(c, "demo-1.0"))
    path.chmod(0o755)
    binary = agent.binary_path(c.paths)
    binary.parent.mkdir(parents=True, exist_ok=True)
    binary.write_text(f'#!/bin/sh\nprintf "%s\\n" "{SAYS}" "$@"\n')
    binary.chmod(0o755)
    route = c.paths.state_dir / "warm" / "route-demo-1.0"
    route.parent.mkdir(parents=True, exist_ok=True)
    route.write_bytes(b"sandman-route-2\0")
    return path


def call(argv: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """argv in tmp_path/work (the user's HOME is tmp_path: a cwd the runtime mounts)."""
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    e = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "DOCKER_HOST": "tcp://127.0.0.1:9",
         **env}
    return subprocess.run(argv, cwd=work, env=e, capture_output=True, text=True, timeout=60)


def route_of(shim: Path) -> str:
    return str(shim.parent.parent / "state" / "warm" / "route-demo-1.0")


SHELLS = {
    "kernel": [],  # the shebang: /bin/sh
    "dash": ["dash"],
    "bash --posix": ["bash", "--posix"],  # /bin/sh on other distributions
}


@pytest.mark.parametrize("shell", SHELLS)
def test_a_call_with_a_route_goes_straight_to_the_client(shim: Path, tmp_path: Path,
                                                         shell: str) -> None:
    if SHELLS[shell] and not shutil.which(SHELLS[shell][0]):
        pytest.skip(f"no {SHELLS[shell][0]} on this host")
    args = ["a b", "", "$(touch pwned)", "-x", "é"]
    p = call([*SHELLS[shell], str(shim), *args], tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split("\n")[:-1] == [SAYS, "route", route_of(shim), str(shim), *args]
    assert p.stderr == "" and not (tmp_path / "work" / "pwned").exists()


def test_bash_in_the_environment_does_not_fool_sh(shim: Path, tmp_path: Path) -> None:
    """An exported BASH_VERSION (a user's odd profile): sh still runs the front, and never
    reads the bash part of the file (it would stop at the first array)."""
    p = call([str(shim), "x"], tmp_path, BASH_VERSION="5.2.15(1)-release")
    assert (p.returncode, p.stdout.splitlines()[:2], p.stderr) == (0, [SAYS, "route"], "")


@pytest.mark.parametrize("env", [
    {"SANDMAN_WARM": "0"}, {"SANDMAN_AGENT": "off"}, {"SANDMAN_ROUTE_SKIP": "1"},
    {"SANDMAN_AGENT_SKIP": "1"}, {"SANDMAN_DRY_RUN": "1"},
], ids=lambda e: ",".join(e))
def test_every_switch_that_says_no_hands_the_call_to_bash(shim: Path, tmp_path: Path,
                                                          env: dict[str, str]) -> None:
    """Bash runs the shim (here in dry-run mode, so the call is printed, not made): the
    runtime decides as always, and sees the switches the front read."""
    p = call([str(shim), "x"], tmp_path, **{"SANDMAN_DRY_RUN": "1", **env})
    assert p.returncode == 0, p.stderr
    assert SAYS not in p.stdout
    assert "sandman/demo:1.0-abc" in p.stdout  # the runtime's dry run: the container it would run


def test_without_a_route_or_an_agent_bash_runs_it(shim: Path, tmp_path: Path) -> None:
    route = Path(route_of(shim))
    memo = route.read_bytes()
    route.unlink()
    p = call([str(shim), "x"], tmp_path, SANDMAN_WARM="1")
    assert SAYS not in p.stdout  # (bash: a warm start against no daemon, then cold, failing)
    route.write_bytes(memo)
    binary = shim.parent.parent / "data" / "agent"
    for f in binary.iterdir():
        f.chmod(0o644)  # an agent that cannot run (a half-copied home, a noexec mount)
    p = call([str(shim), "x"], tmp_path, SANDMAN_WARM="1")
    assert SAYS not in p.stdout and "Permission denied" not in p.stderr, p.stderr


def test_a_config_changed_after_the_shim_leaves_the_fast_path(shim: Path, tmp_path: Path) -> None:
    """config.toml newer than the shim: the runtime rewrites the shim first (its refresh), so
    the front must not take the old route. With SANDMAN_NO_REFRESH the runtime would not
    refresh either, and the route stands."""
    config = shim.parent.parent / "config.toml"
    config.write_text("")
    st = shim.stat()
    os.utime(config, ns=(st.st_atime_ns, st.st_mtime_ns + 1))  # 1 ns newer: sh compares ns
    p = call([str(shim), "x"], tmp_path, SANDMAN_NO_REFRESH="1")
    assert p.stdout.splitlines()[:2] == [SAYS, "route"], p.stderr
    # without it: bash, whose refresh runs `sandman reshim demo@1.0` (not installed in this
    # home: it fails, and says so)
    p = call([str(shim), "x"], tmp_path)
    assert SAYS not in p.stdout
    assert "could not apply the changed" in p.stderr, p.stderr


def test_bash_skips_the_front_and_reads_the_switches_from_it(shim: Path, tmp_path: Path) -> None:
    """`bash shim` (or `sandman run`, which runs the script with bash -c) never takes the fast
    path; the switches still come from the front's lines, which bash runs."""
    p = call(["bash", str(shim), "x"], tmp_path, SANDMAN_DRY_RUN="1")
    assert (p.returncode, SAYS in p.stdout) == (0, False), p.stderr
    assert "sm_warm=" in front_text() and "sm_warm=" not in runtime_text()
    assert "sm_agent_on=" in front_text() and "sm_agent_on=" not in runtime_text()


def test_the_front_is_posix_and_the_runtime_has_no_fast_path() -> None:
    front = front_text()
    assert "[[" not in front.replace("'[[ ! -o posix ]]'", "")  # sh: only the eval'd probe
    assert 'exec "$SM_AGENT" route' in front
    assert '"$SM_AGENT" route' not in runtime_text()  # one fast path: the front's
    if shutil.which("dash"):
        p = subprocess.run(["dash", "-n"], input=front, capture_output=True, text=True)
        assert (p.returncode, p.stderr) == (0, "")
