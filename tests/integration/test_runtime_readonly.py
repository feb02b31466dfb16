"""Promise 7: a read-only mount cannot be written, renamed or deleted through the tool."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

pytest.register_assert_rewrite("runtime_helpers")
from runtime_helpers import Kit, user_env  # noqa: E402

pytestmark = pytest.mark.docker

ATTEMPTS = {
    "create": "echo x > {d}/new.txt",
    "append": "echo x >> {d}/hello.txt",
    "truncate": ": > {d}/hello.txt",
    "unlink": "rm {d}/hello.txt",
    "rename": "mv {d}/hello.txt {d}/renamed.txt",
    "mkdir": "mkdir {d}/newdir",
    "nested-create": "echo x > {d}/nested/new.txt",
    "nested-unlink": "rm {d}/nested/deep.txt",
    "nested-rename": "mv {d}/nested {d}/moved",
    "rmdir": "rm -rf {d}/nested",
    "chmod": "chmod 777 {d}/hello.txt",
    "touch": "touch {d}/hello.txt",
    "symlink": "ln -s /etc/passwd {d}/nested/link",
}


def manifest(root: Path) -> dict[str, str]:
    """sha256 (or link target), mode and mtime of every entry under root."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            p = Path(dirpath, name)
            st = p.lstat()
            what = os.readlink(p) if p.is_symlink() else (
                hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir")
            out[str(p.relative_to(root))] = f"{what} {st.st_mode:o} {st.st_mtime_ns}"
    return out


def attempt_all(kit: Kit, env: dict[str, str], cwd: Path, d: str, user: bool) -> dict[str, int]:
    script = "; ".join(f'( {cmd.format(d=d)} ) 2>/dev/null; echo "{name} $?"'
                       for name, cmd in ATTEMPTS.items())
    p = kit.run([kit.shim("rtprobe-1"), "sh", "-c", script], env=env, cwd=cwd, user=user)
    assert p.returncode == 0, p.stderr
    got = dict(line.rsplit(" ", 1) for line in p.stdout.decode().splitlines())
    return {k: int(v) for k, v in got.items()}


def test_declared_read_only_mount_stays_untouched(kit: Kit, mode: str, work: Path) -> None:
    before = manifest(kit.data)
    codes = attempt_all(kit, kit.env(mode), work, "/data", user=False)
    assert set(codes) == set(ATTEMPTS)
    assert [k for k, v in codes.items() if v == 0] == []  # even root in the container fails
    assert manifest(kit.data) == before
    read = kit.run([kit.shim("rtprobe-1"), "cat", "/data/hello.txt", "/data/nested/deep.txt"],
               env=kit.env(mode), cwd=work)
    assert read.stdout == b"hello from data\ndeep\n"


def test_read_only_path_argument_stays_untouched_for_another_user(kit: Kit, mode: str, work: Path,
                                                                  user_home: Path) -> None:
    tree = kit.scratch("ro-arg")
    (tree / "nested").mkdir()
    (tree / "hello.txt").write_text("hi\n")
    (tree / "nested" / "deep.txt").write_text("deep\n")
    # the user owns it: only the mount stops the writes (rootless: the Podman user is the user)
    kit.own(tree, tree / "nested", tree / "hello.txt", tree / "nested" / "deep.txt", work)
    before = manifest(tree)
    env = user_env(kit, mode, user_home, RT_DATA=str(tree))  # path_env RT_DATA is "ro"
    codes = attempt_all(kit, env, work, str(tree), user=True)
    assert [k for k, v in codes.items() if v == 0] == []
    assert manifest(tree) == before
