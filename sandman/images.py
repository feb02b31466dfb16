"""What sandman knows about its images: facts read once per image, who holds them, what is garbage.

Facts (the image's passwd and group files, its locales, whether it has /bin/sh) are read at
install time so the shim can give the invoking user a passwd entry and a locale the image
really has, without asking the image anything on the hot path.

Ownership lives on the daemon, where every user and every SANDMAN_HOME can see it: each home
holds a *root*, an extra tag `sandman-root/<home-id>/<tool>:<version>`, on the image each of its
installs uses, and every image a roots-aware sandman made or used carries the *claim* tag
`sandman-claimed:<fingerprint>`. `gc` (anyone's) removes only claimed images that no root holds
and no container uses, and untagged sandman images (lost build races, rebuilds) once they are
old enough not to be a build in progress. Images from an earlier sandman carry no claim: they
stay until a home that uses them claims them (install, reshim or gc there) or `gc --unclaimed`.
See docs/guide.md, "Images, ownership and gc".
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pwd
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sandman.errors import ImageMissingError
from sandman.installs import InstallRecord, atomic_write
from sandman.names import LABEL_BASES, LABEL_FINGERPRINT, LABEL_TOOL
from sandman.paths import Paths
from sandman.state import SHARED_FILE, unchanged

if TYPE_CHECKING:
    from collections.abc import Callable

    from sandman.engine import Engine, ImageInfo
    from sandman.engine_reads import Reads


@dataclass(frozen=True)
class ImageFacts:
    passwd: str
    group: str
    locales: tuple[str, ...]  # normalized: lower case, no '-' (en_us.utf8, c.utf8)
    shell: bool = True  # it has /bin/sh (Podman's shims run the tool through it: see shim.bash)
    # os/architecture as the engine names the image's ("linux/amd64"); "" when not read (a
    # cache from before): a warm start then asks the engine, as it did on every start
    platform: str = ""

    @property
    def utf8_locale(self) -> str:
        for cand in ("c.utf8", "en_us.utf8"):
            if cand in self.locales:
                return "C.UTF-8" if cand == "c.utf8" else "en_US.UTF-8"
        return "C"


def normalize_locale(name: str) -> str:
    return name.lower().replace("-", "")


def facts(engine_of: Callable[[], Engine], paths: Paths, image_id: str) -> ImageFacts:
    """The image's facts, from this home's cache, else read from the image (engine_of: a
    cache hit connects to nothing)."""
    cache = paths.facts_dir / f"{image_id.replace('sha256:', '')}.json"
    if cache.exists():
        try:
            d = json.loads(cache.read_text())
            return ImageFacts(d["passwd"], d["group"], tuple(d["locales"]), d["shell"],
                              str(d.get("platform") or ""))
        except (ValueError, KeyError):
            pass
    from sandman.engine import DryRunRefused

    engine = engine_of()
    try:
        files = engine.read_files(image_id, ["/etc/passwd", "/etc/group", "/usr/lib/locale",
                                             "/bin/sh"])
    except DryRunRefused:  # a dry run creates no probe container: plain defaults, not cached
        return ImageFacts("root:x:0:0:root:/root:/bin/sh\n", "root:x:0:\n", ("c", "posix"))
    locales = {"c", "posix"}
    # glibc >= 2.35 has C.UTF-8 built in; Debian's libc-bin ships C.utf8 in /usr/lib/locale.
    for name in files.get("/usr/lib/locale", b"").decode("utf-8", "replace").split("\n"):
        if name and name != "locale-archive":
            locales.add(normalize_locale(name))
    f = ImageFacts(
        passwd=files.get("/etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n").decode("utf-8", "replace"),
        group=files.get("/etc/group", b"root:x:0:\n").decode("utf-8", "replace"),
        locales=tuple(sorted(locales)),
        shell="/bin/sh" in files,
        platform="/".join(info.platform.split("/")[:2]) if (info := engine.image(image_id)) else "",
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
    for name_, data in (("passwd.base", f.passwd.encode()), ("group.base", f.group.encode()),
                        ("passwd", ("\n".join(passwd_lines) + "\n").encode()),
                        ("group", ("\n".join(group_lines) + "\n").encode())):
        _write_if_changed(d / name_, data)
    return d


def _write_if_changed(path: Path, data: bytes) -> None:
    """Write path only when its content changes, and a first copy with link (never replacing).

    A shim's engine may be about to bind-mount this very path (runc resolves it late): a
    parallel `sandman run` of the same image must not swap the file under it, even for an
    identical one, even when both are the first to write it.
    """
    if unchanged(path, data, SHARED_FILE):  # ours, 0644 (as written below), those bytes
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.new")
    atomic_write(tmp, data, SHARED_FILE)
    try:
        os.link(tmp, path)
    except FileExistsError:
        if unchanged(path, data, SHARED_FILE):
            return
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def current_ids() -> tuple[int, int]:
    return os.geteuid(), os.getegid()


# -- ownership: roots, claims and gc ----------------------------------------------------------
ROOT_REPO = "sandman-root"
CLAIM_REPO = "sandman-claimed"
DANGLING_GRACE = 600  # seconds: an untagged image younger than this may be a build in progress
SAFE_TAG_RE = re.compile(r"[^A-Za-z0-9_.-]")


def home_id(paths: Paths) -> str:
    """A short, stable name for this SANDMAN_HOME on the daemon.

    The resolved state folder names the home (two spellings of one path are one home); the
    uid keeps apart two users who see the same path as different folders (a per-user /tmp,
    containers, another mount namespace). 12 hex digits: a collision needs ~16 million homes.
    """
    key = f"{os.geteuid()}:{paths.state_dir.resolve()}"
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def root_ref(paths: Paths, tool: str, version: str) -> str:
    """This home's root for tool@version: one name, so a new install moves it to the new image."""
    safe = SAFE_TAG_RE.sub("_", version)
    if safe != version:  # keep two versions that differ only in a replaced character apart
        safe = f"{safe}-{hashlib.sha256(version.encode()).hexdigest()[:6]}"
    return f"{ROOT_REPO}/{home_id(paths)}/{tool}:{safe}"


