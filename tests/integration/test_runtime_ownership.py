"""Promise 6: what the tool creates in a mount belongs to the invoking uid:gid.

The shim runs as a non-root user made with setpriv (uid 54321, no passwd entry on the host,
in the docker group so it may use the daemon), with a HOME that is not the working directory.
Under rootless Podman the invoker is the Podman user itself (a real passwd entry, its own
HOME): another uid has its own image store and would not see the kit's images.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.register_assert_rewrite("runtime_helpers")
from runtime_helpers import Kit, user_env  # noqa: E402

pytestmark = pytest.mark.docker


def test_files_created_belong_to_the_invoking_user(kit: Kit, mode: str, work: Path,
                                                   user_home: Path) -> None:
    kit.own(work)
    uid, gid = kit.invoker
    rw = kit.scratch("owned-rw")
    rw.chmod(0o777)
    env = user_env(kit, mode, user_home, RT_OUT=str(rw))
    script = ("touch made.txt && mkdir -p made/dir && echo x > made/dir/f && "
              'echo y > "$RT_OUT/pe.txt" && mkdir "$RT_OUT/pe-dir" && ln -s made.txt link && id -u && id -g')
    p = kit.run([kit.shim("rtprobe-1"), "sh", "-c", script], env=env, cwd=work, user=True)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == [str(uid).encode(), str(gid).encode()]
    for f in ("made.txt", "made", "made/dir", "made/dir/f", "link"):
        st = os.lstat(work / f)
        assert (st.st_uid, st.st_gid) == (uid, gid), f
    for f in ("pe.txt", "pe-dir"):
        st = os.stat(rw / f)
        assert (st.st_uid, st.st_gid) == (uid, gid), f


def test_tools_that_look_up_their_user_still_work(kit: Kit, mode: str, work: Path,
                                                  user_home: Path) -> None:
    kit.own(work)
    uid, gid = kit.invoker
    env = user_env(kit, mode, user_home)
    p = kit.run([kit.shim("rtprobe-1"), "sh", "-c", "whoami; id -un; id -gn; getent passwd $(id -u)"],
            env=env, cwd=work, user=True)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.decode().splitlines()
    assert lines[0] == lines[1] == kit.invoker_name
    assert lines[2]  # the primary group has a name too
    assert lines[3].split(":")[2:4] == [str(uid), str(gid)]
    if kit.podman:  # rootless: every shim runs as the Podman user; root is rootful Podman's
        return
    # and the same as root, with the entry written at install time
    root = kit.run([kit.shim("rtprobe-1"), "sh", "-c", "whoami; id -u"], env=kit.env(mode), cwd=work)
    assert root.stdout == b"root\n0\n"
