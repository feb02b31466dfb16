"""Running a command on a pseudo-terminal, as a person at a terminal would.

Tests that need a real terminal (TTY allocation, Ctrl-C, y/N prompts) share this one loop:
read what the command writes, type a reply when a prompt appears, stop when it is done.
"""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time
from pathlib import Path


def run_on_pty(
    argv: list[str], *, env: dict[str, str], cwd: Path | None = None, stdin_tty: bool = True,
    stdout_tty: bool = True, replies: dict[bytes, bytes] | None = None, timeout: float = 300,
) -> tuple[int, bytes, bytes]:
    """Run argv with stderr (and stdin/stdout, as asked) on a terminal.

    `replies` maps a prompt to what is typed once when the prompt has appeared. Returns the exit
    code, everything written to the terminal, and stdout when it was a pipe.
    """
    pending = dict(replies or {})
    master, slave = pty.openpty()
    p = subprocess.Popen(
        argv, env=env, cwd=cwd, stderr=slave, start_new_session=True,
        stdin=slave if stdin_tty else subprocess.DEVNULL,
        stdout=slave if stdout_tty else subprocess.PIPE,
    )
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: every writer has closed the terminal
                    break
                if not chunk:
                    break
                seen += chunk
                for prompt in [k for k in pending if k in seen]:
                    os.write(master, pending.pop(prompt))
            elif p.poll() is not None:
                break
        out = p.stdout.read() if p.stdout is not None else b""
        code = p.wait(timeout=60)
    finally:
        p.kill()
        os.close(master)
    return code, seen, out
