"""Promise 4: arguments arrive intact, byte for byte, and nothing is evaluated by a shell.

Running one container per generated case would take ~0.3 s each, so each Hypothesis example
is a *batch* of argv lists: they go through the real shim and a real container in one argv,
separated by a marker, and the tool (bash's printf, no shell evaluation of its arguments)
prints everything back NUL-separated. The same batch is also checked in dry-run mode, where
the shim prints the docker command shell-quoted.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.register_assert_rewrite("runtime_helpers")
from runtime_helpers import Kit, token  # noqa: E402

pytestmark = pytest.mark.docker

SEP = "\x01sandman-argv-separator\x01"
BATCH = 25
# 40 containers of 25 argv lists each: 1,000 lists per engine and mode, every SPECIAL string many
# times over, in every position, and a new draw each run. What each run adds is the path the
# lists travel (run, exec, the agent, Podman's sh wrapper): a mangling there shows on the first
# few batches; the quoting itself is the shim's, the same for every path (and checked without
# a container in the dry runs below and in tests/unit/test_shims.py).
EXAMPLES = 40
MIN_CASES = 1000
# Rootless Podman: fewer batches (400 lists per mode): its client costs more per call, and the
# shim builds the same argv whichever engine runs it.
PODMAN_EXAMPLES, PODMAN_MIN_CASES = 16, 400

SPECIAL = [
    "", " ", "  lead", "trail ", "a b", "\t", "\n", "line\nbreak", "\r\n", "'", '"', "\\", "\\n",
    "$(id)", "`id`", "${PATH}", "$HOME", "$0", "$@", "$((1+1))", "*", "?", "[a-z]*", "/*", "~",
    "~root", "{a,b}", ";", "&&", "||", "|", ">out", "<in", "2>&1", "&", "!", "!!", "#", "%s", "%",
    "-", "--", "-e", "-n", "--help", "--rm", "-v=/etc:/etc", "--entrypoint=sh", "é", "日本語",
    "🙂", "ü\u0308", "\u202e", "\x7f", "\x1b[31m", "a=b", "IFS=x", "--name=x",
]

arg_text = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00\x01"),
                   max_size=24)
arg = st.one_of(
    st.sampled_from(SPECIAL),
    arg_text,
    st.lists(st.one_of(st.sampled_from(SPECIAL), arg_text), min_size=2, max_size=4).map("".join),
)
argv_lists = st.lists(arg, max_size=8)
batches = st.lists(argv_lists, min_size=BATCH, max_size=BATCH)


def flatten(batch: list[list[str]]) -> list[str]:
    out: list[str] = []
    for argv in batch:
        out += [SEP, *argv]
    return out


def unflatten(raw: bytes) -> list[list[str]]:
    parts = raw.split(b"\0")
    assert parts[-1] == b"", "output must end with a NUL"
    groups: list[list[str]] = []
    for p in parts[:-1]:
        s = p.decode("utf-8")
        if s == SEP:
            groups.append([])
        else:
            groups[-1].append(s)
    return groups


def dry_run_argv(line: bytes) -> list[str]:
    """Split the dry-run line as bash would (it uses $'...' quoting for control bytes)."""
    p = subprocess.run(["bash", "-c", 'eval "set -- $1"; printf "%s\\0" "$@"', "_", line],
                       capture_output=True, check=True)
    return [a.decode() for a in p.stdout.split(b"\0")[:-1]]


def test_generated_argv_round_trips_through_real_container(kit: Kit, mode: str, work: Path) -> None:
    marker = kit.root / f"pwned-{token()}"
    evil = [f"$(touch {marker})", f"`touch {marker}`", f"; touch {marker}", f"'$(touch {marker})'"]
    env = kit.env(mode)
    checked = {"cases": 0, "dry": 0}

    @settings(max_examples=PODMAN_EXAMPLES if kit.podman else EXAMPLES, deadline=None,
              database=None, derandomize=False,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.function_scoped_fixture])
    @given(batch=batches)
    def check(batch: list[list[str]]) -> None:
        batch = [*batch, evil]
        args = flatten(batch)
        p = kit.run([kit.shim("rtecho-1"), *args], env=env, cwd=work)
        assert p.returncode == 0, p.stderr
        assert p.stderr == b""
        assert unflatten(p.stdout) == batch
        checked["cases"] += len(batch)
        if checked["dry"] < 10:  # the shim's own quoting, checked without a container
            d = kit.run([kit.shim("rtecho-1"), *args], env={**env, "SANDMAN_DRY_RUN": "1"}, cwd=work)
            assert d.returncode == 0, d.stderr
            full = dry_run_argv(d.stdout.rstrip(b"\n"))
            assert full[-len(args):] == args
            checked["dry"] += 1

    check()
    assert checked["cases"] >= (PODMAN_MIN_CASES if kit.podman else MIN_CASES), checked
    assert not marker.exists(), "an argument was evaluated by a shell on the host"


def test_path_arguments_with_odd_names_are_mounted_and_passed_verbatim(kit: Kit, mode: str,
                                                                      work: Path) -> None:
    """Absolute path arguments (default path_args = ro) reach the tool as given, and exist."""
    names = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00/\n"),
                    min_size=1, max_size=16).filter(lambda s: s not in (".", ".."))
    env = kit.env(mode)
    base = kit.scratch("pathargs")
    seen = {"n": 0}

    @settings(max_examples=12, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(pairs=st.lists(st.tuples(names, names), min_size=1, max_size=4))
    def check(pairs: list[tuple[str, str]]) -> None:
        paths = []
        for i, (d, f) in enumerate(pairs):
            folder = base / f"{seen['n']}-{i}-{d}"
            folder.mkdir()
            (folder / f).write_text(f"{d}/{f}")
            paths.append(str(folder / f))
        seen["n"] += 1
        script = 'for f; do cat -- "$f"; printf "\\0"; done'
        p = kit.run([kit.shim("rtprobe-1"), "bash", "-c", script, "_", *paths], env=env, cwd=work)
        assert p.returncode == 0, p.stderr
        assert p.stdout.split(b"\0")[:-1] == [f"{d}/{f}".encode() for d, f in pairs]

    check()
    assert seen["n"] >= 10
    shutil.rmtree(base, ignore_errors=True)
