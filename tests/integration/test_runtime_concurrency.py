"""Promise 8 (the race-free part): parallel first runs build once; failed or interrupted
builds keep the last good image and leave no containers or images behind."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from helpers import ImageRemover, paths_of, sandman_argv

pytest.register_assert_rewrite("runtime_helpers")
from runtime_helpers import Kit, token, wait_for  # noqa: E402

from sandman.errors import BuildError  # noqa: E402
from sandman.names import LABEL_FINGERPRINT, LABEL_TOOL  # noqa: E402

pytestmark = pytest.mark.docker

RECIPE = """\
schema = 1
tool = "{tool}"
description = "concurrency probe"
smoke = {smoke}

[versions."1"]
base = "debian:bookworm-slim"
run = [{steps}]
"""


class Scene:
    """A private home and recipe folder for a tool name used nowhere else."""

    def __init__(self, kit: Kit) -> None:
        self.kit = kit
        self.tool = f"rtc{token()}"
        self.root = kit.scratch("conc")
        self.home = self.root / "home"
        self.recipe = self.root / "recipes" / self.tool / "recipe.toml"
        kit.mkdirs(self.recipe.parent)
        self.env = kit.env(SANDMAN_HOME=str(self.home),
                           SANDMAN_RECIPE_PATH=str(self.recipe.parent.parent))
        self.env["PATH"] = f"{paths_of(self.home).bin_dir}:{self.env['PATH']}"

    def sandman(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.kit.sandman(*args, env=self.env, **kw)

    def write(self, steps: list[str], smoke: list[str] | None = None) -> None:
        self.recipe.write_text(RECIPE.format(tool=self.tool, steps=", ".join(json.dumps(s) for s in steps),
                                             smoke=json.dumps(smoke or ["true"])))

    def images(self) -> set[str]:
        return set(self.kit.cli("images", "-q", "--no-trunc", "--filter",
                                f"label={LABEL_TOOL}={self.tool}").split())

    def tagged(self) -> set[str]:
        return set(self.kit.cli("images", "--filter", f"label={LABEL_TOOL}={self.tool}",
                                "--format", "{{.Repository}}:{{.Tag}}").split())

    def traces(self, mark: str) -> list[str]:
        """Containers (any state) whose command mentions mark: build steps, smoke tests.

        Podman: its build containers are Buildah's (`ps --external`), and a build step runs
        as a plain process of the user, seen in /proc (Podman has no daemon holding it).
        """
        if not self.kit.podman:
            out = self.kit.cli("ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Command}}")
            return [ln for ln in out.splitlines() if mark in ln]
        out = self.kit.cli("ps", "-a", "--external", "--no-trunc", "--format",
                           "{{.ID}} {{.Command}}")
        found = [ln for ln in out.splitlines() if mark in ln]
        for proc in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                cmd = proc.read_bytes()
            except OSError:
                continue
            if mark.encode() in cmd and b"pytest" not in cmd:
                found.append(f"pid {proc.parent.name}: {cmd.decode(errors='replace')}")
        return found


@pytest.fixture
def scene(kit: Kit, remove_images_after: ImageRemover) -> Iterator[Scene]:
    s = Scene(kit)
    remove_images_after(s.tool, engine=kit.engine_cli)
    yield s
    shutil.rmtree(s.root, ignore_errors=True)


def dangling(kit: Kit) -> set[str]:
    return set(kit.cli("images", "-q", "--no-trunc", "--filter", "dangling=true").split())


def ours(kit: Kit, images: set[str], mark: str) -> list[str]:
    """Those of images whose history mentions mark (other builds may run on this daemon)."""
    found = []
    for i in images:
        hist = kit.cli("history", "--no-trunc", "--format", "{{.CreatedBy}}", i, check=False)
        if mark in hist:
            found.append(i)
    return found


def test_eight_parallel_first_runs_build_once(scene: Scene, work: Path,
                                              request: pytest.FixtureRequest) -> None:
    scene.write([f"echo {scene.tool} && sleep 2"])

    def first_run(i: int) -> subprocess.CompletedProcess:
        return scene.sandman("-q", "run", f"{scene.tool}@1", "--", "sh", "-c", f"echo run-{i}",
                             cwd=work, timeout=600)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(first_run, range(8)))
    assert [r.returncode for r in results] == [0] * 8, [r.stderr for r in results]
    assert [r.stdout for r in results] == [f"run-{i}\n".encode() for i in range(8)]
    assert len(scene.images()) == 1  # one build, one image with that fingerprint
    fps = {json.loads(scene.kit.cli("image", "inspect", i))[0]["Config"]["Labels"][LABEL_FINGERPRINT]
           for i in scene.images()}
    assert len(fps) == 1


def test_failed_build_keeps_the_good_image_and_leaves_nothing(scene: Scene, work: Path) -> None:
    scene.write([f"echo {scene.tool}-good"])
    assert scene.sandman("-q", "install", f"{scene.tool}@1").returncode == 0
    good_images, good_tags = scene.images(), scene.tagged()
    shim = str(paths_of(scene.home).bin_dir / f"{scene.tool}-1")
    dangling_before = dangling(scene.kit)
    # a failing step
    mark = f"{scene.tool}-fails"
    scene.write([f"echo {mark}; exit 3"])
    p = scene.sandman("-q", "install", f"{scene.tool}@1")
    assert p.returncode == BuildError.exit_code
    # a build that succeeds but whose smoke test fails: the new image is discarded
    smoke_mark = f"{scene.tool}-smoke"
    scene.write([f"echo {smoke_mark}"], smoke=["sh", "-c", f"exit 4 # {smoke_mark}"])
    p = scene.sandman("-q", "install", f"{scene.tool}@1")
    assert p.returncode == BuildError.exit_code and b"smoke test" in p.stderr
    assert scene.images() == good_images and scene.tagged() == good_tags
    assert scene.traces(mark) == [] and scene.traces(smoke_mark) == []
    assert ours(scene.kit, dangling(scene.kit) - dangling_before, mark) == []
    assert ours(scene.kit, dangling(scene.kit) - dangling_before, smoke_mark) == []
    ok = scene.kit.run([shim, "echo", "still here"], env=scene.env, cwd=work)
    assert (ok.returncode, ok.stdout) == (0, b"still here\n")


def test_interrupted_build_keeps_the_good_image_and_leaves_nothing(scene: Scene, work: Path) -> None:
    """Podman too: its API service would go on with the build, so sandman builds there with
    `podman build` as a child and stops its step on Ctrl-C (Engine._podman_build)."""
    scene.write([f"echo {scene.tool}-good"])
    assert scene.sandman("-q", "install", f"{scene.tool}@1").returncode == 0
    good_images, good_tags = scene.images(), scene.tagged()
    dangling_before = dangling(scene.kit)
    mark = f"{scene.tool}-slow"
    scene.write([f"echo {mark}; sleep 120"])
    python = scene.kit.user.python if scene.kit.user is not None else sys.executable
    p = scene.kit.popen(sandman_argv("-q", "install", f"{scene.tool}@1", python=python),
                        env=scene.env, cwd="/", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert wait_for(lambda: scene.traces(mark), 120, interval=0.5), "the build never started"
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 130, err
    assert b"Traceback" not in err
    assert wait_for(lambda: not scene.traces(mark), 30), scene.traces(mark)
    time.sleep(1)
    assert scene.images() == good_images and scene.tagged() == good_tags
    assert ours(scene.kit, dangling(scene.kit) - dangling_before, mark) == []
    ok = scene.kit.run([str(paths_of(scene.home).bin_dir / f"{scene.tool}-1"), "true"], env=scene.env,
                       cwd=work)
    assert ok.returncode == 0
