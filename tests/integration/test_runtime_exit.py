"""Promise 1: the shim exits with the tool's status, 0-255, and 128+N for death by signal N.

sandman's own failures use the reserved codes; those are in test_runtime_errors.py.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

pytest.register_assert_rewrite("runtime_helpers")
from runtime_helpers import Kit  # noqa: E402

from sandman.errors import EXIT_CODES  # noqa: E402

pytestmark = pytest.mark.docker

# Each way a status travels (run, exec, the agent) carries it as one byte: the codes that a
# wrong path would turn into something else are the edges (0, 1, 2, 255), the engine's and the
# shell's own (125-127: a status of the tool, never the engine's word), the signal range (130,
# 143: a tool *exiting* 128+N is not a signal death) and sandman's reserved codes, which a tool
# may use too: they must pass silently (the lowest, the highest and one between, from the table).
# The longer list this replaces (17 codes) took no path these do not.
RESERVED = sorted(c for c in EXIT_CODES if 2 < c < 125)  # sandman's own block
CODES = (0, 1, 2, 125, 126, 127, 130, 143, 255,
         RESERVED[0], RESERVED[len(RESERVED) // 2], RESERVED[-1])


def test_tool_exit_status_passes_through(kit: Kit, mode: str, work: Path) -> None:
    env = kit.env(mode)
    got = {}
    for code in CODES:
        p = kit.run([kit.shim("rtprobe-1"), "sh", "-c", f"echo out; exit {code}"], env=env, cwd=work)
        got[code] = p.returncode
        assert p.stdout == b"out\n", (code, p.stderr)
        assert p.stderr == b"", p.stderr  # codes in sandman's range come from the tool, silently
    assert got == {c: c for c in CODES}


# SIGKILL cannot be caught, SIGSEGV dumps core (its status carries the core bit), SIGTERM is the
# usual one: the three kinds of death a status can report. Other numbers take the same path.
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSEGV, signal.SIGTERM])
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
