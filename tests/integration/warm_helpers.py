"""Warm homes for the warm-mode tests (test_warm.py, test_warm_races.py): plain helpers, no
fixtures, so that no test module imports another.

A warm home is a SANDMAN_HOME of its own with the runtime probe (rtprobe@1, from the runtime
kit's recipes: a cache hit) installed, so that its warm containers, their folders and its
reaper are private to the tests that use it. The cwd is part of a warm container's key: calls
from one folder share a container, and a test that needs a container of its own calls from a
folder of its own (`fresh_dir`), in a home shared with other tests or in one of its own when it
stops, lists or reconfigures everything the home has.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from helpers import SeedPool, paths_of, run_sandman, stop_reapers, warm_dir
from runtime_helpers import Kit, ensure_agent

from sandman.names import LABEL_HOME, LABEL_ROLE


@dataclass(frozen=True)
class WarmHome:
    home: Path
    env: dict[str, str]
    work: Path  # the folder calls are made from unless a test says otherwise

    @property
    def shim(self) -> str:
        return str(paths_of(self.home).bin_dir / "rtprobe-1")

    def run(self, *args: str, warm: str | None = "1", cwd: Path | None = None,
            input: bytes | None = None, **extra: str) -> subprocess.CompletedProcess:
        env = dict(self.env, **extra)
        if warm is not None:
            env["SANDMAN_WARM"] = warm
        return subprocess.run([self.shim, *args], env=env, cwd=cwd or self.work, input=input,
                              capture_output=True, timeout=120)

    def sandman(self, *args: str) -> subprocess.CompletedProcess:
        return run_sandman(*args, env=self.env, cwd=self.work, timeout=600)

    def containers(self, all_states: bool = False, cwd: Path | None = None) -> list[dict]:
        """`docker inspect` of the home's warm containers; with cwd, only those made for calls
        from that folder (it is bind-mounted at its own path: part of the container's key)."""
        ids = subprocess.run(
            ["docker", "ps", *(["-a"] if all_states else []), "-q", "--no-trunc",
             "--filter", f"label={LABEL_ROLE}=warm",
             "--filter", f"label={LABEL_HOME}={warm_dir(self.home)}"],
            capture_output=True, text=True, check=True).stdout.split()
        if not ids:
            return []
        # the reaper may remove one between the two calls: inspect reports the rest (and fails
        # for the gone one), so its exit status says nothing here; its JSON is what exists
        out = subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True)
        found = json.loads(out.stdout or "[]")
        if cwd is None:
            return found
        return [c for c in found if serves(c, cwd)]

    def folder(self, cwd: Path) -> Path:
        """The warm folder of the (one, running) container of calls from cwd."""
        [c] = self.containers(cwd=cwd)
        return warm_dir(self.home) / c["Name"].lstrip("/").rpartition("-")[0]


def serves(container: dict, cwd: Path) -> bool:
    """Was this warm container made for calls from cwd (its bind mount at the same path)?"""
    return any(m.get("Type") == "bind" and m.get("Source") == str(cwd)
               and m.get("Destination") == str(cwd) for m in container["Mounts"])


def remove_warm(home: Path) -> None:
    """Remove the warm containers of home on the default daemon (by their home label)."""
    ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label={LABEL_ROLE}=warm",
                          "--filter", f"label={LABEL_HOME}={warm_dir(home)}"],
                         capture_output=True, text=True).stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)


def remove_serving(home: Path, folders: list[Path]) -> None:
    """Remove the home's warm containers made for calls from these folders: a home shared
    with other modules (the runtime kit's) keeps its other containers."""
    ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label={LABEL_ROLE}=warm",
                          "--filter", f"label={LABEL_HOME}={warm_dir(home)}"],
                         capture_output=True, text=True).stdout.split()
    if not ids:
        return
    out = subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True).stdout
    mine = [c["Id"] for c in json.loads(out or "[]") if any(serves(c, f) for f in folders)]
    if mine:
        subprocess.run(["docker", "rm", "-f", *mine], capture_output=True)


def fresh_dir(root: Path, name: str) -> Path:
    """A new, empty folder under root: calls from it get a warm container of their own."""
    return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=root))


def empty(folder: Path) -> None:
    """Remove what a test left in a folder that the next test calls from."""
    for p in folder.iterdir():
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def warm_home(kit: Kit, root: Path, agent: bool = False,
              seed: SeedPool | None = None) -> Iterator[WarmHome]:
    """A fresh SANDMAN_HOME under root with rtprobe@1 installed; at the end its warm
    containers are removed and its reaper stopped, so that nothing it started outlives it.

    Warm calls go through `docker exec`, or with agent=True through the warm agent (its binary
    built first, so that every warm container of the home runs it). seed: the session's image
    facts and agent binary, so the install and the agent cost no probe container or build."""
    home = root / "home"
    work = root / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SANDMAN_", "DOCKER_"))}
    env.update(SANDMAN_HOME=str(home), SANDMAN_RECIPE_PATH=str(kit.recipes),
               PATH=f"{paths_of(home).bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
               SANDMAN_AGENT="0")  # the `docker exec` path; the agent's: test_agent.py
    if seed is not None:
        seed.seed(home)
    # --yes: the probe's read-write `out` mount is access beyond the default, agreed to here
    proc = run_sandman("-q", "install", "--yes", "rtprobe@1", env=env)
    assert proc.returncode == 0, proc.stderr
    if agent:
        del env["SANDMAN_AGENT"]
        ensure_agent(home)
    if seed is not None:
        seed.harvest(home)
    try:
        yield WarmHome(home, env, work)
    finally:
        remove_warm(home)
        stop_reapers(home)
