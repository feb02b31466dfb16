"""Promise 6: what the tool creates in a mount belongs to the invoking uid:gid.

The shim runs as a non-root user made with setpriv (uid 54321, no passwd entry on the host,
in the docker group so it may use the daemon), with a HOME that is not the working directory.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.register_assert_rewrite("runtime_helpers")
from runtime_helpers import TEST_GID, TEST_UID, Kit, run, user_env  # noqa: E402

pytestmark = pytest.mark.docker


def test_files_created_belong_to_the_invoking_user(kit: Kit, mode: str, work: Path,
                                                   user_home: Path) -> None:
    os.chown(work, TEST_UID, TEST_GID)
    rw = kit.scratch("owned-rw")
    rw.chmod(0o777)
    env = user_env(kit, mode, user_home, RT_OUT=str(rw))
    script = ("touch made.txt && mkdir -p made/dir && echo x > made/dir/f && "
              'echo y > "$RT_OUT/pe.txt" && mkdir "$RT_OUT/pe-dir" && ln -s made.txt link && id -u && id -g')
    p = run([kit.shim("rtprobe-1"), "sh", "-c", script], env=env, cwd=work, user=True)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == [str(TEST_UID).encode(), str(TEST_GID).encode()]
    for f in ("made.txt", "made", "made/dir", "made/dir/f", "link"):
        st = os.lstat(work / f)
        assert (st.st_uid, st.st_gid) == (TEST_UID, TEST_GID), f
    for f in ("pe.txt", "pe-dir"):
        st = os.stat(rw / f)
        assert (st.st_uid, st.st_gid) == (TEST_UID, TEST_GID), f


def test_tools_that_look_up_their_user_still_work(kit: Kit, mode: str, work: Path,
                                                  user_home: Path) -> None:
    os.chown(work, TEST_UID, TEST_GID)
    env = user_env(kit, mode, user_home)
    p = run([kit.shim("rtprobe-1"), "sh", "-c", "whoami; id -un; id -gn; getent passwd $(id -u)"],
            env=env, cwd=work, user=True)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.decode().splitlines()
    assert lines[0] == lines[1] == "rtuser"
    assert lines[2]  # the primary group has a name too
    assert lines[3].split(":")[2:4] == [str(TEST_UID), str(TEST_GID)]
    # and the same as root, with the entry written at install time
    root = run([kit.shim("rtprobe-1"), "sh", "-c", "whoami; id -u"], env=kit.env(mode), cwd=work)
    assert root.stdout == b"root\n0\n"
