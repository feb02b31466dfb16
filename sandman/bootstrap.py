"""Making a Debian base image from an apt mirror, for sites (and CI) that cannot pull one.

mmdebstrap writes a minimal root filesystem as a tarball, `docker import` turns it into an
image. It runs on the host as the user (root or with unshare), never inside a recipe, and only
with the suite name the user asked for; the mirror is mmdebstrap's default (the host's apt
sources) unless `--mirror` or `mirror` in config.toml says otherwise.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sandman.errors import BuildError, MissingProgramError, UsageError

if TYPE_CHECKING:
    from sandman.engine import Engine

BASE_RE = re.compile(r"^debian:(?P<suite>[a-z]+)(?P<slim>-slim)?$")
# What Debian's own -slim images leave out; docs and man pages are never used in a tool box.
SLIM_EXCLUDES = [
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
]
# Like Debian's docker images: no apt caches or recommends left behind in derived images.
APT_CONF = [
    'APT::Install-Recommends "false";',
    "DPkg::Post-Invoke { \"rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true\"; };",
]


@dataclass(frozen=True)
class BootstrapPlan:
    ref: str
    suite: str
    slim: bool
    mirror: str | None

    def command(self, out: Path) -> list[str]:
        mode = "root" if os.geteuid() == 0 else "unshare"
        cmd = ["mmdebstrap", "--variant=minbase", f"--mode={mode}", "--format=tar"]
        if self.slim:
            cmd += [f"--dpkgopt={o}" for o in SLIM_EXCLUDES]
        cmd += [f"--aptopt={o}" for o in APT_CONF]
        cmd += [self.suite, str(out)]
        if self.mirror:
            cmd.append(self.mirror)
        return cmd


def plan(ref: str, mirror: str | None = None) -> BootstrapPlan:
    m = BASE_RE.match(ref)
    if not m:
        raise UsageError(
            f"cannot bootstrap '{ref}': only Debian bases can be made here, "
            "as debian:<suite> or debian:<suite>-slim (e.g. debian:bookworm-slim)"
        )
    return BootstrapPlan(ref, m.group("suite"), bool(m.group("slim")), mirror)


def bootstrap(
    p: BootstrapPlan, engine: Engine, *, tmp_dir: Path, on_line: Callable[[str], None],
) -> str:
    if shutil.which("mmdebstrap") is None:
        raise MissingProgramError("mmdebstrap is not installed; install it (apt-get install mmdebstrap)")
    tmp_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=tmp_dir, prefix="bootstrap-") as d:
        out = Path(d) / f"{p.suite}.tar"
        cmd = p.command(out)
        on_line("$ " + " ".join(cmd))
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        tail: list[str] = []
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()
            tail = ([*tail, line])[-20:]
            on_line(line)
        if proc.wait() != 0:
            raise BuildError(f"mmdebstrap failed for {p.ref} (exit {proc.returncode})",
                               detail="\n".join(tail))
        on_line(f"importing {out.name} as {p.ref}")
        return engine.import_tarball(out, p.ref, changes=['CMD ["bash"]'])
