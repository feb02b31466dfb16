"""Fingerprints and build plans, with a fake engine (no daemon): what changes them and what not."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from sandman.build import base_refs, check_kits, image_ref, plan_build, render_dockerfile
from sandman.engine import ImageInfo
from sandman.errors import ImageMissingError, KitError, RemoteError
from sandman.recipes import load_recipe


class FakeEngine:
    def __init__(self, images: dict[str, str]) -> None:
        self.images = images
        self.pulled: list[str] = []

    def image(self, ref: str) -> ImageInfo | None:
        if ref in self.images:
            return ImageInfo(self.images[ref], (ref,), {}, 1, "")
        return None

    def pull(self, ref: str) -> ImageInfo:
        self.pulled.append(ref)
        raise RemoteError(f"cannot pull {ref}: registry unreachable")


RECIPE = """\
schema = 1
tool = "demo"
description = "demo"
smoke = ["true"]

[versions."1"]
base = "debian:bookworm-slim"
packages = ["sqlite3"]
files = ["helper.sh"]

[versions."2"]
dockerfile = "Dockerfile"
build_args = { BASE = "debian:trixie-slim" }
kits = [{ file = "kit.tgz", sha256 = "KITSHA" }]
"""


@pytest.fixture
def recipe_dir(tmp_path: Path) -> Path:
    d = tmp_path / "recipes" / "demo"
    d.mkdir(parents=True)
    (d / "helper.sh").write_text("echo hi\n")
    (d / "Dockerfile").write_text("ARG BASE=debian:bullseye-slim\nFROM ${BASE} AS one\nFROM one\nCOPY kits/ /k/\n")
    return d


@pytest.fixture
def kits(tmp_path: Path) -> Path:
    k = tmp_path / "kits"
    k.mkdir()
    (k / "kit.tgz").write_bytes(b"vendor bits")
    return k


def load(recipe_dir: Path, text: str = RECIPE) -> object:
    sha = hashlib.sha256(b"vendor bits").hexdigest()
    (recipe_dir / "recipe.toml").write_text(text.replace("KITSHA", sha))
    return load_recipe(recipe_dir / "recipe.toml")


ENGINE = FakeEngine({"debian:bookworm-slim": "sha256:aaa", "debian:trixie-slim": "sha256:bbb"})


def fp(recipe_dir: Path, kits: Path, version: str = "1", engine: FakeEngine = ENGINE, text: str = RECIPE) -> str:
    r = load(recipe_dir, text)
    return plan_build(r, r.version(version), source="env", kits_folder=kits, engine=engine).fingerprint


def test_render_dockerfile(recipe_dir: Path) -> None:
    r = load(recipe_dir)
    text = render_dockerfile(r.version("1"))
    assert text.startswith("FROM debian:bookworm-slim\n")
    assert "apt-get install -y --no-install-recommends sqlite3" in text
    assert 'COPY ["files/helper.sh", "/opt/sandman/files/helper.sh"]' in text


def test_fingerprint_stable_and_sensitive(recipe_dir: Path, kits: Path) -> None:
    a = fp(recipe_dir, kits)
    assert a == fp(recipe_dir, kits)  # no change, same identity
    assert a != fp(recipe_dir, kits, text=RECIPE.replace('"sqlite3"', '"sqlite3", "less"'))
    (recipe_dir / "helper.sh").write_text("echo changed\n")
    b = fp(recipe_dir, kits)
    assert b != a  # a context file changed
    other_base = FakeEngine({"debian:bookworm-slim": "sha256:ccc", "debian:trixie-slim": "sha256:bbb"})
    assert fp(recipe_dir, kits, engine=other_base) != b  # the base image changed
    # runtime-only settings (how the shim runs) do not rebuild the image
    assert fp(recipe_dir, kits, text=RECIPE.replace('smoke = ["true"]', 'smoke = ["true"]\nnetwork = true')) == b
    # another version's settings do not touch this version's identity
    assert fp(recipe_dir, kits, text=RECIPE.replace('BASE = "debian:trixie-slim"', 'BASE = "debian:trixie-slim", X = "1"')) == b


def test_dockerfile_bases_and_kits(recipe_dir: Path, kits: Path) -> None:
    r = load(recipe_dir)
    plan = plan_build(r, r.version("2"), source="env", kits_folder=kits, engine=ENGINE)
    assert plan.bases == {"debian:trixie-slim": "sha256:bbb"}
    assert plan.files["kits/kit.tgz"] == kits / "kit.tgz"
    assert "Dockerfile" in plan.files
    assert plan.tag == image_ref("demo", "2", plan.fingerprint)
    assert plan.labels["io.sandman.fingerprint"] == plan.fingerprint


def test_base_refs() -> None:
    df = "ARG V=12\nFROM debian:${V}-slim AS a\nFROM a\nFROM scratch\nFROM --platform=x busybox AS b\n"
    assert base_refs(df, {}) == ["debian:12-slim", "busybox"]
    assert base_refs(df, {"V": "13"})[0] == "debian:13-slim"


def test_missing_kit_says_where(recipe_dir: Path, kits: Path) -> None:
    r = load(recipe_dir)
    (kits / "kit.tgz").unlink()
    with pytest.raises(KitError, match=f"put it at {kits / 'kit.tgz'}"):
        check_kits(r, r.version("2"), kits)
    (kits / "kit.tgz").write_bytes(b"tampered")
    with pytest.raises(KitError, match="has sha256"):
        check_kits(r, r.version("2"), kits)


def test_missing_base_names_the_fix(recipe_dir: Path, kits: Path) -> None:
    engine = FakeEngine({})
    r = load(recipe_dir)
    with pytest.raises(ImageMissingError, match="sandman bootstrap debian:bookworm-slim"):
        plan_build(r, r.version("1"), source="env", kits_folder=kits, engine=engine)
    assert engine.pulled == ["debian:bookworm-slim"]  # it tried to pull first
