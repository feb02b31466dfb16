"""Recipe repositories: real git repositories in tmp dirs, pinned commits, trust, precedence."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from helpers import ImageRemover, base_env, ensure_unix_user, paths_of, record_file, run_sandman, sandman_argv
from ptyrun import run_on_pty
from teams_helpers import commit_recipe, git, make_repo, recipe_text, unique_tool

from sandman.errors import NotFoundError, RemoteError, UntrustedError
from sandman.names import LABEL_TOOL


def repo_rows(sandman) -> list[dict]:
    p = sandman("repo", "list", "--json")
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


@pytest.fixture
def tool(docker_client, remove_images_after: ImageRemover) -> str:
    name = unique_tool()
    remove_images_after(name)
    return name


@pytest.mark.docker
def test_untrusted_repo_recipe_is_refused_until_trusted(tmp_path, sandman, home, tool, docker_client):
    src = tmp_path / "src"
    head = make_repo(src, tool, {"1.0": "hello"})
    p = sandman("repo", "add", "team", str(src))
    assert p.returncode == 0, p.stderr
    assert "sandman repo trust team" in p.stderr
    [row] = repo_rows(sandman)
    assert (row["name"], row["commit"], row["trusted"], row["tools"]) == ("team", head, False, [tool])

    for spec in (f"team/{tool}@1.0", f"{tool}@1.0"):
        p = sandman("install", spec)  # stdin is not a terminal: no question, a refusal
        assert p.returncode == UntrustedError.exit_code, p.stderr
        assert "sandman repo trust team" in p.stderr and "Traceback" not in p.stderr
    assert docker_client.images.list(filters={"label": f"{LABEL_TOOL}={tool}"}) == []
    assert not (paths_of(home).bin_dir / f"{tool}-1.0").exists()

    assert sandman("repo", "trust", "team").returncode == 0
    assert repo_rows(sandman)[0]["trusted"] is True
    p = sandman("install", f"team/{tool}@1.0")
    assert p.returncode == 0, p.stderr
    r = subprocess.run([str(paths_of(home).bin_dir / f"{tool}-1.0")], capture_output=True, text=True)
    assert (r.returncode, r.stdout) == (0, f"{tool} 1.0 hello\n")
    rec = json.loads(record_file(home, tool, "1.0").read_text())
    assert rec["source"] == "team"


def test_update_moves_the_pin_and_takes_trust_away(tmp_path, sandman):
    tool = unique_tool()
    src = tmp_path / "src"
    first = make_repo(src, tool, {"1.0": "a"})
    assert sandman("repo", "add", "team", str(src)).returncode == 0
    assert sandman("repo", "trust", "team").returncode == 0

    second = commit_recipe(src, tool, {"1.0": "a", "2.0": "b"})
    p = sandman("recipes", "show", f"team/{tool}")
    assert f"{tool}@2.0" not in p.stdout  # the pin holds until `repo update`

    p = sandman("repo", "update", "team")
    assert p.returncode == 0, p.stderr
    assert f"{first[:12]} -> {second[:12]}" in p.stderr
    assert "untrusted again" in p.stderr and "sandman repo trust team" in p.stderr
    [row] = repo_rows(sandman)
    assert (row["commit"], row["trusted"]) == (second, False)
    assert f"{tool}@2.0" in sandman("recipes", "show", f"team/{tool}").stdout
    p = sandman("build", f"{tool}@2.0")
    assert p.returncode == UntrustedError.exit_code  # checked before anything is built

    p = sandman("repo", "update", "team")
    assert p.returncode == 0 and "already at" in p.stderr

    # --ref pins a tag; the clone follows it from then on
    git(src, "tag", "v1", first)
    commit_recipe(src, tool, {"3.0": "c"})
    p = sandman("repo", "update", "team", "--ref", "v1")
    assert p.returncode == 0, p.stderr
    [row] = repo_rows(sandman)
    assert (row["commit"], row["ref"]) == (first, "v1")


def test_recipes_at_the_root_and_precedence(tmp_path, sandman, home):
    tool = unique_tool()
    root_repo, sub_repo = tmp_path / "a", tmp_path / "b"
    make_repo(root_repo, tool, {"1.0": "root"}, under_recipes=False)
    make_repo(sub_repo, tool, {"2.0": "sub"})
    assert sandman("repo", "add", "first", str(root_repo)).returncode == 0
    assert sandman("repo", "add", "second", str(sub_repo)).returncode == 0
    user = paths_of(home).user_recipes_dir / tool
    user.mkdir(parents=True)
    (user / "recipe.toml").write_text((root_repo / tool / "recipe.toml").read_text())

    p = sandman("recipes", "list", "--json")
    rows = [r for r in json.loads(p.stdout) if r["tool"] == tool]
    assert [(r["source"], r["shadowed_by"]) for r in rows] == \
        [("user", None), ("first", "user"), ("second", "user")]
    assert [r["versions"] for r in rows] == [["1.0"], ["1.0"], ["2.0"]]
    p = sandman("recipes", "show", f"second/{tool}")
    assert p.returncode == 0 and f"{tool}@2.0" in p.stdout
    p = sandman("recipes", "show", f"nosuch/{tool}")
    assert p.returncode == NotFoundError.exit_code and "unknown recipe source 'nosuch'" in p.stderr

    assert sandman("repo", "remove", "first").returncode == 0
    assert not (paths_of(home).repos_dir / "first").exists()
    assert [r["name"] for r in repo_rows(sandman)] == ["second"]


def test_git_runs_no_hooks_and_no_ext_transport(tmp_path, sandman):
    tool = unique_tool()
    src = tmp_path / "src"
    make_repo(src, tool, {"1.0": "a"})
    # a hook that git would run after checkout if hooks were on (configured "globally")
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    witness = tmp_path / "hook-ran"
    (hooks / "post-checkout").write_text(f"#!/bin/sh\ntouch {witness}\n")
    (hooks / "post-checkout").chmod(0o755)
    gitconfig = tmp_path / "gitconfig"
    gitconfig.write_text(f"[core]\n\thooksPath = {hooks}\n")
    env = {"GIT_CONFIG_GLOBAL": str(gitconfig)}
    p = sandman("repo", "add", "team", str(src), env=env)
    assert p.returncode == 0, p.stderr
    assert not witness.exists()

    pwned = tmp_path / "pwned"
    p = sandman("repo", "add", "evil", f"ext::sh -c touch% {pwned}", env=env)
    assert p.returncode == RemoteError.exit_code, p.stderr
    assert not pwned.exists()
    assert "Traceback" not in p.stderr
    assert [r["name"] for r in repo_rows(sandman)] == ["team"]


def test_repo_errors_are_one_line(tmp_path, sandman):
    p = sandman("repo", "add", "builtin", str(tmp_path))
    assert p.returncode == 2 and "cannot name a recipe source" in p.stderr
    p = sandman("repo", "add", "team", str(tmp_path / "nope"))
    assert p.returncode == RemoteError.exit_code and p.stderr.count("\n") == 1
    p = sandman("repo", "trust", "nope")
    assert p.returncode == NotFoundError.exit_code and "no recipe repo named 'nope'" in p.stderr
    src = tmp_path / "src"
    make_repo(src, unique_tool(), {"1.0": "a"})
    p = sandman("repo", "add", "team", str(src), "--ref", "no-such-branch")
    assert p.returncode == NotFoundError.exit_code and "no-such-branch" in p.stderr
    assert repo_rows(sandman) == []
    assert sandman("repo", "add", "team", str(src)).returncode == 0
    p = sandman("repo", "add", "team", str(src))
    assert p.returncode == 2 and "already a recipe source" in p.stderr


def run_on_tty(args: list[str], answer: bytes, env: dict[str, str]) -> tuple[int, str]:
    """Run the CLI with stdin/stdout/stderr on a pseudo-terminal and answer its question."""
    code, out, _ = run_on_pty(sandman_argv(*args), env=env,
                              replies={b"[y/N]": answer}, timeout=120)
    return code, out.decode("utf-8", "replace")


@pytest.mark.docker
def test_install_asks_on_a_terminal(tmp_path, home, tool, docker_client):
    src = tmp_path / "src"
    head = make_repo(src, tool, {"1.0": "asked"})
    env = base_env(home)
    assert run_sandman("repo", "add", "team", str(src), env=env).returncode == 0
    code, out = run_on_tty(["install", f"{tool}@1.0"], b"n\n", env)
    assert code == UntrustedError.exit_code, out
    assert f"Trust repo 'team' at {head[:12]}?" in out
    code, out = run_on_tty(["install", f"{tool}@1.0"], b"y\n", env)
    assert code == 0, out
    assert f"installed {tool}@1.0" in out
    rows = json.loads(run_sandman("repo", "list", "--json", env=env).stdout)
    assert rows[0]["trusted"] is True


@pytest.fixture
def two_tools(docker_client, remove_images_after: ImageRemover) -> tuple[str, str]:
    names = (unique_tool(), unique_tool())
    remove_images_after(*names)
    return names


@pytest.mark.docker
def test_an_update_pending_trust_makes_only_changed_recipes_stale(tmp_path, sandman, two_tools):
    """The attack: `repo update` to an untrusted commit made every install from the repo stale."""
    same, changed = two_tools
    src = tmp_path / "src"
    for tool in (same, changed):
        (src / "recipes" / tool).mkdir(parents=True)
        (src / "recipes" / tool / "recipe.toml").write_text(recipe_text(tool, {"1.0": "first"}))
    git(src, "init", "-q", "-b", "main")
    git(src, "add", "-A")
    git(src, "commit", "-qm", "two tools")
    trusted = git(src, "rev-parse", "HEAD")
    for args in (("repo", "add", "team", str(src)), ("repo", "trust", "team"),
                 ("install", f"{same}@1.0", f"{changed}@1.0")):
        p = sandman(*args)
        assert p.returncode == 0, p.stderr
    head = commit_recipe(src, changed, {"1.0": "second"})
    p = sandman("repo", "update", "team")
    assert p.returncode == 0, p.stderr
    assert "update pending trust" in p.stderr and f"recipes changed: {changed}," in p.stderr

    [row] = repo_rows(sandman)
    assert (row["commit"], row["trusted_commit"], row["trusted"], row["pending_trust"]) == \
        (head, trusted, False, True)
    p = sandman("repo", "list")
    assert "pending" in p.stdout.splitlines()[1]
    assert f"repo team: update pending trust ({trusted[:12]} -> {head[:12]})" in p.stderr

    p = sandman("list", "--json")
    assert p.returncode == 0, p.stderr
    states = {i["tool"]: i["state"] for i in json.loads(p.stdout)}
    assert states[same] == "current" and states[changed] in ("stale", "image-stale"), states
    p = sandman("list")
    assert "note: repo team: update pending trust" in p.stderr
    assert f"changed recipes: {changed};" in p.stderr

    p = sandman("upgrade")  # only the changed recipe is to do, and it waits for trust
    assert p.returncode == UntrustedError.exit_code, p.stderr
    assert "sandman repo trust team" in p.stderr
    assert sandman("install", f"{same}@1.0").returncode == 0  # what was reviewed still builds
    assert sandman("repo", "trust", "team").returncode == 0
    assert sandman("upgrade").returncode == 0
    states = {i["tool"]: i["state"] for i in json.loads(sandman("list", "--json").stdout)}
    assert states == {same: "current", changed: "current"}
    assert "pending" not in sandman("list").stderr


OTHER_USER = "sandmanpeer"


def other_user() -> str:
    """A second real Unix user (made once, idempotently): git checks who owns a repository."""
    ensure_unix_user(OTHER_USER)
    return OTHER_USER


def test_git_says_why_for_a_repo_owned_by_another_user(tmp_path, sandman):
    """The attack: `repo add` of another user's repository printed only "and the repository exists."."""
    if os.geteuid() != 0:
        pytest.skip("needs root to give the repository to another user (CI runs as root)")
    src = tmp_path / "theirs"
    make_repo(src, unique_tool(), {"1.0": "a"})
    subprocess.run(["chown", "-R", other_user(), str(src)], check=True)
    env = {"GIT_CONFIG_GLOBAL": "/dev/null"}  # no safe.directory exception from this machine
    p = sandman("repo", "add", "team", str(src), env=env)
    assert p.returncode == RemoteError.exit_code, p.stderr
    assert p.stderr.count("\n") == 1, p.stderr
    assert p.stderr.startswith("sandman: repo add team: detected dubious ownership in repository at")
    assert f"git config --global --add safe.directory {src}" in p.stderr
    assert "and the repository exists" not in p.stderr
    assert repo_rows(sandman) == []
