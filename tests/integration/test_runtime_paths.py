"""Promise 5: paths work as on the host, and what may not be mounted is refused by name."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

pytest.register_assert_rewrite("runtime_helpers")
from runtime_helpers import Kit, one_line_error  # noqa: E402

from sandman.errors import MountError  # noqa: E402
from sandman.names import LABEL_HOME, LABEL_PID  # noqa: E402

pytestmark = pytest.mark.docker


def test_cwd_is_the_same_path_even_with_odd_characters(kit: Kit, mode: str, work: Path) -> None:
    odd = work / 'with space, comma "quote" \'single\' é' / "sub dir"
    kit.mkdirs(odd)  # the runner's: a rootless shim writes in it
    (odd / "f.txt").write_text("inside\n")
    (odd / "inner").mkdir()
    p = kit.run([kit.shim("rtprobe-1"), "sh", "-c", 'pwd; cat f.txt; cat inner/../f.txt; cat "$PWD/f.txt"'],
            env=kit.env(mode), cwd=odd)
    assert p.returncode == 0, p.stderr
    assert p.stdout.decode() == f"{odd}\ninside\ninside\ninside\n"
    made = kit.run([kit.shim("rtprobe-1"), "sh", "-c", "echo made > new.txt"], env=kit.env(mode), cwd=odd)
    assert made.returncode == 0
    assert (odd / "new.txt").read_text() == "made\n"  # the cwd is read-write


def test_absolute_path_arguments_are_mounted_read_only(kit: Kit, mode: str, work: Path) -> None:
    other = kit.scratch("elsewhere")
    (other / "in.txt").write_text("from elsewhere\n")
    kit.own(other / "in.txt", user=False)  # the runner may write it: only the mount stops it
    env = kit.env(mode)
    shim = kit.shim("rtprobe-1")
    p = kit.run([shim, "cat", str(other / "in.txt")], env=env, cwd=work)
    assert (p.returncode, p.stdout) == (0, b"from elsewhere\n"), p.stderr
    dotted = kit.run([shim, "cat", f"{other}/../{other.name}/./in.txt"], env=env, cwd=work)
    assert dotted.stdout == b"from elsewhere\n", dotted.stderr
    opt = kit.run([shim, "sh", "-c", 'cat "${1#--file=}"', "_", f"--file={other}/in.txt"], env=env, cwd=work)
    assert opt.stdout == b"from elsewhere\n", opt.stderr
    w = kit.run([shim, "sh", "-c", 'echo x >> "$1"', "_", str(other / "in.txt")], env=env, cwd=work)
    assert w.returncode != 0 and b"Read-only file system" in w.stderr
    assert (other / "in.txt").read_text() == "from elsewhere\n"
    # a file the tool is to create: its (existing) folder is mounted
    new = kit.run([shim, "ls", "-d", str(other / "not-yet.txt"), str(other)], env=env, cwd=work)
    assert new.returncode == 2 and b"not-yet.txt" in new.stderr  # ls: no such file, folder seen
    # /CN=x is not a path on this host: passed on, nothing refused
    subj = kit.run([shim, "echo", "/CN=example", "/no-such-top-level-dir/x"], env=env, cwd=work)
    assert (subj.returncode, subj.stdout) == (0, b"/CN=example /no-such-top-level-dir/x\n")


def test_path_env_variables_are_mounted_with_their_mode(kit: Kit, mode: str, work: Path) -> None:
    ro, rw = kit.scratch("pe-ro"), kit.scratch("pe-rw")
    (ro / "in.txt").write_text("ro data\n")
    rw.chmod(0o777)
    env = kit.env(mode, RT_DATA=str(ro), RT_OUT=str(rw))
    p = kit.run([kit.shim("rtprobe-1"), "sh", "-c",
             'cat "$RT_DATA/in.txt"; echo out > "$RT_OUT/o.txt"; echo bad > "$RT_DATA/x" || echo refused'],
            env=env, cwd=work)
    assert p.stdout == b"ro data\nrefused\n", p.stderr
    assert (rw / "o.txt").read_text() == "out\n"
    assert not (ro / "x").exists()


@pytest.mark.parametrize("what", ["root", "home", "socket", "cwd-home"])
def test_refusals_name_the_path_and_exit_118(kit: Kit, mode: str, work: Path, what: str) -> None:
    home = kit.scratch("fakehome")
    env = kit.env(mode, HOME=str(home))
    cwd, args = work, ["ls"]
    if what == "root":
        args, named = ["ls", "/"], "/"
    elif what == "home":
        args, named = ["ls", str(home)], str(home)
    elif what == "socket":
        args, named = ["ls", "/var/run/docker.sock"], "docker.sock"
    else:
        cwd, named = home, str(home)
    p = kit.run([kit.shim("rtprobe-1"), *args], env=env, cwd=cwd)
    assert p.returncode == MountError.exit_code
    line = one_line_error(p.stderr)
    assert named in line
    if what == "root":  # even when / is allowed, it holds the Docker socket: still refused
        again = kit.run([kit.shim("rtprobe-1"), "ls", "-d", "/"], env={**env, "SANDMAN_ALLOW_ROOT": "1"},
                    cwd=cwd)
        assert again.returncode == MountError.exit_code
        assert "Docker socket" in one_line_error(again.stderr)


def created_containers(kit: Kit, since: float, until: float, label: str) -> list[str]:
    """Containers created in [since, until] with label, from the engine's event log (Podman's
    takes whole seconds: the window is widened to them; the label keeps it to ours)."""
    if kit.podman:
        return kit.cli("events", "--since", str(int(since)), "--until", str(int(until) + 1),
                       "--filter", "type=container", "--filter", "event=create",
                       "--filter", f"label={label}", "--format", "{{.ID}}").split()
    return kit.cli("events", "--since", f"{since:.3f}", "--until", f"{until:.3f}",
                   "--filter", "type=container", "--filter", "event=create",
                   "--filter", f"label={label}", "--format", "{{.Actor.ID}}").split()


def test_missing_data_source_fails_before_any_container(kit: Kit, mode: str, work: Path) -> None:
    missing = kit.root / "no-such-data" / "deeper"
    since = time.time()
    p = kit.popen([kit.shim("rtprobe-1"), "true"], cwd=work, stderr=subprocess.PIPE,
                  env=kit.env(mode, SANDMAN_RTPROBE_DATA=str(missing)))
    _, err = p.communicate(timeout=60)
    until = time.time() + 1
    assert p.returncode == MountError.exit_code
    line = one_line_error(err)
    assert str(missing) in line and "'data'" in line
    assert not missing.parent.exists(), "something was created on the host in its place"
    assert created_containers(kit, since, until, f"{LABEL_PID}={p.pid}") == []
    if mode == "warm":
        warm = f"{LABEL_HOME}={kit.warm_label()}"
        assert created_containers(kit, since, until, warm) == []
    # and with the source back, the same shim runs
    assert kit.run([kit.shim("rtprobe-1"), "true"], env=kit.env(mode), cwd=work).returncode == 0


def test_a_folder_made_again_at_the_same_path_gets_a_new_kept_container(kit: Kit, mode: str,
                                                                        work: Path) -> None:
    """Promise 11: a kept container mounts the folder it was started for; `rm -rf d; mkdir d`
    makes another folder under the same name, and the next call must see that one (before,
    it was sent into the old, deleted one: `getcwd() failed`)."""
    d = kit.mkdirs(work / "again")
    first = kit.run([kit.shim("rtprobe-1"), "sh", "-c", "echo one > f; cat f"], env=kit.env(mode), cwd=d)
    assert (first.returncode, first.stdout) == (0, b"one\n"), first.stderr
    shutil.rmtree(d)
    kit.mkdirs(d)
    (d / "new").write_text("made again\n")
    kit.own(d / "new", user=False)
    again = kit.run([kit.shim("rtprobe-1"), "sh", "-c", "pwd; cat new; ls"], env=kit.env(mode), cwd=d)
    assert (again.returncode, again.stdout, again.stderr) == (0, f"{d}\nmade again\nnew\n".encode(), b"")
