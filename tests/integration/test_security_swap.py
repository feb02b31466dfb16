"""Issue 19 item 2: a folder swapped for a symlink between the shim's check and the mount.

The shim resolves and checks a mount source, then hands the engine its path, which the
engine's runtime resolves again when it mounts it. A process that swaps a real folder `A` and a
symlink to the home (renameat2 RENAME_EXCHANGE in a loop) got the home mounted in about a
third of the calls. The shim now pins each source it checked (an fd, sm_real) and the container
compares each mount point with it before the tool runs (the agent's `pin`; warm: the started
container's root, then every call): a swapped mount means exit MOUNT, one line, nothing run.

The race is made deterministic by a stand-in engine client (a copy of the shim whose engine is
a wrapper script): it swaps `A` for a link to a stand-in home right before it execs the real
client's `run`, so the race is lost every time, for each kind of source. One literal replay
of the issue (a swap loop while calls run from inside A) completes it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from runtime_helpers import Kit, ensure_agent, one_line_error

from sandman.errors import MountError

SECRET = "the-secret-of-the-stand-in-home"
BASHRC = "# the stand-in home's .bashrc\n"
# the tool, given a folder: reads the secret at the home's place in it and appends to .bashrc
READ_AND_APPEND = 'cat "$1/secret"; echo pwned >>"$1/.bashrc"'

WRAPPER = """#!/bin/bash
# A stand-in engine client: right before the real client's `run` (a cold call, or a warm
# container's `run -d`), A becomes a link to the stand-in home: the race is lost every time.
if [[ $1 == run && -d $SWAP_A && ! -L $SWAP_A ]]; then
  mv -T -- "$SWAP_A" "$SWAP_A.real" && ln -s -- "$SWAP_HOME" "$SWAP_A"
fi
exec "$SWAP_REAL" "$@"
"""

SWAPPER = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
a, b = os.fsencode(sys.argv[1]), os.fsencode(sys.argv[2])
AT_FDCWD, RENAME_EXCHANGE = -100, 2
print("swapping", flush=True)
while True:
    libc.renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE)
"""


def _stage(kit: Kit, *, agent: bool = True) -> dict[str, Path]:
    """A scratch folder with the stand-in home, A (a real folder), W (another cwd), the wrapper
    (also as `docker`/`podman` in bin/, for `sandman run`) and a copy of rtprobe-1's shim whose
    engine client is the wrapper (and, agent=False, with no agent: the image's sh checks)."""
    root = kit.scratch("swap")
    home, a, w, bin_dir = root / "home", root / "A", root / "W", root / "bin"
    for d in (home, a, w, bin_dir):
        d.mkdir()
    (home / "secret").write_text(SECRET + "\n")
    (home / ".bashrc").write_text(BASHRC)
    wrapper = bin_dir / kit.engine
    wrapper.write_text(WRAPPER)
    wrapper.chmod(0o755)
    lines = []
    for line in (kit.bin / "rtprobe-1").read_text().splitlines():
        name = line.split("=", 1)[0]
        if name == "SM_DOCKER":
            line = f"{name}={wrapper}"
        elif name == "SM_AGENT" and not agent:
            line = "SM_AGENT=/nonexistent/sandman-agent"
        lines.append(line)
    shim = root / "rtprobe-1"
    shim.write_text("\n".join(lines) + "\n")
    shim.chmod(0o755)
    for p in (root, home, a, w, bin_dir, wrapper, shim, home / "secret", home / ".bashrc"):
        kit.own(p, user=False)
    return {"root": root, "home": home, "A": a, "W": w, "bin": bin_dir, "shim": shim}


def _swap_env(kit: Kit, mode: str, s: dict[str, Path], **extra: str) -> dict[str, str]:
    env = kit.env(mode, **extra)
    env.update(SWAP_A=str(s["A"]), SWAP_HOME=str(s["home"]),
               SWAP_REAL=shutil.which(kit.engine) or kit.engine)
    return env


def _home_untouched(s: dict[str, Path], *outputs: bytes) -> None:
    assert (s["home"] / ".bashrc").read_text() == BASHRC
    assert (s["home"] / "secret").read_text() == SECRET + "\n"
    assert sorted(p.name for p in s["home"].iterdir()) == [".bashrc", "secret"]
    for out in outputs:
        assert SECRET.encode() not in out


@pytest.mark.parametrize("source", ["cwd", "argument", "recipe-mount", "run-mount"])
def test_a_folder_swapped_after_the_check_is_never_mounted(kit: Kit, mode: str, source: str) -> None:
    """Each kind of mount source, swapped for a link to the (stand-in) home right before the
    engine mounts it: the call fails with the mount code and one line, the tool never runs.
    Cold, the container's own check refuses it (the agent's `pin`); warm (agent), the check of
    the container just started retires it and the call runs cold, where the same check
    refuses it."""
    _swapped_call(kit, mode, source)


