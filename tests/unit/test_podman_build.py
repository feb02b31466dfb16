"""Engine.build on a local Podman: `podman build` as a child process, without an engine.

The child is a fake `podman` (a python script in tmp_path) that records its argv and context,
prints what Buildah prints, and, for the interrupt, starts a "step" in a session of its own the
way Buildah starts a RUN step's container, then fails and cleans up once that step is killed.
The real Podman (and the interrupted build as the rootless user) is tested in
tests/integration/test_runtime_concurrency.py.
"""

from __future__ import annotations

import io
import json
import os
import sys
import tarfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from sandman.engine import Engine, _unpack_context
from sandman.engine_choice import Docker, Podman
from sandman.errors import BuildError, EngineSetupError, NoSpaceError
from sandman.names import LABEL_TOOL

IMAGE_ID = "sha256:" + "ab" * 32

FAKE = """#!{python}
import json, os, subprocess, sys, time
args = sys.argv[1:]
out = os.environ["FAKE_OUT"]
iid = next(a.split("=", 1)[1] for a in args if a.startswith("--iidfile="))
folder = args[-1]
files = {{}}
for d, _, names in os.walk(folder):
    for n in names:
        p = os.path.join(d, n)
        files[os.path.relpath(p, folder)] = [open(p).read(), oct(os.stat(p).st_mode & 0o7777)]
json.dump({{"argv": args, "files": files, "sid": os.getsid(0), "pid": os.getpid()}},
          open(out + "/call.json", "w"))
mode = os.environ.get("FAKE_MODE", "ok")
print("STEP 1/2: FROM debian:bookworm-slim", flush=True)
print("STEP 2/2: RUN make \\x1b[31mall\\x1b[0m", flush=True)
if mode == "ok":
    print("COMMIT", flush=True)
    open(iid, "w").write("{image}")
    sys.exit(0)
if mode == "fail":
    print("make: *** error", flush=True)
    print('Error: building at STEP "RUN make all": while running runtime: exit status 3', flush=True)
    sys.exit(1)
if mode == "setup":
    print("Error: building at STEP: crun: cgroups in hybrid mode not supported", flush=True)
    sys.exit(1)
if mode == "nospace":
    print("Error: writing blob: no space left on device", flush=True)
    sys.exit(125)
# "slow": a step in its own session (as Buildah's), waited for; killed, the build fails and
# its containers go (the file "cleaned"), as Podman does
step = subprocess.Popen(["sleep", "60"], start_new_session=True)
open(out + "/step.pid", "w").write(str(step.pid))
print("ready", flush=True)
step.wait()
open(out + "/cleaned", "w").write(str(step.returncode))
print('Error: building at STEP "RUN make all": while running runtime: exit status 137', flush=True)
sys.exit(1)
"""


class FakeImages:
    def get(self, ref: str) -> Any:
        assert ref == IMAGE_ID
        return SimpleNamespace(id=IMAGE_ID, tags=[], attrs={"Config": {"Labels": {}}})


class FakeAPI:
    def containers(self, **kw: Any) -> list[dict[str, Any]]:
        return []

    def build(self, **kw: Any) -> Any:
        raise AssertionError("a local Podman builds with its client, not the API")


def podman_engine(tmp_path: Path, mode: str, monkeypatch: pytest.MonkeyPatch) -> Engine:
    fake = tmp_path / "podman"
    fake.write_text(FAKE.format(python=sys.executable, image=IMAGE_ID))
    fake.chmod(0o755)
    monkeypatch.setenv("FAKE_OUT", str(tmp_path))
    monkeypatch.setenv("FAKE_MODE", mode)
    monkeypatch.delenv("CONTAINER_HOST", raising=False)
    monkeypatch.delenv("CONTAINER_CONNECTION", raising=False)
    client = SimpleNamespace(api=FakeAPI(), images=FakeImages())
    return Engine(client, Podman(str(fake), "unix:///nowhere.sock", True, "test"))


def context() -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data, mode in (("Dockerfile", b"FROM debian:bookworm-slim\n", 0o644),
                                 ("files/run.sh", b"#!/bin/sh\n", 0o750)):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, 1000
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


def build(engine: Engine, lines: list[str]) -> str:
    return engine.build(context(), labels={LABEL_TOOL: "t"}, buildargs={"A": "1"},
                        on_line=lines.append, what="t@1", platform="linux/arm64")