def claim_ref(fingerprint: str) -> str:
    return f"{CLAIM_REPO}:{fingerprint}"


def roots_of(tags: tuple[str, ...]) -> set[str]:
    """The home ids whose roots are among tags."""
    out = set()
    for t in tags:
        parts = t.split(":", 1)[0].split("/")
        if len(parts) == 3 and parts[0] == ROOT_REPO:
            out.add(parts[1])
    return out


def is_sandman_tag(tag: str) -> bool:
    """A name sandman gives: its own image tag, a root, a claim (anything else is someone's)."""
    repo = tag.rsplit(":", 1)[0]
    return repo.startswith(("sandman/", f"{ROOT_REPO}/")) or repo == CLAIM_REPO


BASE_REPO = "sandman-base"
BASE_REF_RE = re.compile(r"^[a-z0-9][a-z0-9._/:-]{0,254}$")  # name[:tag], no digest, no spaces
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")


def local_base_ref(ref: str, image_id: str) -> str:
    """`sandman-base/<name>:sha256-<hex>`: a base named by its content, as a teammate's image
    brings it (a registry pull or a bundle); never `ref` itself, which names this site's base."""
    name = re.sub(r"[^a-z0-9]+", "-", ref.lower()).strip("-") or "base"
    return f"{BASE_REPO}/{name}:{image_id.replace(':', '-')}"


def built_on(labels: dict[str, str]) -> dict[str, str]:
    """The bases an image says it was built on ({ref: image id}); {} for older images.

    The label comes from the image (a registry's, perhaps), so only a plain image name with a
    full digest counts: never a sandman name (`sandman/...`, a root, a claim), which a pull
    would otherwise tag onto whatever image the label points at.
    """
    try:
        data = json.loads(labels.get(LABEL_BASES) or "{}")
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)
            and BASE_REF_RE.match(k) and DIGEST_RE.match(v) and not is_sandman_tag(k)
            and not k.startswith(f"{BASE_REPO}/")}


