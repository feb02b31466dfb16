"""Plain helpers shared by unit and integration tests (fixtures live in the conftest.py files).

Tests never spell sandman's on-disk layout ("state/installs", "bin", ...) themselves: they ask
`Paths` (and the product's own path functions) where things are, so a layout change in
sandman/paths.py cannot leave tests checking folders sandman no longer writes.

Importable as `helpers` from any test module: pytest puts tests/ on sys.path when it loads
tests/conftest.py. (Not `from conftest import ...`: tests/integration has its own conftest.py,
and the name `conftest` means whichever was loaded last.)
"""

from __future__ import annotations

import contextlib
import fcntl
import http.server
import os
import pwd
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sandman import names, shims, sources, warm
from sandman.installs import record_path
from sandman.paths import Paths


def paths_of(home: Path) -> Paths:
    """Where sandman keeps everything for SANDMAN_HOME=home (no SANDMAN_BIN_DIR override)."""
    return Paths.from_env({"SANDMAN_HOME": str(home)})


def log_file(home: Path) -> Path:
    """sandman's log for that home (the CLI writes `Paths.log_dir / "sandman.log"`)."""
    return paths_of(home).log_dir / "sandman.log"


def record_file(home: Path, tool: str, version: str) -> Path:
    """The install record of tool@version in that home."""
    return record_path(paths_of(home), tool, version)


def warm_dir(home: Path) -> Path:
    """The home's warm folder: the `io.sandman.home` label of its warm containers on the
    default daemon, and the parent of their state folders."""
    return warm.warm_dir(paths_of(home))


def runtime_dir(home: Path) -> Path:
    """Where the shared shim runtimes (`shim-<sha12>.bash`) of that home are written."""
    return shims.runtime_dir(paths_of(home))


def env_file(home: Path, tool: str, version: str) -> Path:
    """The private file holding config.toml's env values for tool@version's shims."""
    return shims.env_file(paths_of(home), tool, version)


def source_cache(home: Path) -> Path:
    """The content-addressed cache of downloaded recipe sources (one file per sha256)."""
    return sources.cache_root(paths_of(home))


def base_env(home: Path) -> dict[str, str]:
    """This process's environment for a run against home: no stray SANDMAN_*, its bin on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANDMAN_")}
    env["SANDMAN_HOME"] = str(home)
    env["PATH"] = f"{paths_of(home).bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return env


def sandman_argv(*args: str, python: str = sys.executable,
                 python_options: Sequence[str] = ()) -> list[str]:
    """The command line of sandman's CLI: `python -m sandman`, not a `sandman` script on PATH,
    so the run is this checkout's code under a known interpreter (another user's python, for a
    run through setpriv, as `python`)."""
    return [python, *python_options, "-m", "sandman", *args]


def run_sandman(*args: str, env: Mapping[str, str] | None = None, cwd: Path | str | None = None,
                input: bytes | str | None = None, stdin: int | None = None,
                timeout: float = 900, text: bool = True, capture_output: bool = True,
                prefix: Sequence[str] = (), python: str = sys.executable,
                python_options: Sequence[str] = ()) -> subprocess.CompletedProcess:
    """sandman's CLI in a subprocess, waited for. prefix: the command that runs it as another
    user (setpriv ...), with that user's `python`; text=False for a caller that compares bytes.

    Never `check`: a test asserts on the exit status itself, and wants stderr in the message.
    """
    return subprocess.run([*prefix, *sandman_argv(*args, python=python,
                                                  python_options=python_options)],
                          env=None if env is None else dict(env), cwd=cwd, input=input,
                          stdin=stdin, timeout=timeout, text=text, capture_output=capture_output)


class FileServer:
    """A static HTTP server on 127.0.0.1 (a free port) serving root, in a daemon thread.

    A real server, not a mocked urlopen: sandman's downloads meet real status codes, lengths
    and a refused connection once it is stopped. `hits` lists the paths asked for (once per
    request, whatever its status), so a test can tell which URLs were never contacted.
    """

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.hits: list[str] = []
        hits = self.hits

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *a, **kw) -> None:
                super().__init__(*a, directory=str(root), **kw)

            def log_request(self, code: object = "-", size: object = "-") -> None:
                hits.append(self.path)

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.running = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Close the port (tests stop it midway to prove sandman goes offline); idempotent."""
        if self.running:
            self.running = False
            self.httpd.shutdown()
            self.httpd.server_close()


@dataclass(frozen=True)
class EngineCLI:
    """How to run one image store's CLI: Docker's (default), root's Podman, another daemon
    (`docker -H ...`) or a rootless user's Podman (argv through setpriv, with its env)."""

    argv: tuple[str, ...] = ("docker",)
    env: Mapping[str, str] | None = None


DOCKER = EngineCLI()
PODMAN = EngineCLI(("podman",))  # root's store (rootful)

# the `remove_images_after` fixtures: (*tools, label=None, engine=DOCKER) -> None
ImageRemover = Callable[..., None]


