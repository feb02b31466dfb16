"""`sandman bootstrap --mirror`, and the archived-suite command shape, run for real.

archive.debian.org is not reachable from CI, so the archived path (Valid-Until off, the host's
keyrings copied into the new system before apt runs) is run against a suite the host's own
mirror has: the same mmdebstrap command as for stretch, with only the suite name changed. The
mirror is the one this machine's apt uses, read from its sources; none is written here.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from sandman.bootstrap import bootstrap, plan
from sandman.engine import Engine

TEST_REF = "sandman-test-h6/archived-shape:bookworm"  # a test-only name, removed at the end
CLI_REF = "debian:bullseye"  # no recipe or test uses it (the -slim bases stay untouched)


def host_debian_mirror() -> str:
    """The first Debian mirror URI in this host's apt sources (deb822 or one-line style)."""
    files = sorted(Path("/etc/apt/sources.list.d").glob("*.sources")) + \
        sorted(Path("/etc/apt/sources.list.d").glob("*.list")) + [Path("/etc/apt/sources.list")]
    for f in files:
        if not f.is_file():
            continue
        for uri in re.findall(r"(?m)^(?:URIs:\s*|deb\s+(?:\[[^]]*\]\s+)?)(\S+)", f.read_text()):
            if uri.rstrip("/").endswith("/debian"):
                return uri
    pytest.fail("no Debian mirror in this host's apt sources")


def need_mmdebstrap() -> None:
    if shutil.which("mmdebstrap") is None:
        pytest.fail("mmdebstrap is not installed (.ci/run installs it)")


@pytest.mark.docker
def test_the_archived_command_shape_bootstraps_a_base_whose_apt_keeps_it(docker_client) -> None:
    need_mmdebstrap()
    archived = plan("debian:stretch-slim", archive_mirror=host_debian_mirror())
    assert archived.archived
    p = replace(archived, ref=TEST_REF, suite="bookworm")  # the stretch command, a reachable suite
    lines: list[str] = []
    try:
        image_id = bootstrap(p, Engine.connect(), tmp_dir=Path("/tmp"), on_line=lines.append)
        assert image_id.startswith("sha256:")
        assert any("--setup-hook=copy-in" in ln for ln in lines if ln.startswith("$ mmdebstrap"))
        probe = ("ls /etc/apt/trusted.gpg.d; apt-config dump | grep -i check-valid-until; "
                 "cmp /etc/apt/trusted.gpg.d/debian-archive-removed-keys.gpg /host-removed && echo same")
        out = docker_client.containers.run(
            TEST_REF, ["bash", "-c", probe], remove=True, network_mode="none",
            volumes={"/usr/share/keyrings/debian-archive-removed-keys.gpg":
                     {"bind": "/host-removed", "mode": "ro"}}).decode()
        assert "debian-archive-keyring.gpg\n" in out and "debian-archive-removed-keys.gpg\n" in out
        assert 'Acquire::Check-Valid-Until "false";' in out
        assert out.endswith("same\n")
        # apt in the image still checks signatures: an update through the mirror works
        upd = docker_client.containers.run(TEST_REF, ["apt-get", "update"], remove=True).decode()
        assert "Reading package lists" in upd
    finally:
        subprocess.run(["docker", "rmi", "-f", TEST_REF], capture_output=True)


@pytest.mark.docker
def test_cli_bootstrap_through_the_hosts_mirror(sandman, docker_client) -> None:
    need_mmdebstrap()
    mirror = host_debian_mirror()
    had = subprocess.run(["docker", "image", "inspect", CLI_REF], capture_output=True).returncode == 0
    try:
        p = sandman("-vv", "bootstrap", "--force", "--mirror", mirror, CLI_REF, timeout=900)
        assert p.returncode == 0, p.stderr
        assert re.search(rf"\$ mmdebstrap .* bullseye \S+/bullseye\.tar {re.escape(mirror)}$", p.stderr, re.M), p.stderr
        assert "archived" not in p.stderr  # a current suite: nothing special said or done
        out = docker_client.containers.run(CLI_REF, ["cat", "/etc/debian_version"], remove=True,
                                           network_mode="none")
        assert out.decode().startswith("11.")
        # a mirror that is not a URL: one line, usage error, nothing run
        p = sandman("bootstrap", "--force", "--mirror", "ftp://x/debian", CLI_REF)
        assert (p.returncode, p.stderr) == (
            2, "sandman: mirror 'ftp://x/debian' is not an http://, https:// or file:// URL\n")
    finally:
        if not had:
            subprocess.run(["docker", "rmi", "-f", CLI_REF], capture_output=True)
