"""Issue 10 §1: one shared, versioned shim runtime, and staleness of everything a shim bakes in.

A shim is its values plus `source <data>/runtime/shim-<sha12>.bash`. A new sandman (simulated
by running a copy of this tree whose shims/shim.bash differs) writes a new runtime file; a
changed recipe env changes what the shims must pass. `list` names each reason, `doctor`
reports it, `upgrade` and `reshim --all` fix it, and the shim then behaves the new way in a
real container. config.toml's env values never enter a shim file.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import ImageRemover, env_file, paths_of, record_file, run_sandman, runtime_dir, stop_reapers

pytest.register_assert_rewrite("runtime_helpers")
from runtime_helpers import ROOT, one_line_error  # noqa: E402

from sandman.errors import ConsentError, StateError  # noqa: E402

pytestmark = pytest.mark.docker

RECIPE = """\
schema = 1
tool = "rtshim"
description = "probe for the shim runtime tests"
env = {{ RT_A = "one"{more} }}

[versions."1"]
base = "debian:bookworm-slim"
run = ["echo sandman-shim-runtime-probe"]
"""


@pytest.fixture
def home(docker_client, tmp_path: Path, remove_images_after: ImageRemover) -> Iterator[Path]:
    remove_images_after("rtshim")
    h = tmp_path / "home"
    (paths_of(h).user_recipes_dir / "rtshim").mkdir(parents=True)
    (paths_of(h).user_recipes_dir / "rtshim" / "recipe.toml").write_text(RECIPE.format(more=""))
    yield h
    stop_reapers(h)


@pytest.fixture
def newer(tmp_path: Path) -> Path:
    """A copy of this sandman whose shim runtime differs: what `pip install -U sandman` does."""
    tree = tmp_path / "newer"
    shutil.copytree(ROOT / "sandman", tree / "sandman", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "shims", tree / "shims")
    shutil.copytree(ROOT / "recipes", tree / "recipes")
    shim = tree / "shims" / "shim.bash"
    text = shim.read_text()
    assert "sm_args+=(-e HOME=/tmp)" in text
    shim.write_text(text.replace("sm_args+=(-e HOME=/tmp)",
                                 "sm_args+=(-e HOME=/tmp -e RT_RUNTIME=newer)", 1))
    return tree


def env_for(home: Path, tree: Path | None = None) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("SANDMAN_", "DOCKER_"))}
    e.update(SANDMAN_HOME=str(home), PATH=f"{paths_of(home).bin_dir}{os.pathsep}{os.environ['PATH']}")
    if tree is not None:
        e["PYTHONPATH"] = str(tree)
    return e


def cli(home: Path, *args: str, tree: Path | None = None) -> subprocess.CompletedProcess:
    # cwd: `python -m` puts the current directory first on sys.path (this checkout's sandman)
    return run_sandman(*args, env=env_for(home, tree), stdin=subprocess.DEVNULL, cwd=home)


def state(home: Path, tree: Path | None = None) -> str:
    p = cli(home, "list", "--json", tree=tree)
    assert p.returncode == 0, p.stderr
    (item,) = json.loads(p.stdout)
    return item["state"]


def shim_env(home: Path, cwd: Path) -> dict[str, str]:
    p = subprocess.run([str(paths_of(home).bin_dir / "rtshim-1"), "env"], env=env_for(home), cwd=cwd,
                       capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr
    return dict(line.split("=", 1) for line in p.stdout.splitlines() if "=" in line)


def test_runtime_and_recipe_env_changes_are_listed_upgraded_and_applied(
        home: Path, newer: Path, tmp_path: Path) -> None:
    assert cli(home, "-q", "install", "rtshim@1").returncode == 0
    shim = paths_of(home).bin_dir / "rtshim-1"
    assert state(home) == "current"
    old_runtime = next(runtime_dir(home).glob("shim-*.bash"))
    assert f"SM_RUNTIME={old_runtime}" in shim.read_text()
    assert "RT_RUNTIME" not in shim_env(home, tmp_path)

    # a newer sandman: its runtime differs, every existing shim still runs the old one
    assert state(home, newer) == "shim-stale: runtime"
    # and the recipe gains an env var
    (paths_of(home).user_recipes_dir / "rtshim" / "recipe.toml").write_text(RECIPE.format(more=', RT_B = "two"'))
    assert state(home, newer) == "shim-stale: runtime, env"
    assert state(home) == "shim-stale: env"
    human = cli(home, "list", tree=newer)
    assert "shim-stale: runtime, env" in human.stdout and "sandman upgrade" in human.stderr
    doc = cli(home, "doctor", tree=newer)
    assert "FAIL  rtshim@1 state: shim-stale: runtime, env; run: sandman upgrade rtshim@1" in doc.stdout

    # a new env var is a new permission: consent first (refused off a terminal, nothing changes)
    before = shim.read_text()
    refused = cli(home, "upgrade", tree=newer)
    assert refused.returncode == ConsentError.exit_code, refused.stderr
    assert "+ env set RT_B=two" in refused.stderr and shim.read_text() == before
    up = cli(home, "upgrade", "--yes", tree=newer)
    assert up.returncode == 0, up.stderr
    assert "upgraded rtshim@1 (shim-stale: runtime, env)" in up.stderr
    assert "Step 1/" not in up.stderr  # a rewrite, not a build
    assert state(home, newer) == "current"
    new_runtime = next(p for p in runtime_dir(home).glob("shim-*.bash") if p != old_runtime)
    assert f"SM_RUNTIME={new_runtime}" in shim.read_text()
    env = shim_env(home, tmp_path)
    assert (env.get("RT_A"), env.get("RT_B"), env.get("RT_RUNTIME")) == ("one", "two", "newer")

    # back on the older sandman: its runtime is not the one the shims use; reshim --all fixes it
    assert state(home) == "shim-stale: runtime"
    re = cli(home, "reshim", "--all")
    assert re.returncode == 0, re.stderr
    assert state(home) == "current"
    env = shim_env(home, tmp_path)
    assert (env.get("RT_B"), "RT_RUNTIME" in env) == ("two", False)  # the recipe's env stays

    # a deleted runtime: the shim says so in one line with the fix, list and reshim agree
    for f in runtime_dir(home).glob("shim-*.bash"):
        f.unlink()
    broken = subprocess.run([str(shim), "true"], env=env_for(home), cwd=tmp_path,
                            capture_output=True, timeout=60)
    assert broken.returncode == StateError.exit_code
    assert "sandman reshim --all" in one_line_error(broken.stderr)
    assert state(home) == "shim-stale: runtime"
    assert cli(home, "-q", "reshim", "--all").returncode == 0
    assert shim_env(home, tmp_path)["RT_A"] == "one"


def test_config_env_values_stay_out_of_shims_and_reach_the_container(home: Path,
                                                                     tmp_path: Path) -> None:
    cfg = paths_of(home).config_file
    cfg.write_text('[tools.rtshim]\nenv = { RT_SECRET = "hunter2-sm" }\n')
    assert cli(home, "-q", "install", "rtshim@1").returncode == 0
    for f in paths_of(home).bin_dir.iterdir():
        assert b"hunter2" not in f.read_bytes(), f
    for f in runtime_dir(home).iterdir():
        assert b"hunter2" not in f.read_bytes(), f
    private = env_file(home, "rtshim", "1")
    assert (private.stat().st_mode & 0o777) == 0o600
    assert (private.parent.stat().st_mode & 0o777) == 0o700
    assert shim_env(home, tmp_path)["RT_SECRET"] == "hunter2-sm"
    assert state(home) == "current"
    # config.toml changes: the shim refreshes itself (mtime), the new value arrives
    cfg.write_text('[tools.rtshim]\nenv = { RT_SECRET = "changed-sm" }\n')
    later = time.time() + 2
    os.utime(cfg, (later, later))
    assert shim_env(home, tmp_path)["RT_SECRET"] == "changed-sm"
    assert state(home) == "current"
    for f in paths_of(home).bin_dir.iterdir():
        assert b"changed-sm" not in f.read_bytes(), f
    # the private file edited behind sandman's back is reported as a config change
    private.write_bytes(b"RT_SECRET=other\0")
    assert state(home) == "shim-stale: config"


def test_image_replaced_under_the_tag_is_listed_and_rebuilt(home: Path, tmp_path: Path) -> None:
    assert cli(home, "-q", "install", "rtshim@1").returncode == 0
    rec = json.loads(record_file(home, "rtshim", "1").read_text())
    subprocess.run(["docker", "tag", "debian:bookworm-slim", rec["image_tag"]], check=True)
    assert state(home) == "image-replaced"
    doc = cli(home, "doctor")
    assert "rtshim@1 state: image-replaced" in doc.stdout
    up = cli(home, "upgrade")
    assert up.returncode == 0, up.stderr
    assert state(home) == "current"
    got = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", rec["image_tag"]],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert got != subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", "debian:bookworm-slim"],
                                 capture_output=True, text=True, check=True).stdout.strip()
    assert shim_env(home, tmp_path)["RT_A"] == "one"
