"""`sandman bootstrap`: a Debian base made from the apt mirror with mmdebstrap, on a real daemon."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sandman.bootstrap import plan
from sandman.errors import UsageError

# debian:bookworm (not -slim): no recipe uses it, so replacing it changes no test's fingerprint.
REF = "debian:bookworm"


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
def test_bootstrap_builds_a_working_base(sandman, docker_client) -> None:
    if shutil.which("mmdebstrap") is None:
        pytest.fail("mmdebstrap is not installed (.ci/run installs it)")
    p = sandman("bootstrap", "--force", REF, timeout=900)
    assert p.returncode == 0, p.stderr
    assert f"{REF}: imported sha256:" in p.stderr
    out = docker_client.containers.run(REF, ["cat", "/etc/debian_version"], remove=True, network_mode="none")
    assert out.decode().startswith("12.")
    assert docker_client.images.get(REF).attrs["Config"]["Cmd"] == ["bash"]
    # present now: without --force it is left alone
    p = sandman("bootstrap", REF)
    assert p.returncode == 0 and f"{REF}: already present" in p.stderr
    p = sandman("-q", "bootstrap", "ubuntu:24.04")
    assert p.returncode == 2 and p.stderr.startswith("sandman: cannot bootstrap 'ubuntu:24.04'")
