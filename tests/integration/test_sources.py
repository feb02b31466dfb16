"""Sources fetched by URL, verified, cached, offline-capable (issue 13 §1), end to end.

A local HTTP server on 127.0.0.1 (http.server in a thread, a random port) serves a source
tarball: a tiny tool with its own install script, which the recipe's `run` step unpacks and
installs into a Debian bookworm image (no apt). The real CLI builds it, its shim runs it; then
the same recipe is rebuilt with the server stopped (the download cache), from a mirror folder
and from a mirror URL prefix, and refused on a checksum mismatch and a 404 before any build.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest
from helpers import FileServer, ImageRemover, paths_of, source_cache
from source_helpers import NAME, SHA, TARBALL, write_recipe

from sandman.errors import RecipeError, SourceError
from sandman.names import LABEL_TOOL
from sandman.text import quoted

TOOLS = ("h7src", "h7src-bad")


@pytest.fixture(scope="module", autouse=True)
def _remove_test_images(remove_images_after_module: ImageRemover) -> None:
    """Images built here carry one of TOOLS as their tool label; they go at the end."""
    remove_images_after_module(*TOOLS)


@pytest.fixture
def server(http_server: FileServer) -> FileServer:
    """The tarball at /dl/NAME."""
    (http_server.root / "dl").mkdir()
    (http_server.root / "dl" / NAME).write_bytes(TARBALL)
    return http_server


def images_of(tool: str) -> list[str]:
    out = subprocess.run(["docker", "images", "-q", "--no-trunc", "--filter", f"label={LABEL_TOOL}={tool}"],
                         capture_output=True, text=True, check=True).stdout
    return sorted(set(out.split()))


def cached_file(home: Path, sha: str = SHA) -> Path:
    return source_cache(home) / sha


def error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.strip().splitlines() if ln.startswith("sandman: ")]
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.mark.docker
def test_a_version_built_from_a_source_tarball_then_offline(
        sandman, home: Path, tmp_path: Path, shim_env: dict[str, str], server: FileServer,
        docker_client) -> None:
    env = {"SANDMAN_RECIPE_PATH": str(tmp_path / "recipes")}
    write_recipe(tmp_path / "recipes", f"{server.url}/dl/{NAME}")

    p = sandman("-v", "install", "h7src@1.0", env=env)
    assert p.returncode == 0, p.stderr
    assert f"downloading {NAME} from {server.url}/dl/{NAME}" in p.stderr
    assert f"downloaded {NAME}: 0.0 MiB, sha256 verified" in p.stderr
    assert server.hits == [f"/dl/{NAME}"]
    assert cached_file(home).read_bytes() == TARBALL  # content-addressed download cache
    run = subprocess.run([str(paths_of(home).bin_dir / "h7hello-1.0"), "a b"], env=shim_env,
                         capture_output=True, text=True, timeout=120)
    assert (run.returncode, run.stdout) == (0, "hello from source: a b\n"), run.stderr
    [item] = json.loads(sandman("list", "--json", env=env).stdout)
    assert item["full_version"] == "1.0.3"
    # the tarball was only in the build: not in the image
    probe = subprocess.run(["docker", "run", "--rm", "--network", "none", "--entrypoint", "ls",
                            item["image"], "/tmp"], capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0 and probe.stdout == "", probe

    # offline: the server is gone; a rebuild takes the file from the download cache
    server.stop()
    p = sandman("-v", "install", "--force", "h7src@1.0", env=env)
    assert p.returncode == 0, p.stderr
    assert "downloading" not in p.stderr and "built sandman/h7src:1.0-" in p.stderr
    assert f"source {quoted(NAME)} of h7src@1.0: from the download cache (" in p.stderr  # said
    assert server.hits == [f"/dl/{NAME}"]
    # and an image that exists needs no download at all (another home, empty cache)
    other = {**env, "SANDMAN_HOME": str(tmp_path / "other-home")}
    p = sandman("install", "h7src@1.0", env=other)
    assert p.returncode == 0 and "cached sandman/h7src:1.0-" in p.stderr, p.stderr
    assert not cached_file(tmp_path / "other-home").exists()


@pytest.mark.docker
def test_a_checksum_mismatch_stops_before_any_build(
        sandman, home: Path, tmp_path: Path, server: FileServer, docker_client) -> None:
    env = {"SANDMAN_RECIPE_PATH": str(tmp_path / "recipes")}
    wrong = hashlib.sha256(b"another release").hexdigest()
    url = f"{server.url}/dl/{NAME}"
    write_recipe(tmp_path / "recipes", url, tool="h7src-bad", sha=wrong)
    p = sandman("install", "h7src-bad@1.0", env=env)
    assert p.returncode == SourceError.exit_code, p.stderr
    assert error_line(p.stderr) == (
        f"sandman: h7src-bad@1.0: cannot get source '{NAME}' from {url}: sha256 {SHA}, the recipe "
        f"expects {wrong}; nothing was built. Download it yourself, check that `sha256sum` prints "
        f"{wrong}, and put it at {cached_file(home, wrong)}")
    assert images_of("h7src-bad") == []
    assert not cached_file(home, wrong).exists() and not cached_file(home).exists()
    assert list(cached_file(home, wrong).parent.iterdir()) == []  # no temp file left behind
    assert not (paths_of(home).bin_dir / "h7hello-1.0").exists()


@pytest.mark.docker
def test_a_404_names_the_url_and_where_to_drop_the_file(
        sandman, home: Path, tmp_path: Path, server: FileServer, docker_client) -> None:
    env = {"SANDMAN_RECIPE_PATH": str(tmp_path / "recipes")}
    url = f"{server.url}/dl/gone/{NAME}"
    write_recipe(tmp_path / "recipes", url, tool="h7src-bad")
    p = sandman("install", "h7src-bad@1.0", env=env)
    assert p.returncode == SourceError.exit_code, p.stderr
    line = error_line(p.stderr)
    assert line.startswith(f"sandman: h7src-bad@1.0: cannot get source '{NAME}' from {url}: HTTP 404 ")
    assert line.endswith(f"put it at {cached_file(home)}")
    assert images_of("h7src-bad") == []

    # dropping the file there by hand is enough (nothing is downloaded; the build is the usual one)
    cached_file(home).write_bytes(TARBALL)
    p = sandman("install", "h7src-bad@1.0", env=env)
    assert p.returncode == 0, p.stderr
    assert server.hits == [f"/dl/gone/{NAME}"]


@pytest.mark.docker
def test_a_mirror_folder_serves_an_offline_site(
        sandman, home: Path, tmp_path: Path, shim_env: dict[str, str], docker_client) -> None:
    env = {"SANDMAN_RECIPE_PATH": str(tmp_path / "recipes")}
    unreachable = f"http://127.0.0.1:9/dl/{NAME}"  # the discard port: nothing listens
    write_recipe(tmp_path / "recipes", unreachable)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / NAME).write_bytes(TARBALL)  # as `wget URL` saved it
    p = sandman("install", "--force", "h7src@1.0", env={**env, "SANDMAN_SOURCES_MIRROR": str(mirror)})
    assert p.returncode == 0, p.stderr
    assert cached_file(home).read_bytes() == TARBALL
    run = subprocess.run([str(paths_of(home).bin_dir / "h7hello-1.0"), "x"], env=shim_env, capture_output=True,
                         text=True, timeout=120)
    assert run.stdout == "hello from source: x\n", run.stderr

    # without the mirror, that URL is unreachable: one line naming it
    cached_file(home).unlink()
    p = sandman("install", "--force", "h7src@1.0", env=env)
    assert p.returncode == SourceError.exit_code
    assert f"from {unreachable}: unreachable (" in error_line(p.stderr)


@pytest.mark.docker
def test_a_mirror_url_prefix_from_config_by_sha256(
        sandman, home: Path, tmp_path: Path, server: FileServer, docker_client) -> None:
    env = {"SANDMAN_RECIPE_PATH": str(tmp_path / "recipes")}
    write_recipe(tmp_path / "recipes", f"http://127.0.0.1:9/dl/{NAME}")
    (server.root / "mirror" / "sha256").mkdir(parents=True)
    (server.root / "mirror" / "sha256" / SHA).write_bytes(TARBALL)
    paths_of(home).config_file.write_text(f'sources_mirror = "{server.url}/mirror/"\n')
    p = sandman("install", "--force", "h7src@1.0", env=env)
    assert p.returncode == 0, p.stderr
    assert server.hits == [f"/mirror/{NAME}", f"/mirror/sha256/{SHA}"]  # by name, then by sha256
    assert cached_file(home).read_bytes() == TARBALL


def test_bad_sources_exit_112_with_file_and_line(sandman, tmp_path: Path) -> None:
    root = tmp_path / "recipes"
    f = write_recipe(root, f"ftp://127.0.0.1/dl/{NAME}")
    p = sandman("recipes", "check", str(f))
    assert p.returncode == RecipeError.exit_code
    line = next(n for n, t in enumerate(f.read_text().splitlines(), 1) if t.startswith("sources"))
    assert p.stderr.strip() == (  # `recipes check` lists each error as file:line: ...
        f"{f}:{line}: versions.\"1.0\".sources[0].url: 'ftp://127.0.0.1/dl/{NAME}' is not an "
        "http:// or https:// URL (a file of this host goes into the source cache, or a "
        "sources_mirror folder)")
    f.write_text(f.read_text().replace(f'sha256 = "{SHA}"', 'sha256 = "nope"'))
    p = sandman("recipes", "check", str(f))
    assert p.returncode == RecipeError.exit_code and "sources[0].sha256: expected 64 lower-case hex digits" in p.stderr
    f.write_text(f.read_text().replace(', sha256 = "nope"', ""))
    p = sandman("install", "h7src@1.0", env={"SANDMAN_RECIPE_PATH": str(root)})
    assert p.returncode == RecipeError.exit_code
    assert error_line(p.stderr).endswith("sources[0]: missing required key 'sha256'")
