"""A recording stand-in for Debian's mmdebstrap, for the bootstrap tests about sandman's side.

A real mmdebstrap run takes minutes and tests Debian as much as sandman. What most bootstrap
tests check is sandman's share: the command it asks mmdebstrap for (mode, slim options, an
archived suite's hooks and apt options, the mirror), and what it then does with the tarball
(the import into Docker or Podman, the name, CMD, "already present", errors). So those tests
put this stand-in first on PATH: it records its argv and writes a real root filesystem, made
once per session by `docker export` of one of the Debian bases the suite already has. The one
real run left is test_platform.py's arm64 base (a foreign-arch image needs Debian's own work).

The stand-in is strict, so a test cannot pass with a command mmdebstrap would refuse: it fails
(exit 1, `E:` on stderr, as mmdebstrap reports errors) on an option it does not know, an option
after SUITE, a variant, mode, format or architecture it has no root filesystem for, --mode=root
when not root, --mode=unshare for a user without subordinate uids, a mirror that is not an
http(s) or file URL, a setup hook that is not valid shell or copies in a file it cannot read.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

RECORD_ENV = "MMDEBSTRAP_STANDIN_RECORD"
MARKER = "etc/sandman-standin"  # in each tarball: which base it came from, and a session token

# Runs as root or as a rootless test user, so the system python (readable by everyone), isolated
# from the caller's PYTHONPATH. Only what sandman's commands use is understood.
SCRIPT = r'''#!/usr/bin/python3 -I
"""mmdebstrap stand-in written by sandman's tests (tests/integration/bootstrap_helpers.py)."""
import json
import os
import pwd
import shutil
import subprocess
import sys
import urllib.parse
from pathlib import Path

CONFIG = Path(__file__).resolve().parent.parent / "rootfs.json"
ONE_OF = {"--variant": {"minbase"}, "--mode": {"root", "unshare"}, "--format": {"tar"}}
MANY = ("--dpkgopt", "--aptopt", "--setup-hook")
SPECIAL_HOOKS = ("copy-out", "tar-in", "tar-out", "upload", "download", "sync-in", "sync-out")


def fail(why):
    print(f"E: mmdebstrap stand-in: {why}", file=sys.stderr)
    sys.exit(1)


def main():
    record = os.environ.get("RECORD_ENV")
    if not record:
        fail("RECORD_ENV is not set (the test did not pass it, or the caller dropped it)")
    with open(record, "a") as f:
        f.write(json.dumps({"argv": sys.argv[1:], "euid": os.geteuid()}) + "\n")
    config = json.loads(CONFIG.read_text())
    opts, many, pos = {}, {k: [] for k in MANY}, []
    for a in sys.argv[1:]:
        if pos or not a.startswith("-"):
            if a.startswith("-"):
                fail(f"option {a} after SUITE (options come first)")
            pos.append(a)
            continue
        name, eq, value = a.partition("=")
        if not eq or not value:
            fail(f"{a}: expected --option=value")
        if name in ONE_OF:
            if value not in ONE_OF[name]:
                fail(f"{name}={value}: only {sorted(ONE_OF[name])} are understood here")
            if name in opts:
                fail(f"{name} given twice")
            opts[name] = value
        elif name == "--arch":
            opts.setdefault(name, value)
            if opts[name] != value:
                fail("--arch given twice")
        elif name in MANY:
            many[name].append(value)
        else:
            fail(f"unknown option {name}")
    for name in ONE_OF:
        if name not in opts:
            fail(f"no {name}= given; only {sorted(ONE_OF[name])} are understood here")
    if len(pos) < 2:
        fail(f"expected SUITE TARGET [MIRROR...], got {pos}")
    suite, target, mirrors = pos[0], Path(pos[1]), pos[2:]
    euid = os.geteuid()
    if opts["--mode"] == "root" and euid != 0:
        fail("--mode=root needs root")
    if opts["--mode"] == "unshare" and euid != 0:
        user = pwd.getpwuid(euid).pw_name
        ranges = Path("/etc/subuid").read_text().splitlines()
        if not any(ln.split(":")[0] in (user, str(euid)) for ln in ranges):
            fail(f"--mode=unshare: {user} has no range in /etc/subuid")
    for m in mirrors:
        url = urllib.parse.urlsplit(m)
        if url.scheme not in ("http", "https", "file") or not (url.netloc or url.path.strip("/")):
            fail(f"mirror {m!r}: only http://, https:// and file:// URLs are understood here")
    for o in many["--dpkgopt"] + many["--aptopt"]:
        if not o.strip():
            fail("an empty --dpkgopt or --aptopt")
    for hook in many["--setup-hook"]:
        word, _, rest = hook.partition(" ")
        if word == "copy-in":
            paths = rest.split()
            if len(paths) < 2 or not paths[-1].startswith("/"):
                fail(f"copy-in: expected SOURCE... /DEST, got {rest!r}")
            for src in paths[:-1]:
                try:
                    with open(src, "rb") as f:
                        f.read(1)
                except OSError as e:
                    fail(f"copy-in: cannot read {src}: {e.strerror}")
        elif word in SPECIAL_HOOKS:
            fail(f"setup hook {word} is not understood here")
        elif subprocess.run(["sh", "-n", "-c", hook]).returncode != 0:
            fail(f"setup hook {hook!r}: not a valid shell command")
    arch = opts.get("--arch", config["host_arch"])
    rootfs = config["rootfs"].get(f"{suite}/{arch}")
    if rootfs is None:
        fail(f"no root filesystem for {suite} on {arch} (the test gives one: StandIn.provide)")
    if not target.parent.is_dir():
        fail(f"{target.parent} is not a directory")
    shutil.copyfile(rootfs["tarball"], target)
    print(f"I: stand-in: {suite} ({arch}) from {rootfs['image']} written to {target}",
          file=sys.stderr)


