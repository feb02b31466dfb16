"""The unit tests' shim: rendered for a demo tool, run in dry-run mode (no daemon needed).

Shared by the unit tests of the shim runtime (test_shims.py, test_refusal_table.py), so no test
module imports another.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from sandman.config import ToolSettings
from sandman.paths import Paths
from sandman.recipes import Runtime
from sandman.shims import ShimContext


def ctx(tmp_path: Path, runtime: Runtime, settings: ToolSettings | None = None) -> ShimContext:
    paths = Paths.from_env({"SANDMAN_HOME": str(tmp_path / "home")})
    return ShimContext(
        tool="demo", version="1.0", image="sandman/demo:1.0-abc", runtime=runtime,
        settings=settings or ToolSettings(), locales=("c", "c.utf8", "posix"),
        utf8_locale="C.UTF-8", passwd_uid=None, passwd_dir=None, paths=paths,
    )


def dry_run(script: str, args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    e = {"PATH": os.environ["PATH"], "HOME": str(cwd.parent), "DOCKER_HOST": "tcp://127.0.0.1:9",
         "SANDMAN_DRY_RUN": "1", **(env or {})}
    return subprocess.run(["bash", "-c", script, "demo-1.0", *args], cwd=cwd, env=e,
                          capture_output=True, text=True)


def tool_argv(argv: list[str], image: str) -> list[str]:
    """The words after the image in a dry-run command, without the mount check in front of the
    tool (shims/shim.bash sm_pin_cold: the agent's `pin WHO CODE [DST DEV INO]... --`, or the
    image's `sh -c CHECK sh WHO CODE [DST DEV INO]... --`): what the tool's own argv starts with."""
    tail = argv[argv.index(image) + 1:]
    if tail[:1] == ["pin"] or (tail[:1] == ["-c"] and "is not the one that was checked" in tail[1]):
        tail = tail[tail.index("--") + 1:]
    return tail


def argv_of(out: str) -> list[str]:
    """Split a dry-run line the way bash would (it uses $'...' quoting for control bytes)."""
    p = subprocess.run(["bash", "-c", 'eval "set -- $1"; printf "%s\\0" "$@"', "_", out],
                       capture_output=True, check=True)
    return [a.decode() for a in p.stdout.split(b"\0")[:-1]]
