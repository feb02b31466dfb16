"""Promise 9: least privilege, checked on the running container with docker (podman) inspect."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

pytest.register_assert_rewrite("runtime_helpers")
from runtime_helpers import (  # noqa: E402
    Kit,
    token,
    tool_processes,
    user_env,
    wait_for,
)

pytestmark = pytest.mark.docker


def inspect_running(kit: Kit, argv: list[str], env: dict[str, str], cwd: Path,
                    user: bool = False) -> dict:
    """Start a shim running sleep, inspect the container its tool runs in, then stop it."""
    tok = token()
    p = subprocess.Popen(kit.argv([*argv, "sh", "-c", f"sleep 60; : {tok}"], user=user), env=env,
                         cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    try:
        assert wait_for(lambda: tool_processes(tok, pid=p.pid, home=kit.home, kit=kit), 30), \
            p.stderr
        cid = tool_processes(tok, pid=p.pid, home=kit.home, kit=kit)[0].split(":")[0]
        return json.loads(kit.cli("inspect", cid))[0]
    finally:
        p.terminate()
        p.communicate(timeout=30)


def check_least_privilege(kit: Kit, info: dict, user: str, network: bool) -> None:
    host = info["HostConfig"]
    assert "no-new-privileges" in (host.get("SecurityOpt") or [])
    if kit.podman:  # Podman lists every default capability it dropped; none is left
        assert not info.get("EffectiveCaps") and not info.get("BoundingCaps"), info
    else:
        assert host.get("CapDrop") == ["ALL"]
    nets = ({"bridge", "slirp4netns"} if kit.podman else {"bridge"}) if network else {"none"}
    assert host.get("NetworkMode") in nets  # rootless Podman: slirp4netns, user-mode
    assert not host.get("CapAdd")
    assert host.get("Privileged") is False
    assert not host.get("Devices")
    assert info["Config"]["User"] == user
    sources = [m.get("Source", "") for m in info.get("Mounts", [])]
    runtime = f"/tmp/podman-run-{kit.runner[0]}"  # the Podman user's runtime folder
    assert not [s for s in sources if s.endswith(("docker.sock", "podman.sock"))
                or s in ("/", "/run", "/var/run", "/tmp", runtime, f"{runtime}/podman")], sources


def test_running_container_has_least_privilege(kit: Kit, mode: str, work: Path) -> None:
    info = inspect_running(kit, [kit.shim("rtprobe-1")], kit.env(mode), work)
    check_least_privilege(kit, info, "{}:{}".format(*kit.runner), network=False)
    probe = ("grep -E '^(CapEff|NoNewPrivs)' /proc/self/status; "
             "tail -n +3 /proc/net/dev | cut -d: -f1")
    inside = kit.run([kit.shim("rtprobe-1"), "sh", "-c", probe], env=kit.env(mode), cwd=work)
    # and no network: the loopback alone
    assert inside.stdout.split() == [b"CapEff:", b"0000000000000000", b"NoNewPrivs:", b"1",
                                     b"lo"], inside.stderr


def test_network_only_when_the_recipe_asks(kit: Kit, mode: str, work: Path) -> None:
    info = inspect_running(kit, [kit.shim("rtprobe-net")], kit.env(mode), work)
    check_least_privilege(kit, info, "{}:{}".format(*kit.runner), network=True)


def test_non_root_user_runs_as_itself(kit: Kit, mode: str, work: Path, user_home: Path) -> None:
    """Docker: uid 54321 with no passwd entry. Rootless Podman: the Podman user (another uid
    has its own image store), inside the container as itself through --userns keep-id."""
    kit.own(work)
    info = inspect_running(kit, [kit.shim("rtprobe-1")], user_env(kit, mode, user_home), work,
                           user=True)
    check_least_privilege(kit, info, "{}:{}".format(*kit.invoker), network=False)
