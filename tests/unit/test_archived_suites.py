"""`sandman bootstrap` of archived Debian suites (stretch, jessie, wheezy...): the mmdebstrap
command built for them, the mirror chosen, what is said, and bad mirrors. The real archive is
not reachable from CI; tests/integration/test_bootstrap_archived.py runs the CLI for stretch
end to end through a recording stand-in for mmdebstrap (the command it gets, the image made)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandman.bootstrap import KEYRINGS, plan
from sandman.errors import MissingProgramError, UsageError
from sandman.text import safe

OUT = Path("/tmp/out.tar")


@pytest.mark.parametrize("suite", ["stretch", "jessie", "wheezy", "buster"])
def test_an_archived_suite_gets_its_mirror_valid_until_and_keyrings(suite: str) -> None:
    p = plan(f"debian:{suite}-slim", "http://current.invalid/debian",
             archive_mirror="http://archive.invalid/debian")
    assert p.archived and p.mirror == "http://archive.invalid/debian"  # not the current-suites one
    cmd = p.command(OUT)
    assert cmd[-3:] == [suite, str(OUT), "http://archive.invalid/debian"]
    assert '--aptopt=Acquire::Check-Valid-Until "false";' in cmd
    hooks = [c for c in cmd if c.startswith("--setup-hook=")]
    assert hooks == [
        '--setup-hook=mkdir -p "$1/etc/apt/trusted.gpg.d"',
        "--setup-hook=copy-in /usr/share/keyrings/debian-archive-keyring.gpg "
        "/usr/share/keyrings/debian-archive-removed-keys.gpg /etc/apt/trusted.gpg.d/",
    ]
    # the hooks come before the suite (options), and signatures are never switched off
    assert cmd.index(hooks[-1]) < cmd.index(suite)
    assert not any("trusted=yes" in c or "AllowInsecure" in c or "--no-check" in c for c in cmd)
    assert any("path-exclude=/usr/share/doc/*" in c for c in cmd)  # -slim as for any suite


def test_a_current_suite_is_unchanged() -> None:
    p = plan("debian:bookworm", "http://current.invalid/debian", archive_mirror="http://archive.invalid/debian")
    cmd = p.command(OUT)
    assert not p.archived and p.notes() == []
    assert cmd[-1] == "http://current.invalid/debian"
    assert not any("Check-Valid-Until" in c or "setup-hook" in c for c in cmd)


def test_an_archived_suite_needs_a_mirror_and_sandman_names_none_itself() -> None:
    with pytest.raises(UsageError) as e:
        plan("debian:stretch")
    assert e.value.message == (
        "cannot bootstrap 'debian:stretch': stretch is an archived Debian suite, not on the current "
        "mirrors; give its mirror with --mirror URL or archive_mirror in config.toml "
        "(Debian's own archive is http://archive.debian.org/debian)")


def test_an_archived_suite_says_what_it_does_differently() -> None:
    p = plan("debian:stretch", archive_mirror="http://a.invalid/debian")
    assert p.mirror == "http://a.invalid/debian"
    notes = p.notes()
    assert notes[0] == "stretch is an archived Debian suite: mirror http://a.invalid/debian (given)"
    assert "Acquire::Check-Valid-Until false" in notes[1] and "signatures are still checked" in notes[1]
    assert notes[2] == ("trusting the host's keyrings debian-archive-keyring.gpg, "
                        "debian-archive-removed-keys.gpg (copied into the image's /etc/apt/trusted.gpg.d)")
    given = plan("debian:jessie", archive_mirror="http://m.invalid/debian").notes()[0]
    assert given.endswith("mirror http://m.invalid/debian (given)")


def test_this_host_has_the_retired_keys() -> None:
    """debian-archive-keyring keeps the retired keys old suites are signed with in their own file."""
    for k in KEYRINGS:
        assert k.is_file() and k.stat().st_size > 0, k


def test_a_missing_keyring_stops_before_mmdebstrap(tmp_path: Path) -> None:
    gone = tmp_path / "debian-archive-removed-keys.gpg"
    with pytest.raises(MissingProgramError, match=f"{gone} missing; install the host's debian-archive-keyring"):
        plan("debian:wheezy", keyrings=(KEYRINGS[0], gone))
    plan("debian:bookworm", keyrings=(gone,))  # current suites do not need it


@pytest.mark.parametrize("bad", ["archive.debian.org/debian", "ftp://m/debian", "deb http://m/debian stretch main", ""])
def test_a_mirror_that_is_not_a_url_is_refused(bad: str) -> None:
    with pytest.raises(UsageError, match=f"^mirror '{safe(bad)}' is not an http://, https:// or file:// URL$"):
        plan("debian:stretch", archive_mirror=bad)
    with pytest.raises(UsageError):
        plan("debian:bookworm", bad)