main()
'''.replace("RECORD_ENV", RECORD_ENV)


@dataclass(frozen=True)
class Call:
    """One run of the stand-in: what sandman asked for, and as whom."""

    argv: list[str]
    euid: int

    @property
    def options(self) -> list[str]:
        return [a for a in self.argv if a.startswith("--")]

    @property
    def positional(self) -> list[str]:
        """SUITE TARGET [MIRROR...] (the stand-in takes options before them only)."""
        return [a for a in self.argv if not a.startswith("--")]

    def values(self, option: str) -> list[str]:
        """Every value of a repeated --option=value, in order."""
        return [a.split("=", 1)[1] for a in self.argv if a.startswith(option + "=")]


@dataclass
class StandIn:
    """The stand-in's folder (0755 under /tmp: rootless users run it and read its tarballs)."""

    root: Path
    host_arch: str
    rootfs: dict[str, dict[str, str]] = field(default_factory=dict)  # "suite/arch" -> tarball, image
    _exported: dict[str, Path] = field(default_factory=dict)  # image -> its exported tarball
    _markers: dict[Path, str] = field(default_factory=dict)  # tarball -> its /etc/sandman-standin

    @property
    def bin_dir(self) -> Path:
        return self.root / "bin"

    def _write_config(self) -> None:
        cfg = self.root / "rootfs.json"
        cfg.write_text(json.dumps({"host_arch": self.host_arch, "rootfs": self.rootfs}))
        cfg.chmod(0o644)

    def provide(self, suite: str, image: str) -> str:
        """Let the stand-in answer `suite` (host arch) with a tarball of `image`, exported on first
        use; returns what /etc/sandman-standin then says in an image made from it."""
        if image not in self._exported:
            tarball = self.root / f"rootfs-{len(self._exported)}.tar"
            cid = subprocess.run(["docker", "create", image, "true"], capture_output=True,
                                 text=True, check=True).stdout.strip()
            try:
                subprocess.run(["docker", "export", "-o", str(tarball), cid], check=True,
                               capture_output=True, timeout=600)
            finally:
                subprocess.run(["docker", "rm", "-f", cid], capture_output=True)
            self._exported[image] = tarball
        return self.provide_tarball(suite, self.host_arch, self._exported[image], image)

    def provide_tarball(self, suite: str, arch: str, tarball: Path, source: str) -> str:
        """Let the stand-in answer `suite` on `arch` with this tarball (marked on first use, so
        an image shows it came from it); returns the marker."""
        if tarball not in self._markers:
            self._markers[tarball] = f"{source} {secrets.token_hex(8)}\n"
            add_member(tarball, MARKER, self._markers[tarball].encode())
            tarball.chmod(0o644)
        self.rootfs[f"{suite}/{arch}"] = {"tarball": str(tarball), "image": source}
        self._write_config()
        return self._markers[tarball]

    def record(self, owner: tuple[int, int] | None = None) -> Path:
        """A new, empty record file (writable by owner uid:gid when the stand-in runs as them)."""
        fd, name = tempfile.mkstemp(prefix="calls-", suffix=".jsonl", dir=self.root / "records")
        os.close(fd)
        path = Path(name)
        path.chmod(0o644)
        if owner is not None:
            os.chown(path, *owner)
        return path

    def env(self, record: Path, path: str | None = None) -> dict[str, str]:
        """PATH with the stand-in first (before `path`, default this process's PATH), and where
        it records its calls."""
        rest = os.environ.get("PATH", "") if path is None else path
        return {"PATH": f"{self.bin_dir}{os.pathsep}{rest}", RECORD_ENV: str(record)}

    @staticmethod
    def calls(record: Path) -> list[Call]:
        return [Call(**json.loads(ln)) for ln in record.read_text().splitlines()]


def add_member(tarball: Path, name: str, data: bytes) -> None:
    """Appended, not rewritten: the tarball keeps every member (owners, devices) as exported."""
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.uid, info.gid = len(data), 0o644, 0, 0
    with tarfile.open(tarball, "a") as tar:
        tar.addfile(info, io.BytesIO(data))


def make_standin() -> StandIn:
    """The folder under /tmp, not pytest's (0700): a rootless Podman user runs the script."""
    root = Path(tempfile.mkdtemp(prefix="sandman-mmdebstrap-standin-", dir="/tmp"))
    for d in (root, root / "bin", root / "records"):
        d.mkdir(exist_ok=True)
        d.chmod(0o755)
    script = root / "bin" / "mmdebstrap"
    script.write_text(SCRIPT)
    script.chmod(0o755)
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                          check=True).stdout.strip()
    s = StandIn(root, arch)
    s._write_config()
    return s


def remove_standin(s: StandIn) -> None:
    shutil.rmtree(s.root, ignore_errors=True)
