"""What sandman knows about its images: facts read once per image, and which ones are garbage.

Facts (the image's passwd and group files and its locales) are read at install time so the
shim can give the invoking user a passwd entry and a locale the image really has, without
asking the image anything on the hot path.
"""

from __future__ import annotations

import json
import os
import pwd
from dataclasses import dataclass
from pathlib import Path

from sandman.engine import LABEL, Engine, ImageInfo
from sandman.installs import InstallRecord, atomic_write
from sandman.paths import Paths


@dataclass(frozen=True)
class ImageFacts:
    passwd: str
    group: str
    locales: tuple[str, ...]  # normalized: lower case, no '-' (en_us.utf8, c.utf8)

    @property
    def utf8_locale(self) -> str:
        for cand in ("c.utf8", "en_us.utf8"):
            if cand in self.locales:
                return "C.UTF-8" if cand == "c.utf8" else "en_US.UTF-8"
        return "C"


def normalize_locale(name: str) -> str:
    return name.lower().replace("-", "")


def facts(engine: Engine, paths: Paths, image_id: str) -> ImageFacts:
    cache = paths.facts_dir / f"{image_id.replace('sha256:', '')}.json"
    if cache.exists():
        try:
            d = json.loads(cache.read_text())
            return ImageFacts(d["passwd"], d["group"], tuple(d["locales"]))
        except (ValueError, KeyError):
            pass
    files = engine.read_files(image_id, ["/etc/passwd", "/etc/group", "/usr/lib/locale"])
    locales = {"c", "posix"}
    # glibc >= 2.35 has C.UTF-8 built in; Debian's libc-bin ships C.utf8 in /usr/lib/locale.
    for name in files.get("/usr/lib/locale", b"").decode("utf-8", "replace").split("\n"):
        if name and name != "locale-archive":
            locales.add(normalize_locale(name))
    f = ImageFacts(
        passwd=files.get("/etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n").decode("utf-8", "replace"),
        group=files.get("/etc/group", b"root:x:0:\n").decode("utf-8", "replace"),
        locales=tuple(sorted(locales)),
    )
    atomic_write(cache, json.dumps(f.__dict__).encode())
    return f


def passwd_dir(paths: Paths, image_id: str, f: ImageFacts, uid: int, gid: int) -> Path:
    """passwd/group files for the image plus the invoking user, mounted read-only by shims."""
    try:
        pw = pwd.getpwuid(uid)
        name, gecos = pw.pw_name, pw.pw_gecos
    except KeyError:
        name, gecos = f"user{uid}", ""
    d = paths.passwd_dir / f"{image_id.replace('sha256:', '')[:16]}-{uid}"
    passwd_lines = [ln for ln in f.passwd.splitlines() if ln and ln.split(":")[2:3] != [str(uid)]
                    and ln.split(":")[0] != name]
    passwd_lines.append(f"{name}:x:{uid}:{gid}:{gecos}:/tmp:/bin/sh")
    group_lines = f.group.splitlines()
    if not any(ln.split(":")[2:3] == [str(gid)] for ln in group_lines):
        group_lines.append(f"{name}:x:{gid}:")
    atomic_write(d / "passwd.base", f.passwd.encode())
    atomic_write(d / "group.base", f.group.encode())
    atomic_write(d / "passwd", ("\n".join(passwd_lines) + "\n").encode())
    atomic_write(d / "group", ("\n".join(group_lines) + "\n").encode())
    return d


def current_ids() -> tuple[int, int]:
    return os.geteuid(), os.getegid()


def garbage(engine: Engine, records: list[InstallRecord]) -> list[ImageInfo]:
    """Images of an installed tool@version built from an older fingerprint.

    Only versions installed here are considered: the daemon may serve other users and other
    SANDMAN_HOMEs, whose images this install knows nothing about and must not delete.
    """
    current = {(r.tool, r.version): r for r in records}
    out = []
    for img in engine.images():
        rec = current.get((img.labels.get(f"{LABEL}.tool"), img.labels.get(f"{LABEL}.version")))
        if rec is None or img.id == rec.image_id:
            continue
        if img.labels.get(f"{LABEL}.fingerprint") != rec.fingerprint:
            out.append(img)
    return out
