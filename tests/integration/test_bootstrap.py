"""`sandman bootstrap`: the mmdebstrap command sandman builds, and the base it imports from the
tarball, on a real daemon.

mmdebstrap here is the recording stand-in (bootstrap_helpers.py): these tests are about
sandman's side. The one real mmdebstrap run of the suite is test_platform.py's arm64 base.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import docker
import pytest
from bootstrap_helpers import StandIn
from helpers import paths_of

from sandman.bootstrap import plan
from sandman.errors import BuildError, MissingProgramError, UsageError

# debian:bookworm (not -slim): no recipe uses it, so replacing it changes no test's fingerprint.
REF = "debian:bookworm"


def image_id(client: docker.DockerClient, ref: str) -> str | None:
    try:
        return client.images.get(ref).id
    except docker.errors.ImageNotFound:
        return None


def drop_replaced(client: docker.DockerClient, old: str | None) -> None:
    """The image `--force` took the name from, once nothing names or uses it (never forced)."""
    if old is not None and old != image_id(client, REF):
        with contextlib.suppress(docker.errors.DockerException):
            client.images.remove(old)


def test_plan_accepts_only_debian_suites() -> None:
    p = plan("debian:trixie-slim", mirror="http://mirror.invalid/debian")
    assert (p.suite, p.slim) == ("trixie", True)
    cmd = p.command(Path("/tmp/x.tar"))
    assert cmd[-3:] == ["trixie", "/tmp/x.tar", "http://mirror.invalid/debian"]
    assert any("path-exclude=/usr/share/doc/*" in c for c in cmd)
    assert not any("path-exclude" in c for c in plan("debian:trixie").command(Path("/t")))
    for bad in ("ubuntu:22.04", "debian", "debian:Bookworm", "alpine:3"):
        with pytest.raises(UsageError, match="only Debian bases"):
            plan(bad)


@pytest.mark.docker
def test_bootstrap_builds_a_working_base(sandman, home: Path, docker_client,
                                         mmdebstrap_standin: StandIn) -> None:
    # A real mmdebstrap run would add Debian's own packages and keys; CI's .ci/run bootstraps
    # the three -slim bases for real, and test_platform.py makes its arm64 base for real.
    marker = mmdebstrap_standin.provide("bookworm", "debian:bookworm-slim")
    record = mmdebstrap_standin.record()
    env = mmdebstrap_standin.env(record)
    old = image_id(docker_client, REF)
    try:
        p = sandman("bootstrap", "--force", REF, env=env)
        assert p.returncode == 0, p.stderr
        [call] = StandIn.calls(record)
        # what sandman asked for: minbase as root, not -slim (docs stay), recommends off
        assert call.euid == 0
        assert call.options[:3] == ["--variant=minbase", "--mode=root", "--format=tar"]
        assert call.values("--dpkgopt") == [] and call.values("--setup-hook") == []
        assert 'APT::Install-Recommends "false";' in call.values("--aptopt")
        assert not any(o.startswith("--arch") for o in call.options)
        suite, target = call.positional  # no mirror given: mmdebstrap's default
        assert suite == "bookworm"
        # the tarball is written in sandman's cache, in a folder of its own that is gone after
        out = Path(target)
        assert out.name == "bookworm.tar" and out.parent.name.startswith("bootstrap-")
        assert out.parent.parent == paths_of(home).cache_dir and not out.parent.exists()
        assert "$ " + " ".join(["mmdebstrap", *call.argv]) in p.stderr.splitlines()
        assert f"{REF}: imported sha256:" in p.stderr
        made = p.stderr.split(f"{REF}: imported ")[1][:19]

        # the import: that very tarball, under its name, with bash as its command
        assert (image_id(docker_client, REF) or "-").startswith(made)
        out_text = docker_client.containers.run(
            REF, ["cat", "/etc/debian_version", "/etc/sandman-standin"], remove=True,
            network_mode="none").decode()
        assert out_text.startswith("12.") and out_text.endswith("\n" + marker)
        assert docker_client.images.get(REF).attrs["Config"]["Cmd"] == ["bash"]

        # present now: without --force it is left alone, and mmdebstrap is not run
        p = sandman("bootstrap", REF, env=env)
        assert p.returncode == 0 and f"{REF}: already present" in p.stderr
        assert (image_id(docker_client, REF) or "-").startswith(made)
        p = sandman("-q", "bootstrap", "ubuntu:24.04", env=env)
        assert p.returncode == 2 and p.stderr.startswith("sandman: cannot bootstrap 'ubuntu:24.04'")
        assert len(StandIn.calls(record)) == 1
    finally:
        drop_replaced(docker_client, old)


@pytest.mark.docker
def test_a_failing_mmdebstrap_changes_nothing(sandman, home: Path, docker_client,
                                              mmdebstrap_standin: StandIn) -> None:
    """mmdebstrap's exit code and last lines reach the user, and no base is made or replaced;
    without mmdebstrap at all, sandman says what to install and runs nothing."""
    ref = "debian:sid"  # the stand-in has no root filesystem for sid: it fails, as mmdebstrap can
    before = image_id(docker_client, ref)
    record = mmdebstrap_standin.record()
    p = sandman("bootstrap", "--force", ref, env=mmdebstrap_standin.env(record))
    assert p.returncode == BuildError.exit_code, p.stderr
    assert f"sandman: mmdebstrap failed for {ref} (exit 1)" in p.stderr
    assert "E: mmdebstrap stand-in: no root filesystem for sid" in p.stderr
    assert [c.positional[0] for c in StandIn.calls(record)] == ["sid"]
    assert image_id(docker_client, ref) == before
    assert not any(paths_of(home).cache_dir.glob("bootstrap-*"))

    # a PATH without mmdebstrap (the docker SDK needs none)
    p = sandman("-q", "bootstrap", "--force", ref, env={"PATH": str(home / "nothing")})
    assert (p.returncode, p.stderr) == (
        MissingProgramError.exit_code, "sandman: mmdebstrap is not installed; install it (apt-get install mmdebstrap)\n")
    assert image_id(docker_client, ref) == before
