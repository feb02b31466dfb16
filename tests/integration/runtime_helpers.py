"""Shared kit for the runtime fidelity tests (tests/integration/test_runtime_*.py).

One session-wide SANDMAN_HOME in a world-readable folder (a non-root test user must be able to
run its shims) with small test tools installed from recipes written here:

- ``rtprobe@1``: Debian bookworm with nothing added; the first argument is the command to run.
  It declares a read-only data mount, a read-write output mount, path-valued variables
  (``RT_DATA`` ro, ``RT_OUT`` rw), ``pass_env`` and ``env``: enough surface for every promise.
- ``rtprobe@net``: the same tool with ``network = true``.
- ``rtecho@1``: prints its argv NUL-separated (``path_args = "off"``), for the argv property test.

Every fidelity test takes the ``mode`` fixture, so it runs three times: through the cold path
(``docker run``), in warm mode through ``docker exec`` (``SANDMAN_WARM=1 SANDMAN_AGENT=0``) and
in warm mode through the warm agent (``SANDMAN_WARM=1``, the agent's binary built first: the
fixture checks afterwards that the home's warm containers really ran the agent).

The fixtures (``kit``, ``mode``, ``work``, ``user_home``) live in tests/integration/conftest.py;
this module keeps the plain functions and constants the tests import.
"""

from __future__ import annotations

import grp
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from helpers import paths_of, warm_dir

ROOT = Path(__file__).resolve().parents[2]
TEST_UID = 54321  # a user with no passwd entry on the host, like a fresh LDAP account
TEST_GID = 54321
TOOLS = ("rtprobe", "rtecho")

PROBE_RECIPE = """\
schema = 1
tool = "rtprobe"
description = "runtime probe for sandman's own tests"
pass_env = ["RT_PASS"]
env = {{ RT_FIXED = "fixed value" }}
path_env = {{ RT_DATA = "ro", RT_OUT = "rw" }}

[[mounts]]
name = "data"
source = "{data}"
target = "/data"
mode = "ro"

[[mounts]]
name = "out"
source = "{out}"
target = "/out"
mode = "rw"

[versions."1"]
base = "debian:bookworm-slim"
run = ["echo sandman-runtime-probe"]

[versions.net]
base = "debian:bookworm-slim"
run = ["echo sandman-runtime-probe"]
network = true
"""

ECHO_RECIPE = """\
schema = 1
tool = "rtecho"
description = "prints its argv, NUL-separated"
path_args = "off"
entrypoint = ["bash", "-c", 'printf "%s\\\\0" "$@"', "rtecho"]

[versions."1"]
base = "debian:bookworm-slim"
run = ["echo sandman-runtime-echo"]
"""


@dataclass(frozen=True)
class Kit:
    root: Path  # world-readable scratch folder for the session
    home: Path  # SANDMAN_HOME with the test tools installed
    recipes: Path  # SANDMAN_RECIPE_PATH
    data: Path  # source of the probe's read-only `data` mount
    out: Path  # source of the probe's read-write `out` mount

    @property
    def bin(self) -> Path:
        return paths_of(self.home).bin_dir

    def shim(self, name: str) -> str:
        return str(self.bin / name)

    def env(self, mode: str = "cold", **extra: str) -> dict[str, str]:
        """What a user's shell gives a shim: bin dir on PATH, no stray SANDMAN_* settings."""
        e = {k: v for k, v in os.environ.items()
             if not k.startswith(("SANDMAN_", "DOCKER_", "LC_", "LANG"))}
        e.update(SANDMAN_HOME=str(self.home), SANDMAN_RECIPE_PATH=str(self.recipes),
                 PATH=f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}")
        if mode in ("warm", "agent"):
            e["SANDMAN_WARM"] = "1"
        if mode == "warm":
            e["SANDMAN_AGENT"] = "0"  # the `docker exec` path, even where an agent is built
        e.update(extra)
        return e

    def scratch(self, name: str = "t") -> Path:
        """A fresh world-accessible folder for one test."""
        d = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.root))
        d.chmod(0o755)
        return d


