"""Why cold stays the default (issue 22 item 2): the one promise warm mode does not keep.

GUARANTEES 11 says a warm call gives exactly what a cold call gives. Output, status, stderr,
the files in the mounts, the processes it leaves (promise 14): the whole fidelity suite passes
through the agent as it does cold. What does not hold is the container's own filesystem: a
cold call starts from the image every time, a warm call finds what the calls before it (and
the calls running beside it) wrote outside the mounts, in its `/tmp`, which is also `HOME`.
A tool that keeps a history, a cache or a lock file there behaves differently on its second
warm call. This test measures exactly that, so the day a warm call gets a fresh `/tmp` it
fails and the default can change (docs/performance.md, "Whether warm could be the default").
"""

from __future__ import annotations

import shutil

import pytest

pytest.register_assert_rewrite("runtime_helpers")
from runtime_helpers import Kit, ensure_agent, token  # noqa: E402
from warm_helpers import remove_serving  # noqa: E402

pytestmark = pytest.mark.docker


def test_files_outside_the_mounts_outlive_a_warm_call_but_never_a_cold_one(kit: Kit) -> None:
    # the agent's binary first: built in the background by a first warm call, it would retire
    # that call's container (one without the agent) before the next call, and so its /tmp
    ensure_agent(kit.home)
    folder = kit.scratch("warm-default")
    shim = kit.shim("rtprobe-1")
    mark = f"/tmp/left-by-a-call-{token()}"  # in the container: outside every mount
    write = ["sh", "-c", f'echo "$HOME" >{mark}']
    read = ["sh", "-c", f"cat {mark} 2>/dev/null || echo none"]
    try:
        seen = {}
        # cold: the environment of a user who set nothing (no SANDMAN_WARM, no `warm` in
        # config.toml), so also the default
        for mode in ("cold", "agent"):
            env = kit.env(mode)
            assert kit.run([shim, *write], env=env, cwd=folder).returncode == 0
            p = kit.run([shim, *read], env=env, cwd=folder)
            assert p.returncode == 0, p.stderr
            seen[mode] = p.stdout.decode().strip()
        assert seen["cold"] == "none"  # a new container from the image: nothing left
        assert seen["agent"] == "/tmp"  # the kept container's /tmp, HOME, from the call before
    finally:
        remove_serving(kit.home, [folder])
        shutil.rmtree(folder, ignore_errors=True)
