"""Issue 9 item 1: no spelling of a path gets the Docker socket, / or the home into a container.

Each test is one attack from the report, run against the real daemon: a recipe mount
`source = "/var//run"` (which used to answer `HTTP/1.0 200` on /h/docker.sock), `~/..`, `~/.`,
path arguments and `sandman run --mount` that are symlinks to / or /run, the
SANDMAN_<TOOL>_<NAME> override, config.toml's extra_mounts, also as a non-root user in the
docker group, whose group must not reach the container. Every refusal is exit 118, one line,
and no container is created. Plus the fidelity gap the same resolution closes: relative
arguments that leave the current directory (`cd a && tool ../b/x.db`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import ImageRemover, paths_of, stop_reapers

pytest.register_assert_rewrite("runtime_helpers")
from runtime_helpers import (  # noqa: E402
    TEST_GID,
    TEST_UID,
    Kit,
    as_test_user,
    docker_gid,
    one_line_error,
    run,
    sandman_cli,
    user_env,
)

from sandman.errors import MountError  # noqa: E402
from sandman.names import LABEL_PID  # noqa: E402

pytestmark = pytest.mark.docker

SEC_RECIPE = """\
schema = 1
tool = "rtsec"
description = "recipes whose mounts try to reach the Docker socket, / or the home"

[versions.varrun]
base = "debian:bookworm-slim"
run = ["echo sandman-security-probe"]
[[versions.varrun.mounts]]
name = "h"
source = "/var//run"
target = "/h"
mode = "rw"

[versions.up]
base = "debian:bookworm-slim"
run = ["echo sandman-security-probe"]
[[versions.up.mounts]]
name = "h"
source = "~/.."
target = "/h"
mode = "ro"

[versions.dot]
base = "debian:bookworm-slim"
run = ["echo sandman-security-probe"]
[[versions.dot.mounts]]
name = "h"
source = "~/."
target = "/h"
mode = "ro"
"""


@pytest.fixture(scope="module")
def sec(kit: Kit, remove_images_after_module: ImageRemover) -> Iterator[Kit]:
    """A home of its own with rtsec@varrun, @up, @dot installed from $SANDMAN_HOME/recipes."""
    remove_images_after_module("rtsec")
    root = kit.scratch("sec")
    home = root / "home"
    (paths_of(home).user_recipes_dir / "rtsec").mkdir(parents=True)
    (paths_of(home).user_recipes_dir / "rtsec" / "recipe.toml").write_text(SEC_RECIPE)
    mine = Kit(root=root, home=home, recipes=kit.recipes, data=kit.data, out=kit.out)
    p = sandman_cli("-q", "install", "--yes", "rtsec@varrun", "rtsec@up", "rtsec@dot", env=mine.env(),
                    timeout=900)
    assert p.returncode == 0, p.stderr.decode()
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            q = Path(dirpath, n)
            if not q.is_symlink():
                q.chmod(q.stat().st_mode | (0o055 if q.is_dir() else 0o044))
    yield mine
    stop_reapers(home)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def links(kit: Kit) -> Iterator[Path]:
    """A world-readable folder with the attacker's symlinks: to-root -> /, to-run -> /run."""
    d = kit.scratch("links")
    (d / "to-root").symlink_to("/")
    (d / "to-run").symlink_to("/run")
    (d / "to-varrun").symlink_to("/var//run")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def refused_without_container(argv: list[str], *, env: dict[str, str], cwd: Path,
                              user: bool = False, named: str | None = None) -> str:
    """Run argv; it must exit 118 with one line, and no container of its pid may be created."""
    if user:
        argv = as_test_user(argv)
    since = f"{time.time():.3f}"
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=120)
    until = f"{time.time() + 1:.3f}"
    assert proc.returncode == MountError.exit_code, (proc.returncode, out, err)
    line = one_line_error(err)
    if named:
        assert named in line, line
    created = subprocess.run(
        ["docker", "events", "--since", since, "--until", until, "--filter", "type=container",
         "--filter", "event=create", "--filter", f"label={LABEL_PID}={proc.pid}",
         "--format", "{{.Actor.ID}}"],
        capture_output=True, text=True, timeout=60, check=True).stdout.split()
    assert created == []
    return line


