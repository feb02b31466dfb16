"""What a warm start asks the engine: to start the container, and no more.

The image's platform (is the agent binary for it?) is read at install with the image's other
facts and written into the shim, so a start does not run `image inspect`; Podman writes the
container's host pid itself (`run --pidfile`), so a Podman start does not run `inspect` either.
Each of those was a whole client process on the first warm call (~30 and ~50 ms for rootless
Podman), which issue 22 holds to 1.15x a cold call.

The shim is run as a copy whose engine client is a wrapper that logs each command line
(strace cannot watch a start: Podman's conmon, a child that stays, would keep it waiting).
"""

from __future__ import annotations

import os
import shlex
import shutil

import pytest

pytest.register_assert_rewrite("runtime_helpers")
from runtime_helpers import Kit  # noqa: E402
from warm_helpers import remove_serving  # noqa: E402

pytestmark = pytest.mark.docker


def test_a_warm_start_runs_the_engine_to_start_it_and_nothing_else(kit: Kit, mode: str) -> None:
    folder = kit.scratch("warm-start")  # a folder of its own: no container serves it yet
    shim = kit.bin / "rtecho-1"
    text = shim.read_text()
    [line] = [ln for ln in text.splitlines() if ln.startswith("SM_DOCKER=")]
    real = shlex.split(line.split("=", 1)[1])[0]
    log, wrapper, copy = folder / "engine.log", folder / "engine", folder / "rtecho-1"
    wrapper.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >>{shlex.quote(str(log))}\n'
                       f'exec {shlex.quote(real)} "$@"\n')
    # (SM_SELF stays the copy: a refresh or a route's miss runs the script again, this one)
    copy.write_text(text.replace(line, f"SM_DOCKER={shlex.quote(str(wrapper))}"))
    for f in (wrapper, copy):
        f.chmod(0o755)
        if kit.user is not None:
            os.chown(f, kit.user.uid, kit.user.gid)
    try:
        # an earlier call's route (other tests') is not this folder's: straight to the runtime
        p = kit.run([str(copy), "started"], env=kit.env(mode, SANDMAN_ROUTE_SKIP="1"), cwd=folder)
        assert (p.returncode, p.stdout, p.stderr) == (0, b"started\0", b""), p.stderr
        calls = log.read_text().splitlines()
        starts = [c for c in calls if c.startswith("run -d ")]
        assert len(starts) == 1, calls  # it started one: not a container found, not two
        assert not [c for c in calls if c.startswith("image inspect")], calls  # the shim knew
        if kit.podman:
            assert " --pidfile " in starts[0]
            assert not [c for c in calls if c.startswith("inspect")], calls  # the pidfile said
    finally:
        remove_serving(kit.home, [folder])
        shutil.rmtree(folder, ignore_errors=True)
