"""sandman's own files: private to their owner, and every failure to write them is one line.

Issue 9 items 6 and 7, issue 10 section 5: another local user read `PGPASSWORD=hunter2` from
state/log/sandman.log (0644 in 0755 folders); a full disk (a 1 MiB tmpfs as SANDMAN_HOME) gave
a traceback and exit 1; a read-only SANDMAN_HOME gave "internal error: PermissionError"; a
corrupt install record blocked install and uninstall with no way out. Exit 1 is for bugs only.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import pwd
import re
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import ensure_unix_user, log_file, paths_of, record_file, run_sandman, runtime_dir

pytest.register_assert_rewrite("runtime_helpers")
from runtime_helpers import ECHO_RECIPE, docker_gid  # noqa: E402

from sandman.errors import NoSpaceError, NotFoundError, StateError, StateWriteError  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PEER = "sandman-peer"  # a second real Unix user, made with useradd if missing
TOOL, KEY, SHIM = "rtecho", "rtecho@1", "rtecho-1"
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mount, useradd, setpriv)")


# -- helpers -----------------------------------------------------------------------------------
def peer() -> tuple[int, int]:
    pw = ensure_unix_user(PEER, "-U", "-s", "/bin/bash")
    return pw.pw_uid, pw.pw_gid


def as_peer(argv: list[str], *, docker: bool = False, env: dict[str, str] | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess:
    uid, gid = peer()
    groups = [f"--groups={docker_gid()}"] if docker else ["--clear-groups"]
    return subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={gid}", *groups, *argv],
                          capture_output=True, text=True, env=env, cwd=cwd or "/", timeout=120)


def peer_can_read(path: Path) -> bool:
    p = as_peer(["cat", str(path)])
    return p.returncode == 0


def cli(home: Path, *args: str, recipes: Path | None = None, cwd: Path | None = None,
        extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SANDMAN_", "DOCKER_"))}
    env["SANDMAN_HOME"] = str(home)
    env["PATH"] = f"{paths_of(home).bin_dir}{os.pathsep}{env.get('PATH', '')}"
    if recipes is not None:
        env["SANDMAN_RECIPE_PATH"] = str(recipes)
    env.update(extra or {})
    return run_sandman("-q", *args, env=env, cwd=cwd or ROOT)


def one_line(p: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    """The failure is exactly one `sandman: ...` line with the code, holding each needle."""
    err = p.stderr
    assert p.returncode == code, (p.returncode, err)
    assert "Traceback" not in err and "internal error" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sandman: "), err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def public_dir(prefix: str) -> Path:
    """A folder other users can enter (pytest's tmp_path root is 0700, which would hide
    everything from the peer and make every privacy check pass for the wrong reason)."""
    d = Path(tempfile.mkdtemp(prefix=prefix))
    d.chmod(0o755)
    return d


@pytest.fixture
def recipes() -> Iterator[Path]:
    d = public_dir("sandman-h6-recipes-")
    (d / TOOL).mkdir()
    (d / TOOL / "recipe.toml").write_text(ECHO_RECIPE)
    yield d
    shutil.rmtree(d, ignore_errors=True)


class Tmpfs:
    """A tmpfs mounted as a SANDMAN_HOME: size-limited, and remountable read-only."""

    def __init__(self, size: str) -> None:
        self.root = public_dir("sandman-h6-tmpfs-")
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                        str(self.root)], check=True, capture_output=True)
        self.home = self.root / "home"
        self.home.mkdir()

    def remount(self, mode: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{mode}", str(self.root)], check=True,
                       capture_output=True)

    def fill(self) -> None:
        """Write a filler file until the file system is full."""
        with contextlib.suppress(OSError), open(self.root / "filler", "wb") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()

    def unfill(self) -> None:
        (self.root / "filler").unlink()

    def close(self, recipes: Path) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.remount("rw")
        with contextlib.suppress(Exception):  # drop this home's root tag on the shared image
            cli(self.home, "uninstall", "--force", KEY, recipes=recipes)
        if subprocess.run(["umount", str(self.root)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(self.root)], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def tmpfs(recipes: Path) -> Iterator[Tmpfs]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    t = Tmpfs("1m")
    yield t
    t.close(recipes)


def leftovers(home: Path) -> list[str]:
    return [str(p) for p in home.rglob("*.tmp")]


def shim_works(home: Path, *, warm: bool = False) -> None:
    """The shim gives the tool's output and nothing else (warm: falls back quietly when it must)."""
    env = {**os.environ, "PATH": f"{paths_of(home).bin_dir}{os.pathsep}{os.environ['PATH']}"}
    env.pop("SANDMAN_HOME", None)
    env["SANDMAN_WARM"] = "1" if warm else "0"
    p = subprocess.run([str(paths_of(home).bin_dir / SHIM), "a b", "c"], capture_output=True, env=env,
                       timeout=120)
    assert (p.returncode, p.stdout, p.stderr) == (0, b"a b\0c\0", b""), p.stderr