@pytest.mark.parametrize("user", [False, True], ids=["root", "user"])
def test_recipe_mount_var_double_slash_run_is_refused(sec: Kit, work: Path, user_home: Path,
                                                      user: bool) -> None:
    env = user_env(sec, "cold", user_home) if user else sec.env()
    if user:
        os.chown(work, TEST_UID, TEST_GID)
    # the attack listed /h and talked HTTP to /h/docker.sock; now nothing starts at all
    line = refused_without_container([sec.shim("rtsec-varrun"), "ls", "-l", "/h"], env=env, cwd=work,
                                     user=user, named="/var//run")
    assert "really /run" in line and "Docker socket" in line


@pytest.mark.parametrize("user", [False, True], ids=["root", "user"])
def test_recipe_mount_home_dotdot_and_dot_are_refused(sec: Kit, work: Path, user: bool) -> None:
    # HOME=/tmp: `~/..` is the host's / and `~/.` the home itself
    env = sec.env(HOME="/tmp")
    if user:
        os.chown(work, TEST_UID, TEST_GID)
        env["PATH"] = f"{sec.bin}:/usr/local/bin:/usr/bin:/bin"
    line = refused_without_container([sec.shim("rtsec-up"), "ls", "/h"], env=env, cwd=work,
                                     user=user, named="~/..")
    assert "really /)" in line and "it is /" in line
    line = refused_without_container([sec.shim("rtsec-dot"), "ls", "/h"], env=env, cwd=work,
                                     user=user, named="~/.")
    assert "home directory" in line and "really /tmp" in line
    # SANDMAN_ALLOW_ROOT lets / through, but / holds the Docker socket: still refused
    again = run([sec.shim("rtsec-up"), "ls", "/h"], env={**env, "SANDMAN_ALLOW_ROOT": "1"},
                cwd=work, user=user)
    assert again.returncode == MountError.exit_code and "Docker socket" in one_line_error(again.stderr)


@pytest.mark.parametrize("user", [False, True], ids=["root", "user"])
@pytest.mark.parametrize("link", ["to-root", "to-run", "to-varrun", "to-run/docker.sock"])
def test_symlink_argument_is_resolved_and_refused(kit: Kit, work: Path, links: Path,
                                                  user_home: Path, link: str, user: bool) -> None:
    env = user_env(kit, "cold", user_home) if user else kit.env()
    if user:
        os.chown(work, TEST_UID, TEST_GID)
    target = str(links / link)
    line = refused_without_container([kit.shim("rtprobe-1"), "ls", "-l", target], env=env,
                                     cwd=work, user=user, named=target)
    assert ("really /run" in line and "Docker socket" in line) or "really /)" in line
    # as an option value too
    refused_without_container([kit.shim("rtprobe-1"), "ls", f"--file={target}"], env=env,
                              cwd=work, user=user, named=target)


@pytest.mark.parametrize("link", ["to-root", "to-run"])
def test_symlink_env_override_and_path_env_are_refused(kit: Kit, work: Path, links: Path,
                                                       link: str) -> None:
    target = str(links / link)
    env = kit.env(SANDMAN_RTPROBE_DATA=target)
    refused_without_container([kit.shim("rtprobe-1"), "ls", "/data"], env=env, cwd=work,
                              named=target)
    env = kit.env(RT_DATA=target)  # path_env: the variable's path is mounted
    refused_without_container([kit.shim("rtprobe-1"), "ls", "/"], env=env, cwd=work, named=target)


@pytest.mark.parametrize("link", ["to-root", "to-run", "to-varrun"])
def test_sandman_run_mount_of_a_symlink_is_refused(kit: Kit, work: Path, links: Path,
                                                   link: str) -> None:
    target = str(links / link)
    p = sandman_cli("-q", "run", "rtprobe@1", "--mount", f"{target}:/h", "--", "ls", "/h",
                    env=kit.env(), cwd=work)
    assert p.returncode == MountError.exit_code, p.stderr
    line = one_line_error(p.stderr, target)
    assert "really /" in line
    spelled = sandman_cli("-q", "run", "rtprobe@1", "--mount", "/var//run:/h", "--", "ls", "/h",
                          env=kit.env(), cwd=work)
    assert spelled.returncode == MountError.exit_code
    assert "Docker socket" in one_line_error(spelled.stderr)


