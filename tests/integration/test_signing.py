"""Signed images through a real registry and real bundles, with keys made by ssh-keygen.

Home A publishes from a team repository whose `allowed_signers` lists alice, and whose
`signing.toml` says `policy = "require"`. A teammate's home installs through the registry (the
local image removed first, so the install really pulls). Each attack gets its exact outcome:
an unsigned push, a key not in allowed_signers, and other content re-tagged under the signed
name are refused with exit 97 and leave no image tag and no install behind.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import paths_of, record_file
from teams_helpers import fresh_home, git, image_id, make_repo, remove_images, running_registry, unique_tool

pytestmark = pytest.mark.docker

SIG_ROLE = "io.sandman.role=signature"


def cli(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if not k.startswith("SANDMAN_")}
    e["SANDMAN_HOME"] = str(home)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "sandman", *args], env=e, capture_output=True,
                          text=True, timeout=900)


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
def team(tmp_path: Path, docker_client, registry: str) -> Iterator[dict]:
    """A team repo (allowed_signers: alice; signing.toml: require), home A with it trusted."""
    tool = unique_tool()
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
    remove_images(docker_client, tool)
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
    assert p.returncode == 97, p.stderr
    assert p.stderr.splitlines()[-1] == f"sandman: {line}", p.stderr
    assert "Traceback" not in p.stderr


def test_signed_push_installs_on_a_teammates_home_and_verify_says_who(team, docker_client):
    tool, keys = team["tool"], team["keys"]
    remote, tag, original = publish(team, docker_client, "1.0", "--sign", str(keys["alice"]))
    assert image_id(docker_client, remote + ".sig") is None  # the signature's local name is gone

    home_b = teammate(team, "home-b")
    p = cli(home_b, "install", f"{tool}@1.0", env=team["env"])
    assert p.returncode == 0, p.stderr
    who = f"signed by alice@example.com (ED25519 key {key_fingerprint(keys['alice'])})"
    assert f"{tool}@1.0: {who} at 20" in p.stderr
    assert "built sandman/" not in p.stderr  # pulled, not built
    assert image_id(docker_client, tag) == original

    p = cli(home_b, "verify", f"{tool}@1.0")  # from the signature kept at install, no registry
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(f"{tool}@1.0: image {original[:19]} {who} at 20")
    assert p.stdout.rstrip().endswith(str(paths_of(home_b).repos_dir / "team" / "allowed_signers"))
    p = cli(home_b, "verify", f"{tool}@1.0", "--json")
    data = json.loads(p.stdout)
    assert (data["principal"], data["image_id"]) == ("alice@example.com", original)

    # the publisher's own home verifies from what push --sign kept
    p = cli(team["home"], "verify", f"{tool}@1.0", "--json")
    assert p.returncode == 0 and json.loads(p.stdout)["principal"] == "alice@example.com", p.stderr


def test_an_unsigned_push_is_refused_under_require_and_warned_under_warn(team, docker_client):
    tool = team["tool"]
    remote, tag, original = publish(team, docker_client, "2.0")  # no --sign

    home_b = teammate(team, "home-b")
    p = cli(home_b, "install", f"{tool}@2.0", env=team["env"])
    refused(p, f"{tool}@2.0 from {remote}: unsigned (no {remote}.sig in the registry); "
               "refused (signature policy: require)")
    assert image_id(docker_client, tag) is None  # the pulled image kept no name here
    assert not record_file(home_b, tool, "2.0").exists()
    assert not (paths_of(home_b).bin_dir / f"{tool}-2.0").exists()

    # `sandman pull` is held to the same policy (else a later install would take it from the cache)
    p = cli(home_b, "pull", f"{tool}@2.0", env=team["env"])
    assert p.returncode == 97 and image_id(docker_client, tag) is None, p.stderr

    home_c = teammate(team, "home-c", config='signatures = "warn"\n')
    p = cli(home_c, "install", f"{tool}@2.0", env=team["env"])
    assert p.returncode == 0, p.stderr
    assert (f"warning: {tool}@2.0 from {remote}: unsigned (no {remote}.sig in the registry) "
            "(signature policy: warn)") in p.stderr
    assert image_id(docker_client, tag) == original
    p = cli(home_c, "verify", f"{tool}@2.0", env=team["env"])
    refused(p, f"{tool}@2.0: no signature for image {original[:19]} here nor in {remote}.sig")


def test_a_key_not_in_allowed_signers_is_refused(team, docker_client):
    tool, keys = team["tool"], team["keys"]
    remote, tag, _ = publish(team, docker_client, "2.0", "--sign", str(keys["mallory"]))
    home_b = teammate(team, "home-b")
    p = cli(home_b, "install", f"{tool}@2.0", env=team["env"])
    refused(p, f"{tool}@2.0 from {remote}: signed with ED25519 key {key_fingerprint(keys['mallory'])}, "
               "which is not in allowed_signers; refused (signature policy: require)")
    assert image_id(docker_client, tag) is None
    assert not record_file(home_b, tool, "2.0").exists()


def test_other_content_retagged_under_a_signed_name_is_refused(team, docker_client):
    """The attack: alice signed tool@1.0; someone pushes other content, labelled as tool@1.0
    with the same fingerprint, under the same registry name. The fingerprint label matches;
    the signature names the original image id, so the install is refused."""
    tool, keys = team["tool"], team["keys"]
    remote, tag, original = publish(team, docker_client, "1.0", "--sign", str(keys["alice"]))
    fingerprint = json.loads(record_file(team["home"], tool, "1.0").read_text())["fingerprint"]
    dockerfile = (f"FROM debian:bookworm-slim\nRUN echo '{tool} 1.0 EVIL' > /usr/local/share/{tool}.txt\n"
                  f"LABEL io.sandman.tool={tool} io.sandman.version=1.0 "
                  f"io.sandman.fingerprint={fingerprint}\n")
    evil, _ = docker_client.images.build(fileobj=io.BytesIO(dockerfile.encode()), rm=True)
    assert evil.id != original
    repo, _, remote_tag = remote.rpartition(":")
    evil.tag(repo, remote_tag)
    for line in docker_client.images.push(repo, tag=remote_tag, stream=True, decode=True):
        assert "error" not in line, line
    docker_client.images.remove(remote)

    home_b = teammate(team, "home-b")
    p = cli(home_b, "install", f"{tool}@1.0", env=team["env"])
    refused(p, f"{tool}@1.0 from {remote}: alice@example.com signed image {original[:19]}, this is "
               f"{evil.id[:19]}: other content under the same name; refused (signature policy: require)")
    assert image_id(docker_client, tag) is None
    assert not (paths_of(home_b).bin_dir / f"{tool}-1.0").exists()


def test_a_bad_signing_key_pushes_nothing(team, docker_client):
    tool = team["tool"]
    (team["tmp"] / "not-a-key").write_text("hello\n")
    p = cli(team["home"], "push", f"{tool}@1.0", "--sign", str(team["tmp"] / "not-a-key"), env=team["env"])
    assert p.returncode == 2, p.stderr
    assert p.stderr.splitlines()[-1].startswith(f"sandman: --sign {team['tmp'] / 'not-a-key'}: "
                                                "ssh-keygen cannot sign with it: ")
    assert p.stdout == "" and "Traceback" not in p.stderr
    home_b = teammate(team, "home-b", config='signatures = "off"\n')
    remove_images(docker_client, tool)  # the image push built: a pull must find it remotely
    p = cli(home_b, "pull", f"{tool}@1.0", env=team["env"])
    assert p.returncode == 121 and "manifest unknown" in p.stderr.lower(), p.stderr  # nothing was pushed


def test_bundles_carry_the_signature_and_unsigned_ones_are_refused(team, docker_client):
    tool, keys = team["tool"], team["keys"]
    home_a = team["home"]
    p = cli(home_a, "install", f"{tool}@1.0")
    assert p.returncode == 0, p.stderr
    signed_tar, unsigned_tar = team["tmp"] / "signed.tar", team["tmp"] / "unsigned.tar"
    p = cli(home_a, "export", f"{tool}@1.0", "-o", str(signed_tar), "--sign", str(keys["alice"]))
    assert p.returncode == 0, p.stderr
    with tarfile.open(signed_tar) as tar:
        manifest = json.loads(tar.extractfile("sandman-bundle.json").read())  # type: ignore[union-attr]
    assert "-----BEGIN SSH SIGNATURE-----" in manifest["tools"][0]["signature"]
    # a home that never signed nor verified anything writes an unsigned bundle
    p = cli(teammate(team, "home-x"), "export", f"{tool}@1.0", "-o", str(unsigned_tar))
    assert p.returncode == 0, p.stderr

    home_b = teammate(team, "home-b")  # the site has the team repo: its signers and its policy
    p = cli(home_b, "import", str(unsigned_tar))
    refused(p, f"{tool}@1.0 from {unsigned_tar}: unsigned; refused (signature policy: require)")
    assert not record_file(home_b, tool, "1.0").exists()
    p = cli(home_b, "import", str(signed_tar))
    assert p.returncode == 0, p.stderr
    assert f"{tool}@1.0: signed by alice@example.com" in p.stderr
    p = cli(home_b, "verify", f"{tool}@1.0")
    assert p.returncode == 0 and "signed by alice@example.com" in p.stdout, p.stderr