def remove_images(*tools: str, label: str | None = None, engine: EngineCLI = DOCKER) -> None:
    """Force-remove every image (intermediate ones too) whose tool label (names.LABEL_TOOL)
    is one of tools, or matching a `label` filter (`key` or `key=value`), from one store.

    Children before parents (the CLI lists newest first): `rmi -f` refuses a parent while a
    child remains. Failures are ignored: an image may already be gone with a sibling tag.
    cwd is /, which a setpriv'd user can enter.
    """
    filters = [f"label={names.LABEL_TOOL}={t}" for t in tools]
    if label is not None:
        filters.append(f"label={label}")
    env = None if engine.env is None else dict(engine.env)
    for f in filters:
        listed = subprocess.run([*engine.argv, "images", "-aq", "--no-trunc", "--filter", f],
                                capture_output=True, text=True, env=env, cwd="/", timeout=300)
        ids = list(dict.fromkeys(listed.stdout.split()))
        if ids:
            subprocess.run([*engine.argv, "rmi", "-f", *ids], capture_output=True, env=env,
                           cwd="/", timeout=600)


# the binaries (sandman/agent.py binary_path) and the sha256 their build recorded beside them
# (`.sha256`: the shims run no binary without it); never the `.try` marker of a failed build
AGENT_GLOB = "sandman-agent-*[0-9a-f]"


class SeedPool:
    """What a new home would otherwise work out again, made once per test session.

    The facts of an image (its passwd, group, locales: sandman reads them with a probe
    container on an image's first install in a home) are keyed by image id, and the warm
    agent's binary by the hash of its source: both are the same in every home, so a new test
    home starts with what earlier homes learnt. A test about the first derivation itself asks
    for a home without them (the `fresh_home` marker).
    """

    def __init__(self, root: Path) -> None:
        self.facts = root / "facts"
        self.agents = root / "agent"
        self.facts.mkdir(parents=True, exist_ok=True)
        self.agents.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def _copy_new(src: Path, dst: Path, pattern: str) -> None:
        if not src.is_dir():
            return
        for f in src.glob(pattern):
            if f.is_file() and not f.is_symlink() and not (dst / f.name).exists():
                dst.mkdir(parents=True, exist_ok=True)
                shutil.copy2(f, dst / f"{f.name}.seed")
                os.replace(dst / f"{f.name}.seed", dst / f.name)

    def seed(self, home: Path) -> None:
        from sandman import agent

        paths = paths_of(home)
        self._copy_new(self.facts, paths.facts_dir, "*.json")
        self._copy_new(self.agents, agent.agent_dir(paths), AGENT_GLOB)

    def harvest(self, home: Path) -> None:
        from sandman import agent

        paths = paths_of(home)
        self._copy_new(paths.facts_dir, self.facts, "*.json")
        self._copy_new(agent.agent_dir(paths), self.agents, AGENT_GLOB)


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_program(name: str) -> None:
    """A test that needs a program (tmux, strace) skips without it on a developer's machine; in
    CI (CI=true, where .ci/run installs it) its absence is a failure, never a silent skip."""
    if shutil.which(name) is None:
        import pytest

        if in_ci():
            pytest.fail(f"{name} is not installed (.ci/run installs it); CI never skips")
        pytest.skip(f"needs {name}")


def said_recipe(root: Path, tool: str, text: str, description: str) -> None:
    """A one-version recipe under root whose tool prints `text` (written into its image at
    build): the bundle and provenance tests tell images apart by what they say."""
    (root / tool).mkdir(parents=True, exist_ok=True)
    (root / tool / "recipe.toml").write_text(
        f'schema = 1\ntool = "{tool}"\ndescription = "{description}"\n'
        f'entrypoint = ["cat", "/said"]\n\n[versions."1"]\nbase = "debian:bookworm-slim"\n'
        f"run = [\"echo '{text}' > /said\"]\n")


def ensure_unix_user(name: str, *useradd_options: str) -> pwd.struct_passwd:
    """A real Unix user, made with useradd the first time. Under a lock: useradd does not wait
    for /etc/passwd ("cannot lock /etc/passwd; try again later"), and the two xdist workers
    may make their users at the same moment on a fresh machine."""
    with open("/tmp/sandman-test-useradd.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return pwd.getpwnam(name)
        except KeyError:
            subprocess.run(["useradd", "-m", *useradd_options, name], check=True,
                           capture_output=True)
            return pwd.getpwnam(name)


def stop_reapers(home: Path) -> None:
    """End the reapers this home's shims started (by pid, read from their pidfiles: one per
    engine socket). A reaper outlives its last container by minutes (SANDMAN_REAPER_IDLE_SECONDS)
    and polls the daemon every 2 s meanwhile: left to themselves, the reapers of a suite's
    finished homes kept dozens of processes and the daemon busy."""
    base = paths_of(home).reaper_pidfile
    for pidfile in base.parent.glob(f"{base.stem}*{base.suffix}"):
        try:
            pid = int(pidfile.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if b"sandman.reaper" in cmdline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 15)