def test_config_extra_mount_swapped_for_a_symlink_is_refused_at_run_time(sec: Kit, work: Path,
                                                                         links: Path) -> None:
    """config.toml's extra mount was a plain folder at install time, then became a link to /run."""
    swap = sec.root / "swap"
    swap.mkdir()
    (swap / "f.txt").write_text("plain\n")
    cfg = paths_of(sec.home).config_file
    cfg.write_text(f'[tools."rtprobe@1"]\nextra_mounts = ["{swap}:/x:ro"]\n')
    try:
        p = sandman_cli("-q", "install", "--yes", "rtprobe@1", env=sec.env())
        assert p.returncode == 0, p.stderr
        ok = run([sec.shim("rtprobe-1"), "cat", "/x/f.txt"], env=sec.env(), cwd=work)
        assert (ok.returncode, ok.stdout) == (0, b"plain\n"), ok.stderr
        shutil.rmtree(swap)
        swap.symlink_to("/run")
        refused_without_container([sec.shim("rtprobe-1"), "ls", "/x"], env=sec.env(), cwd=work,
                                  named="really /run")
        # and a config that names such a link fails at reshim, before any shim is written
        again = sandman_cli("-q", "reshim", "rtprobe@1", env=sec.env())
        assert again.returncode == MountError.exit_code
        assert "really /run" in one_line_error(again.stderr)
    finally:
        cfg.unlink()
        sandman_cli("-q", "uninstall", "rtprobe@1", env=sec.env())


def test_docker_group_never_reaches_the_container(kit: Kit, mode: str, work: Path,
                                                  user_home: Path) -> None:
    os.chown(work, TEST_UID, TEST_GID)
    env = user_env(kit, mode, user_home)
    p = run([kit.shim("rtprobe-1"), "id", "-G"], env=env, cwd=work, user=True)
    assert p.returncode == 0, p.stderr
    groups = p.stdout.decode().split()
    assert str(TEST_GID) in groups
    assert str(docker_gid()) not in groups
    assert str(os.stat("/var/run/docker.sock").st_gid) not in groups
    dry = run([kit.shim("rtprobe-1"), "true"], env={**env, "SANDMAN_DRY_RUN": "1"}, cwd=work,
              user=True)
    assert f"--group-add {docker_gid()}" not in dry.stdout.decode()


def test_relative_arguments_leaving_the_cwd_work_as_on_the_host(kit: Kit, mode: str,
                                                                work: Path) -> None:
    (work / "a").mkdir()
    (work / "b").mkdir()
    (work / "b" / "x.db").write_text("from b\n")
    env = kit.env(mode)
    # `cd a && tool ../b/x.db`: the folder ../b is mounted where the tool looks; argv unchanged
    p = run([kit.shim("rtprobe-1"), "sh", "-c", 'cat "$1"; printf "%s\\n" "$1"', "_", "../b/x.db"],
            env=env, cwd=work / "a")
    assert (p.returncode, p.stdout) == (0, b"from b\n../b/x.db\n"), p.stderr
    # a file the tool creates next to it: the folder exists, so it is mapped (path_args = ro)
    created = run([kit.shim("rtprobe-1"), "ls", "../b/new.db", "../b"], env=env, cwd=work / "a")
    assert created.returncode == 2 and b"new.db" in created.stderr
    assert created.stdout.split()[-1] == b"x.db"
    # sub/dir inside the cwd keeps working, and a relative symlink out to / is refused
    (work / "a" / "sub").mkdir()
    (work / "a" / "sub" / "in.txt").write_text("inside\n")
    inside = run([kit.shim("rtprobe-1"), "cat", "sub/in.txt"], env=env, cwd=work / "a")
    assert inside.stdout == b"inside\n", inside.stderr
    (work / "b" / "root").symlink_to("/")
    out = run([kit.shim("rtprobe-1"), "ls", "../b/root"], env=env, cwd=work / "a")
    assert out.returncode == MountError.exit_code and "really /)" in one_line_error(out.stderr)
