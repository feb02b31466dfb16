"""Promise 9: least privilege, checked on the running container with docker inspect."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

pytest.register_assert_rewrite("runtime_helpers")
from runtime_helpers import (  # noqa: E402
    TEST_GID,
    TEST_UID,
    Kit,
    as_test_user,
    docker,
    token,
    tool_processes,
    user_env,
    wait_for,
)

pytestmark = pytest.mark.docker


def inspect_running(argv: list[str], env: dict[str, str], cwd: Path, home: Path) -> dict:
    """Start a shim running sleep, inspect the container its tool runs in, then stop it."""
    tok = token()
    p = subprocess.Popen([*argv, "sh", "-c", f"sleep 60; : {tok}"], env=env, cwd=cwd,
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert wait_for(lambda: tool_processes(tok, pid=p.pid, home=home), 30), p.stderr
        cid = tool_processes(tok, pid=p.pid, home=home)[0].split(":")[0]
        return json.loads(docker("inspect", cid))[0]
    finally:
        p.terminate()
        p.communicate(timeout=30)


def check_least_privilege(info: dict, user: str, network: str) -> None:
    host = info["HostConfig"]
    assert "no-new-privileges" in (host.get("SecurityOpt") or [])
    assert host.get("CapDrop") == ["ALL"]
    assert not host.get("CapAdd")
    assert host.get("Privileged") is False
    assert host.get("NetworkMode") == network
    assert not host.get("Devices")
    assert info["Config"]["User"] == user
    sources = [m.get("Source", "") for m in info.get("Mounts", [])]
    assert not [s for s in sources if "docker.sock" in s or s in ("/", "/run", "/var/run")], sources


def test_running_container_has_least_privilege(kit: Kit, mode: str, work: Path) -> None:
    info = inspect_running([kit.shim("rtprobe-1")], kit.env(mode), work, kit.home)
    check_least_privilege(info, "0:0", "none")
    probe = "grep -E '^(CapEff|NoNewPrivs)' /proc/self/status"
    inside = subprocess.run([kit.shim("rtprobe-1"), "sh", "-c", probe], env=kit.env(mode), cwd=work,
                            capture_output=True)
    assert inside.stdout.split() == [b"CapEff:", b"0000000000000000", b"NoNewPrivs:", b"1"]


def test_network_only_when_the_recipe_asks(kit: Kit, mode: str, work: Path) -> None:
    info = inspect_running([kit.shim("rtprobe-net")], kit.env(mode), work, kit.home)
    check_least_privilege(info, "0:0", "bridge")


def test_non_root_user_runs_as_itself(kit: Kit, mode: str, work: Path, user_home: Path) -> None:
    os.chown(work, TEST_UID, TEST_GID)
    info = inspect_running(as_test_user([kit.shim("rtprobe-1")]), user_env(kit, mode, user_home), work,
                           kit.home)
    check_least_privilege(info, f"{TEST_UID}:{TEST_GID}", "none")
