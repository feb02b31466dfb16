"""Version pins through the real unversioned shim, and the project lock file."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import ImageRemover, paths_of, record_file, run_sandman
from teams_helpers import (
    commit_recipe,
    fresh_home,
    git,
    make_repo,
    recipe_text,
    unique_tool,
)

from sandman.errors import ConflictError, ConsentError, LockError, NotFoundError, PinError, StateError

pytestmark = pytest.mark.docker


def cli(home: Path, *args: str, cwd: Path, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess:
    return run_sandman(*args, env=env_for(home, env), cwd=cwd)


def env_for(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("SANDMAN_")}
    e["SANDMAN_HOME"] = str(home)
    e["PATH"] = f"{paths_of(home).bin_dir}{os.pathsep}{e.get('PATH', '')}"
    e.update(extra or {})
    return e


def run_tool(home: Path, tool: str, cwd: Path, env: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess:
    """The unversioned command, found on PATH as a user's shell would."""
    e = env_for(home, env)
    e["PWD"] = str(cwd)
    return subprocess.run([tool], cwd=cwd, env=e, capture_output=True, text=True, timeout=120)


@pytest.fixture
def setup(tmp_path: Path, docker_client, remove_images_after: ImageRemover) -> Iterator[dict]:
    tool = unique_tool()
    remove_images_after(tool)
    src = tmp_path / "src"
    make_repo(src, tool, {"1.0": "one", "2.0": "two"})
    home = fresh_home(tmp_path, "home")
    for args in (("repo", "add", "team", str(src)), ("repo", "trust", "team"),
                 ("install", f"{tool}@1.0", f"{tool}@2.0")):
        p = cli(home, *args, cwd=tmp_path)
        assert p.returncode == 0, p.stderr
    yield {"tool": tool, "src": src, "home": home, "tmp": tmp_path}


def test_pins_resolve_by_directory_and_env_wins(setup):
    tool, home, tmp = setup["tool"], setup["home"], setup["tmp"]
    assert not (paths_of(home).bin_dir / tool).exists()  # no unversioned shim until asked for
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
        "installed": True, "shim": str(paths_of(home).bin_dir / f"{tool}-1.0"), "plain_missing": [],
        "runs": "1.0"}  # the installed version it runs (an alias pin names another)
    p = cli(home, "which", tool, cwd=deep, env={var: "2.0"})
    assert p.stdout.startswith(f"{tool} 2.0 (set by ${var})")

    # outside any project: no choice, so the shim steps aside for the next one on PATH
    outside = tmp / "elsewhere"
    outside.mkdir()
    r = run_tool(home, tool, outside)
    assert r.returncode == NotFoundError.exit_code and f"sandman use {tool} VERSION" in r.stderr
    host = tmp / "hostbin"
    host.mkdir()
    (host / tool).write_text("#!/bin/sh\necho host tool\n")
    (host / tool).chmod(0o755)
    r = run_tool(home, tool, outside, {"PATH": f"{paths_of(home).bin_dir}:{host}:/usr/bin:/bin"})
    assert (r.returncode, r.stdout) == (0, "host tool\n")
    assert cli(home, "which", tool, cwd=outside).returncode == NotFoundError.exit_code

    assert cli(home, "use", tool, "2.0", "--global", cwd=outside).returncode == 0
    assert run_tool(home, tool, outside).stdout == f"{tool} 2.0 two\n"
    assert run_tool(home, tool, deep).stdout == f"{tool} 1.0 one\n"  # the project still wins

    # a pinned version that is not installed: one line, the command to fix it
    (p2 / ".sandman.toml").write_text(f'[tools]\n{tool} = "9.9"\n')
    r = run_tool(home, tool, p2)
    assert r.returncode == NotFoundError.exit_code and f"sandman install {tool}@9.9" in r.stderr
    p = cli(home, "use", tool, "9.9", cwd=p2)
    assert p.returncode == NotFoundError.exit_code and "unknown version '9.9'" in p.stderr


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
    rec = json.loads(record_file(mate, tool, "1.0").read_text())
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
    assert p.returncode == LockError.exit_code, p.stderr
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


def host_tool(tmp: Path, tool: str) -> str:
    """A host command of the tool's name, after the shim dir on PATH: what a bypass would run."""
    host = tmp / "hostbin"
    host.mkdir(exist_ok=True)
    (host / tool).write_text("#!/bin/sh\necho host tool\n")
    (host / tool).chmod(0o755)
    return f"{host}:/usr/bin:/bin"


def doctor_lines(home: Path, cwd: Path, tool: str) -> list[str]:
    p = cli(home, "doctor", cwd=cwd)
    return [line for line in p.stdout.splitlines() if f"pin {tool} " in line]


def test_the_lock_keeps_its_commit_when_only_the_repo_moved(setup):
    """The attack: a teammate's install rewrote the lock's commit when only their repo pin moved."""
    tool, src, home, tmp = setup["tool"], setup["src"], setup["home"], setup["tmp"]
    project = tmp / "project"
    project.mkdir()
    (project / ".sandman.toml").write_text(f'[tools]\n{tool} = "1.0"\n')
    p = cli(home, "install", cwd=project)
    assert p.returncode == 0 and "wrote" in p.stderr, p.stderr
    lock = (project / "sandman.lock").read_text()

    (src / "NOTES").write_text("nothing to do with any recipe\n")
    git(src, "add", "-A")
    git(src, "commit", "-qm", "notes")
    moved = git(src, "rev-parse", "HEAD")
    assert cli(home, "repo", "update", "team", cwd=tmp).returncode == 0  # not trusted again:
    p = cli(home, "install", cwd=project)  # the recipe is the trusted one, byte for byte
    assert p.returncode == 0, p.stderr
    assert "checked" in p.stderr and "built" not in p.stderr
    assert (project / "sandman.lock").read_text() == lock
    assert moved[:12] not in lock
    p = cli(home, "install", "--update-lock", cwd=project)
    assert p.returncode == 0 and (project / "sandman.lock").read_text() == lock


