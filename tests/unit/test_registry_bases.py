"""The local build facts beside the portable fingerprint: base names in the registry, the bases
label read from an image, `image-stale: base`, and what a lock says when digests differ."""

from __future__ import annotations

import json
from pathlib import Path

from fakes import FakeEngine

from sandman import images
from sandman.commands import pins
from sandman.commands.registry import base_remote_ref, built_on, local_base_ref
from sandman.installs import InstallRecord
from sandman.names import LABEL_BASES

A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64


def rec(bases: dict[str, str], origin: str, image_id: str = A) -> InstallRecord:
    return InstallRecord(tool="t", version="1", source="team", recipe_file="r", fingerprint="f" * 64,
                         image_id=image_id, image_tag="sandman/t:1-ffffffffffff", shims=("t-1",),
                         bin_dir="/b", installed_at="now", bases=bases, origin=origin)


def test_a_base_is_named_by_its_full_digest() -> None:
    assert base_remote_ref("reg:5000/team", "debian:bookworm-slim", A) == \
        f"reg:5000/team/sandman-base/debian-bookworm-slim:sha256-{'a' * 64}"
    assert local_base_ref("Reg.example:5000/Os/Base", B) == \
        f"sandman-base/reg-example-5000-os-base:sha256-{'b' * 64}"


def test_the_bases_label_names_only_plain_images_by_full_digest() -> None:
    """The attack: a registry image whose label names a sandman tag (or a root) as its base, so
    that a pull would tag whatever it points at under a name sandman trusts."""
    label = {"debian:bookworm-slim": A, "sandman/sqlite3:3.46-0123456789ab": B,
             "sandman-root/0123456789ab/sqlite3:3.46": B, "sandman-claimed:abc": B,
             "sandman-base/x:sha256-1": B, "busybox": "sha256:short", "two words": B, "alpine": B}
    assert built_on({LABEL_BASES: json.dumps(label)}) == {"debian:bookworm-slim": A, "alpine": B}
    assert built_on({LABEL_BASES: "not json"}) == {} == built_on({LABEL_BASES: "[1]"}) == built_on({})


def test_a_base_bootstrapped_again_makes_a_local_build_stale_not_a_pulled_one() -> None:
    moved = FakeEngine({"debian:bookworm-slim": B})  # the name now holds another image
    assert images.moved_bases(moved, rec({"debian:bookworm-slim": A}, "built")) == ["debian:bookworm-slim"]
    assert images.moved_bases(moved, rec({"debian:bookworm-slim": A}, "local")) == ["debian:bookworm-slim"]
    assert images.moved_bases(moved, rec({"debian:bookworm-slim": A}, "registry")) == []
    assert images.moved_bases(FakeEngine({"debian:bookworm-slim": A}), rec({"debian:bookworm-slim": A}, "built")) == []
    assert images.moved_bases(FakeEngine({}), rec({"debian:bookworm-slim": A}, "built")) == []  # no base here


def test_the_lock_names_each_digest_that_differs(tmp_path: Path) -> None:
    lock = tmp_path / "sandman.lock"
    locked = pins.Locked("t", "1", "team", "", "f" * 64, A, {"debian:bookworm-slim": A})
    assert pins.differences(locked, rec({"debian:bookworm-slim": A}, "registry"), lock) is None
    assert pins.differences(pins.Locked("t", "1", "team", "", "f" * 64), rec({}, "built"), lock) is None
    text = pins.differences(locked, rec({"debian:bookworm-slim": B}, "built", image_id=B), lock)
    assert text == (f"t@1: image {B[:19]} on debian:bookworm-slim {B[:19]} here, {lock} has {A[:19]} "
                    f"on debian:bookworm-slim {A[:19]}; built here: the registry had no image of that "
                    "fingerprint (push it from where the lock was made); the lock keeps its digests "
                    "(sandman install --update-lock takes these)")