def test_podman_builds_with_its_client_and_the_same_options(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    lines: list[str] = []
    assert build(podman_engine(tmp_path, "ok", monkeypatch), lines) == IMAGE_ID
    call = json.loads((tmp_path / "call.json").read_text())
    argv = call["argv"]
    assert argv[0] == "build"
    for opt in ("--pull=never", "--rm", "--force-rm", "--layers"):
        assert opt in argv
    assert argv[argv.index("--format") + 1] == "docker"
    assert argv[argv.index("--label") + 1] == f"{LABEL_TOOL}=t"
    assert argv[argv.index("--build-arg") + 1] == "A=1"
    assert argv[argv.index("--platform") + 1] == "linux/arm64"
    assert call["files"] == {"Dockerfile": ["FROM debian:bookworm-slim\n", "0o644"],
                             "files/run.sh": ["#!/bin/sh\n", "0o750"]}
    assert call["sid"] == call["pid"]  # a session of its own: a terminal's Ctrl-C is sandman's
    # the output reaches the user, colour codes gone
    assert lines == ["STEP 1/2: FROM debian:bookworm-slim", "STEP 2/2: RUN make all", "COMMIT"]


def test_a_failed_podman_build_names_the_step_and_its_status(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(BuildError) as e:
        build(podman_engine(tmp_path, "fail", monkeypatch), [])
    assert e.value.message.startswith("building t@1 failed at STEP 2/2: RUN make all: ")
    assert e.value.message.endswith("exit status 3")
    assert "make: *** error" in (e.value.detail or "")


def test_no_space_during_a_podman_build_is_no_space(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(NoSpaceError) as e:
        build(podman_engine(tmp_path, "nospace", monkeypatch), [])
    assert e.value.message == "building t@1: no space left on device at STEP 2/2: RUN make all"


def test_a_host_setup_problem_in_a_podman_build_names_the_fix(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(EngineSetupError) as e:
        build(podman_engine(tmp_path, "setup", monkeypatch), [])
    assert 'runtime = "runc"' in e.value.message and e.value.exit_code == EngineSetupError.exit_code


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def test_an_interrupted_podman_build_kills_its_step_and_waits_for_the_cleanup(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = podman_engine(tmp_path, "slow", monkeypatch)

    def on_line(line: str) -> None:
        if line == "ready":
            raise KeyboardInterrupt  # what Ctrl-C raises in sandman mid-build

    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        engine.build(context(), labels={}, buildargs={}, on_line=on_line, what="t@1")
    assert time.monotonic() - start < 20
    step = int((tmp_path / "step.pid").read_text())
    assert not alive(step)
    # the child saw its step killed and cleaned up before sandman went on with the interrupt
    assert (tmp_path / "cleaned").read_text() == "-9"
    assert not alive(json.loads((tmp_path / "call.json").read_text())["pid"])


@pytest.mark.parametrize("env", [{"CONTAINER_HOST": "ssh://elsewhere/run/podman.sock"},
                                 {"CONTAINER_CONNECTION": "elsewhere"}])
def test_a_remote_podman_keeps_the_api(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    client = SimpleNamespace(api=FakeAPI(), images=FakeImages())
    engine = Engine(client, Podman("/usr/bin/podman", "unix:///x.sock", True, "t"))
    monkeypatch.delenv("CONTAINER_HOST", raising=False)
    monkeypatch.delenv("CONTAINER_CONNECTION", raising=False)
    assert engine.choice.builds_with_cli(os.environ)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert not engine.choice.builds_with_cli(os.environ)
    docker = Engine(client, Docker("/usr/bin/docker", "unix:///d.sock", False, "t"))
    assert not docker.choice.builds_with_cli(os.environ)


@pytest.mark.parametrize("kind", ["../escape", "/abs", "link"])
def test_a_context_with_anything_but_plain_files_is_refused(kind: str, tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("x" if kind == "link" else kind)
        if kind == "link":
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info, io.BytesIO(b""))
    buf.seek(0)
    with pytest.raises(BuildError, match="unexpected entry in the build context"):
        _unpack_context(buf, tmp_path / "ctx", "t@1")
    assert not (tmp_path / "escape").exists() and not os.path.lexists(tmp_path / "ctx" / "x")
