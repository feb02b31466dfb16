"""Promise 1: the shim exits with the tool's status, 0-255, and 128+N for death by signal N.

sandman's own failures use the reserved codes; those are in test_runtime_errors.py.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

pytest.register_assert_rewrite("runtime_helpers")
from runtime_helpers import Kit  # noqa: E402

pytestmark = pytest.mark.docker

CODES = (0, 1, 2, 3, 42, 99, 110, 118, 124, 125, 126, 127, 128, 129, 200, 254, 255)


def test_tool_exit_status_passes_through(kit: Kit, mode: str, work: Path) -> None:
    env = kit.env(mode)
    got = {}
    for code in CODES:
        p = kit.run([kit.shim("rtprobe-1"), "sh", "-c", f"echo out; exit {code}"], env=env, cwd=work)
        got[code] = p.returncode
        assert p.stdout == b"out\n", (code, p.stderr)
        assert p.stderr == b"", p.stderr  # codes in sandman's range come from the tool, silently
    assert got == {c: c for c in CODES}


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGINT, signal.SIGKILL, signal.SIGSEGV,
                                 signal.SIGTERM, signal.SIGUSR1])
def test_death_by_signal_is_128_plus_n(kit: Kit, mode: str, work: Path, sig: signal.Signals) -> None:
    p = kit.run([kit.shim("rtprobe-1"), "sh", "-c", f"kill -{sig.name[3:]} $$"], env=kit.env(mode),
            cwd=work)
    assert p.returncode == 128 + sig.value, p.stderr


def test_docker_codes_for_commands_that_cannot_run(kit: Kit, mode: str, work: Path) -> None:
    """127: no such command in the image; 126: not executable, as a shell would say (Podman's
    catatonit alone would exit 1: its shims go through the image's sh, shims/shim.bash)."""
    env = kit.env(mode)
    missing = kit.run([kit.shim("rtprobe-1"), "no-such-command-here"], env=env, cwd=work)
    assert missing.returncode == 127
    assert b"no-such-command-here" in missing.stderr
    (work / "notexec.sh").write_text("#!/bin/sh\necho hi\n")
    (work / "notexec.sh").chmod(0o644)
    noexec = kit.run([kit.shim("rtprobe-1"), "./notexec.sh"], env=env, cwd=work)
    assert noexec.returncode == 126
