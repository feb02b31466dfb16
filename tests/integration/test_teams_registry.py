"""The registry cache and offline bundles, against a real Docker Distribution on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import ImageRemover, paths_of, record_file, run_sandman
from teams_helpers import (
    free_port,
    fresh_home,
    image_id,
    make_repo,
    manifest_config_digest,
    running_registry,
    unique_tool,
)

from sandman.errors import RemoteError, StateError

pytestmark = pytest.mark.docker


def cli(home: Path, *args: str, env: dict[str, str] | None = None,
        cwd: Path | None = None) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if not k.startswith("SANDMAN_")}
    e["SANDMAN_HOME"] = str(home)
    e["PATH"] = f"{paths_of(home).bin_dir}{os.pathsep}{e.get('PATH', '')}"
    e.update(env or {})
    return run_sandman(*args, env=e, cwd=cwd)


def shim(home: Path, name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(paths_of(home).bin_dir / name), *args], capture_output=True, text=True,
                          timeout=120)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, docker_client) -> Iterator[str]:
    with running_registry(tmp_path_factory.mktemp("registry")) as addr:
        yield addr


@pytest.fixture
def team(tmp_path: Path, docker_client, remove_images_after: ImageRemover) -> Iterator[dict]:
    """A recipe repo with one unique tool (two versions), added and trusted in home A."""
    tool = unique_tool()
    remove_images_after(tool)
    src = tmp_path / "team-recipes"
    make_repo(src, tool, {"1.0": "one", "2.0": "two"})
    home_a = fresh_home(tmp_path, "home-a")
    for args in (("repo", "add", "team", str(src)), ("repo", "trust", "team")):
        p = cli(home_a, *args)
        assert p.returncode == 0, p.stderr
    yield {"tool": tool, "src": src, "home": home_a, "tmp": tmp_path}


def record(home: Path, tool: str, version: str) -> dict:
    return json.loads(record_file(home, tool, version).read_text())


def test_push_then_a_fresh_home_pulls_the_same_image_without_building(team, registry, docker_client):
    tool, home_a = team["tool"], team["home"]
    p = cli(home_a, "install", f"team/{tool}@1.0")
    assert p.returncode == 0, p.stderr
    rec = record(home_a, tool, "1.0")
    original = rec["image_id"]

    reg = f"{registry}/team"
    p = cli(home_a, "push", f"{tool}@1.0", "--registry", reg)
    assert p.returncode == 0, p.stderr
    remote = p.stdout.strip()
    assert remote == f"{reg}/{tool}:1.0-{rec['fingerprint'][:12]}"
    # the registry holds the same config digest: the image id survives the trip
    assert manifest_config_digest(registry, f"team/{tool}", remote.rsplit(":", 1)[1]) == original
    assert image_id(docker_client, remote) is None  # the registry name is not left behind

    docker_client.images.remove(rec["image_tag"], force=True)
    assert image_id(docker_client, rec["image_tag"]) is None

    home_b = fresh_home(team["tmp"], "home-b")
    env = {"SANDMAN_REGISTRY": reg}
    assert cli(home_b, "repo", "add", "team", str(team["src"])).returncode == 0
    assert cli(home_b, "repo", "trust", "team").returncode == 0
    p = cli(home_b, "install", f"{tool}@1.0", env=env)
    assert p.returncode == 0, p.stderr
    assert "pulled " + remote in p.stderr
    assert "Step " not in p.stderr and "built sandman/" not in p.stderr  # no build happened
    assert record(home_b, tool, "1.0")["image_id"] == original
    assert image_id(docker_client, rec["image_tag"]) == original
    r = shim(home_b, f"{tool}-1.0")
    assert (r.returncode, r.stdout) == (0, f"{tool} 1.0 one\n")


def test_pull_without_install_and_a_registry_that_is_down(team, registry, docker_client):
    tool, home_a = team["tool"], team["home"]
    reg = f"{registry}/team"
    p = cli(home_a, "build", f"{tool}@2.0")
    assert p.returncode == 0, p.stderr
    tag = p.stdout.strip()
    built = image_id(docker_client, tag)
    p = cli(home_a, "push", f"{tool}@2.0", env={"SANDMAN_REGISTRY": reg})
    assert p.returncode == 0, p.stderr
    docker_client.images.remove(tag, force=True)

    p = cli(home_a, "pull", f"{tool}@2.0", "--registry", reg)
    assert p.returncode == 0, p.stderr
    assert image_id(docker_client, tag) == built
    assert not record_file(home_a, tool, "2.0").exists()  # pulled, not installed
    p = cli(home_a, "pull", f"{tool}@2.0", "--registry", reg)
    assert p.returncode == 0 and "already present" in p.stderr

    # nothing listens on this port: one clear line, exit 121 (RemoteError)
    down = f"127.0.0.1:{free_port()}/team"
    docker_client.images.remove(tag, force=True)
    p = cli(home_a, "pull", f"{tool}@2.0", "--registry", down)
    assert p.returncode == RemoteError.exit_code, p.stderr
    assert p.stderr.count("\n") == 1 and p.stderr.startswith(f"sandman: registry {down}")
    assert "Traceback" not in p.stderr
    p = cli(home_a, "push", f"{tool}@1.0", "--registry", down)
    assert p.returncode == RemoteError.exit_code and "Traceback" not in p.stderr

    # install falls back to building, and says why
    p = cli(home_a, "install", f"{tool}@2.0", env={"SANDMAN_REGISTRY": down})
    assert p.returncode == 0, p.stderr
    assert f"warning: registry {down}" in p.stderr and "built sandman/" in p.stderr


def test_a_registry_without_the_fingerprint_means_a_build(team, registry):
    """The usual first build of a version: the registry's "manifest unknown" is said with -v only."""
    tool, home_a = team["tool"], team["home"]
    env = {"SANDMAN_REGISTRY": f"{registry}/empty"}
    p = cli(home_a, "install", f"{tool}@1.0", env=env)
    assert p.returncode == 0, p.stderr
    assert "built sandman/" in p.stderr
    assert "manifest unknown" not in p.stderr and "warning" not in p.stderr, p.stderr
    p = cli(home_a, "-v", "install", f"{tool}@2.0", env=env)
    assert p.returncode == 0, p.stderr
    assert "manifest unknown" in p.stderr and f"building {tool}@2.0 instead" in p.stderr
    assert "warning" not in p.stderr


