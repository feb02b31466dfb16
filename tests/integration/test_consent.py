"""Install disclosure and consent: what a recipe may reach is shown, and a change needs a yes.

The recipe is a copy of the built-in sqlite3@3.34 in a SANDMAN_RECIPE_PATH folder. Runtime
settings (mounts, env, network) are not part of the image fingerprint, so every install here
reuses the cached image and only the consent logic is exercised.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from helpers import paths_of, record_file, sandman_argv
from ptyrun import run_on_pty

from sandman.errors import ConsentError

pytestmark = pytest.mark.docker

RECIPE = """schema = 1
tool = "sqlite3"
description = "SQLite, a test copy"
entrypoint = ["sqlite3"]
smoke = ["sqlite3", "-version"]
pass_env = ["SQLITE_TEST_VAR"]
network = {network}

[[mounts]]
name = "data"
source = "{data}"
target = "/data"
mode = "{mode}"

[versions."3.34"]
base = "debian:bullseye-slim"
packages = ["sqlite3"]
"""


@pytest.fixture
def recipes(tmp_path: Path, docker_client) -> Path:
    root = tmp_path / "recipes"
    (root / "sqlite3").mkdir(parents=True)
    (tmp_path / "data").mkdir()
    write(root, tmp_path, mode="ro", network=False)
    return root


def write(root: Path, tmp_path: Path, *, mode: str, network: bool) -> None:
    (root / "sqlite3" / "recipe.toml").write_text(
        RECIPE.format(data=tmp_path / "data", mode=mode, network=str(network).lower()))


def record(home: Path) -> dict:
    return json.loads(record_file(home, "sqlite3", "3.34").read_text())


def test_first_install_discloses_then_a_change_needs_consent(
        sandman, home: Path, recipes: Path, tmp_path: Path, shim_env: dict[str, str]) -> None:
    env = {"SANDMAN_RECIPE_PATH": str(recipes)}
    first = sandman("install", "sqlite3@3.34", env=env)
    assert first.returncode == 0, first.stderr
    err = first.stderr
    assert "sqlite3@3.34 will be able to reach:" in err
    assert f"mount data: {tmp_path / 'data'} -> /data (read-only)" in err
    assert "current directory: mounted read-write" in err
    assert "env from your shell: SQLITE_TEST_VAR" in err
    assert "network: none" in err and "devices: none" in err
    shim = paths_of(home).bin_dir / "sqlite3-3.34"
    before = shim.read_bytes()

    # an unchanged reinstall needs no consent and says nothing about permissions
    again = sandman("install", "sqlite3@3.34", env=env)
    assert again.returncode == 0 and "will be able to reach" not in again.stderr

    write(recipes, tmp_path, mode="rw", network=True)
    refused = sandman("install", "sqlite3@3.34", env=env)
    assert refused.returncode == ConsentError.exit_code, refused.stderr
    assert "changes what the tool may access" in refused.stderr and "--yes" in refused.stderr
    assert f"- mount data: {tmp_path / 'data'} -> /data (read-only)" in refused.stderr
    assert f"+ mount data: {tmp_path / 'data'} -> /data (read-write)" in refused.stderr
    assert "+ network: yes (bridge" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert shim.read_bytes() == before  # nothing changed
    assert record(home)["runtime"]["network"] == "none"

    yes = sandman("install", "--yes", "sqlite3@3.34", env=env)
    assert yes.returncode == 0, yes.stderr
    assert record(home)["runtime"]["network"] == "bridge"
    assert record(home)["runtime"]["mounts"][0]["mode"] == "rw"
    assert "SM_NETWORK=bridge" in shim.read_text()
    run = subprocess.run(["sqlite3-3.34", ":memory:", "select 5"], env=shim_env, cwd=tmp_path,
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)
    assert (run.returncode, run.stdout) == (0, "5\n"), run.stderr


def _on_tty(args: list[str], env: dict[str, str], answer: bytes) -> tuple[int, str]:
    """Run the CLI with a terminal as stdin/stderr, type `answer` at the prompt."""
    code, seen, _ = run_on_pty(sandman_argv(*args), env=env, stdout_tty=False,
                               replies={b"Accept these changes?": answer})
    return code, seen.decode(errors="replace")


def test_terminal_prompt(home: Path, recipes: Path, tmp_path: Path, sandman,
                         shim_env: dict[str, str]) -> None:
    env = {"SANDMAN_RECIPE_PATH": str(recipes)}
    assert sandman("install", "sqlite3@3.34", env=env).returncode == 0
    write(recipes, tmp_path, mode="ro", network=True)
    full = {**shim_env, **env}
    code, text = _on_tty(["install", "sqlite3@3.34"], full, b"n\n")
    assert code == ConsentError.exit_code, text
    assert "+ network: yes (bridge" in text and "Accept these changes?" in text
    assert record(home)["runtime"]["network"] == "none"
    code, text = _on_tty(["install", "sqlite3@3.34"], full, b"y\n")
    assert code == 0, text
    assert record(home)["runtime"]["network"] == "bridge"


def test_consent_changes_unit() -> None:
    """The difference lists grants with + and withdrawals with -, and nothing when equal."""
    from sandman.consent import changes
    from sandman.recipes import Mount, Runtime

    a = Runtime(env={"A": "1"}, pass_env=("X",), mounts=(Mount("db", "/a", "/db", "ro"),))
    b = Runtime(env={"A": "2"}, pass_env=("Y",), path_env={"P": "rw"}, network=True,
                mounts=(Mount("db", "/a", "/db", "rw"),))
    assert changes(a, a) == []
    diff = changes(a, b)
    assert "- env set A=1" in diff and "+ env set A=2" in diff
    assert "- env passed from your shell: X" in diff and "+ env passed from your shell: Y" in diff
    assert "+ env path $P (rw)" in diff and "+ network: yes (bridge: the internet, not the host's 127.0.0.1)" in diff
    assert "+ mount db: /a -> /db (read-write)" in diff
    assert changes(b, a)[-2:] == ["- network: yes (bridge: the internet, not the host's 127.0.0.1)",
                                  "+ network: none"]
    # commands and entrypoint change what runs inside, not what it can reach
    assert changes(a, Runtime(**{**a.__dict__, "commands": ("x",), "entrypoint": ("y",)})) == []