# -- exit 1 is for bugs only ---------------------------------------------------------------------
def test_no_bare_sandman_error_is_raised_or_built() -> None:
    """Every deliberate failure has a typed subclass with its own exit code (never 1)."""
    offenders = []
    for path in sorted((ROOT / "sandman").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                f = node.func
                name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
                if name == "SandmanError":
                    offenders.append(f"{path.name}:{node.lineno}")
    assert not offenders, f"SandmanError(...) built bare (use a subclass from errors.py): {offenders}"


# -- who can read what -----------------------------------------------------------------------------
@as_root
def test_state_and_log_are_private_to_their_owner() -> None:
    """The exact attack: a command line with a secret, then another user reads the log."""
    base = public_dir("sandman-h6-private-")
    try:
        home = base / "home"
        home.mkdir(mode=0o755)
        paths = paths_of(home)
        paths.config_file.write_text('[tools.rtecho.env]\nPGPASSWORD = "hunter2"\n')
        (home / "readme").write_text("a file the peer may read\n")
        cli(home, "recipes", "show", "PGPASSWORD=hunter2")
        log = log_file(home)
        assert "PGPASSWORD=hunter2" in log.read_text()
        for d, mode in ((paths.state_dir, 0o700), (paths.log_dir, 0o700), (paths.cache_dir, 0o700)):
            assert stat.S_IMODE(d.stat().st_mode) == mode, d
        assert stat.S_IMODE(log.stat().st_mode) == 0o600
        assert stat.S_IMODE(paths.config_file.stat().st_mode) == 0o600
        assert peer_can_read(home / "readme")  # the peer does reach the home: a fair test
        for secret in (log, paths.config_file):
            p = as_peer(["cat", str(secret)])
            assert p.returncode != 0 and "Permission denied" in p.stderr, (secret, p.stdout)
        assert as_peer(["ls", str(paths.state_dir)]).returncode != 0
    finally:
        shutil.rmtree(base, ignore_errors=True)


@as_root
def test_an_older_home_is_made_private_when_sandman_runs() -> None:
    base = public_dir("sandman-h6-old-")
    try:
        home = base / "home"
        paths = paths_of(home)
        for d in (paths.log_dir, paths.installs_dir, paths.facts_dir, paths.repos_dir):
            d.mkdir(parents=True)
        for d in (home, paths.state_dir, paths.log_dir, paths.installs_dir, paths.cache_dir,
                  paths.facts_dir, paths.data_dir, paths.repos_dir):
            d.chmod(0o755)
        log = log_file(home)
        log.write_text("--- sandman run pg@13 -- env PGPASSWORD=hunter2 psql\n")
        record = record_file(home, "x", "1")
        record.write_text("{}")
        for f in (log, record):
            f.chmod(0o644)
        paths.config_file.write_text("")
        paths.config_file.chmod(0o644)
        assert peer_can_read(log) and peer_can_read(record)  # what an older sandman left
        p = cli(home, "recipes", "list")
        assert p.returncode == 0, p.stderr
        for f in (log, record, paths.config_file):
            assert not peer_can_read(f), f
        for d in (paths.state_dir, paths.cache_dir, paths.repos_dir):
            assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
        assert stat.S_IMODE(log.stat().st_mode) == 0o600
        assert stat.S_IMODE(home.stat().st_mode) == 0o755  # bin and data stay reachable
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.docker
@as_root
def test_another_user_runs_the_shims_but_reads_no_state(recipes: Path) -> None:
    """Shims, the shim runtime and the image passwd files stay shared; records and logs not."""
    base = public_dir("sandman-h6-shared-")
    home = base / "home"
    home.mkdir(mode=0o755)
    try:
        p = cli(home, "install", KEY, recipes=recipes)
        assert p.returncode == 0, p.stderr
        paths = paths_of(home)
        record = record_file(home, TOOL, "1")
        assert record.is_file() and stat.S_IMODE(record.stat().st_mode) == 0o600
        assert not peer_can_read(record)
        assert not peer_can_read(log_file(home))
        assert peer_can_read(paths.bin_dir / SHIM)
        runtime = sorted(runtime_dir(home).glob("*.bash"))
        assert runtime and all(peer_can_read(f) for f in runtime)
        work = public_dir("sandman-h6-work-")
        try:
            env = {"PATH": f"{paths.bin_dir}:/usr/local/bin:/usr/bin:/bin",
                   "HOME": pwd.getpwnam(PEER).pw_dir, "USER": PEER}
            p = as_peer([str(paths.bin_dir / SHIM), "x y"], docker=True, env=env, cwd=work)
            assert (p.returncode, p.stdout) == (0, "x y\0"), p.stderr
        finally:
            shutil.rmtree(work, ignore_errors=True)
    finally:
        cli(home, "uninstall", KEY, recipes=recipes)
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.docker
@as_root
def test_another_users_calls_start_a_reaper_with_a_pidfile_of_their_own(recipes: Path) -> None:
    """A user running a shared home's shims cannot write its private state: the shim starts
    their reaper with a pidfile in their own temp folder, so their hard-killed calls are reaped.

    The peer cannot run this test's Python (it lives under /root, 0700), so the shim's reaper
    command is replaced by a stand-in that records its arguments, and docker by /bin/true.
    """
    base = public_dir("sandman-h6-reap-")
    home = base / "home"
    home.mkdir(mode=0o755)
    try:
        assert cli(home, "install", KEY, recipes=recipes).returncode == 0, "install"
        uid, _ = peer()
        seen = base / "reaper-args"
        fake = base / "fake-reaper"
        fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {seen}\n')
        fake.chmod(0o755)
        os.chmod(base, 0o1777)  # also the peer's TMPDIR
        shim = base / SHIM
        text = (paths_of(home).bin_dir / SHIM).read_text()
        text = re.sub(r"(?m)^SM_REAPER=.*$", f"SM_REAPER=({fake})", text)
        text = re.sub(r"(?m)^SM_DOCKER=.*$", "SM_DOCKER=/bin/true", text)
        shim.write_text(text)
        shim.chmod(0o755)
        work = base / "work"
        work.mkdir()
        work.chmod(0o777)
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": pwd.getpwnam(PEER).pw_dir,
               "USER": PEER, "TMPDIR": str(base)}
        p = as_peer([str(shim), "x"], docker=True, env=env, cwd=work)
        assert p.returncode == 0 and p.stderr == "", p.stderr
        for _ in range(50):  # the reaper starts in the background
            if seen.exists():
                break
            time.sleep(0.1)
        pidfile, daemon = seen.read_text().splitlines()
        assert pidfile.startswith(f"{base}/sandman-{uid}/reaper-") and pidfile.endswith(".pid")
        folder = Path(pidfile).parent
        assert folder.stat().st_uid == uid and stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert daemon.startswith("unix://")
        # the owner's own calls keep the home's pidfile
        seen.unlink()
        subprocess.run([str(shim), "x"], env={**env, "HOME": "/root"}, cwd=work, check=True,
                       capture_output=True)
        for _ in range(50):
            if seen.exists():
                break
            time.sleep(0.1)
        assert seen.read_text().splitlines()[0] == str(paths_of(home).reaper_pidfile)
    finally:
        cli(home, "uninstall", KEY, recipes=recipes)
        shutil.rmtree(base, ignore_errors=True)


