"""Two machines, one team: a publisher on this host's daemon (machine A), a teammate on a second
dockerd with nothing of its own (machine B), and a real registry between them.

B never bootstraps and never builds when the registry has what the lock names: its own
`docker events` show pulls and tags, no import (a bootstrap) and no container other than of the
pulled image (a build runs its steps in containers of intermediate images).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from helpers import EngineCLI, ImageRemover, paths_of, record_file, run_sandman
from teams_helpers import (
    fresh_home,
    make_repo,
    manifest_config_digest,
    running_registry,
    second_engine,
    unique_tool,
)

from sandman.errors import LockError
from sandman.images import local_base_ref

pytestmark = pytest.mark.docker
BASE = "debian:bookworm-slim"


def cli(home: Path, *args: str, cwd: Path, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if not k.startswith("SANDMAN_")}
    e.pop("DOCKER_HOST", None)
    e["SANDMAN_HOME"] = str(home)
    e["PATH"] = f"{paths_of(home).bin_dir}{os.pathsep}{e.get('PATH', '')}"
    e.update(env or {})
    return run_sandman(*args, env=e, cwd=cwd)


def record(home: Path, tool: str, version: str) -> dict:
    return json.loads(record_file(home, tool, version).read_text())


def events(host: str, since: float) -> list[dict]:
    """Every event of daemon B since then (B is ours alone: nothing else runs there)."""
    p = subprocess.run(["docker", "-H", host, "events", "--since", f"{since:.3f}",
                        "--until", f"{time.time():.3f}", "--format", "{{json .}}"],
                       capture_output=True, text=True, timeout=60, check=True)
    return [json.loads(line) for line in p.stdout.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def machine_b() -> Iterator[str]:
    with second_engine() as host:
        yield host


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, docker_client) -> Iterator[str]:
    with running_registry(tmp_path_factory.mktemp("registry")) as addr:
        yield addr


@pytest.fixture
def team(tmp_path: Path, docker_client, machine_b: str, registry: str,
         remove_images_after: ImageRemover) -> Iterator[dict]:
    """One recipe repo; home A on this host's daemon, home B on machine B, both trusting it."""
    tool = unique_tool()
    remove_images_after(tool)
    remove_images_after(tool, engine=EngineCLI(("docker", "-H", machine_b)))
    src = tmp_path / "team-recipes"
    make_repo(src, tool, {"1.0": "one", "2.0": "two"})
    reg = f"{registry}/team"
    a = {"SANDMAN_REGISTRY": reg}
    b = {"SANDMAN_REGISTRY": reg, "DOCKER_HOST": machine_b}
    homes = {"a": fresh_home(tmp_path, "home-a"), "b": fresh_home(tmp_path, "home-b")}
    for name, env in (("a", a), ("b", b)):
        for args in (("repo", "add", "team", str(src)), ("repo", "trust", "team")):
            p = cli(homes[name], *args, cwd=tmp_path, env=env)
            assert p.returncode == 0, p.stderr
    client_b = docker.DockerClient(base_url=machine_b)
    yield {"tool": tool, "tmp": tmp_path, "a": homes["a"], "b": homes["b"], "env_a": a,
           "env_b": b, "reg": reg, "registry": registry, "host_b": machine_b, "client_b": client_b}
    client_b.close()


def project(tmp: Path, name: str, tool: str, version: str) -> Path:
    d = tmp / name
    d.mkdir()
    (d / ".sandman.toml").write_text(f'[tools]\n{tool} = "{version}"\n')
    return d


def test_a_teammate_with_nothing_local_gets_the_publishers_image_by_digest(team, docker_client):
    tool, tmp = team["tool"], team["tmp"]
    client_b = team["client_b"]
    proj = project(tmp, "proj", tool, "1.0")

    # A: install from the project (writes the lock), then publish
    p = cli(team["a"], "install", cwd=proj, env=team["env_a"])
    assert p.returncode == 0, p.stderr
    rec_a = record(team["a"], tool, "1.0")
    base_a = docker_client.images.get(BASE).id
    assert rec_a["origin"] == "built" and rec_a["bases"] == {BASE: base_a}
    lock = (proj / "sandman.lock").read_text()
    assert f'image = "{rec_a["image_id"]}"' in lock
    assert f'bases = {{ "{BASE}" = "{base_a}" }}' in lock
    p = cli(team["a"], "push", f"{tool}@1.0", cwd=proj, env=team["env_a"])
    assert p.returncode == 0, p.stderr
    assert f"its base {BASE} ({base_a}) is in the registry too" in p.stderr
    # the registry holds the image and its base, each under its config digest
    assert manifest_config_digest(team["registry"], f"team/{tool}",
                                  p.stdout.strip().rsplit(":", 1)[1]) == rec_a["image_id"]
    assert manifest_config_digest(team["registry"], "team/sandman-base/debian-bookworm-slim",
                                  base_a.replace(":", "-")) == base_a

    # B: nothing local (no base, no image); the lock from A is checked, then satisfied by pulls
    with contextlib.suppress(docker.errors.ImageNotFound):
        client_b.images.remove(BASE)  # machine B is this module's alone
    assert not client_b.images.list()
    since = time.time() - 1
    p = cli(team["b"], "install", cwd=proj, env=team["env_b"])
    assert p.returncode == 0, p.stderr
    assert f"checked {proj / 'sandman.lock'}" in p.stderr, p.stderr
    # no warning but the signature policy's (signing is another part of the team story)
    assert [x for x in p.stderr.splitlines() if "warning" in x and "unsigned" not in x] == []
    assert (proj / "sandman.lock").read_text() == lock  # verified, not rewritten
    rec_b = record(team["b"], tool, "1.0")
    assert (rec_b["image_id"], rec_b["fingerprint"], rec_b["bases"], rec_b["origin"]) == \
        (rec_a["image_id"], rec_a["fingerprint"], rec_a["bases"], "registry")
    # A's very base, under its by-digest name only: a registry never picks what BASE holds on B
    assert client_b.images.get(local_base_ref(BASE, base_a)).id == base_a
    with pytest.raises(docker.errors.ImageNotFound):
        client_b.images.get(BASE)
    assert client_b.images.get(rec_a["image_tag"]).id == rec_a["image_id"]

    seen = events(team["host_b"], since)
    image_actions = {e["Action"] for e in seen if e["Type"] == "image"}
    assert "pull" in image_actions
    assert not image_actions & {"import", "load", "commit", "build"}, image_actions  # no bootstrap
    created = [e["Actor"]["Attributes"].get("image") for e in seen
               if e["Type"] == "container" and e["Action"] == "create"]
    assert created and set(created) <= {rec_a["image_id"], rec_a["image_tag"]}, created  # no build
    assert not any(e["Type"] == "builder" for e in seen)

    # the shim runs on B, through DOCKER_HOST
    shim_env = {**os.environ, "DOCKER_HOST": team["host_b"]}
    r = subprocess.run([str(paths_of(team["b"]).bin_dir / f"{tool}-1.0")], env=shim_env,
                       capture_output=True, text=True, timeout=120)
    assert (r.returncode, r.stdout) == (0, f"{tool} 1.0 one\n"), r.stderr
    [item] = json.loads(cli(team["b"], "list", "--json", cwd=tmp, env=team["env_b"]).stdout)
    assert item["state"] == "current"


