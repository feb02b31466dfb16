"""Repo state, names, trust and the catalog contract, without a daemon (git runs for real)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from sandman import repos
from sandman.catalog import Catalog, Source, Spec, default_sources
from sandman.errors import NotFoundError, RemoteError, StateError, UsageError
from sandman.installs import InstallRecord, write_record
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


def repo_sources(paths: Paths) -> list[Source]:
    """The catalog's sources that come from repos.json: repositories and bundles."""
    return [s for s in default_sources(paths, env={}) if s.kind in ("repo", "bundle")]


def test_no_repos_means_no_sources(paths):
    assert repo_sources(paths) == []


def test_sources_follow_the_order_added_and_carry_trust(tmp_path, paths):
    a, b = tmp_path / "a", tmp_path / "b"
    head_a = make_git_repo(a, {"alpha": "from a"})
    make_git_repo(b, {"beta": "from b"}, under="")
    repos.add(paths, "first", str(a))
    repos.add(paths, "second", str(b))
    srcs = repo_sources(paths)
    assert [(s.name, s.kind, s.trusted) for s in srcs] == [("first", "repo", False),
                                                           ("second", "repo", False)]
    assert srcs[0].root == paths.repos_dir / "first" / "recipes"  # recipes/ when it exists
    assert srcs[1].root == paths.repos_dir / "second"  # else the root
    assert repos.get(paths, "first").commit == head_a
    repos.trust(paths, "first")
    assert [s.trusted for s in repo_sources(paths)] == [True, False]

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
        repo_sources(paths)


def test_bundles_are_sources_and_trusted(paths):
    (paths.repos_dir / "offline" / "recipes").mkdir(parents=True)
    repos.register_bundle(paths, "offline", "/media/offline.tar")
    [src] = repo_sources(paths)
    assert (src.name, src.kind, src.trusted) == ("offline", "bundle", True)
    with pytest.raises(UsageError, match="bundle"):
        repos.update(paths, "offline")
    repos.remove(paths, "offline")
    assert repos.load_all(paths) == [] and not (paths.repos_dir / "offline").exists()


def commit_all(path: Path) -> str:
    cmd = ["git", "-c", "user.email=t@example.invalid", "-c", "user.name=t"]
    subprocess.run([*cmd, "add", "-A"], cwd=path, check=True)
    subprocess.run([*cmd, "commit", "-qm", "y"], cwd=path, check=True)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, check=True,
                          capture_output=True, text=True).stdout.strip()


def test_an_update_pending_trust_keeps_unchanged_recipes_trusted(tmp_path, paths):
    src = tmp_path / "src"
    make_git_repo(src, {"alpha": "a", "beta": "b", "gamma": "c", "delta": "d"})
    repos.add(paths, "team", str(src))
    assert repos.unchanged_tools(paths, repos.get(paths, "team")) == frozenset()  # never trusted
    trusted = repos.trust(paths, "team").commit
    assert not repos.get(paths, "team").pending_trust

    text = (src / "recipes" / "beta" / "recipe.toml").read_text()
    (src / "recipes" / "beta" / "recipe.toml").write_text(text.replace('"b"', '"b2"'))
    (src / "recipes" / "gamma" / "extra.txt").write_text("a new file in the folder\n")
    (src / "recipes" / "delta" / "link").symlink_to("../alpha/recipe.toml")
    (src / "README").write_text("outside every recipe folder\n")
    head = commit_all(src)
    u = repos.update(paths, "team")
    assert (u.moved, u.was_trusted, u.repo.commit, u.repo.trusted_commit) == (True, True, head, trusted)
    assert u.repo.pending_trust and not u.repo.trusted
    assert repos.unchanged_tools(paths, u.repo) == frozenset({"alpha"})  # delta: a symlink
    assert repos.describe(paths, u.repo)["pending_trust"] is True
    [note] = repos.pending_notes(paths)
    assert "update pending trust" in note and "beta, delta, gamma" in note
    assert "sandman repo trust team" in note and "alpha" not in note.split("changed recipes:")[1]

    cat = Catalog.default(paths)
    assert cat.find("alpha", "team").source.trusted is True  # builds what was reviewed
    for tool in ("beta", "gamma", "delta"):
        assert cat.find(tool, "team").source.trusted is False
    assert Catalog(default_sources(paths)).find("alpha").source.trusted is False  # no home: strict

    repos.trust(paths, "team")
    assert repos.pending_notes(paths) == [] and Catalog.default(paths).find("beta").source.trusted


def test_a_rename_out_of_a_folder_changes_it(tmp_path, paths):
    src = tmp_path / "src"
    make_git_repo(src, {"alpha": "a", "beta": "b"})
    (src / "recipes" / "alpha" / "notes.txt").write_text("x\n" * 50)
    commit_all(src)
    repos.add(paths, "team", str(src))
    repos.trust(paths, "team")
    (src / "recipes" / "alpha" / "notes.txt").rename(src / "recipes" / "beta" / "notes.txt")
    commit_all(src)
    repos.update(paths, "team")
    assert repos.unchanged_tools(paths, repos.get(paths, "team")) == frozenset()


