"""The warm fast path (shims/agent.c `route`, warm.bash `sm_route_write`): a repeated warm call
takes the route an earlier call wrote down, and nothing that the full runtime would have
looked at can change without the call leaving that route.

rtecho@1 (the kit's, runtime_helpers.py) has no mount of its own, so its calls from one folder
are the fast path's case: the cwd is their only mount. The client writes why it left a route
to SANDMAN_AGENT_LOG; each test counts those lines.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import require_program, warm_dir

pytest.register_assert_rewrite("runtime_helpers")
from runtime_helpers import Kit, ensure_agent  # noqa: E402
from warm_helpers import remove_serving  # noqa: E402

pytestmark = pytest.mark.docker


@pytest.fixture
def fast(kit: Kit, tmp_path: Path) -> Iterator[tuple[dict[str, str], Path, Path]]:
    """(env, folder, log): agent mode with a log of the client's misses, a folder of its own."""
    ensure_agent(kit.home)
    folder = kit.scratch("fast")
    log = tmp_path / "agent.log"
    env = kit.env("agent", SANDMAN_AGENT_LOG=str(log))
    yield env, folder, log
    remove_serving(kit.home, [folder])
    shutil.rmtree(folder, ignore_errors=True)


def call(kit: Kit, env: dict[str, str], folder: Path, *args: str) -> bytes:
    p = kit.run([kit.shim("rtecho-1"), *args], env=env, cwd=folder)
    assert (p.returncode, p.stderr) == (0, b""), p.stderr
    return p.stdout


def misses(log: Path) -> list[str]:
    return re.findall(r"^route: (.*)$", log.read_text() if log.exists() else "", re.M)


def memo(kit: Kit) -> Path:
    return warm_dir(kit.home) / "route-rtecho-1"


def test_a_repeated_warm_call_takes_the_route(kit: Kit, fast) -> None:
    require_program("strace")
    env, folder, log = fast
    assert call(kit, env, folder, "one") == b"one\0"
    log.unlink(missing_ok=True)
    assert memo(kit).is_file() and (memo(kit).stat().st_mode & 0o077) == 0
    trace = folder.parent / f"{folder.name}.strace"
    p = subprocess.run(["strace", "-f", "-o", str(trace), "-e", "trace=execve",
                        kit.shim("rtecho-1"), "two", "words"], env=env, cwd=folder,
                       capture_output=True, timeout=60)
    execs = [ln for ln in trace.read_text().splitlines() if "execve(" in ln and "resumed" not in ln]
    trace.unlink()
    assert (p.returncode, p.stdout, p.stderr) == (0, b"two\0words\0", b"")
    # the shim's sh (its front), then the client with `route`: no bash at all, no docker
    assert len(execs) == 2 and '"route"' in execs[1], execs
    assert misses(log) == []


def test_any_change_the_runtime_would_see_leaves_the_route(kit: Kit, fast) -> None:
    env, folder, log = fast
    assert call(kit, env, folder, "first") == b"first\0"  # writes this folder's route
    log.unlink(missing_ok=True)  # (an earlier test's route, for its folder, was left)
    assert call(kit, env, folder, "again") == b"again\0" and misses(log) == []

    # a variable the runtime reads, changed: the full runtime runs, and writes the new route
    assert call(kit, {**env, "TZ": "UTC"}, folder, "tz") == b"tz\0"
    assert misses(log) == ["TZ"]
    # another working folder: the route names the one it was written for
    other = kit.scratch("fast-other")
    try:
        assert call(kit, {**env, "TZ": "UTC"}, other, "there") == b"there\0"
        assert misses(log)[-1] == "cwd"
    finally:
        remove_serving(kit.home, [other])
        shutil.rmtree(other, ignore_errors=True)
    # the shim rewritten since the route was written (reshim, upgrade, config.toml)
    shim = Path(kit.shim("rtecho-1"))
    os.utime(shim)
    assert call(kit, {**env, "TZ": "UTC"}, folder, "shim") == b"shim\0"
    assert misses(log)[-1] == "shim newer"
    before = len(misses(log))
    assert call(kit, {**env, "TZ": "UTC"}, folder, "same") == b"same\0"
    assert len(misses(log)) == before  # back on the route