def test_a_pin_is_never_silently_bypassed(setup):
    """The attack: with no plain shim, the plain command ran the host's tool while `which` said
    the pinned version and `doctor` said all was well."""
    tool, src, home, tmp = setup["tool"], setup["src"], setup["home"], setup["tmp"]
    path = {"PATH": f"{paths_of(home).bin_dir}:{host_tool(tmp, tool)}"}
    project = tmp / "cloned"
    project.mkdir()
    (project / ".sandman.toml").write_text(f'[tools]\n{tool} = "1.0"\n')  # a teammate's pin

    # no plain shim (the project was just cloned): which and doctor say so
    assert run_tool(home, tool, project, path).stdout == "host tool\n"
    p = cli(home, "which", tool, cwd=project)
    assert p.returncode == PinError.exit_code, p.stderr
    assert p.stdout.startswith(f"{tool} 1.0 (set by {project / '.sandman.toml'})")
    assert f"{tool} in {paths_of(home).bin_dir} is missing" in p.stderr
    assert f"run: sandman use {tool} 1.0" in p.stderr and p.stderr.count("\n") == 1
    p = cli(home, "which", tool, "--json", cwd=project)
    assert p.returncode == PinError.exit_code and json.loads(p.stdout)["plain_missing"] == [tool]
    [line] = doctor_lines(home, project, tool)
    assert line.startswith(f"FAIL  pin {tool} 1.0: set by {project / '.sandman.toml'}, but {tool}")

    # a project install that stops at the consent prompt (exit 124) still leaves the pin honoured
    (src / "recipes" / tool / "recipe.toml").write_text(
        recipe_text(tool, {"1.0": "one", "2.0": "two"}).replace(
            'base = "debian:bookworm-slim"', 'base = "debian:bookworm-slim"\nenv = { ASKED = "1" }', 1))
    git(src, "commit", "-qam", "1.0 gets an env value")
    for args in (("repo", "update", "team"), ("repo", "trust", "team")):
        assert cli(home, *args, cwd=tmp).returncode == 0
    p = cli(home, "install", cwd=project)
    assert p.returncode == ConsentError.exit_code, p.stderr
    assert run_tool(home, tool, project, path).stdout == f"{tool} 1.0 one\n"  # the installed 1.0
    assert cli(home, "which", tool, cwd=project).returncode == 0
    assert doctor_lines(home, project, tool)[0].startswith(f"ok    pin {tool} 1.0")

    # `use` that cannot write the plain shim leaves no pin behind
    other = tmp / "other"
    other.mkdir()
    (paths_of(home).bin_dir / tool).unlink()
    (paths_of(home).bin_dir / tool).write_text("#!/bin/sh\necho not sandman\n")
    p = cli(home, "use", tool, "2.0", cwd=other)
    assert p.returncode == ConflictError.exit_code, p.stderr
    assert not (other / ".sandman.toml").exists()
    (paths_of(home).bin_dir / tool).unlink()
    p = cli(home, "use", tool, "2.0", cwd=other)
    assert p.returncode == 0, p.stderr
    assert run_tool(home, tool, other, path).stdout == f"{tool} 2.0 two\n"
    p = cli(home, "which", tool, cwd=other)
    assert p.returncode == 0 and p.stderr == ""


def test_a_broken_project_file_fails_the_plain_command(setup):
    """The attack: a broken .sandman.toml made the plain command silently run the host's tool."""
    tool, home, tmp = setup["tool"], setup["home"], setup["tmp"]
    path = {"PATH": f"{paths_of(home).bin_dir}:{host_tool(tmp, tool)}"}
    project = tmp / "proj"
    (project / "src").mkdir(parents=True)
    assert cli(home, "use", tool, "1.0", cwd=project).returncode == 0
    assert run_tool(home, tool, project / "src", path).stdout == f"{tool} 1.0 one\n"
    pin_file = project / ".sandman.toml"
    pin_file.write_text(f'[tools]\n# 1.0 for now\n{tool} = 1.0\n')  # the quotes forgotten
    want = f'{pin_file}:3: write each pin as tool = "version"'
    r = run_tool(home, tool, project / "src", path)
    assert (r.returncode, r.stdout, r.stderr) == (StateError.exit_code, "", f"sandman: {want}\n")
    p = cli(home, "which", tool, cwd=project / "src")
    assert (p.returncode, p.stderr) == (StateError.exit_code, f"sandman: {want}\n")
    [line] = [x for x in cli(home, "doctor", cwd=project / "src").stdout.splitlines()
              if "pin file" in x]
    assert line == f"FAIL  pin file {pin_file}: {want}"
    p = cli(home, "use", tool, "2.0", cwd=project / "src")
    assert (p.returncode, p.stderr) == (StateError.exit_code, f"sandman: {want}\n")
    assert pin_file.read_text() == f'[tools]\n# 1.0 for now\n{tool} = 1.0\n'  # left for the user