def test_without_the_agent_the_images_sh_checks_the_mount(kit: Kit, mode: str) -> None:
    """No agent binary for the image (not built yet): the image's sh and stat check the cwd's
    mount instead, with the same outcome. Warm containers are not started without the agent's
    platform check, so this is a cold call's path."""
    _swapped_call(kit, mode, "cwd-sh")


def _swapped_call(kit: Kit, mode: str, source: str) -> None:
    ensure_agent(kit.home, kit)
    s = _stage(kit, agent=source != "cwd-sh")
    a = str(s["A"])
    if source == "run-mount":
        # bin/ first: the script `run` writes names the wrapper as its engine client
        env = _swap_env(kit, mode, s, PATH=f"{s['bin']}{os.pathsep}{kit.env(mode)['PATH']}")
        p = kit.sandman("run", "rtprobe@1", "--mount", f"{a}:/m", "--",
                        "sh", "-c", READ_AND_APPEND, "sh", "/m", env=env, cwd=s["W"])
    else:
        env = _swap_env(kit, mode, s)
        cwd, folder = s["W"], a
        if source in ("cwd", "cwd-sh"):
            cwd, folder = s["A"], "."
        elif source == "recipe-mount":
            env["SANDMAN_RTPROBE_DATA"], folder = a, "/data"
        argv = [str(s["shim"]), "sh", "-c", READ_AND_APPEND, "sh", folder]
        p = kit.run(argv, env=env, cwd=cwd)
    assert os.path.islink(a), ("the stand-in engine did not swap A: the test proves nothing", p)
    assert p.returncode == MountError.exit_code, (p.returncode, p.stdout, p.stderr)
    err = p.stderr if isinstance(p.stderr, bytes) else p.stderr.encode()
    line = one_line_error(err)
    assert "was checked" in line, line
    _home_untouched(s, err, p.stdout if isinstance(p.stdout, bytes) else p.stdout.encode())
    shutil.rmtree(s["root"], ignore_errors=True)


def test_the_issues_swap_loop_never_shows_the_home(kit: Kit) -> None:
    """The report, replayed: a process swaps A (a real folder) and B -> the home with
    renameat2(RENAME_EXCHANGE) in a tight loop while 200 warm-agent calls and 20 cold calls run
    from inside A (the caller's cwd is A's folder; its name is A or B by turns). Each call tries
    to read the home's secret and append to its .bashrc through its cwd: none may.

    Before the fix about 1 call in 3 got the home. A smaller loop (a few dozen calls) can pass
    by luck on a slow machine: the window between the check and the mount is some
    milliseconds of a call of 15 ms (agent) or 500 ms (cold); 200 agent calls hit it every run
    here. The per-kind test above is the deterministic proof; this one shows the two checks
    (a warm container's root on each call, the cold container's `pin`) hold under a real race.
    """
    ensure_agent(kit.home, kit)
    s = _stage(kit)
    home, a, b = s["home"], s["A"], s["root"] / "B"
    b.symlink_to(home)
    out = s["root"] / "out"
    out.mkdir()
    driver = s["root"] / "driver.sh"
    driver.write_text(
        'warm() { for i in $(seq "$1"); do SANDMAN_WARM=$2 rtprobe-1 sh -c \'cat secret; '
        'echo pwned >>.bashrc\' >>"$OUT/stdout" 2>>"$OUT/stderr"; echo $? >>"$OUT/codes"; done; }\n'
        'warm 200 1; warm 20 0\n')
    env = kit.env("agent", HOME=str(home), OUT=str(out))
    # the caller is inside A before the loop starts: its cwd is that folder, whatever its name
    caller = kit.popen(["bash", str(driver)], env=env, cwd=a, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)
    swapper = subprocess.Popen([sys.executable, "-c", SWAPPER, str(a), str(b)],
                               stdout=subprocess.PIPE)
    try:
        assert swapper.stdout is not None and swapper.stdout.readline() == b"swapping\n"
        t0 = time.monotonic()
        _, caller_err = caller.communicate(timeout=300)
        took = time.monotonic() - t0
    finally:
        swapper.kill()
        swapper.wait()
        caller.kill()
    codes = [int(c) for c in (out / "codes").read_text().split()]
    assert len(codes) == 220, caller_err
    refused = codes.count(MountError.exit_code)
    print(f"220 calls in {took:.1f} s: {codes.count(0)} ran, {refused} refused")
    assert set(codes) <= {0, MountError.exit_code}, (codes, (out / "stderr").read_text()[-2000:])
    assert codes.count(0) > 0, "no call ran at all: the loop proves nothing"
    _home_untouched(s, (out / "stdout").read_bytes(), (out / "stderr").read_bytes())
    kit.sandman("warm", "stop", "rtprobe@1")
    shutil.rmtree(s["root"], ignore_errors=True)
