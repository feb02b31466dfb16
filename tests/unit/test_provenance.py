"""Trust by provenance, the pure part: what this home bootstrapped, which base the warm agent
is built from, which agent binary may run, and the names imported bases get. The attacks
themselves are replayed against the real daemon in tests/integration/test_security_provenance.py.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from fakes import FakeEngine

from sandman import agent, bootstrap, provenance
from sandman.errors import BuildError
from sandman.images import local_base_ref
from sandman.paths import Paths

A, B, C = ("sha256:" + c * 64 for c in "abc")


def paths(tmp_path: Path) -> Paths:
    return Paths.from_env({"SANDMAN_HOME": str(tmp_path)})


def test_a_name_is_present_only_when_it_still_holds_what_this_home_bootstrapped(tmp_path):
    p = paths(tmp_path)
    engine = FakeEngine({"debian:bookworm-slim": A})
    assert not bootstrap.present_as_made(engine, p, "debian:bookworm-slim")  # imported, pulled...
    provenance.record_made(p, "debian:bookworm-slim", A)
    assert bootstrap.present_as_made(engine, p, "debian:bookworm-slim")
    moved = FakeEngine({"debian:bookworm-slim": B})  # another image under the name since
    assert not bootstrap.present_as_made(moved, p, "debian:bookworm-slim")
    assert (p.state_dir / "bootstrapped.json").stat().st_mode & 0o777 == 0o600


def test_a_garbled_record_counts_as_nothing(tmp_path):
    p = paths(tmp_path)
    p.state_dir.mkdir(parents=True)
    (p.state_dir / "bootstrapped.json").write_text('{"debian:bookworm-slim": "not-an-id"}')
    assert provenance.made_here(p) == {}
    (p.state_dir / "bootstrapped.json").write_text("[")
    assert provenance.made_here(p) == {}


def test_the_agent_is_built_from_a_bootstrapped_base_bookworm_first(tmp_path):
    p = paths(tmp_path)
    names = {"debian:bookworm-slim": A, "debian:trixie-slim": B, "arm64v8/debian:bookworm": C}
    with pytest.raises(BuildError, match="sandman bootstrap debian:bookworm-slim"):
        agent.build_base(FakeEngine(names), p)  # here by name, but nothing bootstrapped here
    provenance.record_made(p, "debian:trixie-slim", B)
    provenance.record_made(p, "arm64v8/debian:bookworm", C)  # another CPU's: never
    assert agent.build_base(FakeEngine(names), p) == ("debian:trixie-slim", B)
    provenance.record_made(p, "debian:bookworm-slim", A)
    assert agent.build_base(FakeEngine(names), p) == ("debian:bookworm-slim", A)
    # the recorded id, not the name: bookworm's image is gone (the name moved to another)
    assert agent.build_base(FakeEngine({"debian:bookworm-slim": C, "x": B}), p) == \
        ("debian:trixie-slim", B)
    provenance.record_made(p, "vendor/centos:7", A)  # a rootfs base: not Debian, no apt
    assert agent.build_base(FakeEngine({"vendor/centos:7": A}), p)[0] == "debian:bookworm-slim"


def test_only_a_binary_with_its_recorded_hash_counts_and_shims_drop_the_rest(tmp_path):
    p = paths(tmp_path)
    binary = agent.binary_path(p)
    binary.parent.mkdir(parents=True)
    binary.write_bytes(b"\x7fELF built by an older sandman")
    assert not agent.verified(binary)  # no record
    agent.record_path(binary).write_text(hashlib.sha256(b"\x7fELF good").hexdigest() + "\n")
    assert not agent.verified(binary)  # another content than recorded
    agent.shim_values(p)  # writing shims
    assert not binary.exists()
    binary.write_bytes(b"\x7fELF good")
    assert agent.verified(binary)
    agent.shim_values(p)
    assert binary.exists()


def test_an_imported_base_is_named_by_its_digest_never_by_its_plain_name():
    name = local_base_ref("debian:bookworm-slim", A)
    assert name == f"sandman-base/debian-bookworm-slim:sha256-{'a' * 64}"
    assert not name.startswith("debian:")