def record(tool: str, version: str, source: str, paths: Paths) -> InstallRecord:
    return InstallRecord(tool=tool, version=version, source=source, recipe_file="", fingerprint="f",
                         image_id="sha256:x", image_tag="sandman/x:1", shims=(f"{tool}-{version}",),
                         bin_dir=str(paths.bin_dir), installed_at="")


def test_an_installed_version_resolves_from_its_own_source(tmp_path, paths):
    a, b = tmp_path / "a", tmp_path / "b"
    make_git_repo(a, {"alpha": "from a"})
    make_git_repo(b, {"alpha": "from b"})
    repos.add(paths, "first", str(a))
    repos.add(paths, "second", str(b))
    cat = Catalog.default(paths)
    assert cat.resolve(Spec("alpha", "1"))[0].source.name == "first"  # precedence
    write_record(paths, record("alpha", "1", "second", paths))
    cat = Catalog.default(paths)
    assert cat.pick(Spec("alpha", "1")) == Spec("alpha", "1", "second")
    entry, recipe, _ = cat.resolve(Spec("alpha", "1"))
    assert (entry.source.name, recipe.description) == ("second", "from b")
    assert cat.resolve(Spec("alpha", "1", "first"))[0].source.name == "first"  # named: switches
    assert cat.pick(Spec("alpha", None)) == Spec("alpha", None)

    repos.remove(paths, "second")
    with pytest.raises(NotFoundError, match="installed from 'second', which is not a recipe source"):
        Catalog.default(paths).resolve(Spec("alpha", "1"))

    # SANDMAN_RECIPE_PATH names places (env, env2), not sources: set, it goes by precedence
    write_record(paths, record("alpha", "1", "env2", paths))
    env_dir = tmp_path / "mine"
    make_git_repo(env_dir, {"alpha": "from env"}, under="")
    cat = Catalog(default_sources(paths, {"SANDMAN_RECIPE_PATH": str(env_dir)}), paths)
    assert cat.resolve(Spec("alpha", "1"))[1].description == "from env"
    with pytest.raises(NotFoundError, match="installed from 'env2'"):
        Catalog.default(paths).resolve(Spec("alpha", "1"))


def test_git_reason_keeps_what_git_said():
    dubious = ("fatal: detected dubious ownership in repository at '/srv/r/.git'\n"
               "To add an exception for this directory, call:\n\n"
               "\tgit config --global --add safe.directory /srv/r/.git\n"
               "fatal: Could not read from remote repository.\n\n"
               "Please make sure you have the correct access rights\nand the repository exists.\n")
    assert repos.git_reason(dubious) == (
        "detected dubious ownership in repository at '/srv/r/.git'; if you trust its owner: "
        "git config --global --add safe.directory /srv/r/.git")
    ssh = ("ssh: Could not resolve hostname git.invalid: Name or service not known\n"
           "fatal: Could not read from remote repository.\n\n"
           "Please make sure you have the correct access rights\nand the repository exists.\n")
    assert repos.git_reason(ssh) == ("ssh: Could not resolve hostname git.invalid: "
                                     "Name or service not known")
    assert repos.git_reason("remote: \x1b[2Jgone\nfatal: repository 'x' not found\n") == \
        "repository 'x' not found"
    assert repos.git_reason("") == "(no message)"
    assert repos.git_reason("weird \x1b[1A\n") == "weird \\e[1A"


def test_update_all_says_what_changed_and_what_needs_trust_again(tmp_path, paths):
    a, b = tmp_path / "a", tmp_path / "b"
    make_git_repo(a, {"alpha": "a", "beta": "b"})
    make_git_repo(b, {"gamma": "g"})
    repos.add(paths, "trusted", str(a))
    repos.add(paths, "fresh", str(b))
    repos.trust(paths, "trusted")
    (a / "recipes" / "beta" / "notes.txt").write_text("new\n")
    commit_all(a)
    (b / "recipes" / "gamma" / "notes.txt").write_text("new\n")
    (b / "README").write_text("outside\n")
    commit_all(b)
    done = {u.update.repo.name: u for u in repos.update_all(paths)}
    assert (done["trusted"].files_changed, done["trusted"].untrusted_tools) == (1, ("beta",))
    assert (done["fresh"].files_changed, done["fresh"].untrusted_tools) == (2, None)  # never trusted
    [again] = repos.update_all(paths, "fresh")
    assert not again.update.moved and again.files_changed == 0


def test_a_terminal_is_offered_only_an_untrusted_repo(tmp_path, paths):
    from sandman.commands import install
    from sandman.config import Config
    from sandman.context import Context

    make_git_repo(tmp_path / "src", {"alpha": "a"})
    repos.add(paths, "team", str(tmp_path / "src"))
    ctx = Context(paths=paths, config=Config(), env={})
    offer = install.repo_to_trust(ctx, Spec("alpha", "1"))
    assert offer is not None and (offer[0].tool, offer[1].name) == ("alpha", "team")
    assert install.repo_to_trust(ctx, Spec("nothing", "1")) is None  # the install says why
    before = ctx.catalog
    install.trust_repo(ctx, "team")
    assert ctx.catalog is not before and install.resolve(ctx, Spec("alpha", "1")).entry.source.trusted
    assert install.repo_to_trust(ctx, Spec("alpha", "1")) is None
