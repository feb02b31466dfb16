"""`sandman list` states and `sandman upgrade`, against the real daemon.

The recipe is a copy of the built-in sqlite3@3.34 in a SANDMAN_RECIPE_PATH folder, so the first
install is a cache hit. Adding a `run` step changes the fingerprint: the install turns image-stale,
and upgrade builds the new image (only the new step runs: docker's layer cache has the rest).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from helpers import log_file, paths_of, record_file

from sandman.errors import NotFoundError
from sandman.names import LABEL_SOURCE

pytestmark = pytest.mark.docker

RECIPE = """schema = 1
tool = "sqlite3"
description = "SQLite, a test copy"
entrypoint = ["sqlite3"]
smoke = ["sqlite3", "-version"]

[versions."3.34"]
base = "debian:bullseye-slim"
packages = ["sqlite3"]
{extra}
"""


@pytest.fixture
def recipes(tmp_path: Path, docker_client, home: Path):
    root = tmp_path / "recipes"
    (root / "sqlite3").mkdir(parents=True)
    (root / "sqlite3" / "recipe.toml").write_text(RECIPE.format(extra=""))
    before = {t for img in docker_client.images.list(name="sandman/sqlite3") for t in img.tags}
    yield root
    for img in docker_client.images.list(name="sandman/sqlite3"):
        if not set(img.tags) & before and img.labels.get(LABEL_SOURCE) == "env":
            docker_client.images.remove(img.id, force=True)


def states(sandman, env: dict[str, str]) -> dict[str, str]:
    p = sandman("list", "--json", env=env)
    assert p.returncode == 0, p.stderr
    return {f"{i['tool']}@{i['version']}": i["state"] for i in json.loads(p.stdout)}


def test_stale_then_upgrade(sandman, home: Path, recipes: Path, tmp_path: Path,
                            shim_env: dict[str, str]) -> None:
    env = {"SANDMAN_RECIPE_PATH": str(recipes)}
    assert sandman("install", "sqlite3@3.34", env=env).returncode == 0
    assert states(sandman, env) == {"sqlite3@3.34": "current"}
    nothing = sandman("upgrade", env=env)
    assert nothing.returncode == 0 and "nothing to upgrade" in nothing.stderr

    marker = 'run = ["echo upgraded > /sandman-upgrade-marker"]'
    (recipes / "sqlite3" / "recipe.toml").write_text(RECIPE.format(extra=marker))
    assert states(sandman, env) == {"sqlite3@3.34": "image-stale"}
    human = sandman("list", env=env)
    assert "image-stale" in human.stdout and "sandman upgrade" in human.stderr

    shim = paths_of(home).bin_dir / "sqlite3-3.34"
    old_tag = json.loads(record_file(home, "sqlite3", "3.34").read_text())["image_tag"]
    up = sandman("upgrade", env=env)
    assert up.returncode == 0, up.stderr
    assert "upgraded sqlite3@3.34 (image-stale)" in up.stderr
    # off a terminal the build reports its steps as plain lines; the log has every line
    assert "Step 1/" in up.stderr and ": RUN echo upgraded" in up.stderr
    log = log_file(home).read_text()
    run_log = log[log.rindex("sandman upgrade"):]
    assert "Removing intermediate container" in run_log and run_log.rstrip().endswith("exit 0")
    new_tag = json.loads(record_file(home, "sqlite3", "3.34").read_text())["image_tag"]
    assert new_tag != old_tag
    assert new_tag in shim.read_text() and old_tag not in shim.read_text()
    assert states(sandman, env) == {"sqlite3@3.34": "current"}

    ran = sandman("run", "sqlite3@3.34", "cat", "/sandman-upgrade-marker", env=env)
    assert (ran.returncode, ran.stdout) == (0, "upgraded\n"), ran.stderr
    via_shim = subprocess.run(["sqlite3-3.34", ":memory:", "select 2+2"], env=shim_env,
                              cwd=tmp_path, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=300)
    assert (via_shim.returncode, via_shim.stdout) == (0, "4\n"), via_shim.stderr


def test_shim_missing_is_listed_and_repaired(sandman, home: Path, recipes: Path) -> None:
    env = {"SANDMAN_RECIPE_PATH": str(recipes)}
    assert sandman("install", "sqlite3@3.34", env=env).returncode == 0
    (paths_of(home).bin_dir / "sqlite3-3.34").unlink()
    assert states(sandman, env) == {"sqlite3@3.34": "shim-missing"}
    up = sandman("upgrade", "sqlite3@3.34", env=env)
    assert up.returncode == 0, up.stderr
    assert (paths_of(home).bin_dir / "sqlite3-3.34").is_file()
    assert states(sandman, env) == {"sqlite3@3.34": "current"}


def test_upgrade_of_something_not_installed(sandman, home: Path, recipes: Path) -> None:
    p = sandman("upgrade", "sqlite3@3.34", env={"SANDMAN_RECIPE_PATH": str(recipes)})
    assert p.returncode == NotFoundError.exit_code and "not installed: sqlite3@3.34" in p.stderr
    bad = sandman("upgrade", "not a spec")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
