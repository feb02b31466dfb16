"""What the reaper and `sandman warm list` read from a folder the tool can write (issue 19, item 6).

A warm container's `calls/` folder is mounted read-write at /run/sandman-warm/calls: the tool
can put anything there. sandman/warm.py (tend_calls) must read it without following links,
only from regular files, a few bytes at most, and must neither block nor be kept busy by it;
junk is dropped with a log line. Each read runs in a child with a capped address space and a
timeout: a regression fails here instead of eating the machine's memory.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from sandman import warm

MEMORY_CAP = 768 << 20
CHILD = """
import resource, sys
from pathlib import Path
resource.setrlimit(resource.RLIMIT_AS, ({cap}, {cap}))
from sandman import warm
print(*warm.tend_calls(Path(sys.argv[1]))[:1])
"""


def warm_folder(tmp_path: Path) -> Path:
    wd = tmp_path / "sandman-warm-0-tool-1-abc"
    (wd / "calls").mkdir(parents=True)
    os.mkfifo(wd / "signals")
    return wd


def tend_in_a_child(wd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CHILD.format(cap=MEMORY_CAP), str(wd)],
                          capture_output=True, text=True, timeout=30)


def test_a_link_to_dev_zero_is_not_followed(tmp_path: Path) -> None:
    """The replay: `ln -s /dev/zero /run/sandman-warm/calls/999-1` from inside the tool."""
    wd = warm_folder(tmp_path)
    (wd / "calls" / "999-1").symlink_to("/dev/zero")
    p = tend_in_a_child(wd)
    assert (p.returncode, p.stdout) == (0, "0\n"), p.stderr[-500:]
    assert not os.path.lexists(wd / "calls" / "999-1")  # the link itself is dropped


def test_a_fifo_or_a_huge_file_neither_blocks_nor_fills_memory(tmp_path: Path) -> None:
    wd = warm_folder(tmp_path)
    os.mkfifo(wd / "calls" / "999-2")  # opened for reading without a writer: would block
    with open(wd / "calls" / "999-3", "wb") as f:  # 4 GiB, no newline (sparse: no disk used)
        f.truncate(4 << 30)
    p = tend_in_a_child(wd)
    assert (p.returncode, p.stdout) == (0, "0\n"), p.stderr[-500:]
    assert sorted(os.listdir(wd / "calls")) == []


def test_links_to_files_are_never_read_or_changed(tmp_path: Path) -> None:
    wd = warm_folder(tmp_path)
    secret = tmp_path / "secret"
    secret.write_text("done\n")  # looks like a finished call through the link
    victim = tmp_path / "victim"
    victim.write_text("77\n")  # looks like a tool's pid: a dead shim's tool to kill
    (wd / "calls" / "999998-5").symlink_to(secret)
    (wd / "calls" / "999999-5").symlink_to(victim)
    keep = os.open(wd / "signals", os.O_RDWR | os.O_NONBLOCK)
    try:
        assert warm.tend_calls(wd)[0] == 0
        try:
            queued = os.read(keep, 100)
        except BlockingIOError:
            queued = b""
    finally:
        os.close(keep)
    assert queued == b""  # nothing was killed on the word of a link
    assert secret.read_text() == "done\n" and victim.read_text() == "77\n"
    assert os.listdir(wd / "calls") == []


def test_junk_names_and_folders_are_logged_once_and_ignored(tmp_path: Path, caplog) -> None:
    wd = warm_folder(tmp_path)
    (wd / "calls" / "not-a-call").write_text("done\n")
    (wd / "calls" / "\x1b[2J").write_text("1\n")
    (wd / "calls" / "999-4").mkdir()
    with caplog.at_level(logging.WARNING, logger="sandman.warm"):
        assert warm.tend_calls(wd)[0] == 0
        assert warm.tend_calls(wd)[0] == 0
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3, lines  # one line per entry, not one per pass
    assert not any("\x1b" in ln for ln in lines)  # names are escaped
    assert os.listdir(wd / "calls") == ["999-4"]  # a folder is left, but only logged once


def test_a_future_mtime_does_not_keep_a_dead_call_alive(tmp_path: Path) -> None:
    """An empty call file of a dead shim counts as starting for a grace period from its mtime:
    a date in the future must not make that forever (the container would never go idle)."""
    wd = warm_folder(tmp_path)
    f = wd / "calls" / "999999-5"
    f.write_text("")
    future = time.time() + 10 * 365 * 86400
    os.utime(f, (future, future))
    active, newest = warm.tend_calls(wd)
    assert active == 0 and newest <= time.time() + 1
    assert not f.exists()


def test_live_calls_with_the_shims_random_suffix_still_count(tmp_path: Path) -> None:
    wd = warm_folder(tmp_path)
    stat = Path(f"/proc/{os.getpid()}/stat").read_text()
    me = f"{os.getpid()}-{stat.rsplit(')', 1)[-1].split()[19]}"
    (wd / "calls" / f"{me}-1a2b3c4d").write_text("agent 12\n")
    (wd / "calls" / "999999-5-00ff").write_text("done\n")
    assert warm.shim_alive(f"{me}-1a2b3c4d") is True
    assert warm.tend_calls(wd)[0] == 1
    assert os.listdir(wd / "calls") == [f"{me}-1a2b3c4d"]