def add_root(engine: Engine, paths: Paths, rec: InstallRecord) -> None:
    """This home uses rec's image: root it (moving the root off an older image of the same
    tool@version) and claim it, so any user's gc knows it is held and was made under roots."""
    if engine.image(rec.image_id) is None:
        raise ImageMissingError(f"{rec.key}: image {rec.image_tag} ({rec.image_id[:19]}) is gone "
                                f"(removed meanwhile?); run: sandman install {rec.key}")
    engine.tag(rec.image_id, root_ref(paths, rec.tool, rec.version))
    engine.tag(rec.image_id, claim_ref(rec.fingerprint))


def drop_root(engine: Engine, paths: Paths, rec: InstallRecord) -> None:
    """This home no longer uses rec's image; `gc` takes it once no home holds it."""
    engine.untag(root_ref(paths, rec.tool, rec.version))


class Known:
    """The engine's images as one command reads them: sandman's images from one listing by
    label (not an inspect per install), and any other name (a base, a tag someone moved onto
    an image without sandman's labels) inspected once; every answer is kept for the command.

    Only for a command's reads (`list`, `doctor`, `upgrade`'s look, `reshim`): what it changes
    on the engine afterwards is not seen here. `image` answers as Engine.image does, for the
    facts these commands use (id, tags, labels, size); a name missing from the listing is
    inspected, so the answer is the engine's own either way.
    """

    def __init__(self, engine: Reads | None = None, *,
                 engine_of: Callable[[], Reads] | None = None) -> None:
        """engine, or engine_of: how to get it when first needed (a command with nothing
        installed never connects); only its reads are used (Context.image_reads: no SDK)."""
        self._engine_of = engine_of or (lambda: engine)  # type: ignore[return-value]
        self._listed: dict[str, ImageInfo] | None = None
        self._answers: dict[str, ImageInfo | None] = {}

    @property
    def engine(self) -> Reads:
        return self._engine_of()

    def _listing(self) -> dict[str, ImageInfo]:
        if self._listed is None:
            by_ref: dict[str, ImageInfo] = {}
            for img in self.engine.image_list(LABEL_TOOL):
                by_ref[img.id] = img
                for t in img.tags:
                    by_ref[t] = img
            self._listed = by_ref
        return self._listed

    def image(self, ref: str) -> ImageInfo | None:
        if ref not in self._answers:
            info = self._listing().get(ref)
            self._answers[ref] = info if info is not None else self.engine.image(ref)
        return self._answers[ref]


def ensure_root(engine_of: Callable[[], Engine], paths: Paths, rec: InstallRecord,
                known: Known) -> bool:
    """add_root, unless rec's image (as known) already carries this home's root and its claim:
    no tag posted, and no engine connection made for one, when the tags are right. Returns
    whether it tagged."""
    info = known.image(rec.image_id)
    if info is not None and {root_ref(paths, rec.tool, rec.version),
                             claim_ref(rec.fingerprint)} <= set(info.tags):
        return False
    add_root(engine_of(), paths, rec)
    return True


def claim_missing_roots(engine: Engine, paths: Paths, records: list[InstallRecord],
                        known: list[ImageInfo]) -> int:
    """Root every image this home's records use that lacks the root (installs made by a
    sandman from before roots); returns how many were added."""
    by_id = {img.id: img for img in known}
    added = 0
    for rec in records:
        img = by_id.get(rec.image_id)
        if img is None:
            continue
        wanted = (root_ref(paths, rec.tool, rec.version), claim_ref(rec.fingerprint))
        if any(t not in img.tags for t in wanted):
            add_root(engine, paths, rec)
            added += 1
    return added


