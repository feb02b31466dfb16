"""Issue 21: pins and `which` accept what `install` accepts (aliases included), `which` of a
version that is not installed, `repo add` of a plain folder, `sandman outdated`, and the
host's proxy settings reaching a tool that has a network (never one with network none)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import ImageRemover, base_env, paths_of, run_sandman
from teams_helpers import commit_recipe, fresh_home, make_repo, unique_tool

from sandman.errors import NotFoundError, RemoteError

pytestmark = pytest.mark.docker


def cli(home: Path, *args: str, cwd: Path, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess:
    return run_sandman(*args, env={**base_env(home), **(env or {})}, cwd=cwd)


def run_tool(home: Path, tool: str, cwd: Path, env: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess:
    e = {**base_env(home), "PWD": str(cwd), **(env or {})}
    return subprocess.run([tool], cwd=cwd, env=e, capture_output=True, text=True, timeout=120)


def with_alias(text: str) -> str:
    return text.replace('[versions."1.0"]\n', '[versions."1.0"]\naliases = ["1.0.7"]\n', 1)


@pytest.fixture
def team(tmp_path: Path, docker_client, remove_images_after: ImageRemover) -> Iterator[dict]:
    """Repo `team` with TOOL 1.0 (alias 1.0.7) and 2.0; 1.0 installed."""
    tool = unique_tool()
    remove_images_after(tool)
    src = tmp_path / "src"
    make_repo(src, tool, {"1.0": "one", "2.0": "two"})
    f = src / "recipes" / tool / "recipe.toml"
    f.write_text(with_alias(f.read_text()))
    subprocess.run(["git", "-c", "user.email=t@e.invalid", "-c", "user.name=t", "commit", "-qam",
                    "alias"], cwd=src, check=True)
    home = fresh_home(tmp_path, "home")
    for args in (("repo", "add", "team", str(src)), ("repo", "trust", "team"),
                 ("install", f"{tool}@1.0")):
        p = cli(home, *args, cwd=tmp_path)
        assert p.returncode == 0, p.stderr
    yield {"tool": tool, "src": src, "home": home, "tmp": tmp_path}


def test_a_pinned_alias_runs_the_version_it_names(team):
    tool, home, tmp = team["tool"], team["home"], team["tmp"]
    proj = tmp / "proj"
    proj.mkdir()
    assert cli(home, "use", tool, "1.0", cwd=proj).returncode == 0  # the plain shims
    (proj / ".sandman.toml").write_text(f'[tools]\n{tool} = "1.0.7"\n')  # as a person writes it
    p = run_tool(home, tool, proj)
    assert (p.returncode, p.stdout) == (0, f"{tool} 1.0 one\n"), p.stderr
    var = f"SANDMAN_{tool.upper()}_VERSION"
    p = run_tool(home, tool, tmp, {var: "1.0.7"})
    assert (p.returncode, p.stdout) == (0, f"{tool} 1.0 one\n"), p.stderr
    p = cli(home, "which", tool, cwd=proj)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(f"{tool} 1.0.7 = 1.0 (set by {proj / '.sandman.toml'}): "), p.stdout
    p = cli(home, "which", tool, "--json", cwd=proj)
    out = json.loads(p.stdout)
    assert (p.returncode, out["installed"], out["runs"], out["version"]) == (0, True, "1.0", "1.0.7")
    p = cli(home, "install", f"{tool}@1.0.7", cwd=proj)  # the fix the old message gave: a no-op
    assert p.returncode == 0, p.stderr
    which_of_a_version_not_installed_is_not_found(team)
    # uninstalled: the alias runs nothing, and says which install brings it back
    assert cli(home, "uninstall", f"{tool}@1.0", cwd=proj).returncode == 0
    p = run_tool(home, tool, proj)
    assert p.returncode == NotFoundError.exit_code
    assert f"run: sandman install {tool}@1.0.7" in p.stderr, p.stderr


def which_of_a_version_not_installed_is_not_found(team):
    tool, home, tmp = team["tool"], team["home"], team["tmp"]
    var = f"SANDMAN_{tool.upper()}_VERSION"
    p = cli(home, "which", tool, cwd=tmp, env={var: "2.0"})
    assert p.returncode == NotFoundError.exit_code and p.stdout == "", p.stdout
    assert p.stderr == (f"sandman: {tool} 2.0 (set by ${var}) is not installed; run: "
                        f"sandman install {tool}@2.0\n")
    p = cli(home, "which", tool, cwd=tmp, env={var: "9.9"})
    assert p.returncode == NotFoundError.exit_code
    assert "no recipe has it" in p.stderr and "9.9" in p.stderr, p.stderr
    p = cli(home, "which", tool, "--json", cwd=tmp, env={var: "2.0"})
    assert p.returncode == NotFoundError.exit_code
    assert json.loads(p.stdout)["installed"] is False


def test_outdated_lists_new_and_dropped_versions(team):
    tool, home, tmp, src = team["tool"], team["home"], team["tmp"], team["src"]
    p = cli(home, "outdated", "--json", cwd=tmp)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == [{"tool": tool, "source": "team", "kind": "repo",
                                     "installed": ["1.0"], "new": ["2.0"], "dropped": [],
                                     "trusted": True, "note": None}]
    commit_recipe(src, tool, {"2.0": "two", "3.0": "three"})  # 1.0 dropped, 3.0 new
    assert cli(home, "repo", "update", "team", cwd=tmp).returncode == 0
    p = cli(home, "outdated", cwd=tmp)  # untrusted: what it offers is not listed
    assert p.returncode == 0
    assert "sandman repo trust team" in p.stderr, p.stderr
    assert cli(home, "repo", "trust", "team", cwd=tmp).returncode == 0
    p = cli(home, "outdated", cwd=tmp)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == ["TOOL" + " " * (len(tool) - 2) + "SOURCE  INSTALLED  NEW       DROPPED",
                                     f"{tool}  team    1.0        2.0, 3.0  1.0"], p.stdout


def test_repo_add_of_a_plain_folder_says_how_to_make_it_a_repo(tmp_path):
    home = fresh_home(tmp_path, "home")
    folder = tmp_path / "my recipes"
    (folder / "acme").mkdir(parents=True)
    p = cli(home, "repo", "add", "mine", str(folder), cwd=tmp_path)
    assert p.returncode == RemoteError.exit_code
    q = f"'{folder}'"
    assert p.stderr == (f"sandman: repo add mine: {folder} is a folder, not a git repository; "
                        f"make it one: git -C {q} init && git -C {q} add -A && git -C {q} "
                        "commit -m recipes\n")


PROXIES = {"HTTP_PROXY": "http://proxy.example:3128", "https_proxy": "http://p2.example:8080",
           "NO_PROXY": "localhost,.example", "no_proxy": "127.0.0.1"}


def test_proxy_settings_reach_a_tool_with_a_network_only(tmp_path, sandman, home, shim_env,
                                                         remove_images_after: ImageRemover):
    tool = unique_tool()
    remove_images_after(tool)
    recipes = tmp_path / "recipes"
    (recipes / tool).mkdir(parents=True)
    (recipes / tool / "recipe.toml").write_text(
        f'schema = 1\ntool = "{tool}"\ndescription = "prints its environment"\n'
        'entrypoint = ["env"]\nnetwork = "bridge"\n\n[versions."1"]\nbase = "debian:bookworm-slim"\n'
        'run = ["true"]\n')
    env = {"SANDMAN_RECIPE_PATH": str(recipes)}
    p = sandman("install", "--yes", f"{tool}@1", env=env)
    assert p.returncode == 0, p.stderr

    def seen() -> dict[str, str]:
        r = subprocess.run([f"{tool}-1"], env={**shim_env, **PROXIES}, cwd=tmp_path,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        return {k: v for k, v in (ln.split("=", 1) for ln in r.stdout.splitlines() if "=" in ln)
                if k.lower().endswith("_proxy")}

    assert seen() == PROXIES
    config = paths_of(home).config_file
    for text, want in ((f"[tools.{tool}]\nproxy_env = false\n", {}), ("proxy_env = false\n", {}),
                       (f"proxy_env = false\n[tools.{tool}]\nproxy_env = true\n", PROXIES),
                       (f'[tools.{tool}]\nnetwork = "none"\n', {})):  # never without a network
        config.write_text(text)
        p = sandman("reshim", f"{tool}@1", env=env)
        assert p.returncode == 0, p.stderr
        assert seen() == want, text
