"""Dry runs: the exact docker command on stdout, a readable summary on stderr, nothing started.

The printed command is checked the only way that matters: run it with bash and compare with
what the shim itself does.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from helpers import ImageRemover, run_sandman

from sandman.names import LABEL_PID, LABEL_TOOL

pytestmark = pytest.mark.docker


def created_by(docker_client, pid: int, since: int) -> list[dict]:
    """Container 'create' events whose shim had process id pid (the io.sandman.pid label)."""
    events = docker_client.events(since=since, until=int(time.time()) + 1, decode=True,
                                  filters={"type": "container", "event": "create",
                                           "label": f"{LABEL_PID}={pid}"})
    return list(events)


def run_shim(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, int, str, str]:
    p = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = p.communicate(timeout=300)
    return p.pid, p.returncode, out, err


@pytest.fixture
def work(tmp_path: Path, shared_env: dict[str, str]) -> Path:
    w = tmp_path / "my work"
    w.mkdir()
    made = subprocess.run(["sqlite3-3.46", "db", "create table t(a int) strict; insert into t values (7)"],
                          cwd=w, env=shared_env, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=300)
    assert made.returncode == 0, made.stderr
    return w


def test_shim_dry_run_starts_nothing_and_prints_a_working_command(
        work: Path, shared_env: dict[str, str], docker_client, tmp_path: Path) -> None:
    env = {**shared_env, "SANDMAN_WARM": "0"}
    argv = ["sqlite3-3.46", "db", "select a * 6 from t"]
    since = int(time.time()) - 1
    pid, code, cmd, summary = run_shim(argv, work, {**env, "SANDMAN_DRY_RUN": "1"})
    assert code == 0, summary
    assert created_by(docker_client, pid, since) == []  # nothing was started
    assert cmd.startswith(("docker run ", "/")) and " run " in cmd and cmd.endswith("\n")
    assert cmd.count("\n") == 1
    # the summary says, readably, what the container gets
    assert "dry run of sqlite3@3.46" in summary
    assert f"mount rw: {work} -> {work}" in summary
    assert "network:  none" in summary
    assert "capabilities dropped: ALL" in summary and "no-new-privileges" in summary
    assert "user:" in summary and "env:" in summary and "HOME" in summary

    # the printed command does what the shim does
    pid2, shim_code, shim_out, shim_err = run_shim(argv, work, env)
    assert (shim_code, shim_out) == (0, "42\n"), shim_err
    assert len(created_by(docker_client, pid2, since)) == 1  # the check above can fail
    replay = subprocess.run(["bash", "-c", cmd], cwd=tmp_path,
                            env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                            timeout=300)
    assert (replay.returncode, replay.stdout) == (0, "42\n"), replay.stderr


def test_replayed_command_fails_like_the_shim(work: Path, shared_env: dict[str, str]) -> None:
    env = {**shared_env, "SANDMAN_WARM": "0"}
    argv = ["sqlite3-3.34", "db", "select * from t"]
    _, shim_code, shim_out, shim_err = run_shim(argv, work, env)
    assert shim_code != 0 and "malformed database schema" in shim_err
    _, code, cmd, _ = run_shim(argv, work, {**env, "SANDMAN_DRY_RUN": "1"})
    assert code == 0
    replay = subprocess.run(["bash", "-c", cmd], cwd="/", env=env, stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=300)
    assert (replay.returncode, replay.stdout, replay.stderr) == (shim_code, shim_out, shim_err)


def test_read_only_mount_of_a_path_argument_is_shown(work: Path, shared_env: dict[str, str],
                                                     tmp_path: Path) -> None:
    data = tmp_path / "data dir"
    data.mkdir()
    (data / "x.db").write_bytes(b"")
    _, code, cmd, summary = run_shim(["sqlite3-3.46", str(data / "x.db"), "select 1"], work,
                                     {**shared_env, "SANDMAN_DRY_RUN": "1"})
    assert code == 0
    assert f"mount ro: {data} -> {data}" in summary
    assert "readonly" in cmd


def test_sandman_run_dry_run(work: Path, shared_env: dict[str, str]) -> None:
    real = run_sandman("run", "sqlite3@3.46", "sqlite3", "db", "select a from t", cwd=work,
                       env=shared_env, stdin=subprocess.DEVNULL, timeout=300)
    assert (real.returncode, real.stdout) == (0, "7\n"), real.stderr
    dry = run_sandman("run", "--dry-run", "sqlite3@3.46", "sqlite3", "db", "select a from t",
                      cwd=work, env=shared_env, stdin=subprocess.DEVNULL, timeout=300)
    assert dry.returncode == 0 and "dry run of sqlite3@3.46" in dry.stderr
    replay = subprocess.run(["bash", "-c", dry.stdout], cwd="/", env=shared_env,
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)
    assert (replay.returncode, replay.stdout) == (0, "7\n"), replay.stderr


def test_matrix_dry_run_reports_each_command(work: Path, shared_env: dict[str, str]) -> None:
    import json

    p = run_sandman("matrix", "--dry-run", "--json", "sqlite3@all", "--", "sqlite3", "db",
                    "select 1", cwd=work, env=shared_env, timeout=300)
    assert p.returncode == 0, p.stderr
    results = json.loads(p.stdout)["results"]
    assert [r["exit_code"] for r in results] == [0, 0]
    assert "sandman/sqlite3:3.34" in results[0]["stdout"]
    assert "sandman/sqlite3:3.46" in results[1]["stdout"]


# -- a dry run of a version that is not built yet (issue 10 §3) -------------------------------
def tool_events(tool: str, since: int) -> list[dict]:
    """Every daemon event (image, container, any action) about this tool's images/containers."""
    out = subprocess.run(["docker", "events", "--since", str(since), "--until", str(int(time.time()) + 1),
                          "--filter", f"label={LABEL_TOOL}={tool}", "--format", "{{json .}}"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


@pytest.fixture
def unbuilt(tmp_path: Path, docker_client, remove_images_after: ImageRemover) -> dict[str, object]:
    tool = f"dry{uuid.uuid4().hex[:10]}"
    remove_images_after(tool)
    recipes = tmp_path / "recipes"
    (recipes / tool).mkdir(parents=True)
    (recipes / tool / "recipe.toml").write_text(
        f'schema = 1\ntool = "{tool}"\ndescription = "never built"\n\n[versions."1"]\n'
        'base = "debian:bookworm-slim"\nrun = ["echo built > /built"]\n\n'
        '[versions."2"]\nbase = "debian:bookworm-slim"\nrun = ["echo built two > /built"]\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANDMAN_")}
    env.update(SANDMAN_HOME=str(tmp_path / "home"), SANDMAN_RECIPE_PATH=str(recipes))
    return {"tool": tool, "env": env, "cwd": tmp_path}


@pytest.mark.parametrize("command", ["run", "matrix"])
def test_a_dry_run_never_builds_pulls_or_creates(unbuilt: dict, command: str, docker_client) -> None:
    tool, env = str(unbuilt["tool"]), unbuilt["env"]
    since = int(time.time()) - 1
    args = ([command, f"{tool}@1", "--dry-run", "--", "cat", "/built"] if command == "run" else
            [command, "--dry-run", "--json", f"{tool}@1,2", "--", "cat", "/built"])
    p = run_sandman(*args, env=env, cwd=unbuilt["cwd"], stdin=subprocess.DEVNULL, timeout=300)
    assert p.returncode == 0, p.stderr
    time.sleep(1.5)  # events are reported by second
    assert tool_events(tool, since) == []
    assert docker_client.images.list(filters={"label": f"{LABEL_TOOL}={tool}"}) == []
    printed = p.stdout if command == "run" else \
        "".join(r["stdout"] for r in json.loads(p.stdout)["results"])
    versions = ["1"] if command == "run" else ["1", "2"]
    for v in versions:
        assert f" sandman/{tool}:{v}-" in printed  # the tag it would use
        assert f"image sandman/{tool}:{v}-" in p.stderr and "is not built yet" in p.stderr
    # and the check above can fail: a real run builds, which the daemon reports
    real = run_sandman("run", f"{tool}@1", "--", "cat", "/built", env=env, cwd=unbuilt["cwd"],
                       stdin=subprocess.DEVNULL, timeout=600)
    assert (real.returncode, real.stdout) == (0, "built\n"), real.stderr
    time.sleep(1.5)
    assert tool_events(tool, since) != []
