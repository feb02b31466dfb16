"""Issue 23 item 3: a file argument handed the tool every socket in that file's folder.

`tool /tmp/x.db` mounted /tmp, where ssh-agent keeps `/tmp/ssh-*/agent.N` and X11 its
`/tmp/.X11-unix`; `tool $XDG_RUNTIME_DIR/x.db` the session's D-Bus, systemd's user manager and
gpg-agent. Now (docs/runtime.md, "What is mounted"): a socket, FIFO or device given as an
argument is refused; a file's folder is mounted whole only when it is not sticky and holds no
socket, FIFO or device; otherwise the tool gets a tmpfs in the folder's place with the file,
and sqlite's siblings that exist, bound into it; a file the tool will create there is made
empty first. The run-time folders stay refused. Replayed with a real ssh-agent in /tmp, a
socket under a stand-in XDG_RUNTIME_DIR, and sqlite3 writing in /tmp in both journal modes.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import sqlite3
import stat
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import SeedPool, base_env, require_program, run_sandman

pytest.register_assert_rewrite("runtime_helpers")
from runtime_helpers import ROOT, Kit, one_line_error  # noqa: E402

from sandman.errors import MountError  # noqa: E402

pytestmark = pytest.mark.docker


@pytest.fixture
def tmp_folder() -> Iterator[Path]:
    """A fresh folder under /tmp (0700), and a name prefix for files put straight into /tmp,
    all removed afterwards."""
    d = Path(tempfile.mkdtemp(prefix="sm-sock-", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)
    for f in Path("/tmp").glob(f"{d.name}*"):
        f.unlink()


def _in_tmp(folder: Path, suffix: str) -> Path:
    """A name straight in /tmp that belongs to this test's folder (cleaned up with it)."""
    return Path("/tmp") / f"{folder.name}{suffix}"


@pytest.fixture
def ssh_agent(kit: Kit, tmp_folder: Path) -> Iterator[Path]:
    """A real ssh-agent of the invoker, its socket in a 0700 folder under /tmp, as ssh-agent
    makes it itself (`/tmp/ssh-XXXX/agent.N`)."""
    require_program("ssh-agent")
    os.chown(tmp_folder, *kit.invoker)
    sock = tmp_folder / "agent.1"
    p = subprocess.run(kit.argv(["ssh-agent", "-s", "-a", str(sock)]), capture_output=True,
                       text=True, timeout=30, env={"PATH": "/usr/bin:/bin"})
    assert p.returncode == 0, p.stderr
    pid = int(re.search(r"SSH_AGENT_PID=(\d+)", p.stdout).group(1))
    try:
        # a live agent: `ssh-add -l` says "no identities" (1), not "cannot connect" (2)
        q = subprocess.run(kit.argv(["ssh-add", "-l"]), capture_output=True, timeout=30,
                           env={"PATH": "/usr/bin:/bin", "SSH_AUTH_SOCK": str(sock)})
        assert q.returncode == 1, q
        yield sock
    finally:
        os.kill(pid, 15)


def test_a_file_in_tmp_never_brings_the_ssh_agent_along(kit: Kit, mode: str, tmp_folder: Path,
                                                         ssh_agent: Path) -> None:
    """The replay: `tool /tmp/x.db` and `tool /tmp/ssh-XXXX/x.db`, the agent running; from
    inside, the socket is absent (nothing of /tmp but the named files and the cwd), the file
    is there (read-only: the probe's path_args), and a file to write named by RT_OUT (rw,
    made by the shim) is written through to the host while its sibling stays in the tmpfs."""
    db = _in_tmp(tmp_folder, ".db")
    beside = tmp_folder / "x.db"
    for f in (db, beside):
        f.write_text("host\n")
        os.chown(f, *kit.invoker)
    out = _in_tmp(tmp_folder, "-out.txt")
    work = kit.scratch("work")
    # the socket's path is in the script, not an argument (an argument naming it is refused)
    probe = (f'ls -A /tmp {tmp_folder}; test -e {ssh_agent} && echo REACHED; cat "$1"; '
             'echo tool >"$RT_OUT" && echo side >"$RT_OUT-journal" && echo wrote')
    try:
        for arg in (db, beside):
            p = kit.run([kit.shim("rtprobe-1"), "sh", "-c", probe, "sh", str(arg)],
                        env=kit.env(mode, RT_OUT=str(out)), cwd=work)
            said = p.stdout.decode()
            assert p.returncode == 0, (p.stdout, p.stderr)
            assert "REACHED" not in said and "agent.1" not in said, said
            assert "host\n" in said and "wrote" in said, said
            assert out.read_text() == "tool\n"
            assert not Path(f"{out}-journal").exists()  # in the container's tmpfs, for the call
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert ssh_agent.is_socket()


