"""Promise 7: a read-only mount cannot be written, renamed or deleted through the tool."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.register_assert_rewrite("runtime_helpers")
from runtime_helpers import ATTEMPTS, Kit, attempt_all, manifest, user_env  # noqa: E402

pytestmark = pytest.mark.docker


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