def drop_stale_roots(engine: Engine, paths: Paths, records: list[InstallRecord],
                     known: list[ImageInfo]) -> int:
    """Remove this home's roots that no install record of it explains (an uninstall whose
    untag the daemon refused, a record deleted by hand); returns how many went."""
    mine = f"{ROOT_REPO}/{home_id(paths)}/"
    wanted = {root_ref(paths, r.tool, r.version) for r in records}
    dropped = 0
    for img in known:
        for t in img.tags:
            if t.startswith(mine) and t not in wanted and engine.untag(t) is None:
                dropped += 1
    return dropped


def publish(engine: Engine, image_id: str, ref: str, fingerprint: str, *, replace: bool) -> str:
    """Give a freshly built image its tag, unless another build of the same fingerprint (in
    another SANDMAN_HOME, whose lock this build cannot see) got there first: then ours is
    discarded and theirs is used, so the race leaves no untagged image behind. With replace
    (`--force`) ours takes the tag regardless, as it does from an image of the same
    fingerprint built here on a base that has moved since (`moved`). Returns the id that
    holds ref."""
    def equivalent(info: ImageInfo | None) -> bool:
        return info is not None and info.id != image_id and \
            info.labels.get(LABEL_FINGERPRINT) == fingerprint and \
            not moved(engine, built_on(info.labels), built_from=info)

    held = engine.image(ref)
    if not replace and equivalent(held):
        assert held is not None
        engine.remove_image(image_id, force=True)  # ours: nobody else knows its id
        return held.id
    engine.tag(image_id, ref)
    engine.tag(image_id, claim_ref(fingerprint))
    now = engine.image(ref)
    if not replace and equivalent(now):  # another build tagged between our look and our tag
        assert now is not None
        engine.tag(now.id, claim_ref(fingerprint))
        engine.remove_image(image_id, force=True)
        return now.id
    return image_id


def moved_bases(engine: Engine | Known, rec: InstallRecord) -> list[str]:
    """The bases of rec's image whose name here now holds another image (`image-stale: base`).

    An image from the registry is exempt: it is a teammate's build, the same by digest on every
    machine, whatever this machine's own base is (the lock, not the local base, says which
    image the team uses). One this home built is judged by the names alone; one it found in
    the cache, as `moved` judges any image.
    """
    if rec.origin == "registry":
        return []
    if rec.origin == "built":
        return moved(engine, rec.bases)
    info = engine.image(rec.image_id)
    return moved(engine, rec.bases, built_from=info) if info is not None else []


def moved(engine: Engine | Known, bases: dict[str, str], *,
          built_from: ImageInfo | None = None) -> list[str]:
    """The refs among an image's bases ({ref: id built on}, built_on) whose name here now
    holds another image: it was built on this engine from a base bootstrapped again since,
    so a build now would start from the new one. The cache, `publish` and `list` use this
    one rule.

    Without built_from the image is known to be built here (this home built it). With it,
    the image itself, that must be shown: the old base is among its parents. A teammate's
    image (a registry pull, a bundle) has no parent here, and what this site's base became
    says nothing about it. A base name that is not here says nothing either way.
    """
    out = []
    for ref, digest in sorted(bases.items()):
        now = engine.image(ref)
        if now is None or now.id == digest:
            continue
        if built_from is not None and _bare(digest) not in _parents(engine, built_from):
            continue
        out.append(ref)
    return out


def _parents(engine: Engine | Known, info: ImageInfo, limit: int = 256) -> set[str]:
    """The ids of the images info was built from on this engine (each build step is one),
    bare (Podman names a parent without `sha256:`); a missing one ends the walk."""
    seen: set[str] = set()
    parent = info.parent
    while parent and _bare(parent) not in seen and len(seen) < limit:
        seen.add(_bare(parent))
        up = engine.image(parent)
        parent = up.parent if up is not None else ""
    return seen


def _bare(image_id: str) -> str:
    return image_id.removeprefix("sha256:")


@dataclass(frozen=True)
class Verdict:
    """What gc does with one sandman image, and why (printed by `gc --dry-run`)."""

    image: ImageInfo
    remove: bool  # gc meant to remove it
    reason: str
    done: bool = False  # it was removed (never in a dry run; False when the daemon refused)

    @property
    def name(self) -> str:
        own = [t for t in self.image.tags if t.startswith("sandman/")]
        return (own or list(self.image.tags) or [self.image.id[:19]])[0]