# -- full disk, read-only home ---------------------------------------------------------------------
@pytest.mark.docker
@as_root
def test_full_disk_is_122_with_the_path_and_loses_nothing(tmpfs: Tmpfs, recipes: Path) -> None:
    tmpfs.fill()
    p = cli(tmpfs.home, "install", KEY, recipes=recipes)
    line = one_line(p, NoSpaceError.exit_code, "no space left")
    assert str(tmpfs.home) in line
    assert not leftovers(tmpfs.home), leftovers(tmpfs.home)
    assert not (paths_of(tmpfs.home).bin_dir / SHIM).exists()
    # a command that writes only its log still works on a full disk (the log is dropped)
    p = cli(tmpfs.home, "recipes", "list", recipes=recipes)
    assert p.returncode == 0 and TOOL in p.stdout, p.stderr
    tmpfs.unfill()
    p = cli(tmpfs.home, "install", KEY, recipes=recipes)
    assert p.returncode == 0, p.stderr
    shim_works(tmpfs.home)


@pytest.mark.docker
@as_root
def test_read_only_home_is_107_with_the_path_and_reads_still_work(tmpfs: Tmpfs, recipes: Path) -> None:
    p = cli(tmpfs.home, "install", KEY, recipes=recipes)
    assert p.returncode == 0, p.stderr
    tmpfs.remount("ro")
    # reshim writes only what changed: with nothing to change it needs no write at all
    p = cli(tmpfs.home, "reshim", KEY, recipes=recipes)
    assert (p.returncode, p.stderr) == (0, ""), p.stderr
    for args in (("uninstall", KEY), ("install", "--force", KEY), ("use", TOOL, "1", "--global")):
        line = one_line(cli(tmpfs.home, *args, recipes=recipes), StateWriteError.exit_code, "read-only file system",
                        str(tmpfs.home), "SANDMAN_HOME")
        assert "cannot write" in line, args
    p = cli(tmpfs.home, "list", "--json", recipes=recipes)
    assert p.returncode == 0, p.stderr
    assert [i["tool"] for i in json.loads(p.stdout)] == [TOOL]
    shim_works(tmpfs.home)
    shim_works(tmpfs.home, warm=True)  # no warm folder can be made: cold, and no `rm:` noise
    tmpfs.remount("rw")  # nothing was lost
    p = cli(tmpfs.home, "list", "--json", recipes=recipes)
    assert [i["state"] for i in json.loads(p.stdout)] == ["current"], p.stdout
    shim_works(tmpfs.home)