def test_without_the_image_in_the_registry_b_builds_and_the_lock_says_what_differs(
        team, docker_client):
    tool, tmp = team["tool"], team["tmp"]
    client_b = team["client_b"]
    proj = project(tmp, "proj2", tool, "2.0")
    p = cli(team["a"], "install", cwd=proj, env=team["env_a"])  # A never pushes 2.0
    assert p.returncode == 0, p.stderr
    rec_a = record(team["a"], tool, "2.0")
    lock = (proj / "sandman.lock").read_text()

    # B builds on a base of its own: here, A's, published by a push of 1.0
    assert cli(team["a"], "push", f"{tool}@1.0", cwd=tmp, env=team["env_a"]).returncode == 0
    p = cli(team["b"], "install", f"{tool}@1.0", cwd=tmp, env=team["env_b"])
    assert p.returncode == 0 and "pulled " in p.stderr, p.stderr
    pulled_base = client_b.images.get(local_base_ref(BASE, rec_a["bases"][BASE]))
    assert pulled_base.id == rec_a["bases"][BASE]
    assert pulled_base.tag(BASE)  # the user's explicit choice to build on it (docs/teams.md)

    p = cli(team["b"], "install", cwd=proj, env=team["env_b"])
    assert p.returncode == 0, p.stderr
    rec_b = record(team["b"], tool, "2.0")
    assert rec_b["origin"] == "built" and rec_b["fingerprint"] == rec_a["fingerprint"]
    assert rec_b["image_id"] != rec_a["image_id"]  # another build of the same recipe
    [warning] = [x for x in p.stderr.splitlines() if "the lock keeps its digests" in x]
    assert warning.startswith("sandman: warning: ")
    assert f"{tool}@2.0: image {rec_b['image_id'][:19]} on {BASE} {rec_b['bases'][BASE][:19]} " \
        f"here, {proj / 'sandman.lock'} has {rec_a['image_id'][:19]} on {BASE} " \
        f"{rec_a['bases'][BASE][:19]}; built here: the registry had no image" in warning
    assert (proj / "sandman.lock").read_text() == lock  # the team's digests stay
    p = cli(team["b"], "install", "--update-lock", cwd=proj, env=team["env_b"])
    assert p.returncode == 0, p.stderr
    assert f'image = "{rec_b["image_id"]}"' in (proj / "sandman.lock").read_text()

    # B's base is bootstrapped again (another image under its name): the image B built is
    # stale (`image-stale: base`); the one B pulled is the team's and stays current
    client_b.images.get(rec_b["image_id"]).tag(BASE)  # any other image will do
    items = {i["version"]: i["state"] for i in
             json.loads(cli(team["b"], "list", "--json", cwd=tmp, env=team["env_b"]).stdout)}
    assert items == {"1.0": "current", "2.0": "image-stale: base"}
    p = cli(team["b"], "upgrade", f"{tool}@2.0", cwd=tmp, env=team["env_b"])
    assert p.returncode == 0, p.stderr
    rebuilt = record(team["b"], tool, "2.0")
    assert rebuilt["bases"] == {BASE: rec_b["image_id"]} and rebuilt["image_id"] != rec_b["image_id"]
    items = {i["version"]: i["state"] for i in
             json.loads(cli(team["b"], "list", "--json", cwd=tmp, env=team["env_b"]).stdout)}
    assert items == {"1.0": "current", "2.0": "current"}


def test_a_lock_from_an_older_sandman_says_so(team):
    tool, tmp = team["tool"], team["tmp"]
    proj = project(tmp, "old", tool, "1.0")
    (proj / "sandman.lock").write_text(
        f'schema = 1\n\n[tools.{tool}]\nversion = "1.0"\nsource = "team"\ncommit = ""\n'
        f'fingerprint = "{"0" * 64}"\n')
    p = cli(team["b"], "install", cwd=proj, env=team["env_b"])
    assert p.returncode == LockError.exit_code and p.stderr.count("\n") == 1, p.stderr
    assert "written by an older sandman (schema 1" in p.stderr and "--update-lock" in p.stderr