def _age(created: str, now: datetime) -> float:
    """Seconds since docker's `Created` (UTC, nanoseconds dropped); unknown counts as old."""
    m = re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", created)
    if not m:
        return float("inf")
    when = datetime.fromisoformat(m.group(0)).replace(tzinfo=UTC)
    return (now - when).total_seconds()


def judge(img: ImageInfo, used: dict[str, list[str]], *, unclaimed: bool,
          now: datetime) -> Verdict:
    homes = roots_of(img.tags)
    if homes:
        return Verdict(img, False, f"rooted by {len(homes)} home{'s' if len(homes) > 1 else ''}")
    users = used.get(img.id)
    if users:
        more = f" (+{len(users) - 1})" if len(users) > 1 else ""
        return Verdict(img, False, f"used by container {users[0]}{more}")
    foreign = [t for t in img.tags if not is_sandman_tag(t)]
    if foreign:
        return Verdict(img, False, f"also tagged {foreign[0]} (not a sandman name)")
    if not img.tags:
        age = _age(img.created, now)
        if age < DANGLING_GRACE:
            return Verdict(img, False, f"untagged, {int(age)}s old (may be a build in "
                                       f"progress; removed once {DANGLING_GRACE}s old)")
        return Verdict(img, True, "untagged (a lost build race or a rebuild), no container")
    if any(t.startswith(f"{CLAIM_REPO}:") for t in img.tags):
        return Verdict(img, True, "no root (no home uses it)")
    if unclaimed:
        return Verdict(img, True, "no root, from an earlier sandman (--unclaimed)")
    return Verdict(img, False, "from an earlier sandman, claimed by no home yet (a home "
                               "that uses it claims it on its next install, reshim or gc; "
                               "--unclaimed removes it)")


def _remove(engine: Engine, v: Verdict) -> Verdict:
    """Remove one image name by name, never forced: a root added meanwhile, or a container
    created meanwhile, keeps it (the daemon itself refuses to delete an image in use)."""
    info = engine.image(v.image.id)
    if info is None:
        return Verdict(v.image, True, v.reason, done=True)
    if roots_of(info.tags):
        return Verdict(v.image, True, "rooted meanwhile")
    for ref in info.tags or (info.id,):
        if not is_sandman_tag(ref) and ref != info.id:
            return Verdict(v.image, True, f"tagged {ref} meanwhile")
        refused = engine.untag(ref)
        if refused:
            return Verdict(v.image, True, f"docker refused ({refused})")
    return Verdict(v.image, True, v.reason, done=True)


def collect(engine: Engine, paths: Paths, records: list[InstallRecord], *, dry_run: bool,
            unclaimed: bool = False, tools: frozenset[str] = frozenset()) -> list[Verdict]:
    """gc: judge every sandman image on the daemon (anyone's; only those of `tools` when
    given), remove the unheld ones.

    This home's own installs are rooted first (installs from before roots existed), so a gc
    never removes what the home running it uses, dry run or not.
    """
    def listing() -> list[ImageInfo]:
        found = engine.image_list()
        return [i for i in found if i.labels.get(LABEL_TOOL) in tools] if tools else found

    known = listing()
    if not dry_run and (claim_missing_roots(engine, paths, records, known) +
                        drop_stale_roots(engine, paths, records, known)):
        known = listing()
    held_here = {r.image_id for r in records}
    used = engine.container_images()
    now = datetime.now(UTC)
    out = []
    for img in sorted(known, key=lambda i: (i.tags[:1], i.id)):
        v = judge(img, used, unclaimed=unclaimed, now=now)
        if dry_run and img.id in held_here and v.remove:  # it would be rooted first
            v = Verdict(img, False, "used by an install of this home (a real gc roots it first)")
        if v.remove and not dry_run:
            v = _remove(engine, v)
        out.append(v)
    return out