def test_bad_registry_value_is_one_line(team):
    p = cli(team["home"], "pull", f"{team['tool']}@1.0", "--registry", "http://x:5000")
    assert p.returncode == 2 and "not HOST[:PORT][/PREFIX]" in p.stderr
    p = cli(team["home"], "push", f"{team['tool']}@1.0")
    assert p.returncode == 2 and "no registry configured" in p.stderr


def test_export_then_import_in_a_fresh_home_runs_with_no_build(team, docker_client):
    tool, home_a, tmp = team["tool"], team["home"], team["tmp"]
    p = cli(home_a, "install", f"{tool}@1.0", f"{tool}@2.0")
    assert p.returncode == 0, p.stderr
    ids = {v: record(home_a, tool, v)["image_id"] for v in ("1.0", "2.0")}
    tags = {v: record(home_a, tool, v)["image_tag"] for v in ("1.0", "2.0")}
    out = tmp / "site" / "offline.tar"
    p = cli(home_a, "export", f"{tool}@1.0", f"{tool}@2.0", "-o", str(out))
    assert p.returncode == 0, p.stderr
    with tarfile.open(out) as tar:
        names = tar.getnames()
        manifest = json.loads(tar.extractfile("sandman-bundle.json").read())  # type: ignore[union-attr]
    assert f"recipes/{tool}/recipe.toml" in names and "images.tar" in names
    assert manifest["name"] == "offline" and manifest["schema"] == 1
    assert {(t["version"], t["image_id"]) for t in manifest["tools"]} == set(ids.items())
    assert all(t["source"] == "team" and len(t["commit"]) == 40 for t in manifest["tools"])

    for v in ("1.0", "2.0"):
        assert cli(home_a, "uninstall", f"{tool}@{v}").returncode == 0
        docker_client.images.remove(tags[v], force=True)
        assert image_id(docker_client, tags[v]) is None

    home_c = fresh_home(tmp, "home-c")  # another machine: no repo, no registry
    p = cli(home_c, "import", str(out))
    assert p.returncode == 0, p.stderr
    assert "Step " not in p.stderr and "built sandman/" not in p.stderr
    for v, marker in (("1.0", "one"), ("2.0", "two")):
        assert record(home_c, tool, v)["image_id"] == ids[v]
        assert record(home_c, tool, v)["source"] == "offline"
        assert image_id(docker_client, tags[v]) == ids[v]
        r = shim(home_c, f"{tool}-{v}")
        assert (r.returncode, r.stdout) == (0, f"{tool} {v} {marker}\n")
    p = cli(home_c, "repo", "list", "--json")
    rows = json.loads(p.stdout)
    assert [(r["name"], r["kind"], r["trusted"], r["tools"]) for r in rows] == \
        [("offline", "bundle", True, [tool])]
    p = cli(home_c, "recipes", "show", f"offline/{tool}")
    assert p.returncode == 0 and "source:   offline" in p.stdout


