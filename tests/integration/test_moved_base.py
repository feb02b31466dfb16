"""A base bootstrapped again under the same name, on a daemon that several homes share.

The fingerprint names a base by reference, so it still matches the image built on the old
base. A home that installs now must not take that image (its `list` would say
`image-stale: base` the moment the install ends): it builds on the new base, and the homes
after it find that build. A home that installed before keeps its image and its shim runs.

The base here is a private name for debian:bookworm-slim: moving the shared name would move
it under every other test on this daemon.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest
from helpers import base_env, paths_of, record_file, run_sandman
from teams_helpers import fresh_home, unique_tool

from sandman.names import LABEL_TOOL

pytestmark = pytest.mark.docker


def cli(home: Path, *args: str, recipes: Path) -> subprocess.CompletedProcess:
    return run_sandman(*args, env={**base_env(home), "SANDMAN_RECIPE_PATH": str(recipes)})


def states(home: Path, recipes: Path) -> dict[str, str]:
    p = cli(home, "list", "--json", recipes=recipes)
    assert p.returncode == 0, p.stderr
    return {f"{i['tool']}@{i['version']}": i["state"] for i in json.loads(p.stdout)}


def record(home: Path, tool: str) -> dict:
    return json.loads(record_file(home, tool, "1").read_text())


def shim(home: Path, tool: str) -> str:
    p = subprocess.run([str(paths_of(home).bin_dir / f"{tool}-1")], env=base_env(home),
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return p.stdout


def write_recipe(recipes: Path, tool: str, base: str) -> None:
    (recipes / tool).mkdir(parents=True)
    (recipes / tool / "recipe.toml").write_text(
        f'schema = 1\ntool = "{tool}"\ndescription = "a moved base"\n'
        f'entrypoint = ["cat", "/usr/local/share/{tool}.txt"]\n\n'
        f'[versions."1"]\nbase = "{base}"\n'
        f"run = [\"echo '{tool} one' > /usr/local/share/{tool}.txt\"]\n")


@dataclass(frozen=True)
class Setup:
    tool: str
    recipes: Path  # SANDMAN_RECIPE_PATH: the tool's recipe, built on base
    base: str  # a private name for debian:bookworm-slim
    move: Callable[[str], str]  # Dockerfile lines on top of that image become what base holds


@pytest.fixture
def setup(tmp_path: Path, docker_client, remove_images_after) -> Iterator[Setup]:
    """A tool on a base of its own, and how to move the base (returns the new id); the base
    names, the moved bases and the tool's images are all gone after."""
    tool = unique_tool()
    remove_images_after(tool)
    base = f"sandman-test-base/{tool}:1"
    write_recipe(tmp_path / "recipes", tool, base)
    docker_client.images.get("debian:bookworm-slim").tag(base)
    made: list[str] = []

    def move(lines: str) -> str:
        img, _ = docker_client.images.build(
            fileobj=io.BytesIO(f"FROM debian:bookworm-slim\n{lines}\n".encode()), rm=True)
        img.tag(base)
        made.append(img.id)
        return img.id

    try:
        yield Setup(tool, tmp_path / "recipes", base, move)
    finally:
        docker_client.images.remove(base)
        for img in docker_client.images.list(filters={"label": f"{LABEL_TOOL}={tool}"}):
            docker_client.images.remove(img.id, force=True)  # the moved bases' children first
        for ident in made:  # with what a failed build left on it (its cached steps)
            remove_tree(docker_client, ident)


def remove_tree(docker_client, ident: str) -> None:
    for child in docker_client.api.images(all=True):
        if child.get("ParentId") == ident:
            remove_tree(docker_client, child["Id"])
    with contextlib.suppress(docker.errors.ImageNotFound):  # pruned with its last child
        docker_client.images.remove(ident, force=True)


def test_a_home_installing_after_the_base_moved_builds_on_the_new_one(
        tmp_path: Path, docker_client, setup: Setup) -> None:
    tool, recipes, base, move = setup.tool, setup.recipes, setup.base, setup.move
    first = docker_client.images.get(base).id
    a, b, c = (fresh_home(tmp_path, n) for n in "abc")
    p = cli(a, "install", f"{tool}@1", recipes=recipes)
    assert p.returncode == 0 and f"built sandman/{tool}:" in p.stderr, p.stderr
    assert record(a, tool)["bases"] == {base: first}
    assert states(a, recipes) == {f"{tool}@1": "current"}

    # bootstrapped again: the name now holds another image (here, a label on the same files)
    moved = move("LABEL sandman-test=moved")
    assert states(a, recipes) == {f"{tool}@1": "image-stale: base"}

    p = cli(b, "install", f"{tool}@1", recipes=recipes)
    assert p.returncode == 0 and f"built sandman/{tool}:" in p.stderr, p.stderr
    rec_a, rec_b = record(a, tool), record(b, tool)
    assert rec_b["fingerprint"] == rec_a["fingerprint"]
    assert rec_b["bases"] == {base: moved} and rec_b["image_id"] != rec_a["image_id"]
    assert states(b, recipes) == {f"{tool}@1": "current"}
    assert docker_client.images.get(rec_b["image_tag"]).id == rec_b["image_id"]

    # the first home's install holds its own image: it runs, and says the tag moved on
    assert states(a, recipes) == {f"{tool}@1": "image-replaced"}
    assert shim(a, tool) == shim(b, tool) == f"{tool} one\n"

    # the next home finds the new build: cached, not built again
    p = cli(c, "install", f"{tool}@1", recipes=recipes)
    assert p.returncode == 0 and f"cached sandman/{tool}:" in p.stderr, p.stderr
    assert record(c, tool)["image_id"] == rec_b["image_id"]
    assert states(c, recipes) == {f"{tool}@1": "current"}


def test_when_the_build_on_the_moved_base_fails_the_old_image_is_used_and_said(
        tmp_path: Path, docker_client, setup: Setup) -> None:
    """A legacy tool whose sources are gone must still install from the image that works."""
    tool, recipes, base, move = setup.tool, setup.recipes, setup.base, setup.move
    a, b = (fresh_home(tmp_path, n) for n in "ab")
    assert cli(a, "install", f"{tool}@1", recipes=recipes).returncode == 0
    rec_a = record(a, tool)
    move("RUN rm -rf /usr/local/share")  # the recipe's run step fails on this base

    p = cli(b, "install", f"{tool}@1", recipes=recipes)
    assert p.returncode == 0, p.stderr
    [warning] = [x for x in p.stderr.splitlines() if x.startswith("sandman: warning: ")]
    assert f"{tool}@1: building on the new {base} failed (" in warning, warning
    assert warning.endswith("; using the image built on the old one "
                            "(sandman list: image-stale: base)"), warning
    assert record(b, tool)["image_id"] == rec_a["image_id"]
    assert docker_client.images.get(rec_a["image_tag"]).id == rec_a["image_id"]  # kept
    assert states(b, recipes) == {f"{tool}@1": "image-stale: base"}
    assert shim(b, tool) == f"{tool} one\n"
