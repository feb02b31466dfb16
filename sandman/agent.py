"""The warm agent's binary: built once in a container, cached by the hash of its source.

A warm container runs `sandman-agent serve` as its main process and a shim in warm mode execs
`sandman-agent call`, which hands the call (and its stdin/stdout/stderr themselves) to the
agent over a unix socket: a few milliseconds instead of a `docker exec` (docs/performance.md).
The source (shims/agent.c) ships with sandman; no compiler is needed on the host: the binary
is compiled, static (musl), inside a throwaway container from the local Debian base, and kept
at `<data>/agent/sandman-agent-<sha12 of the source>`. `sandman bootstrap` makes it, and so does
the first warm call that finds it missing (in the background: until it exists warm calls use
`docker exec`, silently). A `.try` file next to it marks a build started (or failed: it holds
the error), so shims start the build only once.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import platform
import shlex
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from sandman.paths import Paths, shim_templates_dir

if TYPE_CHECKING:
    from sandman.engine import Engine

BUILD_BASE = "debian:bookworm-slim"  # bootstrapped locally; its apt sources reach the mirror
TOOLCHAIN_STEP = ("apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
                  "--no-install-recommends gcc musl-tools libc6-dev >/dev/null")
COMPILE = "mkdir -p /out && musl-gcc -static -O2 -s -o /out/sandman-agent /src/agent.c"
LABEL_ROLE = "io.sandman.role"
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
         "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}


def source_path() -> Path:
    return shim_templates_dir() / "agent.c"


def source_digest() -> str:
    return hashlib.sha256(source_path().read_bytes()).hexdigest()


def agent_dir(paths: Paths) -> Path:
    return paths.data_dir / "agent"


def binary_path(paths: Paths) -> Path:
    """Where the binary of the current source is (or will be): named by the source's hash."""
    return agent_dir(paths) / f"sandman-agent-{source_digest()[:12]}"


def platform_name() -> str:
    """The platform the binary is built for: the local daemon's, which is this machine's."""
    machine = platform.machine().lower()
    return f"linux/{_ARCH.get(machine, machine)}"


def toolchain_tag() -> str:
    digest = hashlib.sha256(f"{BUILD_BASE}\n{TOOLCHAIN_STEP}".encode()).hexdigest()[:12]
    return f"sandman/agent-toolchain:{digest}"


def shim_values(paths: Paths) -> dict[str, str]:
    """SM_AGENT (the binary a shim execs when it exists) and SM_AGENT_PLATFORM."""
    with contextlib.suppress(OSError):  # read by other users' shims, as the runtime is
        agent_dir(paths).mkdir(parents=True, exist_ok=True, mode=0o755)
        agent_dir(paths).chmod(0o755)
    return {"SM_AGENT": shlex.quote(str(binary_path(paths))),
            "SM_AGENT_PLATFORM": shlex.quote(platform_name())}


def _toolchain(engine: Engine, on_line: Callable[[str], None]) -> str:
    """The build image (Debian base + gcc + musl), made once per daemon and reused."""
    tag = toolchain_tag()
    if engine.image(tag) is not None:
        return tag
    from sandman.engine import translate
    from sandman.errors import BuildError

    if engine.image(BUILD_BASE) is None:
        raise BuildError(f"the warm agent is built from {BUILD_BASE}, which is not here: "
                         f"run `sandman bootstrap {BUILD_BASE}` first")
    on_line(f"agent: installing gcc and musl in {BUILD_BASE}")
    with translate("making the agent's build image"):
        c = engine.client.containers.run(BUILD_BASE, ["sh", "-c", TOOLCHAIN_STEP], detach=True,
                                         labels={LABEL_ROLE: "agent-build"},
                                         network_mode=engine.network_mode(True))
        try:
            code = int(c.wait(timeout=900).get("StatusCode", 1))
            if code != 0:
                tail = c.logs().decode("utf-8", "replace").strip().splitlines()[-1:]
                raise BuildError(f"agent build image: apt-get failed ({code}): {' '.join(tail)}")
            repo, _, tg = tag.partition(":")
            c.commit(repository=repo, tag=tg, changes=[f"LABEL {LABEL_ROLE}=agent-build"])
        finally:
            with contextlib.suppress(Exception):
                c.remove(force=True)
    return tag


def build(engine: Engine, paths: Paths, *, force: bool = False,
          on_line: Callable[[str], None] = lambda _line: None) -> Path:
    """Make the binary of the current source if it is not there; return its path."""
    from filelock import FileLock

    from sandman.engine import translate
    from sandman.errors import BuildError
    from sandman.state import atomic_write

    out = binary_path(paths)
    if out.exists() and not force:
        return out
    agent_dir(paths).mkdir(parents=True, exist_ok=True, mode=0o755)
    with FileLock(str(agent_dir(paths) / ".build.lock")):
        if out.exists() and not force:
            return out
        tag = _toolchain(engine, on_line)
        on_line("agent: compiling")
        src = source_path().read_bytes()
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo("src/agent.c")
            info.size, info.mode = len(src), 0o644
            tar.addfile(info, io.BytesIO(src))
        with translate("compiling the warm agent"):
            c = engine.client.containers.create(tag, ["sh", "-c", COMPILE], network_disabled=True,
                                                labels={LABEL_ROLE: "agent-build"})
            try:
                c.put_archive("/", buf.getvalue())
                c.start()
                code = int(c.wait(timeout=300).get("StatusCode", 1))
                if code != 0:
                    text = c.logs().decode("utf-8", "replace").strip()
                    raise BuildError(f"the warm agent did not compile ({code}): {text[-300:]}")
                stream, _ = c.get_archive("/out/sandman-agent")
                data = b"".join(stream)
            finally:
                with contextlib.suppress(Exception):
                    c.remove(force=True)
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            member = tar.extractfile("sandman-agent")
            binary = member.read() if member else b""
        if not binary.startswith(b"\x7fELF"):
            raise BuildError("the warm agent's build gave no executable")
        atomic_write(out, binary, 0o755, dir_mode=0o755)
        with contextlib.suppress(OSError):
            Path(f"{out}.try").unlink()
    return out


def main(argv: list[str]) -> int:
    """`python -m sandman.agent build`: what a shim starts in the background (quiet, logged
    into the `.try` file when it fails, so a shim does not start it again)."""
    if argv != ["build"]:
        print("usage: python -m sandman.agent build", file=sys.stderr)
        return 2
    paths = Paths.from_env()
    marker = Path(f"{binary_path(paths)}.try")
    try:
        from sandman.engine import Engine

        build(Engine.connect(), paths)
    except Exception as e:  # a background job: the reason is kept, never raised at a user
        with contextlib.suppress(OSError):
            marker.write_text(f"{type(e).__name__}: {e}\n")
        return 3
    return 0


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main(sys.argv[1:]))
