"""Making a Debian base image from an apt mirror, for sites (and CI) that cannot pull one.

mmdebstrap writes a minimal root filesystem as a tarball, `docker import` turns it into an
image in the engine in use: Docker, root's Podman, or a rootless user's own Podman store (the
same import, through Podman's Docker-compatible API). It runs on the host as the user (root, or
--mode=unshare on the user's subordinate uid ranges), never inside a recipe, and only
with the suite name the user asked for; the mirror is mmdebstrap's default (deb.debian.org)
unless `--mirror` or `mirror` in config.toml says otherwise.

Archived suites (buster and older) are no longer on the normal mirrors. Their mirror is
`--mirror`, else `archive_mirror` in config.toml; sandman names no mirror host itself, so
without either it stops and says where Debian keeps them (its archive). Two things differ for
them: their Release files carry a Valid-Until date long past, so apt is told not to check it
(also in the image, so that `apt-get update` in a recipe works); and their Release files are
signed by keys that Debian has since retired, which debian-archive-keyring keeps in a separate
keyring. Both of the host's keyrings are copied into the new system's /etc/apt/trusted.gpg.d
before apt first runs, so signatures are still checked, never skipped.

Two more kinds of base. `arm64v8/debian:bookworm` (Docker Hub's per-architecture namespaces)
is Debian for another CPU: mmdebstrap --arch runs its maintainer scripts through QEMU user
emulation, and the image is built for that platform (image_from_rootfs says why not imported).
`--from-rootfs FILE NAME:TAG` makes a base of a vendor OS's root filesystem tarball (CentOS,
UBI, SLES): checked to be a tar with a /bin/sh whose ELF header names its platform, built,
proven to run, and only then tagged, so a failure never replaces a good base.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import lzma
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import urllib.parse
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sandman.errors import (
    BuildError,
    EngineError,
    MissingProgramError,
    PlatformError,
    SubidError,
    UsageError,
)
from sandman.names import LABEL_ROOTFS_FILE, LABEL_ROOTFS_SHA256
from sandman.platforms import (
    PLATFORMS,
    Platform,
    emulation_problem,
    from_elf,
    host_platform,
    lookup,
    native,
    same,
)
from sandman.provenance import BASE_RE, made_here
from sandman.text import safe

if TYPE_CHECKING:
    from sandman.engine import Engine
    from sandman.paths import Paths

# `arm64v8/debian:bookworm-slim`: Docker Hub's per-architecture namespaces name a base of
# another CPU (see platforms.PLATFORMS), so it never takes the place of the host's own.
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
# Suites Debian has moved off its mirrors to its archive (stretch's last LTS ended in 2022,
# buster's in 2024). Names only: whether a mirror has them is the mirror's business.
ARCHIVED_SUITES = frozenset({"squeeze", "wheezy", "jessie", "stretch", "buster"})
# Named in the error when no mirror is given for an archived suite; never used by itself.
DEBIAN_ARCHIVE_HINT = "http://archive.debian.org/debian"
# Release files of archived suites expired years ago; the signature is still checked.
ARCHIVED_APT_CONF = ['Acquire::Check-Valid-Until "false";']
# debian-archive-keyring: the keys of current releases, and the retired ones old suites need.
KEYRINGS = (
    Path("/usr/share/keyrings/debian-archive-keyring.gpg"),
    Path("/usr/share/keyrings/debian-archive-removed-keys.gpg"),
)
MIRROR_SCHEMES = ("http", "https", "file")


@dataclass(frozen=True)
class BootstrapPlan:
    ref: str
    suite: str
    slim: bool
    mirror: str | None
    archived: bool = False
    mirror_origin: str = ""  # where the mirror came from, for the user (archived suites)
    keyrings: tuple[Path, ...] = ()  # copied into the new system before apt runs
    platform: Platform | None = None  # another CPU's base (arm64v8/debian:...), made under QEMU

    def command(self, out: Path) -> list[str]:
        mode = "root" if os.geteuid() == 0 else "unshare"
        cmd = ["mmdebstrap", "--variant=minbase", f"--mode={mode}", "--format=tar"]
        if self.platform:
            cmd.append(f"--arch={self.platform.deb_arch}")
        if self.slim:
            cmd += [f"--dpkgopt={o}" for o in SLIM_EXCLUDES]
        cmd += [f"--aptopt={o}" for o in APT_CONF]
        if self.archived:
            cmd += [f"--aptopt={o}" for o in ARCHIVED_APT_CONF]
            # before `apt-get update`: both apt on the host (run on the new tree) and apt in
            # the image trust these; a setup hook, unlike --keyring, stays in the image
            cmd += ["--setup-hook=mkdir -p \"$1/etc/apt/trusted.gpg.d\"",
                    "--setup-hook=copy-in " + " ".join(str(k) for k in self.keyrings)
                    + " /etc/apt/trusted.gpg.d/"]
        cmd += [self.suite, str(out)]
        if self.mirror:
            cmd.append(self.mirror)
        return cmd

    def notes(self) -> list[str]:
        """What is done differently for an archived suite, said before it is done."""
        if not self.archived:
            return []
        return [
            f"{self.suite} is an archived Debian suite: mirror {self.mirror} ({self.mirror_origin})",
            "its Release files expired long ago: apt runs with Acquire::Check-Valid-Until "
            "false (kept in the image's apt config); signatures are still checked",
            "trusting the host's keyrings " + ", ".join(k.name for k in self.keyrings)
            + " (copied into the image's /etc/apt/trusted.gpg.d)",
        ]


def plan(ref: str, mirror: str | None = None, *, archive_mirror: str | None = None,
         keyrings: tuple[Path, ...] = KEYRINGS) -> BootstrapPlan:
    """`mirror` is for current suites; an archived one takes `archive_mirror` (the user's
    --mirror or config.toml's archive_mirror); there is no default host for it."""
    m = BASE_RE.match(ref)
    if not m:
        raise UsageError(
            f"cannot bootstrap '{ref}': only Debian bases can be made here, "
            "as debian:<suite> or debian:<suite>-slim (e.g. debian:bookworm-slim)"
        )
    suite, slim = m.group("suite"), bool(m.group("slim"))
    foreign = None
    if m.group("prefix"):
        foreign = next((x for x in PLATFORMS.values() if x.hub_prefix == m.group("prefix")), None)
        if foreign is None:
            raise UsageError(
                f"cannot bootstrap '{ref}': '{m.group('prefix')}/' names no platform; use one "
                "of " + ", ".join(f"{x.hub_prefix}/ ({x.name})" for x in PLATFORMS.values()))
    for given in (mirror, archive_mirror):
        if given is not None and urllib.parse.urlsplit(given).scheme not in MIRROR_SCHEMES:
            raise UsageError(f"mirror '{given}' is not an http://, https:// or file:// URL")
    if suite not in ARCHIVED_SUITES:
        return BootstrapPlan(ref, suite, slim, mirror, platform=foreign)
    missing = [str(k) for k in keyrings if not k.is_file()]
    if missing:
        raise MissingProgramError(
            f"cannot bootstrap archived suite {suite}: {', '.join(missing)} missing; "
            "install the host's debian-archive-keyring (apt-get install debian-archive-keyring)")
    if not archive_mirror:
        raise UsageError(
            f"cannot bootstrap '{ref}': {suite} is an archived Debian suite, not on the current "
            "mirrors; give its mirror with --mirror URL or archive_mirror in config.toml "
            f"(Debian's own archive is {DEBIAN_ARCHIVE_HINT})")
    return BootstrapPlan(ref, suite, slim, archive_mirror, archived=True, mirror_origin="given",
                         keyrings=keyrings, platform=foreign)


def bootstrap(
    p: BootstrapPlan, engine: Engine, *, tmp_dir: Path, on_line: Callable[[str], None],
) -> str:
    if shutil.which("mmdebstrap") is None:
        raise MissingProgramError("mmdebstrap is not installed; install it (apt-get install mmdebstrap)")
    if os.geteuid() != 0:
        require_unshare(p.ref)
    foreign = p.platform if p.platform and not native(p.platform, host_platform()) else None
    if foreign:  # mmdebstrap runs the new system's maintainer scripts through QEMU
        require_emulation(foreign, p.ref)
        if shutil.which("arch-test") is None:
            raise MissingProgramError(f"cannot bootstrap {p.ref}: mmdebstrap needs arch-test for "
                                      "another architecture; install it (apt-get install arch-test)")
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
        if foreign:
            return image_from_rootfs(engine, out, p.ref, foreign, shell="bash",
                                     labels={}, tmp_dir=tmp_dir, on_line=on_line)
        on_line(f"importing {out.name} as {p.ref}")
        return engine.import_tarball(out, p.ref, changes=['CMD ["bash"]'])


def require_unshare(ref: str) -> None:
    """As a non-root user (rootless Podman, or Docker through its group) mmdebstrap runs with
    --mode=unshare: newuidmap maps the new system's users onto the user's subordinate ranges.
    Without them it fails deep in its setup; this says what to do before anything runs."""
    import pwd

    from sandman.engine_choice import subid_problem

    uid = os.geteuid()
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    if shutil.which("newuidmap") is None:
        raise MissingProgramError(f"cannot bootstrap {ref} as {user}: mmdebstrap --mode=unshare "
                                  "needs newuidmap; install it (apt-get install uidmap), or run "
                                  "sandman bootstrap as root")
    if problem := subid_problem(user, uid):
        raise SubidError(f"cannot bootstrap {ref} as {user}: mmdebstrap --mode=unshare maps users "
                         f"as rootless Podman does, and {problem.removeprefix('rootless Podman ')}"
                         "; or run sandman bootstrap as root")


# -- another CPU, and bases from a vendor's root filesystem --------------------------------------
def require_emulation(p: Platform, ref: str) -> None:
    """PlatformError with the fix unless this host runs p's programs (natively or by QEMU)."""
    problem = emulation_problem(p, host_platform())
    if problem:
        raise PlatformError(f"cannot make {ref}: {problem}")


# NAME:TAG of a base made from a root filesystem; `sandman/...` is where sandman's own images live
REF_RE = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*"
                    r":[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
MAX_LINK_HOPS = 40


@dataclass(frozen=True)
class Rootfs:
    """What sandman checks in a root filesystem tarball before it becomes a base."""

    path: Path
    sha256: str
    platforms: tuple[Platform, ...]  # what its /bin/sh was built for (32-bit arm: several)
    shell: str  # "bash" when /bin/bash is there, else "/bin/sh": the image's CMD


def _member_name(name: str) -> str:
    while name.startswith(("./", "/")):
        name = name[1:] if name.startswith("/") else name[2:]
    return "" if name == "." else name.rstrip("/")


def _resolve(members: dict[str, tarfile.TarInfo], path: str, hops: int = 0) -> tarfile.TarInfo | None:
    """The member a path in the tarball's tree leads to, following its symlinks (merged /usr:
    bin -> usr/bin, sh -> dash) as the running system would, never outside the tree."""
    parts = [x for x in path.split("/") if x not in ("", ".")]
    cur = ""
    for i, part in enumerate(parts):
        if part == "..":
            cur = cur.rpartition("/")[0]
            continue
        name = f"{cur}/{part}" if cur else part
        m = members.get(name)
        if m is None:  # a folder a tarball may leave implicit (usr/ of usr/bin/sh), or nothing
            cur = name
            continue
        if m.issym():
            if hops >= MAX_LINK_HOPS:
                return None
            base = "" if m.linkname.startswith("/") else cur
            return _resolve(members, "/".join([base, m.linkname, *parts[i + 1:]]), hops + 1)
        cur = name
    m = members.get(cur)
    if m is not None and m.islnk():  # a hard link names another member, from the top
        m = members.get(_member_name(m.linkname))
    return m


def inspect_rootfs(path: Path) -> Rootfs:
    """Refuse what is not a root filesystem, one line each: not a file, not a tar (plain, gzip,
    bzip2, xz), no /bin/sh, a /bin/sh that is no Linux program. Reads it once for the members
    and once for its sha256 (recorded in the base's labels)."""
    check_rootfs_file(path)
    try:
        with tarfile.open(path, "r:*") as tar:
            members = {_member_name(m.name): m for m in tar}
            sh = _resolve(members, "bin/sh")
            if sh is None or not sh.isfile():
                raise UsageError(
                    f"--from-rootfs {path}: no /bin/sh in it, so it is not a root filesystem (make "
                    "one with: tar -C ROOT -cf FILE .)")
            f = tar.extractfile(sh)
            header = f.read(64) if f else b""
            bash = _resolve(members, "bin/bash")
    except (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError) as e:
        first = (str(e).splitlines() or [type(e).__name__])[0].rstrip(":")
        why = "" if "could not be opened" in first else f": {first}"  # tarfile's 4-line list
        raise UsageError(f"--from-rootfs {path}: not a tar archive (plain, gzip, bzip2 or xz)"
                         f"{why}") from e
    found = tuple(from_elf(header))
    if not found:
        what = "is not a Linux program (ELF)" if header[:4] != b"\x7fELF" else \
            "is built for a CPU sandman does not know"
        raise UsageError(f"--from-rootfs {path}: its /bin/sh {what}")
    h = hashlib.sha256()
    with path.open("rb") as raw:
        for block in iter(lambda: raw.read(1 << 20), b""):
            h.update(block)
    return Rootfs(path, h.hexdigest(), found, "bash" if bash is not None and bash.isfile() else "/bin/sh")


def rootfs_platform(fs: Rootfs, asked: str | None) -> Platform:
    """The platform of the new base: what its /bin/sh says, which `--platform` may only narrow
    (32-bit arm programs do not tell v5 from v7)."""
    names = ", ".join(p.name for p in fs.platforms)
    if asked is not None:
        p = lookup(asked)
        if p is None:
            raise UsageError(f"--platform {asked}: unknown platform; sandman knows "
                             + ", ".join(PLATFORMS))
        if p not in fs.platforms:
            raise UsageError(f"--from-rootfs {fs.path} holds {names} programs (its /bin/sh), "
                             f"not {p.name}")
        return p
    if len(fs.platforms) > 1:
        raise UsageError(f"--from-rootfs {fs.path}: its /bin/sh may be {names}; say which "
                         "with --platform")
    return fs.platforms[0]


def check_rootfs_file(path: Path) -> None:
    if not path.is_file():
        raise UsageError(f"--from-rootfs {path}: no such file")


def check_rootfs_ref(ref: str) -> None:
    if not REF_RE.match(ref):
        raise UsageError(f"'{ref}' is not a NAME:TAG for the new base (e.g. vendor/centos:7)")
    if ref.split("/", 1)[0] == "sandman" or ref.startswith("sandman:"):
        raise UsageError(f"'{ref}': the sandman/ names belong to the images sandman builds; "
                         "choose another name")


def from_rootfs(path: Path, ref: str, engine: Engine, *, platform: str | None, tmp_dir: Path,
                on_line: Callable[[str], None]) -> str:
    """A vendor OS's root filesystem tarball as the base `ref`; returns the image id.

    Checked first (inspect_rootfs, rootfs_platform, the host's emulation), built and proven to
    run its own /bin/sh, and only then tagged: a failure leaves `ref` where it was.
    """
    check_rootfs_ref(ref)
    fs = inspect_rootfs(path)
    p = rootfs_platform(fs, platform)
    require_emulation(p, ref)
    labels = {LABEL_ROOTFS_SHA256: fs.sha256, LABEL_ROOTFS_FILE: path.name}
    on_line(f"{path.name}: sha256 {fs.sha256}, {p.name}")
    return image_from_rootfs(engine, path, ref, p, shell=fs.shell, labels=labels,
                             tmp_dir=tmp_dir, on_line=on_line)


ROOTFS_OK = "sandman-rootfs-runs"


def image_from_rootfs(engine: Engine, tarball: Path, ref: str, p: Platform, *, shell: str,
                      labels: dict[str, str], tmp_dir: Path, on_line: Callable[[str], None]) -> str:
    """Build `FROM scratch` + `ADD` of the tarball for platform p, check it runs, then tag it.

    Not `docker import`: docker 20.10 stamps the host's architecture on an imported image
    whatever its --platform says (an arm64 system would be labelled amd64, and run so), and
    the SDK's import takes no platform at all. A build from scratch takes the build's platform
    (the legacy builder too, no BuildKit needed), and ADD unpacks a plain, gzip, bzip2 or xz
    tarball keeping its owners, modes and links, as import does.
    """
    # ADD comes first: any step before it would commit a host-platform image for ADD to
    # refuse. (No build-step label either: ADD runs no container that could be left behind.)
    dockerfile = f"FROM scratch\nADD rootfs.tar /\nCMD {json.dumps([shell])}\n"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    on_line(f"building {ref} ({p.name}) from {tarball.name}")
    with tempfile.TemporaryFile(dir=tmp_dir) as ctx:
        with tarfile.open(fileobj=ctx, mode="w") as tar:
            data = dockerfile.encode()
            info = tarfile.TarInfo("Dockerfile")
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
            tar.add(str(tarball), arcname="rootfs.tar", recursive=False)
        ctx.seek(0)
        image_id = engine.build(ctx, labels=labels, buildargs={}, on_line=on_line,
                                what=ref, platform=p.name)
    try:
        made = engine.image(image_id)
        if made is None or not same(made.platform, p.name):
            raise BuildError(f"cannot make {ref}: docker built a "
                             f"{made.platform if made else 'missing'} image, not {p.name}; "
                             f"{ref} was not changed")
        try:
            code, out = engine.run_capture(image_id, ["/bin/sh", "-c", f"echo {ROOTFS_OK}"],
                                           entrypoint=[])
        except EngineError as e:  # the kernel refused it: exec format error and the like
            code, out = -1, e.message
        if code != 0 or ROOTFS_OK not in out:
            last = out.strip().splitlines()[-1:] or ["no output"]
            raise BuildError(f"cannot make {ref}: its /bin/sh does not run here (exit {code}: "
                             f"{safe(last[0])[:300]}); {ref} was not changed")
    except BaseException:
        with contextlib.suppress(Exception):
            old = engine.image(ref)
            if old is None or old.id != image_id:  # a cache hit may be the good base itself
                engine.remove_image(image_id, force=True)
        raise
    engine.tag(image_id, ref)
    return image_id


def present_as_made(engine: Engine, paths: Paths, ref: str) -> bool:
    """`ref` here still names the very image this home bootstrapped (not one an import, a pull
    or anything else put under that name)."""
    want = made_here(paths).get(ref)
    info = engine.image(ref)
    return want is not None and info is not None and info.id == want
