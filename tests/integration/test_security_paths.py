"""Issue 23 item 1: what a path argument reaches when its folder resolves into /proc or /dev.

Replayed against the real daemon as a non-root user in the docker group: with
`~/proj/db -> /proc/self`, `cd ~/proj/sub && rtprobe-1 ... ../db/app.db` mounted
`/proc/<shim pid>`, whose `root` is the host's `/` (the home read, `.bashrc` appended, with
`path_args = "ro"`); `../db/status` did the same; a link to /dev mounted the host's /dev.
Every refusal is now made on the resolved path in every branch (docs/runtime.md, Refusals).
Issue 19 item 2 (swap between resolve and mount) and issue 23 item 3 (sockets in a file's
folder) are open; their replays belong here when they are fixed.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.register_assert_rewrite("runtime_helpers")
from runtime_helpers import (  # noqa: E402
    Kit,
    one_line_error,
    user_env,
)

from sandman.errors import MountError  # noqa: E402

pytestmark = pytest.mark.docker


def _tree_for(kit: Kit, root: Path) -> None:
    """Give root and everything in it to the user the kit's `user=True` calls run as."""
    uid, gid = kit.invoker
    for dirpath, dirnames, filenames in os.walk(root):
        for n in [".", *dirnames, *filenames]:
            os.chown(Path(dirpath, n), uid, gid, follow_symlinks=False)


@pytest.fixture
def victim(kit: Kit) -> Iterator[Path]:
    """A home of the invoking user with a secret and a .bashrc, and a project folder in it."""
    home = kit.scratch("victim")
    (home / ".secret_token").write_text("TOKEN-sandman-victim\n")
    (home / ".bashrc").write_text("# bashrc\n")
    (home / "proj" / "sub").mkdir(parents=True)
    _tree_for(kit, home)
    yield home
    shutil.rmtree(home, ignore_errors=True)


def _env(kit: Kit, mode: str, home: Path) -> dict[str, str]:
    if kit.user is not None:  # rootless Podman finds its store from its own HOME: keep it
        return kit.env(mode)
    return user_env(kit, mode, home)


# -- 23.1: an argument's folder that resolves into /proc or /dev ------------------------------
@pytest.mark.parametrize("link,arg", [
    ("/proc/self", "../db/app.db"),  # a file the tool would create: its folder is mounted
    ("/proc/self", "../db/status"),  # an existing file: its folder is mounted
    ("/dev", "../db/null"),  # the host's /dev, read-only
], ids=["proc-new-file", "proc-file", "dev-file"])
def test_argument_folder_resolving_into_proc_or_dev_is_refused(kit: Kit, victim: Path,
                                                               link: str, arg: str) -> None:
    (victim / "proj" / "db").symlink_to(link)
    _tree_for(kit, victim)
    home = str(victim)
    attack = (f'cat ../db/root{home}/.secret_token; echo pwned >>../db/root{home}/.bashrc; '
              'ls ../db | head -3')
    p = kit.run([kit.shim("rtprobe-1"), "sh", "-c", attack, "sh", arg],
                env=_env(kit, "cold", victim), cwd=victim / "proj" / "sub", user=True)
    assert b"TOKEN" not in p.stdout
    assert (victim / ".bashrc").read_text() == "# bashrc\n"
    assert p.returncode == MountError.exit_code, (p.returncode, p.stdout, p.stderr)
    line = one_line_error(p.stderr)
    top = "/" + link.split("/")[1]
    assert arg in line and f"really {top}" in line, line
