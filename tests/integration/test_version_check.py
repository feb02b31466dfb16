"""The version is proven, not named (issue 13 §3), end to end on the real daemon.

A recipe's `version_check` runs in every new image (in the container of the command check and
the smoke test): an image that reports another version is refused with both shown (escaped),
and is not kept; a good one records what it proved, which `list` and `recipes show` show. An
image from the cache is checked too (once), and kept when it fails. The built-in recipes'
checks are proven on the images of the shared session home.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from helpers import ImageRemover, paths_of, record_file, run_sandman

from sandman.errors import VersionMismatchError
from sandman.names import LABEL_TOOL, LABEL_VERSION

TOOL = "h7vc"

RECIPE = """\
schema = 1
tool = "h7vc"
description = "prints its version (sandman's own tests)"
entrypoint = ["h7vc"]
commands = ["h7vc"]
version_check = {{ command = ["h7vc", "--version"], expect = '{expect}' }}

[versions."2.4"]
base = "debian:bookworm-slim"
full_version = "2.4.1"
files = ["h7vc-good"]
run = ["install -m 0755 /opt/sandman/files/h7vc-good /usr/local/bin/h7vc"]

# named 2.5, but the program it installs is 2.4.1 (and prints an escape sequence)
[versions."2.5"]
base = "debian:bookworm-slim"
full_version = "2.5.0"
files = ["h7vc-bad"]
run = ["install -m 0755 /opt/sandman/files/h7vc-bad /usr/local/bin/h7vc"]
"""
EXPECT = "^h7vc version ({full_version})$"  # the group: what is recorded


@pytest.fixture(scope="module", autouse=True)
def _remove_test_images(remove_images_after_module: ImageRemover) -> None:
    remove_images_after_module(TOOL)


def images_of(version: str) -> list[str]:
    out = subprocess.run(["docker", "images", "-a", "-q", "--no-trunc", "--filter", f"label={LABEL_TOOL}={TOOL}",
                          "--filter", f"label={LABEL_VERSION}={version}"],
                         capture_output=True, text=True, check=True).stdout
    return sorted(set(out.split()))


def write_recipe(root: Path, expect: str = EXPECT) -> Path:
    d = root / TOOL
    d.mkdir(parents=True, exist_ok=True)
    (d / "h7vc-good").write_text('#!/bin/sh\necho "h7vc version 2.4.1"\n')
    (d / "h7vc-bad").write_text("#!/bin/sh\nprintf 'h7vc version 2.4.1\\033[2J\\n'\n")
    (d / "recipe.toml").write_text(RECIPE.format(expect=expect))
    return d / "recipe.toml"


def error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.strip().splitlines() if ln.startswith("sandman: ")]
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.mark.docker
def test_an_image_of_another_version_is_refused_and_a_good_one_is_proven(
        sandman, home: Path, tmp_path: Path, docker_client) -> None:
    env = {"SANDMAN_RECIPE_PATH": str(tmp_path / "recipes")}
    f = write_recipe(tmp_path / "recipes")

    # named 2.5, reports 2.4.1: refused, both shown (escaped), the new image not kept
    p = sandman("install", "h7vc@2.5", env=env)
    assert p.returncode == VersionMismatchError.exit_code, p.stderr
    assert "\x1b" not in p.stderr
    assert error_line(p.stderr) == (
        "sandman: building h7vc@2.5: the version check `h7vc --version` printed "
        "'h7vc version 2.4.1\\e[2J', which does not match '^h7vc version (2\\.5\\.0)$'; the new image "
        "was discarded (is the recipe's base or package the version it names?)")
    assert images_of("2.5") == []
    assert not (paths_of(home).bin_dir / "h7vc-2.5").exists()
    assert not record_file(home, "h7vc", "2.5").exists()

    # 2.4 is what it says: installed, and the proven full version is recorded and shown
    p = sandman("install", "h7vc@2.4", env=env)
    assert p.returncode == 0, p.stderr
    [item] = json.loads(sandman("list", "--json", env=env).stdout)
    assert (item["tool"], item["version"], item["full_version"]) == ("h7vc", "2.4", "2.4.1")
    table = sandman("list", env=env).stdout.splitlines()
    assert table[0].split()[:3] == ["TOOL@VERSION", "PROVEN", "STATE"]
    assert table[1].split()[:3] == ["h7vc@2.4", "2.4.1", "current"]
    shown = sandman("recipes", "show", "h7vc", env=env).stdout
    assert "  full version: 2.4.1\n" in shown
    assert "  version check: `h7vc --version` must print /^h7vc version (2\\.4\\.1)$/\n" in shown
    [image] = images_of("2.4")

    # a check added later runs on the cached image (no build): refused, the image kept
    write_recipe(tmp_path / "recipes", expect="^h7vc version {version}\\.9$")
    p = sandman("install", "h7vc@2.4", env=env)
    assert p.returncode == VersionMismatchError.exit_code, p.stderr
    line = error_line(p.stderr)
    assert line.startswith("sandman: h7vc@2.4: the version check `h7vc --version` printed "
                           "'h7vc version 2.4.1', which does not match '^h7vc version 2\\.4\\.9$'; "
                           "nothing was installed (its image sandman/h7vc:2.4-")
    assert "Step 1/" not in p.stderr and images_of("2.4") == [image]
    [item] = json.loads(sandman("list", "--json", env=env).stdout)
    assert item["full_version"] == "2.4.1" and (paths_of(home).bin_dir / "h7vc-2.4").exists()
    assert f.exists()


@pytest.mark.docker
def test_builtin_recipes_prove_their_versions(shared_env: dict[str, str]) -> None:
    """The shared home installed sqlite3@3.34, sqlite3@3.46 and python2@2.7 (built or cached:
    either way their checks ran)."""
    p = run_sandman("list", "--json", env=shared_env, timeout=300)
    assert p.returncode == 0, p.stderr
    proven = {f"{i['tool']}@{i['version']}": i["full_version"] for i in json.loads(p.stdout)}
    assert proven["sqlite3@3.34"] == "3.34.1"
    assert proven["sqlite3@3.46"] == "3.46.1"
    assert proven["python2@2.7"] == "2.7.18"
