"""A signing team for the integration tests: a repo whose `allowed_signers` lists alice and whose
`signing.toml` requires signatures, a loopback registry, teammates' homes, and publishing.

Shared by test_signing.py and test_security_provenance.py (no test module imports another).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import ImageRemover, paths_of, record_file, run_sandman
from teams_helpers import fresh_home, git, make_repo, running_registry, unique_tool

from sandman.errors import SignatureError
from sandman.names import LABEL_ROLE

SIG_ROLE = f"{LABEL_ROLE}=signature"


def cli(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if not k.startswith("SANDMAN_")}
    e["SANDMAN_HOME"] = str(home)
    e.update(env or {})
    return run_sandman(*args, env=e)


def keygen(folder: Path, name: str) -> Path:
    key = folder / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)],
                   check=True)
    return key


def key_fingerprint(key: Path) -> str:
    return subprocess.run(["ssh-keygen", "-lf", f"{key}.pub"], check=True, capture_output=True,
                          text=True).stdout.split()[1]


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, docker_client) -> Iterator[str]:
    with running_registry(tmp_path_factory.mktemp("registry")) as addr:
        yield f"{addr}/team"


@pytest.fixture
def team(tmp_path: Path, docker_client, registry: str,
         remove_images_after: ImageRemover) -> Iterator[dict]:
    """A team repo (allowed_signers: alice; signing.toml: require), home A with it trusted."""
    tool = unique_tool()
    remove_images_after(tool)
    keys = {n: keygen(tmp_path, n) for n in ("alice", "mallory")}
    src = tmp_path / "team-recipes"
    make_repo(src, tool, {"1.0": "one", "2.0": "two"})
    (src / "allowed_signers").write_text(
        f'alice@example.com namespaces="sandman" {keys["alice"].with_suffix(".pub").read_text()}')
    (src / "signing.toml").write_text('policy = "require"\n')
    git(src, "add", "-A")
    git(src, "commit", "-qm", "signers")
    t = {"tool": tool, "src": src, "tmp": tmp_path, "keys": keys, "env": {"SANDMAN_REGISTRY": registry}}
    t["home"] = teammate(t, "home-a")
    yield t
    for img in docker_client.images.list(filters={"label": SIG_ROLE}):
        if any(tool in tag for tag in img.tags):
            docker_client.images.remove(img.id, force=True)


def teammate(team: dict, name: str, config: str = "") -> Path:
    home = fresh_home(team["tmp"], name)
    for args in (("repo", "add", "team", str(team["src"])), ("repo", "trust", "team")):
        p = cli(home, *args)
        assert p.returncode == 0, p.stderr
    if config:
        paths_of(home).config_file.parent.mkdir(parents=True, exist_ok=True)
        paths_of(home).config_file.write_text(config)
    return home


def publish(team: dict, docker_client, version: str, *sign: str) -> tuple[str, str, str]:
    """Install and push tool@version from home A, then remove the local image: (remote, tag, id)."""
    tool, home = team["tool"], team["home"]
    p = cli(home, "install", f"{tool}@{version}")
    assert p.returncode == 0, p.stderr
    rec = json.loads(record_file(home, tool, version).read_text())
    p = cli(home, "push", f"{tool}@{version}", *sign, env=team["env"])
    assert p.returncode == 0, p.stderr
    remote = p.stdout.strip().splitlines()[-1]
    docker_client.images.remove(rec["image_tag"], force=True)
    return remote, rec["image_tag"], rec["image_id"]


def refused(p: subprocess.CompletedProcess, line: str) -> None:
    """Exit 97, exactly one line, no traceback."""
    assert p.returncode == SignatureError.exit_code, p.stderr
    assert p.stderr.splitlines()[-1] == f"sandman: {line}", p.stderr
    assert "Traceback" not in p.stderr
