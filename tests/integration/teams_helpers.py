"""Helpers for the teams tests: real git repositories of tiny recipes, a real registry on loopback.

Every tool gets a unique name per test, so its images never collide with another test's (or
another engineer's) and cleanup by the `io.sandman.tool` label removes exactly what it made.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REGISTRY_BIN = "/usr/bin/docker-registry"


def unique_tool() -> str:
    return f"tt{uuid.uuid4().hex[:10]}"


def recipe_text(tool: str, versions: dict[str, str]) -> str:
    """A recipe whose versions print `<tool> <version> <marker>`; building it needs no network."""
    out = [f'schema = 1\ntool = "{tool}"\ndescription = "teams test tool"',
           f'entrypoint = ["cat", "/usr/local/share/{tool}.txt"]', ""]
    for version, marker in versions.items():
        out += [f'[versions."{version}"]', 'base = "debian:bookworm-slim"',
                f"run = [\"echo '{tool} {version} {marker}' > /usr/local/share/{tool}.txt\"]", ""]
    return "\n".join(out)


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.email=t@example.invalid", "-c", "user.name=t", *args],
        cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def make_repo(path: Path, tool: str, versions: dict[str, str], *, under_recipes: bool = True) -> str:
    """A git repository with one recipe; returns the commit."""
    folder = (path / "recipes" / tool) if under_recipes else (path / tool)
    folder.mkdir(parents=True)
    (folder / "recipe.toml").write_text(recipe_text(tool, versions))
    git(path, "init", "-q", "-b", "main")
    git(path, "add", "-A")
    git(path, "commit", "-qm", "recipes")
    return git(path, "rev-parse", "HEAD")


def commit_recipe(path: Path, tool: str, versions: dict[str, str]) -> str:
    (path / "recipes" / tool / "recipe.toml").write_text(recipe_text(tool, versions))
    git(path, "commit", "-qam", "change")
    return git(path, "rev-parse", "HEAD")


def image_id(client, ref: str) -> str | None:
    try:
        return client.images.get(ref).id
    except Exception:
        return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_registry(tmp: Path) -> Iterator[str]:
    """Docker Distribution on 127.0.0.1:<free port> (Docker treats loopback as insecure: HTTP)."""
    if not os.access(REGISTRY_BIN, os.X_OK):
        msg = f"{REGISTRY_BIN} is missing; install it with: apt-get install -y docker-registry"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(msg + " (CI=true: never skipped)")
        pytest.skip(msg)
    port = free_port()
    config = tmp / "config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {tmp / 'data'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n")
    log = (tmp / "registry.log").open("wb")
    proc = subprocess.Popen([REGISTRY_BIN, "serve", str(config)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"docker-registry did not start: {(tmp / 'registry.log').read_text()}")
                time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def manifest_config_digest(registry: str, repo: str, tag: str) -> str:
    """The config digest the registry holds for repo:tag: the image id a pull will give."""
    host, _, prefix = registry.partition("/")
    name = f"{prefix}/{repo}" if prefix else repo
    req = urllib.request.Request(
        f"http://{host}/v2/{name}/manifests/{tag}",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())["config"]["digest"]


def fresh_home(tmp: Path, name: str) -> Path:
    h = tmp / name
    if h.exists():
        shutil.rmtree(h)
    h.mkdir()
    return h


# -- a second machine: another dockerd on this host ----------------------------------------------
MACHINE_B_ROOT = Path("/tmp/sandman-machine-b")  # fixed: a run that died is found and cleaned
MACHINE_B_BRIDGE = "smmachineb0"
MACHINE_B_NET = "10.213.77.1/24"


def _alive_under(pidfile: Path, root: Path) -> int | None:
    """The pid in pidfile when that process is alive and was started with root in its argv."""
    try:
        pid = int(pidfile.read_text().strip())
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except (OSError, ValueError):
        return None
    return pid if str(root).encode() in argv else None


def _stop_pid(pid: int, timeout: float = 30) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, 15)
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    if Path(f"/proc/{pid}").exists():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)


def _clean_machine_b(root: Path) -> None:
    """Stop what a previous run left (its dockerd, its containerd), unmount, remove its data."""
    for pidfile in (root / "docker.pid", root / "exec" / "containerd" / "containerd.pid"):
        pid = _alive_under(pidfile, root)
        if pid is not None:
            _stop_pid(pid)
    with contextlib.suppress(OSError):
        mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
        for m in sorted((m for m in mounts if m.startswith(str(root) + "/")), reverse=True):
            subprocess.run(["umount", "-l", m], capture_output=True)
    shutil.rmtree(root, ignore_errors=True)


def _bridge(name: str, addr: str) -> None:
    """The second daemon's own bridge (never `--bridge none`: that took docker0 down here)."""
    if subprocess.run(["ip", "link", "show", name], capture_output=True).returncode != 0:
        subprocess.run(["ip", "link", "add", name, "type", "bridge"], check=True)
    subprocess.run(["ip", "addr", "replace", addr, "dev", name], check=True)
    subprocess.run(["ip", "link", "set", name, "up"], check=True)


@contextmanager
def second_engine() -> Iterator[str]:
    """Machine B: a dockerd with its own data, exec root, pidfile, socket and bridge, sharing
    nothing with the daemon of this host but the kernel; yields its DOCKER_HOST. Stopped by its
    pid at the end, its bridge deleted. Needs root (CI runs as root); skipped otherwise."""
    if os.geteuid() != 0 or shutil.which("dockerd") is None:
        msg = "a second dockerd needs root and dockerd"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(msg + " (CI=true: never skipped)")
        pytest.skip(msg)
    root = MACHINE_B_ROOT
    _clean_machine_b(root)
    root.mkdir(parents=True)
    _bridge(MACHINE_B_BRIDGE, MACHINE_B_NET)
    sock = root / "docker.sock"
    log = (root / "dockerd.log").open("wb")
    proc = subprocess.Popen(
        ["dockerd", "--data-root", str(root / "data"), "--exec-root", str(root / "exec"),
         "--pidfile", str(root / "docker.pid"), "-H", f"unix://{sock}", "-b", MACHINE_B_BRIDGE,
         "--iptables=false", "--ip-masq=false",
         # what a test left running there is not waited for: 15 s per stop otherwise
         "--shutdown-timeout", "1"],
        stdout=log, stderr=log, start_new_session=True)
    host = f"unix://{sock}"
    try:
        deadline = time.monotonic() + 60
        while subprocess.run(["docker", "-H", host, "version"], capture_output=True).returncode:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("the second dockerd did not start: "
                            + (root / "dockerd.log").read_text()[-2000:])
            time.sleep(0.3)
        yield host
    finally:
        # our own child: waited for, not watched in /proc (where it stays, a zombie, until it
        # is reaped: that made every stop take the whole 30 s)
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()
        subprocess.run(["ip", "link", "del", MACHINE_B_BRIDGE], capture_output=True)
        _clean_machine_b(root)