def test_import_refuses_what_is_not_a_bundle(tmp_path, home, sandman):
    bad = tmp_path / "bad.tar"
    with tarfile.open(bad, "w") as tar:
        tar.add(__file__, arcname="hello.py")
    p = sandman("import", str(bad))
    assert p.returncode == StateError.exit_code and "not a sandman bundle" in p.stderr
    p = sandman("import", str(tmp_path / "missing.tar"))
    assert p.returncode == StateError.exit_code and "cannot open the bundle" in p.stderr


def test_an_install_from_a_bundle_keeps_its_source(team, docker_client):
    """The attack: a version installed from a bundle was later resolved from a repo of the same
    tool, so `list` called it stale and `upgrade` would have switched its source silently."""
    tool, home_a, tmp = team["tool"], team["home"], team["tmp"]
    assert cli(home_a, "install", f"{tool}@1.0").returncode == 0
    out = tmp / "shipped.tar"
    p = cli(home_a, "export", f"{tool}@1.0", "-o", str(out))
    assert p.returncode == 0, p.stderr

    mirror = tmp / "mirror"  # another repo with the same tool and version, other content
    make_repo(mirror, tool, {"1.0": "mirrored"})
    home_b = fresh_home(tmp, "home-b")
    for args in (("repo", "add", "mirror", str(mirror)), ("repo", "trust", "mirror"),
                 ("import", str(out))):
        p = cli(home_b, *args)
        assert p.returncode == 0, p.stderr
    assert [r["name"] for r in json.loads(cli(home_b, "repo", "list", "--json").stdout)] == \
        ["mirror", "shipped"]  # the repo comes first by precedence
    assert record(home_b, tool, "1.0")["source"] == "shipped"
    bundle_image = record(home_b, tool, "1.0")["image_id"]

    [item] = json.loads(cli(home_b, "list", "--json").stdout)
    assert (item["source"], item["state"]) == ("shipped", "current")
    p = cli(home_b, "upgrade")
    assert p.returncode == 0 and "nothing to upgrade" in p.stderr, p.stderr
    p = cli(home_b, "install", f"{tool}@1.0")  # no source named: the one it came from
    assert p.returncode == 0 and "Step " not in p.stderr, p.stderr
    assert record(home_b, tool, "1.0")["image_id"] == bundle_image
    assert shim(home_b, f"{tool}-1.0").stdout == f"{tool} 1.0 one\n"

    p = cli(home_b, "install", f"mirror/{tool}@1.0")  # named: the user switches
    assert p.returncode == 0, p.stderr
    assert record(home_b, tool, "1.0")["source"] == "mirror"
    assert shim(home_b, f"{tool}-1.0").stdout == f"{tool} 1.0 mirrored\n"
    [item] = json.loads(cli(home_b, "list", "--json").stdout)
    assert (item["source"], item["state"]) == ("mirror", "current")
