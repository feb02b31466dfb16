"""Rootful Podman, the core path: root with SANDMAN_ENGINE=podman and a private SANDMAN_HOME.

The fidelity suite runs every promise against Docker and rootless Podman (test_runtime_*.py);
rootful Podman (root's store in /var/lib/containers, no user namespace, no keep-id) is the third
way a host may run sandman, so the promises a user meets first are checked here: argv, exit
status, bytes, ownership, read-only data, least privilege, dry run, nothing left behind.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from podman_helpers import ensure_bases

pytest.register_assert_rewrite("runtime_helpers")
from helpers import stop_reapers  # noqa: E402
from runtime_helpers import (  # noqa: E402
    ATTEMPTS,
    Kit,
    attempt_all,
    build_kit,
    manifest,
    ready,
    remove_test_containers,
    settle,
    token,
)

from sandman.names import LABEL_PID, LABEL_ROLE, LABEL_TOOL  # noqa: E402

pytestmark = pytest.mark.docker  # needs Docker too: the bases come from Docker's store


@pytest.fixture(scope="module")
def rootful(docker_client) -> Iterator[Kit]:
    ensure_bases(None)
    root = Path(tempfile.mkdtemp(prefix="sandman-rt-rootful-", dir="/tmp"))
    root.chmod(0o755)
    kit = None
    try:
        kit = build_kit(root, "podman", None)
        yield kit
    finally:
        if kit is not None:
            remove_test_containers(kit.home, kit=kit)
        stop_reapers(root / "home")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def work(rootful: Kit) -> Iterator[Path]:
    d = rootful.scratch("work")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def orphaned(kit: Kit) -> list[str]:
    """Shim containers (any state) of the kit's tools in root's Podman whose shim is gone."""
    out = kit.cli("ps", "-a", "--filter", f"label={LABEL_ROLE}=run", "--format",
                  f'{{{{.ID}}}} {{{{index .Labels "{LABEL_TOOL}"}}}} {{{{index .Labels "{LABEL_PID}"}}}}')
    left = []
    for line in out.splitlines():
        _cid, tool, pid = [*line.split(), "", ""][:3]
        if tool in ("rtprobe", "rtecho") and not Path(f"/proc/{pid or 'x'}").exists():
            left.append(line)
    return left


def test_argv_exit_status_and_bytes(rootful: Kit, work: Path) -> None:
    env = rootful.env()
    args = ["", " a b ", "$(id)", "*", "line\nbreak", "-e", "--rm", "é日本🙂", "'\"\\"]
    p = rootful.run([rootful.shim("rtecho-1"), *args], env=env, cwd=work)
    assert (p.returncode, p.stderr) == (0, b"")
    assert p.stdout == b"".join(a.encode() + b"\0" for a in args)
    for code in (0, 1, 42, 125, 126, 127, 255):
        c = rootful.run([rootful.shim("rtprobe-1"), "sh", "-c", f"exit {code}"], env=env, cwd=work)
        assert c.returncode == code, c.stderr
    for sig in (signal.SIGINT, signal.SIGKILL, signal.SIGTERM):
        s = rootful.run([rootful.shim("rtprobe-1"), "sh", "-c", f"kill -{sig.name[3:]} $$"], env=env,
                        cwd=work)
        assert s.returncode == 128 + sig.value, s.stderr
    blob = os.urandom(4 * 1024 * 1024) + bytes(range(256))
    b = rootful.run([rootful.shim("rtprobe-1"), "cat"], env=env, cwd=work, input=blob)
    assert b.returncode == 0
    assert hashlib.sha256(b.stdout).digest() == hashlib.sha256(blob).digest()
    split = rootful.run([rootful.shim("rtprobe-1"), "sh", "-c", "echo out; echo err >&2"], env=env,
                        cwd=work)
    assert (split.stdout, split.stderr) == (b"out\n", b"err\n")
    missing = rootful.run([rootful.shim("rtprobe-1"), "no-such-command-here"], env=env, cwd=work)
    assert missing.returncode == 127 and b"no-such-command-here" in missing.stderr
    (work / "notexec.sh").write_text("#!/bin/sh\necho hi\n")
    noexec = rootful.run([rootful.shim("rtprobe-1"), "./notexec.sh"], env=env, cwd=work)
    assert noexec.returncode == 126, noexec.stderr


def test_files_belong_to_the_invoker_and_read_only_data_stays(rootful: Kit, work: Path) -> None:
    env = rootful.env()
    p = rootful.run([rootful.shim("rtprobe-1"), "sh", "-c",
                     "mkdir -p made/dir && echo x > made/dir/f && id -u && id -g"], env=env, cwd=work)
    assert p.returncode == 0, p.stderr
    assert p.stdout == b"0\n0\n"  # root's own uid: rootful Podman maps nobody
    for f in ("made", "made/dir", "made/dir/f"):
        st = os.lstat(work / f)
        assert (st.st_uid, st.st_gid) == (0, 0), f
    before = manifest(rootful.data)
    codes = attempt_all(rootful, env, work, "/data", user=False)
    assert set(codes) == set(ATTEMPTS)
    assert [k for k, v in codes.items() if v == 0] == []  # root in the container fails too
    assert manifest(rootful.data) == before


def test_least_privilege_and_no_network(rootful: Kit, work: Path) -> None:
    probe = ("grep -E '^(CapEff|NoNewPrivs)' /proc/self/status; "
             "tail -n +3 /proc/net/dev | cut -d: -f1")
    p = rootful.run([rootful.shim("rtprobe-1"), "sh", "-c", probe], env=rootful.env(), cwd=work)
    assert p.stdout.split() == [b"CapEff:", b"0000000000000000", b"NoNewPrivs:", b"1", b"lo"], \
        p.stderr
    net = rootful.run([rootful.shim("rtprobe-net"), "sh", "-c", probe], env=rootful.env(), cwd=work)
    assert net.returncode == 0, net.stderr
    assert net.stdout.split()[:4] == [b"CapEff:", b"0000000000000000", b"NoNewPrivs:", b"1"]
    assert len(net.stdout.split()) > 5  # the recipe asked for a network: an interface besides lo


def test_dry_run_prints_the_podman_command(rootful: Kit, work: Path) -> None:
    env = {**rootful.env(), "SANDMAN_DRY_RUN": "1"}
    p = rootful.run([rootful.shim("rtecho-1"), "a b"], env=env, cwd=work)
    assert p.returncode == 0, p.stderr
    line = p.stdout.decode().splitlines()[0].rstrip()
    assert line.startswith("/usr/bin/podman run "), line
    for part in ("--cap-drop ALL", "--security-opt no-new-privileges", "--network none",
                 "--user 0:0"):
        assert part in line, (part, line)
    assert "--userns" not in line  # keep-id is rootless Podman's
    assert line.endswith("a\\ b"), line


def test_no_container_is_left(rootful: Kit, work: Path) -> None:
    env = rootful.env()
    tok = token()
    for mode in ("cold", "warm"):
        p = rootful.run([rootful.shim("rtprobe-1"), "sh", "-c", f"echo {tok}"],
                        env=rootful.env(mode), cwd=work)
        assert p.stdout == f"{tok}\n".encode(), p.stderr
    killed = rootful.run([rootful.shim("rtprobe-1"), "sh", "-c", "kill -KILL $$"], env=env, cwd=work)
    assert killed.returncode == 137
    assert orphaned(rootful) == []


def test_term_sent_to_the_shim_reaches_the_tool(rootful: Kit, work: Path) -> None:
    """Rootful Podman's client is the shim's own process (no user namespace to re-enter)."""
    trap = f'trap "echo got-TERM; exit 7" TERM; {ready(rootful, "cold")}while :; do sleep 0.1; done'
    p = rootful.popen([rootful.shim("rtprobe-1"), "bash", "-c", trap], env=rootful.env(), cwd=work,
                      stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert p.stdout is not None and p.stdout.readline() == b"ready\n"
        settle(rootful, "cold", p)  # Podman 4.3's proxy starts after the tool (runtime_helpers)
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
    finally:
        p.kill()
    assert (p.returncode, out.replace(b"winch\n", b"")) == (7, b"got-TERM\n"), err
    assert orphaned(rootful) == []
