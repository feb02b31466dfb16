"""Teams across engines: a registry shared by a Docker host and a rootless Podman user.

One team, two kinds of machine: a Docker host pushes what it built, a rootless Podman user
installs the same tool@version from the registry with no build (same image id, same
fingerprint) and runs its shim; then the other way round. The registry is a real
docker-registry on loopback, served over plain HTTP: Docker allows that for loopback by
default, Podman only when told per call (sandman tells it for loopback registries only).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import PODMAN, ImageRemover, paths_of, record_file, remove_images, run_sandman
from podman_helpers import PodmanUser, ensure_bases, ensure_podman_user
from teams_helpers import make_repo, running_registry, unique_tool

pytestmark = pytest.mark.docker



@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, docker_client) -> Iterator[str]:
    with running_registry(tmp_path_factory.mktemp("registry")) as addr:
        yield addr


@pytest.fixture
def shared(docker_client, remove_images_after: ImageRemover) -> Iterator[tuple[Path, str, PodmanUser]]:
    """A world-readable folder with a team repo of one tool; the rootless user; cleanup."""
    user = ensure_podman_user()
    ensure_bases(user)
    root = Path(tempfile.mkdtemp(prefix="sandman-pmreg-", dir="/tmp"))
    root.chmod(0o755)
    tool = unique_tool()
    remove_images_after(tool)
    remove_images_after(tool, engine=user.podman_cli)
    make_repo(root / "repo", tool, {"1.0": "one", "2.0": "two"})
    # git refuses a repository another user owns: the Podman user gets its own copy (the same
    # commit), as a teammate's clone would be
    shutil.copytree(root / "repo", root / "repo-podman", symlinks=True)
    subprocess.run(["chown", "-R", f"{user.uid}:{user.gid}", str(root / "repo-podman")], check=True)
    subprocess.run(["chmod", "-R", "a+rX", str(root)], check=True)
    podman_home = root / "podman-home"
    podman_home.mkdir()
    os.chown(podman_home, user.uid, user.gid)
    yield root, tool, user
    shutil.rmtree(root, ignore_errors=True)


def docker_cli(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("SANDMAN_", "DOCKER_"))}
    e.update(SANDMAN_HOME=str(home), SANDMAN_ENGINE="docker", **(env or {}))
    return run_sandman(*args, env=e, cwd="/")


def podman_cli(user: PodmanUser, home: Path, *args: str,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    e = user.env(SANDMAN_HOME=str(home), **(env or {}))
    p = user.sandman(*args, env=e)
    return subprocess.CompletedProcess(p.args, p.returncode, p.stdout.decode(), p.stderr.decode())


def record(home: Path, tool: str, version: str) -> dict:
    return json.loads(record_file(home, tool, version).read_text())


def test_docker_pushes_rootless_podman_installs_without_building_and_back(shared, registry, tmp_path):
    root, tool, user = shared
    reg = f"{registry}/team"
    docker_home, podman_home = root / "docker-home", root / "podman-home"
    for run, repo in ((lambda *a: docker_cli(docker_home, *a), root / "repo"),
                      (lambda *a: podman_cli(user, podman_home, *a), root / "repo-podman")):
        for args in (("repo", "add", "team", str(repo)), ("repo", "trust", "team")):
            p = run(*args)
            assert p.returncode == 0, p.stderr

    # Docker -> registry -> rootless Podman
    p = docker_cli(docker_home, "install", f"team/{tool}@1.0")
    assert p.returncode == 0, p.stderr
    built = record(docker_home, tool, "1.0")
    p = docker_cli(docker_home, "push", f"{tool}@1.0", "--registry", reg)
    assert p.returncode == 0, p.stderr

    p = podman_cli(user, podman_home, "install", f"{tool}@1.0", env={"SANDMAN_REGISTRY": reg})
    assert p.returncode == 0, p.stderr
    assert "pulled " in p.stderr and "built sandman/" not in p.stderr, p.stderr  # no build
    got = record(podman_home, tool, "1.0")
    assert (got["image_id"], got["fingerprint"]) == (built["image_id"], built["fingerprint"])
    assert user.podman("image", "inspect", "-f", "{{.Id}}", got["image_tag"]).strip() == \
        built["image_id"].removeprefix("sha256:")
    shim = paths_of(podman_home).bin_dir / f"{tool}-1.0"
    r = subprocess.run(user.argv([str(shim)]), env=user.env(SANDMAN_HOME=str(podman_home)),
                       cwd=str(podman_home), capture_output=True, text=True, timeout=120)
    assert (r.returncode, r.stdout, r.stderr) == (0, f"{tool} 1.0 one\n", "")

    # rootless Podman builds 2.0 and pushes it; the Docker host installs it without a build
    p = podman_cli(user, podman_home, "install", f"{tool}@2.0")
    assert p.returncode == 0, p.stderr
    built2 = record(podman_home, tool, "2.0")
    p = podman_cli(user, podman_home, "push", f"{tool}@2.0", "--registry", reg)
    assert p.returncode == 0, p.stderr
    p = docker_cli(docker_home, "install", f"{tool}@2.0", env={"SANDMAN_REGISTRY": reg})
    assert p.returncode == 0, p.stderr
    assert "pulled " in p.stderr and "built sandman/" not in p.stderr, p.stderr
    got2 = record(docker_home, tool, "2.0")
    assert (got2["image_id"], got2["fingerprint"]) == (built2["image_id"], built2["fingerprint"])
    r = subprocess.run([str(paths_of(docker_home).bin_dir / f"{tool}-2.0")], capture_output=True,
                       text=True, timeout=120, cwd=tmp_path,  # a folder of its own: /tmp is shared
                       env={k: v for k, v in os.environ.items() if not k.startswith("SANDMAN_")})
    assert (r.returncode, r.stdout) == (0, f"{tool} 2.0 two\n")


def rootful_cli(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """sandman as root on rootful Podman (root's store, /run/podman/podman.sock)."""
    e = {k: v for k, v in os.environ.items() if not k.startswith(("SANDMAN_", "DOCKER_"))}
    e.update(SANDMAN_HOME=str(home), **(env or {}), SANDMAN_ENGINE="podman")
    return run_sandman(*args, env=e, cwd="/")


def test_docker_and_rootful_podman_share_a_registry_both_ways(shared, registry, tmp_path):
    """The same round trip with rootful Podman: root's store, root's API socket."""
    root, tool, _ = shared
    reg = f"{registry}/team"
    docker_home, rootful_home = root / "docker-home", root / "rootful-home"
    try:
        for run in (lambda *a: docker_cli(docker_home, *a), lambda *a: rootful_cli(rootful_home, *a)):
            for args in (("repo", "add", "team", str(root / "repo")), ("repo", "trust", "team")):
                p = run(*args)
                assert p.returncode == 0, p.stderr
        p = docker_cli(docker_home, "install", f"team/{tool}@1.0")
        assert p.returncode == 0, p.stderr
        built = record(docker_home, tool, "1.0")
        assert docker_cli(docker_home, "push", f"{tool}@1.0", "--registry", reg).returncode == 0

        p = rootful_cli(rootful_home, "install", f"{tool}@1.0", env={"SANDMAN_REGISTRY": reg})
        assert p.returncode == 0, p.stderr
        assert "pulled " in p.stderr and "built sandman/" not in p.stderr, p.stderr
        got = record(rootful_home, tool, "1.0")
        assert (got["image_id"], got["fingerprint"]) == (built["image_id"], built["fingerprint"])
        env = {k: v for k, v in os.environ.items() if not k.startswith("SANDMAN_")}
        r = subprocess.run([str(paths_of(rootful_home).bin_dir / f"{tool}-1.0")], env=env,
                           cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert (r.returncode, r.stdout, r.stderr) == (0, f"{tool} 1.0 one\n", "")

        p = rootful_cli(rootful_home, "install", f"{tool}@2.0")
        assert p.returncode == 0, p.stderr
        built2 = record(rootful_home, tool, "2.0")
        p = rootful_cli(rootful_home, "push", f"{tool}@2.0", "--registry", reg)
        assert p.returncode == 0, p.stderr
        p = docker_cli(docker_home, "install", f"{tool}@2.0", env={"SANDMAN_REGISTRY": reg})
        assert p.returncode == 0, p.stderr
        assert "pulled " in p.stderr and "built sandman/" not in p.stderr, p.stderr
        got2 = record(docker_home, tool, "2.0")
        assert (got2["image_id"], got2["fingerprint"]) == (built2["image_id"], built2["fingerprint"])
    finally:
        remove_images(tool, engine=PODMAN)
