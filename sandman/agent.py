"""The warm agent's binary: built once in a container, cached by the hash of its source.

A warm container runs `sandman-agent serve` as its main process and a shim in warm mode execs
`sandman-agent call`, which hands the call (and its stdin/stdout/stderr themselves) to the
agent over a unix socket: a few milliseconds instead of a `docker exec` (docs/performance.md).
The source (shims/agent.c) ships with sandman; no compiler is needed on the host: the binary
is compiled, static (musl), inside a throwaway container, and kept at
`<data>/agent/sandman-agent-<sha12 of the source>`. `sandman bootstrap` makes it, and so does
the first warm call that finds it missing (in the background: until it exists warm calls use
`docker exec`, silently). A `.try` file next to it marks a build started (or failed: it holds
the error), so shims start the build only once.

The binary runs on the host, so where it comes from matters more than for anything in a
container. It is compiled only from a base this home's `sandman bootstrap` made, by the id
recorded then (never from whatever a name such as `debian:bookworm-slim` holds: an import, a
pull or `docker tag` can put anything there), and its sha256 is recorded next to it
(`<binary>.sha256`). A binary whose hash is not the recorded one is never run: a build makes it
again, writing shims removes it, and a shim starting a warm container checks it before the
container (and so every call through it) uses it.
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

from sandman.names import LABEL_ROLE, ROLE_AGENT_BUILD
from sandman.paths import Paths, shim_templates_dir

if TYPE_CHECKING:
    from sandman.engine import Engine

# The bases the agent is built from, best first; any other Debian base this home bootstrapped
# (of this machine's CPU) does too: its apt sources reach the mirror it was made from.
PREFERRED_BASES = ("debian:bookworm-slim", "debian:bookworm")
TOOLCHAIN_STEP = ("apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
                  "--no-install-recommends gcc musl-tools libc6-dev >/dev/null")
COMPILE = "mkdir -p /out && musl-gcc -static -O2 -s -o /out/sandman-agent /src/agent.c"
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
         "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}


def source_path() -> Path:
    return shim_templates_dir() / "agent.c"


def source_digest() -> str:
    """The hash of agent.c, read once per process for each (path, mtime, size) it has:
    `reshim --all` asks for every install (issue 24)."""
    src = source_path()
    st = src.stat()
    key = (str(src), st.st_mtime_ns, st.st_size)
    if key not in _digest_memo:
        _digest_memo.clear()
        _digest_memo[key] = hashlib.sha256(src.read_bytes()).hexdigest()
    return _digest_memo[key]


_digest_memo: dict[tuple[str, int, int], str] = {}


def agent_dir(paths: Paths) -> Path:
    return paths.data_dir / "agent"


def binary_path(paths: Paths) -> Path:
    """Where the binary of the current source is (or will be): named by the source's hash."""
    return agent_dir(paths) / f"sandman-agent-{source_digest()[:12]}"


def platform_name() -> str:
    """The platform the binary is built for: the local daemon's, which is this machine's."""
    machine = platform.machine().lower()
    return f"linux/{_ARCH.get(machine, machine)}"


def toolchain_tag(base_id: str) -> str:
    """Named after the id of the base it was made from: another base never shares it."""
    digest = hashlib.sha256(f"{base_id}\n{TOOLCHAIN_STEP}".encode()).hexdigest()[:12]
    return f"sandman/agent-toolchain:{digest}"


def record_path(binary: Path) -> Path:
    return binary.with_name(f"{binary.name}.sha256")


def file_sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def verified(binary: Path) -> bool:
    """The binary is there and hashes to what its build recorded (a binary an older sandman
    built, from a base nobody checked, has no record and does not count)."""
    try:
        want = record_path(binary).read_text(encoding="ascii").split()[0]
        return file_sha256(binary) == want
    except (OSError, UnicodeDecodeError, IndexError):
        return False


def drop_unverified(paths: Paths) -> bool:
    """Remove the binary when its hash is not the recorded one, so that nothing runs it and
    the next warm call builds it again; returns whether one was removed."""
    out = binary_path(paths)
    if not out.exists() or verified(out):
        return False
    for f in (out, Path(f"{out}.try")):
        with contextlib.suppress(OSError):
            f.unlink()
    return True


def shim_values(paths: Paths) -> dict[str, str]:
    """SM_AGENT (the binary a shim execs when it exists) and SM_AGENT_PLATFORM.

    Checked once per process and home (the folder made readable, an unverified binary
    dropped): `reshim --all` renders every install's shims and would hash the binary for each.
    """
    key = (str(paths.data_dir), source_digest())
    if key not in _values_memo:
        _values_memo[key] = _shim_values(paths)
    return dict(_values_memo[key])


_values_memo: dict[tuple[str, str], dict[str, str]] = {}


