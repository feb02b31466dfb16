"""Image platforms (`linux/amd64`, `linux/arm64`...) and whether this host can run them.

A recipe's `platform` asks for images of another CPU architecture than the host's: x86-only
vendor kits on an arm64 host, say. The kernel runs such programs through QEMU user emulation
when binfmt_misc has an entry for their ELF header; Docker needs nothing else. This module
knows the platforms sandman accepts, which ELF header and Debian architecture each one has,
and reads /proc/sys/fs/binfmt_misc to tell whether an entry would run it, and how to fix it
when not. Stdlib only: recipe_check.py validates names with it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
# what a user runs to make emulation work (Debian's packages register every qemu-* entry with
# the F flag, so containers can use them)
EMULATION_FIX = ("as root: apt-get install qemu-user-static binfmt-support; mount -t binfmt_misc "
                 "binfmt_misc /proc/sys/fs/binfmt_misc (if not mounted); update-binfmts --enable")


@dataclass(frozen=True)
class Platform:
    """One platform: its Docker name and what identifies its programs."""

    name: str  # as Docker writes it: linux/arm64
    arch: str  # the image config's Architecture
    variant: str  # the image config's Variant ("" when none)
    deb_arch: str  # Debian's name (mmdebstrap --arch)
    hub_prefix: str  # Docker Hub's per-architecture namespace (arm64v8/debian)
    elf_class: int  # 1: 32-bit, 2: 64-bit
    elf_data: int  # 1: little endian, 2: big endian
    elf_machine: int  # e_machine
    uname: str  # what `uname -m` says on such a host

    def elf_header(self) -> bytes:
        """The first 20 bytes of an executable of this platform, to match binfmt entries with."""
        order = "little" if self.elf_data == 1 else "big"
        ident = b"\x7fELF" + bytes([self.elf_class, self.elf_data, 1, 0]) + bytes(8)
        return ident + (2).to_bytes(2, order) + self.elf_machine.to_bytes(2, order)


PLATFORMS: dict[str, Platform] = {p.name: p for p in (
    Platform("linux/amd64", "amd64", "", "amd64", "amd64", 2, 1, 62, "x86_64"),
    Platform("linux/arm64", "arm64", "v8", "arm64", "arm64v8", 2, 1, 183, "aarch64"),
    Platform("linux/arm/v7", "arm", "v7", "armhf", "arm32v7", 1, 1, 40, "armv7l"),
    Platform("linux/arm/v5", "arm", "v5", "armel", "arm32v5", 1, 1, 40, "armv5tel"),
    Platform("linux/386", "386", "", "i386", "i386", 1, 1, 3, "i686"),
    Platform("linux/ppc64le", "ppc64le", "", "ppc64el", "ppc64le", 2, 1, 21, "ppc64le"),
    Platform("linux/s390x", "s390x", "", "s390x", "s390x", 2, 2, 22, "s390x"),
    Platform("linux/riscv64", "riscv64", "", "riscv64", "riscv64", 2, 1, 243, "riscv64"),
    Platform("linux/mips64le", "mips64le", "", "mips64el", "mips64le", 2, 1, 8, "mips64"),
)}
ALIASES = {"linux/arm64/v8": "linux/arm64", "linux/x86_64": "linux/amd64", "linux/aarch64": "linux/arm64"}
# what a CPU of the key runs without emulation besides its own (the kernel's 32-bit support)
NATIVE_ALSO = {"linux/amd64": ("linux/386",)}


def lookup(name: str) -> Platform | None:
    """The platform called `name` (Docker's spelling, or a common alias), else None."""
    return PLATFORMS.get(ALIASES.get(name, name))


def same(a: str, b: str) -> bool:
    """Whether two platform strings name the same one (linux/arm64 is linux/arm64/v8; a
    variant counts only for 32-bit arm, and only when both say one)."""
    pa, pb = (ALIASES.get(x, x).split("/") for x in (a, b))
    if pa[:2] != pb[:2]:
        return False
    return pa[1] != "arm" or len(pa) < 3 or len(pb) < 3 or pa[2] == pb[2]


def known_names() -> str:
    return ", ".join(PLATFORMS)


def from_machine(machine: str) -> Platform | None:
    """The platform of a host from `uname -m` or Docker's `Arch` (x86_64, aarch64, amd64...)."""
    for p in PLATFORMS.values():
        if machine in (p.uname, p.arch) and not (p.arch == "arm" and p.variant != "v7"):
            return p
    return None


def host_platform(daemon_arch: str | None = None) -> Platform | None:
    """The host's platform: the daemon's `Arch` when known, else this machine's."""
    return from_machine(daemon_arch or os.uname().machine)


def from_elf(header: bytes) -> list[Platform]:
    """Every platform an ELF header (at least 20 bytes) can belong to; [] when it is not ELF."""
    if len(header) < 20 or header[:4] != b"\x7fELF":
        return []
    order = "little" if header[5] == 1 else "big"
    machine = int.from_bytes(header[18:20], order)
    return [p for p in PLATFORMS.values()
            if (p.elf_class, p.elf_data, p.elf_machine) == (header[4], header[5], machine)]


@dataclass(frozen=True)
class BinfmtEntry:
    name: str
    enabled: bool
    interpreter: str
    flags: str
    offset: int
    magic: bytes
    mask: bytes

    def matches(self, header: bytes) -> bool:
        part = header[self.offset:self.offset + len(self.magic)]
        if len(part) < len(self.magic):
            return False
        mask = self.mask or b"\xff" * len(self.magic)
        return all((a & m) == (b & m) for a, b, m in zip(part, self.magic, mask, strict=False))


def binfmt_entries(folder: Path | None = None) -> list[BinfmtEntry] | None:
    """The registered binfmt_misc entries of the magic kind; None when binfmt_misc is not
    mounted (its `register` file is missing)."""
    folder = folder or BINFMT_DIR
    if not (folder / "register").exists():
        return None
    out: list[BinfmtEntry] = []
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return None
    for name in names:
        if name in ("register", "status"):
            continue
        try:
            text = (folder / name).read_text()
        except OSError:
            continue
        fields: dict[str, str] = {}
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            fields[key] = value.strip() if value else ""
        if "magic" not in fields:
            continue  # an extension entry
        try:
            out.append(BinfmtEntry(
                name, "enabled" in fields, fields.get("interpreter", ""),
                fields.get("flags:", ""), int(fields.get("offset", "0")),
                bytes.fromhex(fields["magic"]), bytes.fromhex(fields.get("mask", ""))))
        except ValueError:
            continue
    return out


def native(p: Platform, host: Platform | None) -> bool:
    """Whether a host of platform `host` runs p's programs without emulation."""
    return host is not None and (p.name == host.name or p.name in NATIVE_ALSO.get(host.name, ()))


def emulation_problem(p: Platform, host: Platform | None, folder: Path | None = None) -> str | None:
    """Why this host cannot run programs of platform p (None: it can, natively or by QEMU).

    The binfmt entry must be enabled and have the F flag: without it the kernel looks for the
    interpreter inside the container, where it is not.
    """
    if native(p, host):
        return None
    where = f"this {host.name if host else 'unknown'} host"
    folder = folder or BINFMT_DIR
    entries = binfmt_entries(folder)
    if entries is None:
        return f"{where} cannot run {p.name} programs: binfmt_misc is not mounted; fix: {EMULATION_FIX}"
    found = [e for e in entries if e.matches(p.elf_header())]
    if not found:
        return (f"{where} cannot run {p.name} programs: no QEMU user emulation is registered "
                f"in {folder}; fix: {EMULATION_FIX}")
    usable = [e for e in found if e.enabled and "F" in e.flags]
    if not usable:
        e = found[0]
        why = "is disabled" if not e.enabled else "lacks the F (fix binary) flag, so containers cannot use it"
        return (f"{where} cannot run {p.name} programs in containers: binfmt entry {folder / e.name} "
                f"{why}; fix: {EMULATION_FIX}")
    return None


def emulator(p: Platform, folder: Path | None = None) -> str | None:
    """The name of the binfmt entry that runs platform p (for doctor), or None."""
    for e in binfmt_entries(folder) or []:
        if e.enabled and "F" in e.flags and e.matches(p.elf_header()):
            return e.name
    return None


def doctor_checks(wanted: list[str], folder: Path | None = None) -> list[tuple[bool, str, str]]:
    """`sandman doctor`'s lines on emulation: binfmt_misc and what it runs (always shown, ok),
    and one line per platform an install uses, failing when this host cannot run it."""
    host = host_platform()
    folder = folder or BINFMT_DIR
    entries = binfmt_entries(folder)
    if entries is None:
        info = f"not mounted at {folder} (only needed for a recipe's `platform`)"
    else:
        runs = [p.name for p in PLATFORMS.values()
                if not native(p, host) and emulator(p, folder) is not None]
        info = ("QEMU user emulation for " + ", ".join(runs)) if runs else \
            "mounted, no QEMU user emulation registered (only needed for a recipe's `platform`)"
    out = [(True, "binfmt_misc", info)]
    for name in wanted:
        p = lookup(name)
        problem = f"unknown platform {name}" if p is None else emulation_problem(p, host, folder)
        how = "native" if p is not None and native(p, host) else f"via {emulator(p, folder) if p else '-'}"
        out.append((problem is None, f"platform {name}", problem or f"runs here ({how})"))
    return out
