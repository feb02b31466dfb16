"""The launch plan (sandman/plan.py): the call-independent argv of a shim's container, asserted
word for word, and the dry run of a real rendered shim, which needs no daemon."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
from shim_helpers import argv_of, ctx, dry_run

from sandman import engine_choice, names, plan
from sandman.recipes import Runtime
from sandman.shims import render, shim_templates_dir

DOCKER = engine_choice.Docker("/usr/bin/docker", "unix:///var/run/docker.sock", False, "test")
PODMAN = engine_choice.Podman("/usr/bin/podman", "unix:///run/user/1000/podman/podman.sock", True, "test")


def labels(tool: str, version: str) -> list[str]:
    return ["--label", f"{names.LABEL_ROLE}=run", "--label", f"{names.LABEL_TOOL}={tool}",
            "--label", f"{names.LABEL_VERSION}={version}", "--label", f"{names.LABEL_HOST}=box",
            "--label", f"{names.LABEL_REAPER}=/h/reaper.pid"]


def test_a_plain_tool_on_docker() -> None:
    p = plan.LaunchPlan("jq", "1.7", "sandman/jq:1.7-abc", "none", host="box",
                        reaper_pidfile="/h/reaper.pid")
    assert p.run_args(DOCKER) == [
        "--rm", "-i", "--init", "--log-driver", "none", "--pull", "never", *labels("jq", "1.7"),
        "--security-opt", "no-new-privileges", "--cap-drop", "ALL",
        "--network", "none", "--entrypoint", ""]


def test_grants_platform_and_rootless_podman() -> None:
    p = plan.LaunchPlan("symcli", "9.2", "img", "bridge", platform="linux/arm64",
                        cap_add=("NET_RAW",), devices=("/dev/fuse",), host="box",
                        reaper_pidfile="/h/reaper.pid")
    tail = ["--platform", "linux/arm64", "--cap-add", "NET_RAW", "--device", "/dev/fuse"]
    head = ["--rm", "-i", "--init", "--log-driver", "none", "--pull", "never",
            *labels("symcli", "9.2"), "--security-opt", "no-new-privileges", "--cap-drop", "ALL"]
    assert p.run_args(PODMAN) == [*head, "--network", "slirp4netns", "--entrypoint", "",
                                  "--userns", "keep-id", *tail]
    root, user = p.run_args_by_caller(PODMAN)
    assert root == [*head, "--network", "bridge", "--entrypoint", "", *tail]  # rootful Podman
    assert user == p.run_args(PODMAN)
    assert p.run_args_by_caller(DOCKER) == (p.run_args(DOCKER),) * 2
    assert "--userns" not in p.run_args(DOCKER) and "slirp4netns" not in p.run_args(DOCKER)


def test_probes_share_the_security_options() -> None:
    assert engine_choice.probe_options(DOCKER, network=False) == {
        "security_opt": ["no-new-privileges"], "cap_drop": ["ALL"], "network_mode": "none",
        "labels": {names.LABEL_ROLE: names.ROLE_PROBE}}
    assert engine_choice.probe_options(DOCKER, network=True)["network_mode"] is None  # the default
    assert engine_choice.probe_options(PODMAN, network=True)["network_mode"] == "slirp4netns"


@pytest.fixture
def work(tmp_path: Path) -> Path:
    w = tmp_path / "work"
    w.mkdir()
    return w


def test_the_shim_runs_the_plan_it_was_given(tmp_path: Path, work: Path) -> None:
    """A dry run (no daemon: DOCKER_HOST points nowhere) prints exactly the plan's words, then
    only the call's own: the runtime adds, it never re-decides."""
    c = dataclasses.replace(ctx(tmp_path, Runtime(entrypoint=("demo",), network="bridge")),
                            engine=DOCKER)
    p = dry_run(render(c, "demo-1.0"), ["x"], work)
    assert p.returncode == 0, p.stderr
    argv = argv_of(p.stdout)
    want = plan.LaunchPlan("demo", "1.0", "sandman/demo:1.0-abc", "bridge",
                           host=os.uname().nodename,
                           reaper_pidfile=str(c.paths.reaper_pidfile)).run_args(DOCKER)
    # printed for running by hand: no shim behind it, so no reaper's label (shim.bash)
    i = want.index(f"{names.LABEL_REAPER}={c.paths.reaper_pidfile}")
    want = want[:i - 1] + want[i + 1:]
    assert argv[:2] == [DOCKER.cli, "run"]
    assert argv[2:2 + len(want)] == want
    call = argv[2 + len(want):argv.index("sandman/demo:1.0-abc")]
    assert call[:2] == ["--name", call[1]] and call[1].startswith("sandman-demo-1.0-")
    assert call[call.index("--user") + 1].startswith(f"{os.geteuid()}:")
    assert {"--security-opt", "--cap-drop", "--network", "--userns"}.isdisjoint(call)


def test_the_runtime_never_chooses_the_engine() -> None:
    """SANDMAN_ENGINE is read by sandman's commands, once (sandman/engine_choice.py); the runtime only
    hands the shim's own engine to the processes it starts (the reaper, the agent's build)."""
    for f in ("shim.bash", "warm.bash"):
        text = (shim_templates_dir() / f).read_text()
        uses = [ln.strip() for ln in text.splitlines() if "SANDMAN_ENGINE" in ln]
        assert all("SANDMAN_ENGINE=$sm_engine setsid" in u for u in uses), (f, uses)
        assert "slirp4netns" not in text and "keep-id" not in text  # plan.py's words, not its