def sandman_cli(*args: str, env: dict[str, str], cwd: Path | None = None, timeout: float = 600,
                input: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sandman", *args], env=env, cwd=cwd, input=input,
                          capture_output=True, timeout=timeout)


def run(argv: list[str], *, env: dict[str, str], cwd: Path | str | None = None,
        input: bytes | None = None, timeout: float = 120, user: bool = False,
        docker_group: bool = True) -> subprocess.CompletedProcess:
    """Run argv (a shim and its arguments) in a subprocess, optionally as the test user."""
    if user:
        argv = as_test_user(argv, docker_group=docker_group)
    return subprocess.run(argv, env=env, cwd=cwd, input=input, capture_output=True,
                          timeout=timeout)


def docker_gid() -> int:
    try:
        return grp.getgrnam("docker").gr_gid
    except KeyError:
        return os.stat("/var/run/docker.sock").st_gid


def as_test_user(argv: list[str], *, docker_group: bool = True) -> list[str]:
    """argv run as TEST_UID:TEST_GID (with or without the docker group), via setpriv."""
    groups = ["--groups", str(docker_gid())] if docker_group else ["--clear-groups"]
    return ["setpriv", f"--reuid={TEST_UID}", f"--regid={TEST_GID}", *groups, *argv]


def user_env(kit: Kit, mode: str, home: Path, **extra: str) -> dict[str, str]:
    """A shim environment for the test user: its own HOME and TMPDIR, a name, no root paths."""
    tmp = home / "tmp"
    tmp.mkdir(exist_ok=True)
    os.chown(tmp, TEST_UID, TEST_GID)
    e = kit.env(mode, HOME=str(home), TMPDIR=str(tmp), USER="rtuser", LOGNAME="rtuser")
    e["PATH"] = f"{kit.bin}:/usr/local/bin:/usr/bin:/bin"
    e.update(extra)
    return e


def docker(*args: str, timeout: float = 60) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True,
                          timeout=timeout).stdout


def run_containers(pid: int | None = None, tool: str | None = None) -> list[str]:
    """Ids of shim containers (role=run), optionally of one shim pid or one tool."""
    filters = ["--filter", "label=io.sandman.role=run"]
    if pid is not None:
        filters += ["--filter", f"label=io.sandman.pid={pid}"]
    if tool is not None:
        filters += ["--filter", f"label=io.sandman.tool={tool}"]
    return docker("ps", "-aq", "--no-trunc", *filters).split()


def tool_processes(tok: str, tool: str = "rtprobe", *, pid: int | None = None,
                   home: Path | None = None) -> list[str]:
    """Processes whose command line holds tok, in running containers of tool (cold or warm).

    With pid and/or home, only that shim's own container and that home's warm containers are
    looked at (cheaper, and blind to other sessions on the same daemon).
    """
    if pid is None and home is None:
        cids = docker("ps", "-q", "--filter", f"label=io.sandman.tool={tool}").split()
    else:
        cids = []
        if pid is not None:
            cids += docker("ps", "-q", "--filter", f"label=io.sandman.pid={pid}").split()
        if home is not None:
            cids += docker("ps", "-q", "--filter",
                           f"label=io.sandman.home={warm_dir(home)}").split()
    found = []
    for cid in cids:
        top = subprocess.run(["docker", "top", cid, "-eo", "pid,args"], capture_output=True,
                             text=True)
        found += [f"{cid[:12]}: {ln}" for ln in top.stdout.splitlines() if tok in ln]
    return found


def leftovers(pid: int, tok: str, home: Path | None = None) -> list[str]:
    """What a finished shim left behind: its own container, or its tool still running."""
    if home is None:
        return run_containers(pid=pid) + tool_processes(tok)
    return run_containers(pid=pid) + tool_processes(tok, pid=pid, home=home)