def _shim_values(paths: Paths) -> dict[str, str]:
    with contextlib.suppress(OSError):  # read by other users' shims, as the runtime is
        agent_dir(paths).mkdir(parents=True, exist_ok=True, mode=0o755)
        agent_dir(paths).chmod(0o755)
    with contextlib.suppress(OSError):
        drop_unverified(paths)
    return {"SM_AGENT": shlex.quote(str(binary_path(paths))),
            "SM_AGENT_PLATFORM": shlex.quote(platform_name())}


def build_base(engine: Engine, paths: Paths) -> tuple[str, str]:
    """(ref, image id) of the base to compile in: one this home bootstrapped, still here by the
    id recorded then. BuildError when there is none (a name alone is never enough)."""
    from sandman import provenance
    from sandman.errors import BuildError

    made = provenance.made_here(paths)

    def rank(ref: str) -> tuple[int, str]:
        return (PREFERRED_BASES.index(ref) if ref in PREFERRED_BASES else len(PREFERRED_BASES), ref)

    for ref in sorted(made, key=rank):
        m = provenance.BASE_RE.match(ref)
        if m is None or m.group("prefix"):  # not Debian, or another CPU's
            continue
        if engine.image(made[ref]) is not None:
            return ref, made[ref]
    raise BuildError("the warm agent runs on the host, so it is built only from a Debian base "
                     "this home bootstrapped, and there is none here: run `sandman bootstrap "
                     f"{PREFERRED_BASES[0]}`")


def can_build(engine: Engine, paths: Paths) -> bool:
    from sandman.errors import BuildError

    try:
        build_base(engine, paths)
    except BuildError:
        return False
    return True


def _made_from(engine: Engine, tag: str, base_id: str) -> bool:
    """The toolchain image under tag is one of ours, made on base_id: its layers begin with
    the base's (only sandman's agent build makes a `sandman/agent-toolchain` name)."""
    try:
        img = engine.client.images.get(tag).attrs
        base = engine.client.images.get(base_id).attrs
    except Exception:
        return False
    layers = (img.get("RootFS") or {}).get("Layers") or []
    under = (base.get("RootFS") or {}).get("Layers") or []
    labels = (img.get("Config") or {}).get("Labels") or {}
    return bool(under) and layers[:len(under)] == under and labels.get(LABEL_ROLE) == ROLE_AGENT_BUILD


def _toolchain(engine: Engine, paths: Paths, on_line: Callable[[str], None]) -> str:
    """The build image (a bootstrapped base + gcc + musl), made once per daemon and base."""
    base_ref, base_id = build_base(engine, paths)
    tag = toolchain_tag(base_id)
    if engine.image(tag) is not None and _made_from(engine, tag, base_id):
        return tag
    from sandman.engine import translate
    from sandman.errors import BuildError

    on_line(f"agent: installing gcc and musl in {base_ref} ({base_id[:19]}, bootstrapped here)")
    with translate("making the agent's build image"):
        c = engine.client.containers.run(base_id, ["sh", "-c", TOOLCHAIN_STEP], detach=True,
                                         labels={LABEL_ROLE: ROLE_AGENT_BUILD},
                                         network_mode=engine.network_mode(True))
        try:
            code = int(c.wait(timeout=900).get("StatusCode", 1))
            if code != 0:
                tail = c.logs().decode("utf-8", "replace").strip().splitlines()[-1:]
                raise BuildError(f"agent build image: apt-get failed ({code}): {' '.join(tail)}")
            repo, _, tg = tag.partition(":")
            c.commit(repository=repo, tag=tg, changes=[f"LABEL {LABEL_ROLE}={ROLE_AGENT_BUILD}"])
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
    if not force and verified(out):
        return out
    agent_dir(paths).mkdir(parents=True, exist_ok=True, mode=0o755)
    with FileLock(str(agent_dir(paths) / ".build.lock")):
        if not force and verified(out):
            return out
        tag = _toolchain(engine, paths, on_line)
        on_line("agent: compiling")
        src = source_path().read_bytes()
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo("src/agent.c")
            info.size, info.mode = len(src), 0o644
            tar.addfile(info, io.BytesIO(src))
        with translate("compiling the warm agent"):
            c = engine.client.containers.create(tag, ["sh", "-c", COMPILE], network_disabled=True,
                                                labels={LABEL_ROLE: ROLE_AGENT_BUILD})
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
        with contextlib.suppress(OSError):  # no window where an old record meets a new binary
            record_path(out).unlink()
        atomic_write(out, binary, 0o755, dir_mode=0o755)
        atomic_write(record_path(out), f"{hashlib.sha256(binary).hexdigest()}\n".encode(), 0o644,
                     dir_mode=0o755)
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
        from sandman.engine_choice import choose

        build(Engine.connect(choose()), paths)  # the engine the shim that started it passed on
    except Exception as e:  # a background job: the reason is kept, never raised at a user
        with contextlib.suppress(OSError):
            marker.write_text(f"{type(e).__name__}: {e}\n")
        return 3
    return 0


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main(sys.argv[1:]))
