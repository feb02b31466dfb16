"""Bundles carry sources too (issue 13 §1): `export` puts the download-cache files of the
exported versions in the bundle, `import` puts them in the other side's cache after checking
their sha256, so a site with no network rebuilds a version built from a source tarball.

The tarball and recipe are test_sources.py's (source_helpers.py).
"""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

import pytest
from helpers import FileServer, ImageRemover, base_env, paths_of, source_cache
from source_helpers import NAME, SHA, TARBALL, write_recipe

from sandman.errors import IntegrityError

TOOL = "h6bsrc"
MEMBER = f"sources/sha256/{SHA}"


@pytest.fixture(scope="module", autouse=True)
def _remove_test_images(remove_images_after_module: ImageRemover) -> None:
    remove_images_after_module(TOOL)


def error_line(stderr: str) -> str:
    """The one error line (warnings, e.g. about an unsigned bundle, may come before it)."""
    lines = [ln for ln in stderr.splitlines() if ln.startswith("sandman: ") and
             not ln.startswith("sandman: warning: ")]
    assert len(lines) == 1, stderr
    return lines[0]


def members(bundle: Path) -> dict[str, bytes]:
    with tarfile.open(bundle) as t:
        return {m.name: t.extractfile(m).read() for m in t.getmembers() if m.isfile()}  # type: ignore[union-attr]


def rewritten(bundle: Path, out: Path, name: str, data: bytes) -> Path:
    """A copy of bundle with member `name` holding other bytes."""
    with tarfile.open(bundle) as src, tarfile.open(out, "w") as dst:
        for m in src.getmembers():
            body = data if m.name == name else src.extractfile(m).read()  # type: ignore[union-attr]
            m.size = len(body)
            dst.addfile(m, io.BytesIO(body))
    return out


@pytest.mark.docker
def test_a_bundle_carries_sources_and_an_offline_site_rebuilds(
        sandman, home: Path, tmp_path: Path, http_server: FileServer, docker_client) -> None:
    server = http_server
    (server.root / NAME).write_bytes(TARBALL)
    recipes = tmp_path / "recipes"
    write_recipe(recipes, f"{server.url}/{NAME}", tool=TOOL)
    env = {"SANDMAN_RECIPE_PATH": str(recipes)}
    try:
        assert (p := sandman("install", f"{TOOL}@1.0", env=env)).returncode == 0, p.stderr
        bundle = tmp_path / "legacy.tar"
        p = sandman("export", f"{TOOL}@1.0", "-o", str(bundle), env=env)
        assert p.returncode == 0, p.stderr
        assert "carrying 1 source file(s) for offline rebuilds" in p.stderr
        assert members(bundle)[MEMBER] == TARBALL
    finally:
        server.stop()

    # the offline site: another home, an empty download cache, the URL unreachable
    site_home = tmp_path / "site"
    site = {"SANDMAN_HOME": str(site_home), "SANDMAN_RECIPE_PATH": str(tmp_path / "no-recipes")}
    p = sandman("import", str(bundle), env=site)
    assert p.returncode == 0, p.stderr
    assert f"1 source file(s) verified (sha256) and placed in {source_cache(site_home)}" in p.stderr
    assert (source_cache(site_home) / SHA).read_bytes() == TARBALL
    p = sandman("-v", "install", "--force", f"legacy/{TOOL}@1.0", env=site)
    assert p.returncode == 0, p.stderr
    assert "downloading" not in p.stderr and f"built sandman/{TOOL}:1.0-" in p.stderr
    run = subprocess.run([str(paths_of(site_home).bin_dir / "h7hello-1.0"), "offline"],
                         capture_output=True, text=True, timeout=120,
                         env=base_env(site_home))
    assert run.stdout == "hello from source: offline\n", run.stderr

    # a bundle whose source is not what its name says: refused before any image loads
    forged = rewritten(bundle, tmp_path / "forged.tar", MEMBER, b"not the tarball")
    bad_home = tmp_path / "bad-site"
    p = sandman("import", str(forged), env={**site, "SANDMAN_HOME": str(bad_home)})
    assert p.returncode == IntegrityError.exit_code, p.stderr
    assert error_line(p.stderr).startswith(f"sandman: {forged}: {MEMBER} hashes to ")
    assert error_line(p.stderr).endswith("; not placed in the download cache, nothing imported")
    assert not (source_cache(bad_home) / SHA).exists()
    assert list(source_cache(bad_home).iterdir()) == []  # no temp file left
    assert "loading images" not in p.stderr

    # exporting where the source cannot be had: the image travels, the user is told
    p = sandman("export", f"{TOOL}@1.0", "-o", str(tmp_path / "thin.tar"),
                env={**env, "SANDMAN_HOME": str(tmp_path / "thin-home")})
    assert p.returncode == 0, p.stderr
    assert f"sandman: warning: {TOOL}@1.0: source {NAME} is not in the bundle (" in p.stderr
    assert not any(n.startswith("sources/") for n in members(tmp_path / "thin.tar"))
