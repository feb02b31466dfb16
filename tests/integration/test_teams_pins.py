"""Version pins through the real unversioned shim, and the project lock file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from teams_helpers import commit_recipe, fresh_home, make_repo, remove_images, unique_tool

pytestmark = pytest.mark.docker


def cli(home: Path, *args: str, cwd: Path, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sandman", *args], env=env_for(home, env),
                          cwd=cwd, capture_output=True, text=True, timeout=900)


def env_for(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("SANDMAN_")}
    e["SANDMAN_HOME"] = str(home)
    e["PATH"] = f"{home / 'bin'}{os.pathsep}{e.get('PATH', '')}"
    e.update(extra or {})
    return e


def run_tool(home: Path, tool: str, cwd: Path, env: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess:
    """The unversioned command, found on PATH as a user's shell would."""
    e = env_for(home, env)
    e["PWD"] = str(cwd)
    return subprocess.run([tool], cwd=cwd, env=e, capture_output=True, text=True, timeout=120)


@pytest.fixture
def setup(tmp_path: Path, docker_client) -> Iterator[dict]:
    tool = unique_tool()
    src = tmp_path / "src"
    make_repo(src, tool, {"1.0": "one", "2.0": "two"})
    home = fresh_home(tmp_path, "home")
    for args in (("repo", "add", "team", str(src)), ("repo", "trust", "team"),
                 ("install", f"{tool}@1.0", f"{tool}@2.0")):
        p = cli(home, *args, cwd=tmp_path)
        assert p.returncode == 0, p.stderr
    yield {"tool": tool, "src": src, "home": home, "tmp": tmp_path}
    remove_images(docker_client, tool)


def test_pins_resolve_by_directory_and_env_wins(setup):
    tool, home, tmp = setup["tool"], setup["home"], setup["tmp"]
    assert not (home / "bin" / tool).exists()  # no unversioned shim until asked for
    p1, p2 = tmp / "proj1", tmp / "proj2"
    deep = p1 / "src" / "deep"
    deep.mkdir(parents=True)
    p2.mkdir()
    assert cli(home, "use", tool, "1.0", cwd=p1).returncode == 0
    p = cli(home, "use", tool, "2.0", cwd=p2)
    assert p.returncode == 0, p.stderr
    assert (p1 / ".sandman.toml").read_text() == f'[tools]\n{tool} = "1.0"\n'

    assert run_tool(home, tool, deep).stdout == f"{tool} 1.0 one\n"
    assert run_tool(home, tool, p2).stdout == f"{tool} 2.0 two\n"
    var = f"SANDMAN_{tool.upper()}_VERSION"
    assert run_tool(home, tool, deep, {var: "2.0"}).stdout == f"{tool} 2.0 two\n"

    p = cli(home, "which", tool, "--json", cwd=deep)
    assert json.loads(p.stdout) == {
        "tool": tool, "version": "1.0", "origin": "project", "where": str(p1 / ".sandman.toml"),
        "installed": True, "shim": str(home / "bin" / f"{tool}-1.0")}
    p = cli(home, "which", tool, cwd=deep, env={var: "2.0"})
    assert p.stdout.startswith(f"{tool} 2.0 (set by ${var})")

    # outside any project: no choice, so the shim steps aside for the next one on PATH
    outside = tmp / "elsewhere"
    outside.mkdir()
    r = run_tool(home, tool, outside)
    assert r.returncode == 111 and f"sandman use {tool} VERSION" in r.stderr
    host = tmp / "hostbin"
    host.mkdir()
    (host / tool).write_text("#!/bin/sh\necho host tool\n")
    (host / tool).chmod(0o755)
    r = run_tool(home, tool, outside, {"PATH": f"{home / 'bin'}:{host}:/usr/bin:/bin"})
    assert (r.returncode, r.stdout) == (0, "host tool\n")
    assert cli(home, "which", tool, cwd=outside).returncode == 111

    assert cli(home, "use", tool, "2.0", "--global", cwd=outside).returncode == 0
    assert run_tool(home, tool, outside).stdout == f"{tool} 2.0 two\n"
    assert run_tool(home, tool, deep).stdout == f"{tool} 1.0 one\n"  # the project still wins

    # a pinned version that is not installed: one line, the command to fix it
    (p2 / ".sandman.toml").write_text(f'[tools]\n{tool} = "9.9"\n')
    r = run_tool(home, tool, p2)
    assert r.returncode == 111 and f"sandman install {tool}@9.9" in r.stderr
    p = cli(home, "use", tool, "9.9", cwd=p2)
    assert p.returncode == 111 and "unknown version '9.9'" in p.stderr


def test_project_install_writes_and_checks_the_lock(setup):
    tool, src, tmp = setup["tool"], setup["src"], setup["tmp"]
    project = tmp / "project"
    project.mkdir()
    (project / ".sandman.toml").write_text(f'# team tools\n[tools]\n{tool} = "1.0"  # prod\n')
    mate = fresh_home(tmp, "teammate")
    for args in (("repo", "add", "team", str(src)), ("repo", "trust", "team")):
        assert cli(mate, *args, cwd=tmp).returncode == 0
    p = cli(mate, "install", cwd=project)
    assert p.returncode == 0, p.stderr
    rec = json.loads((mate / "state" / "installs" / f"{tool}@1.0.json").read_text())
    lock = (project / "sandman.lock").read_text()
    commit = json.loads(cli(mate, "repo", "list", "--json", cwd=tmp).stdout)[0]["commit"]
    assert f'[tools.{tool}]\nversion = "1.0"\nsource = "team"\ncommit = "{commit}"\n' \
           f'fingerprint = "{rec["fingerprint"]}"' in lock
    assert run_tool(mate, tool, project).stdout == f"{tool} 1.0 one\n"  # unversioned shim written
    p = cli(mate, "install", cwd=project)
    assert p.returncode == 0 and "checked" in p.stderr
    assert (project / "sandman.lock").read_text() == lock

    # the repo moves on and changes 1.0: the lock says so before anything is built
    new = commit_recipe(src, tool, {"1.0": "changed", "2.0": "two"})
    assert cli(mate, "repo", "update", "team", cwd=tmp).returncode == 0
    assert cli(mate, "repo", "trust", "team", cwd=tmp).returncode == 0
    p = cli(mate, "install", cwd=project)
    assert p.returncode == 110, p.stderr
    assert "fingerprint" in p.stderr and rec["fingerprint"][:12] in p.stderr
    assert f"is at {new[:12]}, the lock was made at {commit[:12]}" in p.stderr
    assert "--update-lock" in p.stderr and "Step " not in p.stderr
    assert (project / "sandman.lock").read_text() == lock

    p = cli(mate, "install", "--update-lock", cwd=project)
    assert p.returncode == 0, p.stderr
    assert f'commit = "{new}"' in (project / "sandman.lock").read_text()
    assert run_tool(mate, tool, project).stdout == f"{tool} 1.0 changed\n"

    empty = tmp / "no-project"
    empty.mkdir()
    p = cli(mate, "install", cwd=empty)
    assert p.returncode == 2 and "no .sandman.toml" in p.stderr
