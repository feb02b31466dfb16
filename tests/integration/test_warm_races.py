"""Warm calls racing the things that stop warm containers (issue 9, item 2).

A warm call's exit status is trusted only when its tool is known to have started; a call that
races `sandman warm stop`, the idle reaper or a deleted state folder runs again elsewhere (a new
warm container, or cold), silently. These tests hammer that on the real daemon and check every
single call's stdout, stderr and exit status.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import warm_dir

pytest.register_assert_rewrite("runtime_helpers")
from runtime_helpers import Kit, wait_for  # noqa: E402
from test_warm import WarmHome, warm_home  # noqa: E402

pytestmark = pytest.mark.docker

CALLS = 2000
SPARSE = 10  # calls of the sparse loop, at least
STOPS = 10  # containers the stop loop must have stopped under the calls, at least
IDLE = "1"  # seconds: the reaper stops a warm container idle this long (it looks every 2 s)


@pytest.fixture(params=["exec", "agent"])
def wh(kit: Kit, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[WarmHome]:
    yield from warm_home(kit, tmp_path, agent=request.param == "agent")


def call(w: WarmHome, i: int, cwd: Path) -> str | None:
    """One warm call; None when it is right, else what was wrong with it."""
    r = w.run("expr", str(i), "+", "1", cwd=cwd, SANDMAN_WARM_IDLE_SECONDS=IDLE)
    want = f"{i + 1}\n".encode()
    if (r.returncode, r.stdout, r.stderr) == (0, want, b""):
        return None
    return f"call {i} in {cwd.name}: exit {r.returncode}, stdout {r.stdout[:200]!r}, stderr {r.stderr[:300]!r}"


def watch_starts(w: WarmHome) -> subprocess.Popen:
    """`docker events` for the starts of this home's warm containers, until terminated.

    (Streamed, not asked for afterwards with --since: the daemon keeps only its last 256 events,
    and other tests make plenty.)
    """
    return subprocess.Popen(
        ["docker", "events", "--filter", "type=container", "--filter", "event=start",
         "--filter", f"label=io.sandman.home={warm_dir(w.home)}",
         "--format", "{{.Actor.Attributes.name}}"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def test_warm_calls_racing_stop_and_the_idle_reaper_are_always_right(wh: WarmHome,
                                                                      tmp_path: Path) -> None:
    """2,000 calls (more until 10 containers were stopped under them) in four loops, against a
    loop of `sandman warm stop` and a 1 s idle limit.

    Three loops call back to back from one folder (their container is stopped under them by
    the stop loop); the fourth calls from another folder with pauses of 0.8-2.5 s, so its container
    is also stopped by the idle reaper while calls race it.
    """
    sparse = tmp_path / "sparse"
    sparse.mkdir()
    counter = iter(range(10**9))
    lock = threading.Lock()
    failures: list[str] = []
    done = threading.Event()  # the busy loops have made their CALLS
    sparse_done = threading.Event()
    stops: list[int] = []
    made = [0, 0]  # calls: [busy loops, sparse loop]

    deadline = time.monotonic() + 900

    def next_i() -> int | None:
        with lock:
            i = next(counter)
        if i < CALLS:
            return i
        # then on until the stop loop has stopped STOPS containers under these calls: through
        # the agent 2,000 calls can end before a few (slow) `warm stop` runs have stopped any
        return i if sum(stops) < STOPS and time.monotonic() < deadline else None

    def busy() -> None:
        while (i := next_i()) is not None:
            bad = call(wh, i, wh.work)
            with lock:
                made[0] += 1
                if bad:
                    failures.append(bad)

    def sparse_loop() -> None:
        # at least SPARSE calls, however fast the busy loops end (the agent makes 2,000 calls
        # in ~30 s): the stop loop goes on until this loop is done
        rnd = random.Random(9)
        j = 10**6
        try:
            while not done.is_set() or made[1] < SPARSE:
                bad = call(wh, j, sparse)
                j += 1
                with lock:
                    made[1] += 1
                    if bad:
                        failures.append(bad)
                time.sleep(rnd.uniform(0.8, 2.5))
        finally:
            sparse_done.set()

    def stopper() -> None:
        while not sparse_done.is_set():
            p = subprocess.run([sys.executable, "-m", "sandman", "warm", "stop"], env=wh.env,
                               cwd=wh.work, capture_output=True, text=True, timeout=120)
            if p.returncode != 0:
                failures.append(f"warm stop: exit {p.returncode}: {p.stderr[-500:]}")
            stops.append(p.stderr.count("stopped "))

    events = watch_starts(wh)
    t0 = time.monotonic()
    busy_threads = [threading.Thread(target=busy) for _ in range(3)]
    others = [threading.Thread(target=sparse_loop), threading.Thread(target=stopper)]
    for t in busy_threads + others:
        t.start()
    for t in busy_threads:
        t.join()
    done.set()
    for t in others:
        t.join()
    elapsed = time.monotonic() - t0
    events.terminate()
    starts = len(events.communicate(timeout=30)[0].split())
    print(f"{sum(made)} warm calls ({made[1]} sparse) in {elapsed:.0f} s; "
          f"{len(stops)} `warm stop` runs stopped {sum(stops)} containers; "
          f"{starts} warm containers started")
    assert not failures, f"{len(failures)} wrong calls, first ones:\n" + "\n".join(failures[:10])
    assert sum(made) >= CALLS
    assert sum(stops) >= STOPS, "the stop loop must really have stopped containers under the calls"
    assert made[1] >= SPARSE


def test_warm_calls_racing_the_idle_reaper_alone_are_always_right(wh: WarmHome) -> None:
    """Pauses around the 1 s idle limit: the reaper (every 2 s) stops the container between
    calls, and now and then just as a call comes in."""
    rnd = random.Random(3)
    events = watch_starts(wh)
    failures = []
    for i in range(30):
        if bad := call(wh, i, wh.work):
            failures.append(bad)
        time.sleep(rnd.uniform(0.9, 2.6))
    events.terminate()
    starts = len(events.communicate(timeout=30)[0].split())
    print(f"30 calls, {starts} warm containers started")
    assert not failures, "\n".join(failures[:10])
    assert starts >= 3, "the idle reaper must have stopped containers under the calls"


def test_deleting_the_warm_folders_under_a_running_container_recovers_by_itself(
        wh: WarmHome) -> None:
    first = wh.run("expr", "1", "+", "1")
    assert (first.returncode, first.stdout, first.stderr) == (0, b"2\n", b"")
    [old] = wh.containers()
    warm = warm_dir(wh.home)
    for d in warm.glob("sandman-warm-*"):
        shutil.rmtree(d)
    for i in range(5):
        r = wh.run("expr", str(i), "+", "1")
        assert (r.returncode, r.stdout, r.stderr) == (0, f"{i + 1}\n".encode(), b""), r
    assert {c["Id"] for c in wh.containers()} - {old["Id"]}, "a new container serves the calls"
    # The reaper (it looks every 2 s) removes the orphan: its folder is gone for good.
    assert wait_for(lambda: old["Id"] not in {c["Id"] for c in wh.containers(all_states=True)},
                    20, interval=0.5), "the orphaned warm container must be removed"
    assert len(wh.containers()) == 1
    again = wh.run("expr", "41", "+", "1")
    assert (again.returncode, again.stdout, again.stderr) == (0, b"42\n", b"")


def test_deleting_the_warm_folders_while_a_call_runs_recovers(wh: WarmHome) -> None:
    """The call in flight ends (killed with its orphaned container, or finished); later calls
    are right."""
    assert wh.run("true").returncode == 0
    slow = subprocess.Popen([wh.shim, "sh", "-c", "sleep 2; echo slow"], cwd=wh.work,
                            env=dict(wh.env, SANDMAN_WARM="1"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    time.sleep(0.5)
    for d in warm_dir(wh.home).glob("sandman-warm-*"):
        shutil.rmtree(d)
    r = wh.run("expr", "6", "*", "7")
    assert (r.returncode, r.stdout, r.stderr) == (0, b"42\n", b"")
    slow.communicate(timeout=60)
    for i in range(3):
        r = wh.run("expr", str(i), "+", "1")
        assert (r.returncode, r.stdout, r.stderr) == (0, f"{i + 1}\n".encode(), b""), r
