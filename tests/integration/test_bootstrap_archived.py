"""`sandman bootstrap` through a mirror: a current suite with `--mirror`, an archived one with
config.toml's `archive_mirror` (Valid-Until off, the host's keyrings copied in before apt runs).

mmdebstrap is the recording stand-in (bootstrap_helpers.py): these tests check the command
sandman builds and runs, what it says, and the base it imports. archive.debian.org is not
reachable from CI anyway, so the mirrors are names that nothing ever fetches from.
"""

from __future__ import annotations

import contextlib
import re

import docker
import pytest
from bootstrap_helpers import StandIn

CLI_REF = "debian:bullseye"  # no recipe or test uses it (the -slim bases stay untouched)
ARCHIVED_REF = "debian:stretch-slim"  # likewise
CURRENT_MIRROR = "http://current.mirror.invalid/debian"
ARCHIVE_MIRROR = "http://archive.mirror.invalid/debian"


def image_id(client: docker.DockerClient, ref: str) -> str | None:
    try:
        return client.images.get(ref).id
    except docker.errors.ImageNotFound:
        return None


def restore(client: docker.DockerClient, ref: str, had: str | None) -> None:
    """The name as the test found it: its base removed when there was none before, else the
    image it took the name from dropped, once nothing names or uses that (never forced)."""
    now = image_id(client, ref)
    with contextlib.suppress(docker.errors.DockerException):
        if had is None and now is not None:
            client.images.remove(ref, force=True)
        elif had is not None and had != now:
            client.images.remove(had)


@pytest.mark.docker
def test_cli_bootstrap_through_a_mirror(sandman, docker_client, mmdebstrap_standin: StandIn) -> None:
    # A real run would add fetching bullseye from that mirror (the old test used the host's).
    marker = mmdebstrap_standin.provide("bullseye", "debian:bullseye-slim")
    record = mmdebstrap_standin.record()
    env = mmdebstrap_standin.env(record)
    had = image_id(docker_client, CLI_REF)
    try:
        p = sandman("-vv", "bootstrap", "--force", "--mirror", CURRENT_MIRROR, CLI_REF, env=env)
        assert p.returncode == 0, p.stderr
        assert re.search(rf"^\$ mmdebstrap .* bullseye \S+/bullseye\.tar {re.escape(CURRENT_MIRROR)}$",
                         p.stderr, re.M), p.stderr
        [call] = StandIn.calls(record)
        assert call.positional[0] == "bullseye" and call.positional[2:] == [CURRENT_MIRROR]
        # a current suite: nothing special said or done
        assert "archived" not in p.stderr
        assert call.values("--setup-hook") == []
        assert not any("Check-Valid-Until" in o for o in call.values("--aptopt"))
        out = docker_client.containers.run(CLI_REF, ["cat", "/etc/debian_version", "/etc/sandman-standin"],
                                           remove=True, network_mode="none").decode()
        assert out.startswith("11.") and out.endswith("\n" + marker)
        # a mirror that is not a URL: one line, usage error, nothing run
        p = sandman("bootstrap", "--force", "--mirror", "ftp://x/debian", CLI_REF, env=env)
        assert (p.returncode, p.stderr) == (
            2, "sandman: mirror 'ftp://x/debian' is not an http://, https:// or file:// URL\n")
        assert len(StandIn.calls(record)) == 1
    finally:
        restore(docker_client, CLI_REF, had)


@pytest.mark.docker
def test_an_archived_suite_through_config_archive_mirror(sandman, home, docker_client,
                                                         mmdebstrap_standin: StandIn) -> None:
    # A real run (the old test: stretch's command with bookworm from the host's mirror) would add
    # Debian's side: mmdebstrap running the hooks before apt, apt in the image honouring them.
    # No stretch image here: bullseye's files stand in for it (only sandman's side is checked).
    marker = mmdebstrap_standin.provide("stretch", "debian:bullseye-slim")
    record = mmdebstrap_standin.record()
    env = mmdebstrap_standin.env(record)
    config = home / "config.toml"
    had = image_id(docker_client, ARCHIVED_REF)
    try:
        # the current suites' mirror is not used for it, and sandman names no archive by itself
        config.write_text(f'mirror = "{CURRENT_MIRROR}"\n')
        p = sandman("-q", "bootstrap", "--force", ARCHIVED_REF, env=env)
        assert (p.returncode, p.stderr) == (2, (
            f"sandman: cannot bootstrap '{ARCHIVED_REF}': stretch is an archived Debian suite, not "
            "on the current mirrors; give its mirror with --mirror URL or archive_mirror in "
            "config.toml (Debian's own archive is http://archive.debian.org/debian)\n"))
        assert StandIn.calls(record) == []

        config.write_text(f'mirror = "{CURRENT_MIRROR}"\narchive_mirror = "{ARCHIVE_MIRROR}"\n')
        p = sandman("bootstrap", "--force", ARCHIVED_REF, env=env)
        assert p.returncode == 0, p.stderr
        [call] = StandIn.calls(record)
        assert call.positional[0] == "stretch" and call.positional[2:] == [ARCHIVE_MIRROR]
        assert 'Acquire::Check-Valid-Until "false";' in call.values("--aptopt")
        # the host's keyrings, readable (the stand-in opened them), go in before apt first runs
        assert call.values("--setup-hook") == [
            'mkdir -p "$1/etc/apt/trusted.gpg.d"',
            "copy-in /usr/share/keyrings/debian-archive-keyring.gpg "
            "/usr/share/keyrings/debian-archive-removed-keys.gpg /etc/apt/trusted.gpg.d/"]
        assert "path-exclude=/usr/share/doc/*" in call.values("--dpkgopt")  # -slim, as for any suite
        assert not any("trusted=yes" in a or "AllowInsecure" in a for a in call.argv)
        # said before it is done
        said = p.stderr.splitlines()
        assert f"{ARCHIVED_REF}: stretch is an archived Debian suite: mirror {ARCHIVE_MIRROR} (given)" in said
        assert any(ln.startswith(f"{ARCHIVED_REF}: its Release files expired long ago: apt runs with "
                                 "Acquire::Check-Valid-Until false") for ln in said), p.stderr
        assert (f"{ARCHIVED_REF}: trusting the host's keyrings debian-archive-keyring.gpg, "
                "debian-archive-removed-keys.gpg (copied into the image's /etc/apt/trusted.gpg.d)") in said
        assert f"{ARCHIVED_REF}: imported sha256:" in p.stderr
        img = docker_client.images.get(ARCHIVED_REF)
        assert img.attrs["Config"]["Cmd"] == ["bash"]
        out = docker_client.containers.run(ARCHIVED_REF, ["cat", "/etc/sandman-standin"], remove=True,
                                           network_mode="none").decode()
        assert out == marker
    finally:
        restore(docker_client, ARCHIVED_REF, had)
