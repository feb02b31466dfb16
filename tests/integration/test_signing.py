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
import tarfile

import pytest
from helpers import paths_of, record_file, remove_images
from signing_helpers import SIG_ROLE, cli, key_fingerprint, keygen, publish, refused, registry, team, teammate  # noqa: F401 (fixtures)
from teams_helpers import image_id

from sandman.errors import RemoteError, SignatureError
from sandman.names import LABEL_FINGERPRINT, LABEL_TOOL, LABEL_VERSION

pytestmark = pytest.mark.docker

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
    assert p.returncode == SignatureError.exit_code and image_id(docker_client, tag) is None, p.stderr

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
                  f"LABEL {LABEL_TOOL}={tool} {LABEL_VERSION}=1.0 "
                  f"{LABEL_FINGERPRINT}={fingerprint}\n")
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
    remove_images(tool)  # the image push built: a pull must find it remotely
    p = cli(home_b, "pull", f"{tool}@1.0", env=team["env"])
    assert p.returncode == RemoteError.exit_code and "manifest unknown" in p.stderr.lower(), p.stderr  # nothing was pushed


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
