"""Promise 3: bytes are exact; stdout and stderr stay apart; a TTY only on a terminal."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from ptyrun import run_on_pty

pytest.register_assert_rewrite("runtime_helpers")
from runtime_helpers import Kit  # noqa: E402

pytestmark = pytest.mark.docker

TTY_PROBE = ('[ -t 0 ] && echo stdin-tty; [ -t 1 ] && echo stdout-tty; [ -t 2 ] && echo stderr-tty; '
             'printf "a\\nb\\n"')


def test_16_mib_of_random_bytes_round_trip(kit: Kit, mode: str, work: Path) -> None:
    blob = os.urandom(16 * 1024 * 1024)
    p = kit.run([kit.shim("rtprobe-1"), "cat"], env=kit.env(mode), cwd=work, input=blob, timeout=180)
    assert p.returncode == 0, p.stderr
    assert len(p.stdout) == len(blob)
    assert hashlib.sha256(p.stdout).digest() == hashlib.sha256(blob).digest()


def test_every_byte_value_and_no_cr_on_pipes(kit: Kit, mode: str, work: Path) -> None:
    env = kit.env(mode)
    every = bytes(range(256)) * 4
    p = kit.run([kit.shim("rtprobe-1"), "cat"], env=env, cwd=work, input=every)
    assert p.stdout == every
    lines = kit.run([kit.shim("rtprobe-1"), "printf", "one\\ntwo\\n"], env=env, cwd=work)
    assert lines.stdout == b"one\ntwo\n"
    empty = kit.run([kit.shim("rtprobe-1"), "wc", "-c"], env=env, cwd=work, input=b"")
    assert empty.stdout.strip() == b"0"  # stdin EOF reaches the tool


def test_stdout_and_stderr_stay_separate(kit: Kit, mode: str, work: Path) -> None:
    script = 'for i in 1 2 3 4 5; do echo "out $i"; echo "err $i" >&2; done'
    p = kit.run([kit.shim("rtprobe-1"), "sh", "-c", script], env=kit.env(mode), cwd=work)
    assert p.returncode == 0
    assert p.stdout == b"".join(f"out {i}\n".encode() for i in range(1, 6))
    assert p.stderr == b"".join(f"err {i}\n".encode() for i in range(1, 6))
    p2 = kit.run([kit.shim("rtprobe-1"), "sh", "-c", TTY_PROBE], env=kit.env(mode), cwd=work)
    assert p2.stdout == b"a\nb\n"  # no terminal anywhere: no TTY inside


def on_pty(argv: list[str], env: dict[str, str], cwd: Path, stdin_tty: bool) -> tuple[int, bytes]:
    code, out, _ = run_on_pty(argv, env=env, cwd=cwd, stdin_tty=stdin_tty, timeout=60)
    return code, out


def test_tty_only_when_stdin_and_stdout_are_terminals(kit: Kit, mode: str, work: Path) -> None:
    env = {**kit.env(mode), "TERM": "xterm-256color"}
    shim = kit.argv([kit.shim("rtprobe-1"), "sh", "-c", TTY_PROBE + '; echo "TERM=$TERM"'])
    code, out = on_pty(shim, env, work, stdin_tty=True)
    assert code == 0
    assert b"stdin-tty\r\nstdout-tty\r\nstderr-tty\r\n" in out, out
    # the same bytes a native program writes to a terminal (one CR per newline, not two)
    _, native = on_pty(["sh", "-c", 'printf "a\\nb\\n"'], env, work, stdin_tty=True)
    assert native.endswith(b"a\r\nb\r\n") and b"a\r\nb\r\n" in out
    assert b"\r\r\n" not in out
    assert b"TERM=xterm-256color" in out
    # stdout on a terminal but stdin a pipe: no TTY is allocated
    code, out = on_pty(shim, env, work, stdin_tty=False)
    assert code == 0
    # (the agent too: it never hands the tool a terminal of the caller's, it relays it)
    assert b"stdin-tty" not in out and b"stdout-tty" not in out, out


def test_the_tool_gets_its_three_streams_and_no_other_descriptor(kit: Kit, mode: str,
                                                                  work: Path) -> None:
    """As a tool started by the user's shell: 0, 1 and 2, nothing the shim, the engine or the
    agent held open (a descriptor left to the tool is a file or socket it could read; the
    agent closes every one from 3 up: close_range, or those /proc/self/fd lists)."""
    p = kit.run([kit.shim("rtprobe-1"), "sh", "-c", "ls /proc/$$/fd"], env=kit.env(mode),
                cwd=work, input=b"")
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == [b"0", b"1", b"2"], p.stdout
