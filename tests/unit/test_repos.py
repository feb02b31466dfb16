"""Repo state, names, trust and the catalog contract, without a daemon (git runs for real)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from sandman import repos
from sandman.catalog import Catalog, default_sources
from sandman.errors import NotFoundError, RemoteError, StateError, UsageError
from sandman.paths import Paths


def make_git_repo(path: Path, tools: dict[str, str], *, under: str = "recipes") -> str:
    for tool, desc in tools.items():
        folder = path / under / tool if under else path / tool
        folder.mkdir(parents=True)
        (folder / "recipe.toml").write_text(
            f'schema = 1\ntool = "{tool}"\ndescription = "{desc}"\n'
            f'[versions."1"]\nbase = "debian:bookworm-slim"\n')
    cmd = ["git", "-c", "user.email=t@example.invalid", "-c", "user.name=t"]
    subprocess.run([*cmd, "init", "-q", "-b", "main"], cwd=path, check=True)
    subprocess.run([*cmd, "add", "-A"], cwd=path, check=True)
    subprocess.run([*cmd, "commit", "-qm", "x"], cwd=path, check=True)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture
def paths(home: Path) -> Paths:
    return Paths.from_env()


def test_no_repos_means_no_sources(paths):
    assert repos.recipe_sources(paths) == []


def test_sources_follow_the_order_added_and_carry_trust(tmp_path, paths):
    a, b = tmp_path / "a", tmp_path / "b"
    head_a = make_git_repo(a, {"alpha": "from a"})
    make_git_repo(b, {"beta": "from b"}, under="")
    repos.add(paths, "first", str(a))
    repos.add(paths, "second", str(b))
    srcs = repos.recipe_sources(paths)
    assert [(s.name, s.kind, s.trusted) for s in srcs] == [("first", "repo", False),
                                                           ("second", "repo", False)]
    assert srcs[0].root == paths.repos_dir / "first" / "recipes"  # recipes/ when it exists
    assert srcs[1].root == paths.repos_dir / "second"  # else the root
    assert repos.get(paths, "first").commit == head_a
    repos.trust(paths, "first")
    assert [s.trusted for s in repos.recipe_sources(paths)] == [True, False]

    names = [s.name for s in default_sources(paths, env={"SANDMAN_RECIPE_PATH": str(tmp_path)})]
    assert names == ["env", "user", "first", "second", "builtin"]
    cat = Catalog(default_sources(paths, env={}))
    assert cat.find("alpha").source.name == "first"
    assert cat.find("beta", "second").source.trusted is False


def test_names_are_checked(paths, tmp_path):
    for bad in ("user", "builtin", "env", "env2", "Upper", "-x", "a/b", ""):
        with pytest.raises(UsageError):
            repos.check_name(paths, bad)
    repos.check_name(paths, "team.recipes-1")


def test_a_failed_add_leaves_nothing(paths, tmp_path):
    with pytest.raises(RemoteError):
        repos.add(paths, "team", str(tmp_path / "missing"))
    assert not (paths.repos_dir / "team").exists()
    assert repos.load_all(paths) == []
    src = tmp_path / "src"
    make_git_repo(src, {"alpha": "x"})
    with pytest.raises(NotFoundError):
        repos.add(paths, "team", str(src), ref="nope")
    assert not (paths.repos_dir / "team").exists()


def test_unknown_state_schema_is_a_state_error(paths):
    paths.repos_dir.mkdir(parents=True)
    (paths.repos_dir / "repos.json").write_text('{"schema": 99, "repos": []}')
    with pytest.raises(StateError, match="schema 99"):
        repos.load_all(paths)
    (paths.repos_dir / "repos.json").write_text("not json")
    with pytest.raises(StateError, match="unreadable"):
        repos.recipe_sources(paths)


def test_bundles_are_sources_and_trusted(paths):
    (paths.repos_dir / "offline" / "recipes").mkdir(parents=True)
    repos.register_bundle(paths, "offline", "/media/offline.tar")
    [src] = repos.recipe_sources(paths)
    assert (src.name, src.kind, src.trusted) == ("offline", "bundle", True)
    with pytest.raises(UsageError, match="bundle"):
        repos.update(paths, "offline")
    repos.remove(paths, "offline")
    assert repos.load_all(paths) == [] and not (paths.repos_dir / "offline").exists()
