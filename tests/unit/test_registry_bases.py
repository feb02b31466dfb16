"""The local build facts beside the portable fingerprint: base names in the registry, the bases
label read from an image, `image-stale: base`, and what a lock says when digests differ."""

from __future__ import annotations

import json
from pathlib import Path

from fakes import FakeEngine

from sandman import images
from sandman.commands import pins
from sandman.commands.registry import base_remote_ref
from sandman.engine import ImageInfo
from sandman.images import built_on, local_base_ref
from sandman.installs import InstallRecord
from sandman.names import LABEL_BASES, LABEL_FINGERPRINT

A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64
C = "sha256:" + "c" * 64
D = "sha256:" + "d" * 64


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
    base = "debian:bookworm-slim"
    built = ImageInfo(C, ("sandman/t:1-ffffffffffff",), {}, 1, "", parent=D)  # two steps on A
    step = ImageInfo(D, (), {}, 1, "", parent=A)
    moved = FakeEngine({base: B, A: A, D: step, C: built})  # the name holds another image now
    assert images.moved_bases(moved, rec({base: A}, "built", image_id=C)) == [base]
    assert images.moved_bases(moved, rec({base: A}, "local", image_id=C)) == [base]  # built here
    assert images.moved_bases(moved, rec({base: A}, "registry", image_id=C)) == []
    assert images.moved_bases(FakeEngine({base: A, C: built}), rec({base: A}, "built", image_id=C)) == []
    assert images.moved_bases(FakeEngine({C: built}), rec({base: A}, "built", image_id=C)) == []  # no base
    # another home found a teammate's image in the cache (a pull, a bundle: no parent here),
    # its base by its content name or not at all: nothing moved under it
    pulled = ImageInfo(C, ("sandman/t:1-ffffffffffff",), {}, 1, "")
    for here in ({base: B, C: pulled, local_base_ref(base, A): A}, {base: B, C: pulled}):
        assert images.moved_bases(FakeEngine(here), rec({base: A}, "local", image_id=C)) == []
        assert images.moved_bases(FakeEngine(here), rec({base: A}, "built", image_id=C)) == [base]


def test_a_cached_image_on_a_moved_base_is_built_again_and_takes_the_tag() -> None:
    """The fingerprint names the base by reference, so it matches an image built here on the
    base before it was bootstrapped again; that image is not reused (`list` would call it
    image-stale: base right after the install), nor kept by publish's race rule."""
    base, tag = "debian:bookworm-slim", "sandman/t:1-ffffffffffff"
    old = ImageInfo(C, (tag,), {LABEL_FINGERPRINT: "f" * 64, LABEL_BASES: json.dumps({base: A})},
                    1, "", parent=A)
    eng = FakeEngine({base: B, A: A, tag: old, D: D})
    assert images.moved(eng, built_on(old.labels), built_from=old) == [base]
    assert images.publish(eng, D, tag, "f" * 64, replace=False) == D
    assert eng.image(tag).id == D
    current = FakeEngine({base: A, tag: old, D: D})
    assert images.moved(current, built_on(old.labels), built_from=old) == []
    assert images.publish(current, D, tag, "f" * 64, replace=False) == C
    assert current.image(D) is None  # the race's loser is removed


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