def wait_for(predicate, timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def one_line_error(stderr: bytes, code_text: str | None = None) -> str:
    """The stderr of a sandman failure: exactly one line, no traceback; returned for asserts."""
    text = stderr.decode("utf-8", "replace")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line, got:\n{text}"
    assert "Traceback" not in text
    assert lines[0].startswith("sandman: "), lines[0]
    if code_text is not None:
        assert code_text in lines[0], lines[0]
    return lines[0]


def build_kit(root: Path) -> Kit:
    recipes = root / "recipes"
    data, out = root / "data", root / "out"
    for d in (recipes / "rtprobe", recipes / "rtecho", data / "nested", out):
        d.mkdir(parents=True, exist_ok=True)
    (data / "hello.txt").write_text("hello from data\n")
    (data / "nested" / "deep.txt").write_text("deep\n")
    out.chmod(0o777)
    (recipes / "rtprobe" / "recipe.toml").write_text(PROBE_RECIPE.format(data=data, out=out))
    (recipes / "rtecho" / "recipe.toml").write_text(ECHO_RECIPE)
    kit = Kit(root=root, home=root / "home", recipes=recipes, data=data, out=out)
    proc = sandman_cli("install", "rtprobe@1", "rtprobe@net", "rtecho@1", env=kit.env(),
                       timeout=900)
    assert proc.returncode == 0, proc.stderr.decode()
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = Path(dirpath, n)
            if not p.is_symlink():
                p.chmod(p.stat().st_mode | 0o055 if p.is_dir() else p.stat().st_mode | 0o044)
    return kit


AGENT_PATH = "/run/sandman-agent/agent"  # where a warm container runs the agent (shims/warm.bash)
_agents_built: set[Path] = set()


def ensure_agent(home: Path) -> Path:
    """The warm agent's binary for this home (built once; quick when the toolchain is cached)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANDMAN_")}
    env["SANDMAN_HOME"] = str(home)
    if home not in _agents_built:
        proc = subprocess.run([sys.executable, "-m", "sandman.agent", "build"], env=env,
                              capture_output=True, timeout=900, cwd=ROOT)
        assert proc.returncode == 0, proc.stderr.decode()
        _agents_built.add(home)
    from sandman import agent

    binary = agent.binary_path(paths_of(home))
    assert binary.is_file(), binary
    return binary


def warm_mains(home: Path) -> list[str]:
    """The main program of each warm container of this home (the agent's, or /bin/sh)."""
    out = docker("ps", "--no-trunc", "--filter", f"label=io.sandman.home={warm_dir(home)}",
                 "--format", "{{.Command}}")  # one call: the reaper may remove one meanwhile
    return [line.strip('"').split()[0] for line in out.splitlines() if line.strip('"')]


def remove_test_containers(home: Path, tools: tuple[str, ...] = TOOLS) -> None:
    """Warm containers of this home, and shim containers of these tools whose shim is gone.

    Another session may be running these tests at the same time: its containers stay.
    """
    ids = docker("ps", "-aq", "--filter", f"label=io.sandman.home={warm_dir(home)}").split()
    for tool in tools:
        out = docker("ps", "-a", "--filter", f"label=io.sandman.tool={tool}",
                     "--filter", "label=io.sandman.role=run",
                     "--format", '{{.ID}} {{.Label "io.sandman.pid"}}')
        for line in out.splitlines():
            cid, _, pid = line.partition(" ")
            if not pid.isdigit() or not Path(f"/proc/{pid}").exists():
                ids.append(cid)
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)


def remove_images(tool: str) -> None:
    ids = docker("images", "-q", "--filter", f"label=io.sandman.tool={tool}").split()
    if ids:
        subprocess.run(["docker", "rmi", "-f", *sorted(set(ids))], capture_output=True)


def stop_reaper(home: Path) -> None:
    """End the reaper this home's shims started (by its pid, read from its pidfile)."""
    try:
        pid = int(paths_of(home).reaper_pidfile.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return
    if b"sandman.reaper" in cmdline:
        os.kill(pid, 15)


def token() -> str:
    return uuid.uuid4().hex[:10]
