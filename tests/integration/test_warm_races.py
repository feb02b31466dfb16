"""Warm calls racing the things that stop warm containers (issue 9, item 2).

A warm call's exit status is trusted only when its tool is known to have started; a call that
races `sandman warm stop`, the idle reaper or a deleted state folder runs again elsewhere (a new
warm container, or cold), silently. These tests race that on the real daemon and check every
single call's stdout, stderr and exit status.

The race (sandman/warm.py `retire`, shims/warm.bash `sm_warm_exec`): a stopper moves the
container's folder aside to `.retired/<container name>`, waits for the calls registered in it,
then removes the container; a call registers (creates `calls/<token>` in the folder), then checks
that the folder still holds the container it found. The window is the move landing on a call in
flight: registered but not checked yet (the call must see the move and go elsewhere), or checked
(the stopper must wait for it before it removes the container). `Graves` watches for that from
outside, so the loops run until the window was hit a set number of times, not for a set number
of calls.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers import SeedPool, run_sandman, warm_dir

from sandman.names import LABEL_HOME
from sandman.warm import RETIRED

pytest.register_assert_rewrite("runtime_helpers", "warm_helpers")
from runtime_helpers import Kit, wait_for  # noqa: E402
from warm_helpers import WarmHome, fresh_dir, warm_home  # noqa: E402

pytestmark = pytest.mark.docker

IDLE = "1"  # seconds: the reaper stops a warm container idle this long (it looks every 2 s)


@pytest.fixture(scope="module", params=["exec", "agent"])
def rh(kit: Kit, tmp_path_factory: pytest.TempPathFactory, seed_pool: SeedPool,
       request: pytest.FixtureRequest) -> Iterator[WarmHome]:
    """One warm home per mode for the module: each test calls from folders of its own, so its
    containers are its own; what they all started is removed with the home."""
    root = tmp_path_factory.mktemp(f"races-{request.param}")
    yield from warm_home(kit, root, agent=request.param == "agent", seed=seed_pool)


def call(w: WarmHome, i: int, cwd: Path, slow: bool = False, log: Path | None = None) -> str | None:
    """One warm call (slow: its tool runs 0.2 s first); None when it is right, else what was
    wrong with it. log: where the agent's client notes a call it hands back (it found no agent
    to take it: one that a stop moved aside, say)."""
    argv = ("sh", "-c", 'sleep 0.2; exec expr "$0" + 1', str(i)) if slow else ("expr", str(i), "+", "1")
    extra = {"SANDMAN_AGENT_LOG": str(log)} if log else {}
    r = w.run(*argv, cwd=cwd, SANDMAN_WARM_IDLE_SECONDS=IDLE, **extra)
    want = f"{i + 1}\n".encode()
    if (r.returncode, r.stdout, r.stderr) == (0, want, b""):
        return None
    return f"call {i} in {cwd.name}: exit {r.returncode}, stdout {r.stdout[:200]!r}, stderr {r.stderr[:300]!r}"


STARTING = "registered, tool not started"  # the call sees the move, or the stopper waits
RUNNING = "tool running"  # the stopper must wait for it
ENDED = "ended after the move"  # either, seen late


@dataclass
class Grave:
    """A container folder a stopper moved aside, as seen from outside."""
    folder: str  # the folder's name in the warm folder: which key (which cwd) it served
    moved_ns: int  # its ctime: the move (nothing changes the folder itself after it)
    calls: dict[str, str | None] = field(default_factory=dict)  # call file -> its kind, if one

    @property
    def kinds(self) -> set[str]:
        return {k for k in self.calls.values() if k}


def call_kind(path: str, moved_ns: int) -> str | None:
    """What the call of a call file in a moved folder was doing, when first seen there.

    A call registers by path in the live folder, so a call file in a moved folder was made
    before the move. Not finished yet, or finished (`done`) after the move: the move landed on
    that call. A call file only moves forward ("", its tool's pid, `done`), so its first state
    seen after the move was its state at the move, or a later one. Files finished before the
    move are the normal leftovers of earlier calls: None.
    """
    # what the shims write there is short; anything else must not block the watch
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    try:
        content = os.read(fd, 64).strip()
        mtime = os.fstat(fd).st_mtime_ns
    finally:
        os.close(fd)
    if not content:
        return STARTING
    if content.isdigit() or content.startswith(b"agent "):  # `docker exec`'s, the agent's
        return RUNNING
    if content.startswith(b"done") and mtime > moved_ns:  # strict: the clock is coarse
        return ENDED
    return None


class Graves(threading.Thread):
    """Polls a warm home's `.retired/` folder until stopped: every folder a stopper moved
    aside there, and the calls the move landed on (`call_kind`). A poll every 2 ms sees
    each moved folder (it stays there while the stopper waits for its calls and removes the
    container: 0.07-0.4 s in our runs); it can miss a short call that ended and was cleaned up
    in between, which only makes the count lower than the truth."""

    def __init__(self, home: Path) -> None:
        super().__init__(daemon=True)
        self.base = warm_dir(home) / RETIRED
        self.seen: dict[str, Grave] = {}
        self.moved: defaultdict[str, threading.Event] = defaultdict(threading.Event)
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.poll()
            time.sleep(0.002)

    def poll(self) -> None:
        try:
            names = os.listdir(self.base)
        except OSError:
            return
        for name in names:
            g = self.seen.get(name)
            if g is None:
                try:
                    moved = os.stat(self.base / name).st_ctime_ns
                except OSError:
                    continue
                g = self.seen[name] = Grave(name.rpartition("-")[0], moved)
                self.moved[g.folder].set()
            try:
                files = os.listdir(self.base / name / "calls")
            except OSError:
                continue
            for f in files:
                if f not in g.calls:
                    try:
                        g.calls[f] = call_kind(str(self.base / name / "calls" / f), g.moved_ns)
                    except OSError:
                        continue

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)

    def of(self, folder: str) -> list[Grave]:
        return [g for g in list(self.seen.values()) if g.folder == folder]

    def hits(self, folder: str, kind: str | None = None) -> int:
        """Moves of this folder that landed on a call (of that kind)."""
        return sum(1 for g in self.of(folder) if (kind in g.kinds if kind else g.kinds))

    def summary(self, folder: str) -> str:
        kinds = Counter(k for g in self.of(folder) for k in g.kinds)
        return (f"{len(self.of(folder))} moved aside, {self.hits(folder)} on a call, "
                f"by kind {dict(kinds)}")


def being_stopped(w: WarmHome, folder: str) -> bool:
    """Is a container of this folder moved aside, its stopper not done with it yet? A call
    made now finds its folder gone and starts another container meanwhile."""
    return any((warm_dir(w.home) / RETIRED).glob(f"{folder}-*"))


def watch_starts(w: WarmHome) -> subprocess.Popen:
    """`docker events` for the starts of this home's warm containers, until terminated.

    (Streamed, not asked for afterwards with --since: the daemon keeps only its last 256 events,
    and other tests make plenty.)
    """
    return subprocess.Popen(
        ["docker", "events", "--filter", "type=container", "--filter", "event=start",
         "--filter", f"label={LABEL_HOME}={warm_dir(w.home)}",
         "--format", "{{.Actor.Attributes.name}}"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def started(events: subprocess.Popen, folder: str) -> int:
    events.terminate()
    return sum(1 for n in events.communicate(timeout=30)[0].split() if n.startswith(folder + "-"))


def leftovers(w: WarmHome) -> list[str]:
    """Processes in the home's warm containers besides their init and main loop (or agent)."""
    out = []
    for c in w.containers():
        top = subprocess.run(["docker", "top", c["Id"], "-eo", "pid,args"], capture_output=True,
                             text=True).stdout.splitlines()[1:]
        out += [ln for ln in top if "docker-init" not in ln and "/run/sandman-warm/signals" not in ln]
    return out


# When the loops end. A stop lands on calls in two states (call_kind): a tool running, which
# the stopper must wait for before it removes the container; or a call registered whose tool
# has not started, which either has not checked the folder yet (a few builtins wide: it sees
# the move and goes elsewhere) or is on its way into the container (the stopper waits for it;
# through the agent, a client that has not connected yet finds no socket and hands the call
# back). EACH landings in both states: one is one timing of a stop against a call's steps, a
# second is another. The 2,000 calls this test made before (7 min through `docker exec` on a
# loaded machine, 76 s through the agent) counted containers stopped while the loops ran, not
# stops that met a call. The sparse loop's calls must be met by a stop (in a moved folder, or
# made while one was moved aside) at least once, or it proved nothing: they come every ~2 s, so
# more would set the pace of the whole test (without its pauses cut short by a stop, a run
# through the agent made 32 sparse calls and none was met). The cap, 4 min or twice those
# 2,000 calls, fails the test.
EACH = 2
SPARSE_HITS = 1
CAP_SECONDS = 240
CAP_CALLS = 4000


def test_warm_calls_racing_stop_and_the_idle_reaper_are_always_right(rh: WarmHome,
                                                                      tmp_path: Path) -> None:
    """Four loops call back to back from one folder against a loop of `sandman warm stop`;
    a fifth calls from another folder with pauses of 0.8-2.5 s (1 s idle limit), so its
    container is also stopped by the idle reaper, and by both at once, while calls race them;
    a stop of its container cuts its pause short.

    Three busy loops run `expr` (a call is mostly starting: a stop lands between a registration
    and its tool's start), a fourth a tool that lasts 0.2 s (a stop lands on a running tool).
    The loops end when stops have landed EACH times on a starting call and on a running one,
    and SPARSE_HITS times on the sparse loop's calls, or at the cap, which fails the test."""
    busy, sparse = fresh_dir(tmp_path, "busy"), fresh_dir(tmp_path, "sparse")
    failures = [bad for i, d in enumerate((busy, sparse)) if (bad := call(rh, i, d))]
    folder = {"busy": rh.folder(busy).name, "sparse": rh.folder(sparse).name}
    lock = threading.Lock()
    made = Counter({"busy": 1, "sparse": 1})
    sparse_during = [0]
    stops: list[int] = []
    halt = threading.Event()
    numbers = iter(range(2, 10**9))
    fallbacks = tmp_path / "fallbacks.log"

    def calls(name: str, cwd: Path, slow: bool = False, pause: random.Random | None = None) -> None:
        while not halt.is_set():
            with lock:
                i = next(numbers)
            during = pause is not None and being_stopped(rh, folder[name])
            bad = call(rh, i, cwd, slow, log=fallbacks)
            with lock:
                made[name] += 1
                sparse_during[0] += during
                if bad:
                    failures.append(bad)
            if pause:  # until the next call: a random pause, cut short by a stop of its
                # container, so that the next call comes in while that is being removed
                moved = graves.moved[folder[name]]
                moved.clear()
                moved.wait(pause.uniform(0.8, 2.5))

    def stopper() -> None:
        while not halt.is_set():
            p = run_sandman("warm", "stop", env=rh.env, cwd=rh.work, timeout=120)
            if p.returncode != 0:
                with lock:
                    failures.append(f"warm stop: exit {p.returncode}: {p.stderr[-500:]}")
            stops.append(p.stderr.count("stopped "))

    def sparse_hits() -> int:
        return graves.hits(folder["sparse"]) + sparse_during[0]

    def enough() -> bool:
        return (graves.hits(folder["busy"], STARTING) >= EACH
                and graves.hits(folder["busy"], RUNNING) >= EACH and sparse_hits() >= SPARSE_HITS)

    graves = Graves(rh.home)
    graves.start()
    events = watch_starts(rh)
    threads = [threading.Thread(target=calls, args=("busy", busy, slow))
               for slow in (False, False, False, True)]
    threads += [threading.Thread(target=calls, args=("sparse", sparse, False, random.Random(9))),
                threading.Thread(target=stopper)]
    t0 = time.monotonic()
    try:
        for t in threads:
            t.start()
        while not enough() and time.monotonic() - t0 < CAP_SECONDS and sum(made.values()) < CAP_CALLS:
            time.sleep(0.05)
    finally:
        halt.set()
        graves.moved[folder["sparse"]].set()  # the sparse loop's pause ends now
        for t in threads:
            if t.ident is not None:
                t.join()
        elapsed = time.monotonic() - t0
        graves.stop()
        starts = started(events, folder["busy"])
    print(f"\n{sum(made.values())} warm calls ({made['sparse']} sparse) in {elapsed:.0f} s; "
          f"{len(stops)} `warm stop` runs stopped {sum(stops)} containers; "
          f"busy: {starts} started, {graves.summary(folder['busy'])}; "
          f"sparse: {graves.summary(folder['sparse'])}, {sparse_during[0]} calls while stopped; "
          f"handed back by the agent's client: "
          f"{fallbacks.read_text().count(chr(10)) if fallbacks.exists() else 0}")
    assert not failures, f"{len(failures)} wrong calls, first ones:\n" + "\n".join(failures[:10])
    assert enough(), (f"in {elapsed:.0f} s and {sum(made.values())} calls the stops did not land "
                      f"on calls often enough: busy {graves.summary(folder['busy'])}, sparse "
                      f"{sparse_hits()}")
    assert wait_for(lambda: not leftovers(rh), 10), leftovers(rh)


# A call that comes in just as the reaper decides (between its look at the calls and its move)
# is a window of a few ms every 2 s: calls at random pauses around the idle limit, what this
# test made before (30 of them, ~65 s), met it in none of the ~100 we watched (Graves). What
# they met, about one in eight, was a call made while the reaper was stopping its container;
# this test makes that happen on purpose, as soon as the reaper has moved the folder aside. Twice: the second time the reaper stops a
# container that was itself started while it removed the first.
REAPER_HITS = 2
REAPER_CYCLES = 6  # a cycle misses when the stop is over before the call starts


def test_warm_calls_racing_the_idle_reaper_alone_are_always_right(rh: WarmHome,
                                                                  tmp_path: Path) -> None:
    """The container idles past its 1 s limit until the reaper (every 2 s) stops it, and a
    call comes in at once, while the old container is being removed."""
    own = fresh_dir(tmp_path, "own")
    failures = []
    if bad := call(rh, 0, own):
        failures.append(bad)
    name = rh.folder(own).name
    graves = Graves(rh.home)
    moved = graves.moved[name]
    graves.start()
    events = watch_starts(rh)
    hits, cycles, t0 = 0, 0, time.monotonic()
    try:
        while hits < REAPER_HITS and cycles < REAPER_CYCLES:
            cycles += 1
            moved.clear()
            assert moved.wait(20), "the reaper must stop a container idle past its limit"
            during = being_stopped(rh, name)
            if bad := call(rh, cycles, own):
                failures.append(bad)
            hits += during
    finally:
        graves.stop()
        starts = started(events, name)
    print(f"\n{cycles + 1} calls in {time.monotonic() - t0:.0f} s, {starts} warm containers "
          f"started, {hits} calls while one was being stopped; {graves.summary(name)}")
    assert not failures, "\n".join(failures[:10])
    assert hits == REAPER_HITS, (
        f"in {cycles} stops by the reaper, a call came in while it was at it only {hits} times")


def test_deleting_the_warm_folders_under_a_running_container_recovers_by_itself(
        rh: WarmHome, tmp_path: Path) -> None:
    own = fresh_dir(tmp_path, "own")
    first = rh.run("expr", "1", "+", "1", cwd=own)
    assert (first.returncode, first.stdout, first.stderr) == (0, b"2\n", b"")
    [old] = rh.containers(cwd=own)
    shutil.rmtree(rh.folder(own))  # what `rm -rf state/warm/sandman-warm-*` does to it
    for i in range(5):
        r = rh.run("expr", str(i), "+", "1", cwd=own)
        assert (r.returncode, r.stdout, r.stderr) == (0, f"{i + 1}\n".encode(), b""), r
    assert {c["Id"] for c in rh.containers(cwd=own)} - {old["Id"]}, "a new container serves the calls"
    # The reaper (it looks every 2 s) removes the orphan: its folder is gone for good.
    assert wait_for(lambda: old["Id"] not in {c["Id"] for c in rh.containers(all_states=True, cwd=own)},
                    20, interval=0.5), "the orphaned warm container must be removed"
    assert len(rh.containers(cwd=own)) == 1
    again = rh.run("expr", "41", "+", "1", cwd=own)
    assert (again.returncode, again.stdout, again.stderr) == (0, b"42\n", b"")


def test_deleting_the_warm_folders_while_a_call_runs_recovers(rh: WarmHome, tmp_path: Path) -> None:
    """The call in flight ends (killed with its orphaned container, or finished); later calls
    are right."""
    own = fresh_dir(tmp_path, "own")
    assert rh.run("true", cwd=own).returncode == 0
    folder = rh.folder(own)
    slow = subprocess.Popen([rh.shim, "sh", "-c", "sleep 2; echo slow"], cwd=own,
                            env=dict(rh.env, SANDMAN_WARM="1"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    time.sleep(0.5)
    shutil.rmtree(folder)
    r = rh.run("expr", "6", "*", "7", cwd=own)
    assert (r.returncode, r.stdout, r.stderr) == (0, b"42\n", b"")
    slow.communicate(timeout=60)
    for i in range(3):
        r = rh.run("expr", str(i), "+", "1", cwd=own)
        assert (r.returncode, r.stdout, r.stderr) == (0, f"{i + 1}\n".encode(), b""), r