def test_an_argument_that_names_nothing_here_keeps_the_route(kit: Kit, fast) -> None:
    """A slash in an argument that is no path on this host (SQL, a date, a URL) mounts nothing
    in the runtime, so the route stands; a path through a link, or out of the cwd, leaves it.
    (rtecho takes no path arguments: a copy of its shim that does, whose route is removed after.)"""
    env, folder, log = fast
    text = Path(kit.shim("rtecho-1")).read_text()
    assert "\nSM_PATH_ARGS=off\n" in text
    shim = folder.parent / f"{folder.name}-rtecho-1"
    shim.write_text(text.replace("\nSM_PATH_ARGS=off\n", "\nSM_PATH_ARGS=ro\n"))
    shim.chmod(0o755)

    def echo(*args: str) -> bytes:
        p = kit.run([str(shim), *args], env=env, cwd=folder)
        assert (p.returncode, p.stderr) == (0, b""), p.stderr
        return p.stdout

    try:
        assert echo("first") == b"first\0"  # this folder's route, for the copy
        log.unlink(missing_ok=True)
        words = ["select a/b from t;", "2026/12/07", "http://host/x", "missing/../../etc/passwd"]
        assert echo(*words) == b"".join(w.encode() + b"\0" for w in words)
        assert misses(log) == []
        (folder / "real").mkdir()
        (folder / "link").symlink_to("real")
        assert echo("link/x.db") == b"link/x.db\0"
        assert echo("real/../x.db") == b"real/../x.db\0"
        assert misses(log) == ["path argument", "path argument"]  # the runtime decided both
    finally:
        memo(kit).unlink(missing_ok=True)  # the real rtecho-1 takes no path arguments
        shim.unlink(missing_ok=True)


def test_a_variable_the_environment_lacks_keeps_the_route(kit: Kit, fast) -> None:
    """Without TERM in the environment (cron, a service) bash sets one of its own, `dumb`,
    not exported: the route records the environment, so such calls take it too."""
    env, folder, log = fast
    bare = {k: v for k, v in env.items() if k != "TERM"}
    assert call(kit, bare, folder, "one") == b"one\0"
    log.unlink(missing_ok=True)
    assert call(kit, bare, folder, "two") == b"two\0"
    assert call(kit, bare, folder, "three") == b"three\0"
    assert misses(log) == []
    assert call(kit, {**bare, "TERM": "dumb"}, folder, "four") == b"four\0"  # now it is there
    assert misses(log) == ["TERM"]


def test_a_folder_swapped_in_at_the_same_path_leaves_the_route(kit: Kit, fast) -> None:
    """The route names the cwd's path; the container mounts the folder that was there. A new
    folder at that path (renamed away, made again) is another object: the client compares
    them by device and inode and leaves the route, and the full runtime decides."""
    env, folder, log = fast
    (folder / "f").write_text("old\n")
    assert call(kit, env, folder, "x") == b"x\0"
    log.unlink(missing_ok=True)
    assert call(kit, env, folder, "y") == b"y\0" and misses(log) == []
    old = folder.with_name(folder.name + ".old")
    folder.rename(old)
    try:
        folder.mkdir()
        folder.chmod(0o755)
        (folder / "f").write_text("new\n")
        p = kit.run([kit.shim("rtecho-1"), "z"], env=env, cwd=folder)
        assert (p.returncode, p.stdout, p.stderr) == (0, b"z\0", b""), p.stderr
        assert misses(log) == ["mount"], misses(log)
    finally:
        remove_serving(kit.home, [old])
        shutil.rmtree(old, ignore_errors=True)