def test_a_socket_under_the_runtime_folder_is_refused(kit: Kit, tmp_folder: Path) -> None:
    """A stand-in XDG_RUNTIME_DIR (0700 under /tmp) with a listening socket: neither a file
    next to it nor the socket itself gets into a container; one line, exit 118."""
    rt = tmp_folder / "run-user"
    rt.mkdir(mode=0o700)
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(str(rt / "bus"))
    srv.listen(1)
    (rt / "x.db").write_text("data\n")
    env = kit.env("cold", XDG_RUNTIME_DIR=str(rt))
    work = kit.scratch("work")
    try:
        for arg in (rt / "x.db", rt / "bus", rt / "new.db"):
            p = kit.run([kit.shim("rtprobe-1"), "cat", str(arg)], env=env, cwd=work)
            assert p.returncode == MountError.exit_code, (arg, p.stdout, p.stderr)
            line = one_line_error(p.stderr)
            assert str(arg) in line and ("run-time folder" in line or "socket" in line), line
    finally:
        srv.close()
        shutil.rmtree(work, ignore_errors=True)


def test_a_socket_fifo_or_device_argument_is_refused(kit: Kit, tmp_folder: Path) -> None:
    """A socket, a FIFO, a device node (and a link to one) given as the argument itself, or a
    folder that holds one, or a sticky folder: exit 118, one line, nothing started. A file
    next to the FIFO in a folder of one's own gets in alone: the FIFO is not there."""
    own = tmp_folder / "own"
    own.mkdir()
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(own / "sock"))
    os.mkfifo(own / "fifo")
    os.mknod(own / "null", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    (own / "link").symlink_to(own / "fifo")
    (own / "x.db").write_text("data\n")
    env = kit.env("cold")
    work = kit.scratch("work")
    try:
        for arg, why in ((own / "sock", "socket"), (own / "fifo", "FIFO"), (own / "null", "device"),
                         (own / "link", "FIFO"), (own, "holds"), (Path("/tmp"), "shared")):
            p = kit.run([kit.shim("rtprobe-1"), "true", str(arg)], env=env, cwd=work)
            assert p.returncode == MountError.exit_code, (arg, p.stdout, p.stderr)
            line = one_line_error(p.stderr)
            assert str(arg) in line and why in line, line
        p = kit.run([kit.shim("rtprobe-1"), "sh", "-c", 'ls -A "${1%/*}"; cat "$1"', "sh",
                     str(own / "x.db")], env=env, cwd=work)
        assert (p.returncode, p.stdout) == (0, b"x.db\ndata\n"), p.stderr
    finally:
        s.close()
        shutil.rmtree(work, ignore_errors=True)


# -- sqlite3 writing a database in /tmp --------------------------------------------------------
@pytest.fixture(scope="module")
def sqlite_rw(docker_client, seed_pool: SeedPool) -> Iterator[dict[str, str]]:
    """A home with sqlite3@3.46 from the shipped recipe with `path_args = "rw"` (the shipped
    one mounts arguments read-only): the same image (path_args is not in the fingerprint)."""
    root = Path(tempfile.mkdtemp(prefix="sm-sock-home-"))
    recipe = (ROOT / "recipes" / "sqlite3" / "recipe.toml").read_text()
    (root / "recipes" / "sqlite3").mkdir(parents=True)
    (root / "recipes" / "sqlite3" / "recipe.toml").write_text(
        recipe.replace('\ncommands = ["sqlite3"]\n', '\ncommands = ["sqlite3"]\npath_args = "rw"\n'))
    home = root / "home"
    home.mkdir()
    seed_pool.seed(home)
    env = {**base_env(home), "SANDMAN_RECIPE_PATH": str(root / "recipes")}
    p = run_sandman("install", "--yes", "sqlite3@3.46", env=env, timeout=900)
    assert p.returncode == 0, p.stderr
    yield env
    shutil.rmtree(root, ignore_errors=True)


def _sql(env: dict[str, str], cwd: Path, db: Path, sql: str) -> str:
    p = subprocess.run(["sqlite3-3.46", str(db), sql], env=env, cwd=cwd, capture_output=True,
                       text=True, stdin=subprocess.DEVNULL, timeout=120)
    assert p.returncode == 0, p.stderr
    return p.stdout


@pytest.mark.parametrize("journal", ["delete", "wal"])
def test_sqlite3_writes_a_database_in_tmp(sqlite_rw: dict[str, str], tmp_folder: Path,
                                          journal: str) -> None:
    """A new /tmp/NAME.db: made, written (its journal or WAL made next to it in the
    container), read back by a second call and by the host's sqlite3."""
    db = _in_tmp(tmp_folder, f"-{journal}.db")
    out = _sql(sqlite_rw, tmp_folder, db, f"pragma journal_mode={journal}; create table t(v);"
               f" insert into t values ('{journal}'); insert into t values (2);")
    assert out == f"{journal}\n"
    assert _sql(sqlite_rw, tmp_folder, db, "select count(*), min(v) from t; pragma journal_mode") \
        == f"2|2\n{journal}\n"
    # the journal or WAL lived in the container: nothing but the database is left on the host
    assert sorted(p.name for p in Path("/tmp").glob(f"{tmp_folder.name}*")) == [
        tmp_folder.name, db.name]
    c = sqlite3.connect(db)
    try:
        assert c.execute("select v from t order by rowid").fetchall() == [(journal,), (2,)]
    finally:
        c.close()


def test_an_unmerged_wal_next_to_a_database_in_tmp_is_seen(sqlite_rw: dict[str, str],
                                                           tmp_folder: Path) -> None:
    """A crash's leftover: a db and its -wal holding a committed row the db file lacks."""
    live = tmp_folder / "live.db"
    c = sqlite3.connect(live)
    c.execute("pragma journal_mode=wal")
    c.execute("pragma wal_autocheckpoint=0")
    c.execute("create table t(v)")
    c.commit()
    c.execute("pragma wal_checkpoint(truncate)")
    c.execute("insert into t values ('only in the wal')")
    c.commit()
    db = _in_tmp(tmp_folder, ".db")
    shutil.copyfile(live, db)
    shutil.copyfile(f"{live}-wal", f"{db}-wal")
    c.close()
    assert Path(f"{db}-wal").stat().st_size > 0
    assert _sql(sqlite_rw, tmp_folder, db, "select v from t") == "only in the wal\n"
    c = sqlite3.connect(db)
    try:
        assert c.execute("select v from t").fetchall() == [("only in the wal",)]
    finally:
        c.close()


def test_a_new_file_in_tmp_is_made_by_the_shim_and_never_replaces_one(
        sqlite_rw: dict[str, str], tmp_folder: Path) -> None:
    """The file-to-be is made empty with the umask; an existing one is used as it is."""
    db = _in_tmp(tmp_folder, f"-{uuid.uuid4().hex[:6]}.db")
    old = os.umask(0o077)
    try:
        assert _sql(sqlite_rw, tmp_folder, db, "create table t(v); insert into t values (1);"
                    " select count(*) from t") == "1\n"
    finally:
        os.umask(old)
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    assert _sql(sqlite_rw, tmp_folder, db, "select count(*) from t") == "1\n"


def test_a_shared_folder_as_the_cwd_is_refused_unless_allowed(kit: Kit, tmp_folder: Path) -> None:
    """Run from /tmp, the cwd's mount would be /tmp whole (every session's sockets): one line
    that says where to go instead, exit 118, nothing started; SANDMAN_ALLOW_SHARED=1 is the
    user saying so. A sticky folder of one's own is shared all the same."""
    os.chown(tmp_folder, *kit.invoker)
    sticky = tmp_folder / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)
    for cwd in (Path("/tmp"), sticky):
        p = kit.run([kit.shim("rtprobe-1"), "true"], env=kit.env("cold"), cwd=cwd)
        assert p.returncode == MountError.exit_code, (cwd, p.stdout, p.stderr)
        line = one_line_error(p.stderr)
        assert f"the current directory {cwd}: it is a shared folder" in line, line
        assert "mktemp -d" in line and "SANDMAN_ALLOW_SHARED=1" in line, line
    p = kit.run([kit.shim("rtprobe-1"), "sh", "-c", "pwd"], cwd=sticky,
                env=kit.env("cold", SANDMAN_ALLOW_SHARED="1"))
    assert (p.returncode, p.stdout) == (0, f"{sticky}\n".encode()), p.stderr


def test_a_dry_run_makes_no_file_in_a_shared_folder(sqlite_rw: dict[str, str],
                                                    tmp_folder: Path) -> None:
    """A dry run changes nothing: the file a call would make in /tmp is named, not made."""
    db = _in_tmp(tmp_folder, f"-{uuid.uuid4().hex[:6]}.db")
    work = tmp_folder / "work"
    work.mkdir()
    p = subprocess.run(["sqlite3-3.46", str(db), "select 1"], cwd=work, capture_output=True,
                       text=True, timeout=60, env={**sqlite_rw, "SANDMAN_DRY_RUN": "1"})
    assert p.returncode == 0, p.stderr
    assert f"creates:  {db} (empty" in p.stderr and "tmpfs:    /tmp (empty" in p.stderr
    assert not db.exists()