# -- a corrupt install record ------------------------------------------------------------------------
@pytest.mark.docker
def test_a_corrupt_record_names_its_repair_and_uninstall_force_applies_it(
        recipes: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    p = cli(home, "install", KEY, recipes=recipes)
    assert p.returncode == 0, p.stderr
    paths = paths_of(home)
    foreign = paths.bin_dir / "rtecho-1.mine"
    foreign.write_text("#!/bin/sh\n# for: rtecho@1 (a note of the user's, not a sandman header)\n")
    record = record_file(home, TOOL, "1")
    record.write_text('{"schema": 1, "tool": "rtecho", "versi')  # a crash of an older sandman
    hint = f"sandman uninstall --force {KEY}"
    for args in (("install", KEY), ("uninstall", KEY), ("list",)):
        one_line(cli(home, *args, recipes=recipes), StateError.exit_code, str(record), hint)
    p = cli(home, "uninstall", "--force", KEY, recipes=recipes)
    assert p.returncode == 0, p.stderr
    assert not record.exists() and not (paths.bin_dir / SHIM).exists()
    assert foreign.exists()  # only files whose header names the install go
    one_line(cli(home, "uninstall", "--force", KEY, recipes=recipes), NotFoundError.exit_code, KEY)
    p = cli(home, "install", KEY, recipes=recipes)
    assert p.returncode == 0, p.stderr
    shim_works(home)
    assert cli(home, "uninstall", KEY, recipes=recipes).returncode == 0
