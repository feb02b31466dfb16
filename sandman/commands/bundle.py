"""Offline bundles: one tar with the images, the recipes and a manifest, for machines with no
network.

The images travel as one `docker save` stream (the tool images plus their base images, so the
fingerprint computed on the other machine is the same and the install there is a cache hit,
never a build; shared layers are stored once). Docker keeps image ids across save and load.
The recipes become a recipe source named after the bundle (`<data>/repos/<name>/recipes`), so
`NAME/tool@version` and `recipes list` work as for a repository; importing a bundle is the
user's decision to use it, so its recipes are trusted.

What a bundle may change on the daemon is only what its manifest lists, checked before
anything loads: each listed image's config must hash to the manifest's image id and carry the
manifest's fingerprint label, its tag must be the one that fingerprint gives, and no existing
tag is ever moved to other content (other homes' shims run what those tags name). The images
are loaded untagged (the save stream's own names are dropped) and tagged here, one by one.
A base never takes its plain name (`debian:bookworm-slim`): that name is what this machine's
builds, and the warm agent that runs on the host, are made from, and a bundle must not choose
it. It is named `sandman-base/<name>:sha256-<hex>`, by its digest (images.local_base_ref),
and serves only the images built on it; building on it is the user's decision (docs/teams.md).
The signature policy is the one of the recipe the image says it is built from (its tool and
fingerprint), never of a source name the manifest picks. Everything is checked (recipes,
fingerprints, signatures, content) before the first tag; a failure after it takes those tags
back: an import is all or nothing.

The source files of the exported versions (recipe `sources`) travel too, from the download
cache as `sources/sha256/<hex>`, so a site with no network can rebuild a version (a new base,
`--force`), not only install the exported image. Import puts each into the download cache
only when its content hashes to its name, before any image loads.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import posixpath
import re
import shutil
import tarfile
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO

from sandman import __version__, consent, repos, sources
from sandman.build import cached, image_ref, kits_dir, sha256_file
from sandman.catalog import Spec
from sandman.commands import install as core
from sandman.commands import signing
from sandman.context import Context
from sandman.engine_reads import short_tag
from sandman.errors import ConflictError, IntegrityError, SourceError, StateError, UsageError
from sandman.images import is_sandman_tag, local_base_ref
from sandman.names import LABEL_FINGERPRINT, LABEL_TOOL, LABEL_VERSION
from sandman.recipes import NAME_RE, VERSION_RE, Source
from sandman.text import safe

BUNDLE_SCHEMA = 1
MANIFEST = "sandman-bundle.json"
IMAGES = "images.tar"


@dataclass(frozen=True)
class BundleTool:
    tool: str
    version: str
    source: str  # where the recipe came from on the exporting machine
    commit: str  # that source's pinned commit, "" when it is not a repository
    fingerprint: str
    image_id: str
    image_tag: str
    bases: dict[str, str]  # base image ref -> id
    signature: str = ""  # signing.Signed blob (`export --sign`), "" when unsigned

    @property
    def key(self) -> str:
        return f"{self.tool}@{self.version}"


@dataclass(frozen=True)
class Manifest:
    name: str
    created_at: str
    sandman_version: str
    tools: tuple[BundleTool, ...]
    schema: int = BUNDLE_SCHEMA

    def to_json(self) -> bytes:
        data = {"schema": self.schema, "name": self.name, "created_at": self.created_at,
                "sandman_version": self.sandman_version,
                "tools": [t.__dict__ for t in self.tools]}
        return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()


def bundle_name(out: Path, name: str | None) -> str:
    raw = name or re.sub(r"(\.tar)?$", "", out.name)
    clean = re.sub(r"[^a-z0-9._-]+", "-", raw.lower()).strip("-._")
    if not clean:
        raise UsageError(f"cannot make a source name from '{raw}'; pass --name")
    repos.check_name_syntax(clean)
    return clean


def _base_save_ref(ctx: Context, ref: str, image_id: str) -> str:
    """What `docker save` is given for a base: its plain name when that holds it here, else its
    by-digest name (an imported or pulled base), else its id (the import matches by content)."""
    for name in (ref, local_base_ref(ref, image_id)):
        info = ctx.engine.image(name)
        if info is not None and info.id == image_id:
            return name
    return image_id


def _source_commit(ctx: Context, source: str) -> str:
    for r in repos.load_all(ctx.paths):
        if r.name == source:
            return r.commit
    return ""


def export(ctx: Context, specs: list[Spec], out: Path, name: str | None = None, *,
           sign: Path | None = None) -> Manifest:
    bname = bundle_name(out, name)
    tools: list[BundleTool] = []
    folders: dict[str, Path] = {}
    kits: dict[str, Path] = {}
    wanted_sources: dict[str, tuple[str, Source]] = {}  # sha256 -> (tool@version, source)
    for spec in specs:
        r = core.resolve(ctx, spec)
        if r.recipe.tool in folders and folders[r.recipe.tool] != r.recipe.folder:
            raise UsageError(f"{r.recipe.tool} comes from two recipe sources in this bundle; "
                             "export them in separate bundles")
        plan = core.plan(ctx, r)
        image_id = cached(ctx.engine, plan)
        if image_id is None:
            image_id = core.build(ctx, r).image_id
        folders[r.recipe.tool] = r.recipe.folder
        for s in plan.sources:
            wanted_sources.setdefault(s.sha256, (f"{plan.tool}@{plan.version}", s))
        for kit in r.version.build.kits:
            kits[kit.file] = kits_dir(ctx.paths, ctx.config.kits_dir, ctx.env) / kit.file
        tools.append(BundleTool(
            tool=plan.tool, version=plan.version, source=r.entry.source.name,
            commit=_source_commit(ctx, r.entry.source.name), fingerprint=plan.fingerprint,
            image_id=image_id, image_tag=plan.tag, bases=dict(plan.bases),
            signature=signing.bundle_signature(ctx, sign, source=r.entry.source.name, tool=plan.tool,
                                               version=plan.version, fingerprint=plan.fingerprint,
                                               image_id=image_id)))
    manifest = Manifest(name=bname, created_at=datetime.now(UTC).isoformat(timespec="seconds"),
                        sandman_version=__version__, tools=tuple(tools))
    carried = _sources_to_carry(ctx, wanted_sources)
    refs = [t.image_tag for t in tools]
    refs += sorted({_base_save_ref(ctx, b, i) for t in tools for b, i in t.bases.items()} - set(refs))
    out = out.absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    with _folder_lock(out.parent):
        clean_stale_exports(out.parent)
        fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=EXPORT_SUFFIX)
        fcntl.flock(fd, fcntl.LOCK_EX)  # held until this process ends, however it ends
    try:
        with tempfile.TemporaryFile(dir=out.parent) as images, tarfile.open(tmp, "w") as tar:
            ctx.out.info(f"saving {len(refs)} image(s): {', '.join(refs)}")
            ctx.engine.save(refs, images)
            _add_bytes(tar, MANIFEST, manifest.to_json())
            for tool, folder in sorted(folders.items()):
                for f in sorted(folder.rglob("*")):
                    if f.is_file() and not f.is_symlink():
                        tar.add(str(f), arcname=f"recipes/{tool}/{f.relative_to(folder)}",
                                recursive=False)
            for file, path in sorted(kits.items()):
                if path.is_file():
                    tar.add(str(path), arcname=f"kits/{file}", recursive=False)
            for sha, path in sorted(carried.items()):
                tar.add(str(path), arcname=f"sources/sha256/{sha}", recursive=False)
            images.seek(0, io.SEEK_END)
            info = tarfile.TarInfo(IMAGES)
            info.size = images.tell()
            info.mode = 0o644
            images.seek(0)
            tar.addfile(info, images)
        umask = os.umask(0o077)  # the only way to read it is to set it: put it back at once
        os.umask(umask)
        # the umask's mode, as any file the user writes; kits are private (the kits folder):
        # a bundle holding one is the owner's only, whatever the umask (chmod it to share)
        os.chmod(tmp, 0o600 if any(p.is_file() for p in kits.values()) else 0o666 & ~umask)
        os.replace(tmp, out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.close(fd)
    return manifest


def _sources_to_carry(ctx: Context, wanted: dict[str, tuple[str, Source]]) -> dict[str, Path]:
    """sha256 -> cached file of every source the exported versions name, fetched (through the
    sources mirror) when not cached yet. One that cannot be had is left out with a warning:
    the image still travels, only a rebuild on the other side would need the file."""
    from sandman.sources import configured_mirror

    mirror = configured_mirror(ctx.config.sources_mirror, ctx.env) if wanted else None
    carried: dict[str, Path] = {}
    for sha, (key, source) in sorted(wanted.items()):
        try:
            carried[sha] = sources.fetch(source, ctx.paths, mirror=mirror, on_line=ctx.out.step, what=key)
        except SourceError as e:
            ctx.out.warn(f"{key}: source {source.file} is not in the bundle ({e.message}); the "
                         "image travels, a rebuild there needs the file")
    if carried:
        ctx.out.info(f"carrying {len(carried)} source file(s) for offline rebuilds")
    return carried


EXPORT_SUFFIX = ".sandman-export.tmp"


def clean_stale_exports(folder: Path) -> list[Path]:
    """Remove the temp files of exports that died (SIGKILL, power loss) in folder.

    A running export holds a lock on its temp file; the kernel drops it when the process
    ends, however it ends, so a file nobody holds is a leftover. Callers hold the folder's
    lock (`_folder_lock`), during which no export is between creating and locking its file.
    """
    removed = []
    for f in folder.glob(f".*{EXPORT_SUFFIX}"):
        try:
            fd = os.open(f, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            f.unlink()
            removed.append(f)
        except OSError:
            pass  # held by an export in progress
        finally:
            os.close(fd)
    return removed


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive lock on the folder itself (flock on its fd: no extra file left there)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def read_manifest(tar: tarfile.TarFile, where: Path) -> Manifest:
    try:
        member = tar.getmember(MANIFEST)
        f = tar.extractfile(member)
        data = json.loads(f.read() if f else b"")
        if data.get("schema") != BUNDLE_SCHEMA:
            raise StateError(f"{where}: bundle schema {data.get('schema')}; this sandman reads "
                             f"schema {BUNDLE_SCHEMA}")
        tools = tuple(BundleTool(**t) for t in data["tools"])
        return Manifest(name=data["name"], created_at=data["created_at"],
                        sandman_version=data["sandman_version"], tools=tools)
    except KeyError as e:
        raise StateError(f"{where}: not a sandman bundle (no {MANIFEST} or a key missing: {e})") from e
    except (ValueError, TypeError, AttributeError) as e:
        raise StateError(f"{where}: unreadable bundle manifest ({e})") from e


def _safe_rel(name: str, prefix: str) -> PurePosixPath | None:
    """The member's path below prefix, or None; refuses absolute paths and `..`."""
    p = PurePosixPath(name)
    if p.is_absolute() or ".." in p.parts or not p.parts or p.parts[0] != prefix:
        return None
    return PurePosixPath(*p.parts[1:]) if len(p.parts) > 1 else None


@dataclass(frozen=True)
class Imported:
    manifest: Manifest
    results: tuple[core.InstallResult, ...]


def import_bundle(ctx: Context, file: Path, approve: consent.Approver | None = None) -> Imported:
    try:
        tar = tarfile.open(file, "r:")  # noqa: SIM115 - closed by the `with` below
    except (OSError, tarfile.TarError) as e:
        raise StateError(f"{file}: cannot open the bundle ({e})") from e
    tagged: list[tuple[str, str]] = []  # (name, image id) this import gave, taken back on failure
    with tar:
        manifest = read_manifest(tar, file)
        name = manifest.name
        repos.check_name_syntax(name)
        for r in repos.load_all(ctx.paths):
            if r.name == name and r.kind != "bundle":
                raise ConflictError(f"'{name}' is already a recipe repo; remove it first "
                                    f"(sandman repo remove {name})")
        wanted = _listed_images(manifest, file)
        _refuse_moved_bases(ctx, manifest, file)
        images = tar.extractfile(IMAGES) if IMAGES in tar.getnames() else None
        if images is None:
            raise StateError(f"{file}: not a sandman bundle (no {IMAGES})")
        dest = repos.clone_dir(ctx.paths, name)
        stage = dest.parent / f".{name}.import"
        try:
            _stage_recipes(tar, stage, manifest, file)
            for t in manifest.tools:  # the signature policy, before anything is placed or loaded
                for source in signing.governing_sources(ctx, t.tool, t.fingerprint, claimed=t.source):
                    signing.check_bundle_tool(ctx, source=source, tool=t.tool, version=t.version,
                                              fingerprint=t.fingerprint, image_id=t.image_id,
                                              blob=t.signature, where=file, claimed=t.source)
            _place_sources(ctx, tar, file)
            _place_kits(ctx, tar)
            _check_fingerprints(ctx, stage, manifest, name, file)
            ctx.out.info(f"loading images from {file}")
            _load_listed(ctx, images, wanted, manifest, file)
            _tag_listed(ctx, manifest, file, tagged)
            shutil.rmtree(dest, ignore_errors=True)
            os.replace(stage, dest)
            repos.register_bundle(ctx.paths, name, str(file.absolute()))
        except BaseException:
            _untag(ctx, tagged)
            raise
        finally:
            shutil.rmtree(stage, ignore_errors=True)
    ctx.__dict__.pop("catalog", None)  # the catalog was read before the new source existed
    results = []
    for t in manifest.tools:
        spec = Spec(t.tool, t.version, source=name)
        results.append(core.install(ctx, spec, approve=approve))
    return Imported(manifest, tuple(results))


def _stage_recipes(tar: tarfile.TarFile, stage: Path, manifest: Manifest, where: Path) -> None:
    """The bundle's recipes, written to a folder beside their place; each listed tool must have
    one (a bundle without them is refused before anything is loaded)."""
    shutil.rmtree(stage, ignore_errors=True)
    for m in tar.getmembers():
        rel = _safe_rel(m.name, "recipes")
        if rel is None or not m.isfile():
            continue
        target = stage / "recipes" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        src = tar.extractfile(m)
        with target.open("wb") as out:
            shutil.copyfileobj(src, out)  # type: ignore[arg-type]
        target.chmod(0o755 if m.mode & 0o111 else 0o644)
    for t in manifest.tools:
        if not (stage / "recipes" / t.tool / "recipe.toml").is_file():
            raise IntegrityError(f"{where}: {t.key}: the bundle has no recipes/{t.tool}/recipe.toml; "
                                 "nothing imported")


def _check_fingerprints(ctx: Context, stage: Path, manifest: Manifest, name: str,
                        where: Path) -> None:
    """Each tool's recipe in the bundle must give the manifest's fingerprint here, before any
    image loads (the recipe is what the install will say it runs)."""
    from sandman.build import plan_build
    from sandman.errors import SandmanError
    from sandman.recipe_check import load_recipe

    folder = kits_dir(ctx.paths, ctx.config.kits_dir, ctx.env)
    for t in manifest.tools:
        try:
            recipe = load_recipe(stage / "recipes" / t.tool / "recipe.toml", expect_tool=t.tool)
            version = recipe.version(t.version)
            if version is None:
                raise IntegrityError(f"{where}: {t.key}: the bundle's recipe has no version "
                                     f"{safe(t.version)}; nothing imported")
            fp = plan_build(recipe, version, source=name, kits_folder=folder,
                            engine=ctx.engine).fingerprint
        except IntegrityError:
            raise
        except SandmanError as e:
            raise IntegrityError(f"{where}: {t.key}: the bundle's recipe is not usable here "
                                 f"({e.message}); nothing imported") from e
        if fp != t.fingerprint:
            raise IntegrityError(
                f"{where}: {t.key}: the bundle's recipe gives fingerprint {fp[:12]} here, its "
                f"manifest says {t.fingerprint[:12]}; nothing imported, nothing built")


def _untag(ctx: Context, tagged: list[tuple[str, str]]) -> None:
    """Take back the names an import gave, each only while it still names what it gave."""
    for ref, image_id in reversed(tagged):
        with contextlib.suppress(Exception):
            info = ctx.engine.image(ref)
            if info is not None and info.id == image_id:
                ctx.engine.untag(ref)


HEX64 = re.compile(r"^[0-9a-f]{64}\Z")


def _listed_images(manifest: Manifest, where: Path) -> dict[str, str]:
    """image id -> the name it will get: every image the manifest lists, after checking that
    each name is what sandman would call it (a tool's tag is the one its fingerprint gives, a
    base its by-digest name, never the plain name the manifest gives it)."""
    wanted: dict[str, str] = {}
    for t in manifest.tools:
        if not NAME_RE.match(t.tool) or not VERSION_RE.match(t.version):
            raise IntegrityError(f"{where}: {safe(t.key)} is not a tool@version sandman accepts")
        if not HEX64.match(t.fingerprint) or not t.image_id.startswith("sha256:") or \
                not HEX64.match(t.image_id.removeprefix("sha256:")):
            raise IntegrityError(f"{where}: {safe(t.key)}: malformed fingerprint or image id in the manifest")
        if t.image_tag != image_ref(t.tool, t.version, t.fingerprint):
            raise IntegrityError(f"{where}: {safe(t.key)}: the manifest names its image {safe(t.image_tag)}, "
                                 f"its fingerprint gives {safe(image_ref(t.tool, t.version, t.fingerprint))}")
        wanted[t.image_id] = t.image_tag
        for ref, image_id in t.bases.items():
            if is_sandman_tag(ref) or not image_id.startswith("sha256:") or \
                    not HEX64.match(image_id.removeprefix("sha256:")):
                raise IntegrityError(f"{where}: {safe(t.key)}: base {safe(ref)} "
                                     f"({safe(image_id)}) is not a base image name and id")
            wanted.setdefault(image_id, local_base_ref(ref, image_id))
    return wanted


def _refuse_moved_bases(ctx: Context, manifest: Manifest, where: Path) -> None:
    """A base tag that names other content here stays as it is: the bundle is refused."""
    for t in manifest.tools:
        for ref, image_id in t.bases.items():
            info = ctx.engine.image(ref)
            if info is not None and info.id != image_id:
                raise IntegrityError(
                    f"{where}: {safe(ref)} here is {info.id[:19]}, the bundle's tools were built on "
                    f"{image_id[:19]}; import never moves a tag (other images and homes use it): "
                    f"import where {safe(ref)} matches, or rename yours (docker tag, docker rmi) first")


def _entry_config(entry: dict) -> str:
    config = entry.get("Config")
    if not isinstance(config, str):
        raise ValueError("an entry without Config")
    return config


def _load_listed(ctx: Context, images: IO[bytes], wanted: dict[str, str], manifest: Manifest,
                 where: Path) -> None:
    """`docker load` of exactly the listed images, untagged, after checking their content.

    The save stream's manifest.json is read first: an image is kept only when its config
    hashes to a listed id (docker's image id is that hash, and docker itself checks every layer
    against the config's diff ids while loading). Tool images must carry their manifest's
    fingerprint, tool and version labels. The stream is then passed on with a manifest.json of
    only those images, with no names, and without `repositories` (the legacy name list).
    """
    try:
        inner = tarfile.open(fileobj=images, mode="r:")  # noqa: SIM115 - closed below
    except tarfile.TarError as e:
        raise IntegrityError(f"{where}: {IMAGES} is not a tar ({e})") from e
    with inner:
        members = {m.name.removeprefix("./"): m for m in inner.getmembers()}
        try:
            entries = json.loads(_read_member(inner, members["manifest.json"]))
            if not isinstance(entries, list):
                raise ValueError("not a list")
            configs = {_entry_config(e): e for e in entries}
        except (KeyError, ValueError, TypeError) as e:
            raise IntegrityError(f"{where}: {IMAGES} has no readable manifest.json ({e})") from e
        kept: dict[str, dict] = {}
        unlisted: list[str] = []
        for config, entry in configs.items():
            member = members.get(config)
            data = _read_member(inner, member) if member is not None and member.isfile() else b""
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            if digest in wanted:
                kept[digest] = {"Config": config, "RepoTags": [],
                                "Layers": list(entry.get("Layers") or [])}
                _check_labels(data, digest, manifest, where)
                # Podman writes names in full (docker.io/sandman/..., localhost/debian:...)
                named = {wanted[digest], *(r for t in manifest.tools for r, i in t.bases.items()
                                           if i == digest)}
                unlisted += [t for t in entry.get("RepoTags") or [] if short_tag(t) not in named]
            else:
                unlisted += list(entry.get("RepoTags") or []) or [digest[:19]]
        missing = [f"{safe(ref)} ({safe(i[:19])})" for i, ref in wanted.items() if i not in kept]
        if missing:
            raise IntegrityError(f"{where}: {IMAGES} lacks what the manifest lists, or carries "
                                 f"other content under it: {', '.join(missing)}")
        if unlisted:
            ctx.out.warn(f"{where}: {IMAGES} also names {', '.join(safe(u) for u in unlisted)}, "
                         "which the manifest does not list: not loaded, no tag moved")
        needed = set()
        for e in kept.values():
            needed.add(e["Config"])
            for layer in e["Layers"]:
                needed.add(layer)
                folder = posixpath.dirname(layer)
                if folder:  # the legacy layout: <layer>/layer.tar with its json and VERSION
                    needed.update({f"{folder}/json", f"{folder}/VERSION"})
        for name in list(needed):  # a layer stored once and linked from another folder
            m = members.get(name)
            if m is not None and m.issym():
                needed.add(posixpath.normpath(posixpath.join(posixpath.dirname(name), m.linkname)))
        _stream_load(ctx, inner, [m for n, m in members.items() if n in needed or m.isdir()],
                     json.dumps(list(kept.values())).encode(), where)
    for image_id, ref in wanted.items():
        if ctx.engine.image(image_id) is None:
            raise IntegrityError(f"{where}: loading did not give {ref} as {image_id[:19]}")


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    if member.size > 16 << 20:  # image configs and manifest.json are small
        raise IntegrityError(f"{member.name}: {member.size} bytes, more than an image config has")
    f = tar.extractfile(member)
    return f.read() if f else b""


def _check_labels(config: bytes, image_id: str, manifest: Manifest, where: Path) -> None:
    try:
        labels = (json.loads(config).get("config") or {}).get("Labels") or {}
    except (ValueError, AttributeError) as e:
        raise IntegrityError(f"{where}: the config of {image_id[:19]} is not JSON ({e})") from e
    for t in manifest.tools:
        if t.image_id != image_id:
            continue
        said = (labels.get(LABEL_TOOL), labels.get(LABEL_VERSION), labels.get(LABEL_FINGERPRINT))
        if said != (t.tool, t.version, t.fingerprint):
            raise IntegrityError(
                f"{where}: {t.key}: its image {image_id[:19]} is labelled "
                f"{safe(said[0])}@{safe(said[1])} with fingerprint {safe(str(said[2])[:12])}, "
                f"the manifest says {t.key} with {t.fingerprint[:12]}")


def _stream_load(ctx: Context, inner: tarfile.TarFile, members: list[tarfile.TarInfo],
                 manifest_json: bytes, where: Path) -> None:
    """Write the filtered save stream into a pipe that `docker load` reads: no copy on disk."""
    r, w = os.pipe()
    failed: list[BaseException] = []

    def write() -> None:
        try:
            with os.fdopen(w, "wb") as out, tarfile.open(fileobj=out, mode="w|") as new:
                for m in members:
                    new.addfile(m, inner.extractfile(m) if m.isfile() else None)
                _add_bytes(new, "manifest.json", manifest_json)
        except BaseException as e:  # reported by the reading side
            failed.append(e)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        with os.fdopen(r, "rb") as stream:
            ctx.engine.load(stream, ctx.out.step)
    finally:
        writer.join()
    if failed and not isinstance(failed[0], BrokenPipeError):
        raise IntegrityError(f"{where}: cannot read {IMAGES} ({failed[0]})")


def _tag_listed(ctx: Context, manifest: Manifest, where: Path,
                tagged: list[tuple[str, str]]) -> None:
    """Name the loaded images; an existing tag is never moved to other content. What is
    tagged is added to `tagged`, for the import to take back if a later step fails.

    A tool tag already here on another image of the same fingerprint (the same recipe built on
    this machine) is kept: that image is equivalent by definition, and other homes use it. A
    base gets only its by-digest name.
    """
    for t in manifest.tools:
        held = ctx.engine.image(t.image_tag)
        if held is None:
            ctx.engine.tag(t.image_id, t.image_tag)
            tagged.append((t.image_tag, t.image_id))
        elif held.id != t.image_id:
            if held.labels.get(LABEL_FINGERPRINT) != t.fingerprint:
                raise IntegrityError(f"{where}: {t.image_tag} here names other content "
                                     f"({held.id[:19]}); import does not move it")
            ctx.out.info(f"{t.key}: {t.image_tag} is already here (built here); kept")
            mine = ctx.engine.image(t.image_id)
            if mine is not None and not mine.tags:
                ctx.engine.untag(t.image_id)
        for ref, image_id in t.bases.items():
            name = local_base_ref(ref, image_id)
            info = ctx.engine.image(name)
            if info is None:
                ctx.engine.tag(image_id, name)
                tagged.append((name, image_id))
            elif info.id != image_id:
                raise IntegrityError(f"{where}: {name} here names other content; nothing moved")


def _place_sources(ctx: Context, tar: tarfile.TarFile, where: Path) -> None:
    """Source files the bundle carries go to the download cache, each only when its content
    hashes to its name; one that does not stops the import before any image loads."""
    placed = 0
    for m in tar.getmembers():
        rel = _safe_rel(m.name, "sources")
        if rel is None or not m.isfile() or len(rel.parts) != 2 or rel.parts[0] != "sha256":
            continue
        sha = rel.parts[1]
        if not HEX64.match(sha):
            raise IntegrityError(f"{where}: {safe(m.name)} is not named by a sha256; nothing imported")
        src = tar.extractfile(m)
        assert src is not None  # a regular member
        digest = sources.put(ctx.paths, sha, src)  # type: ignore[arg-type]
        if digest != sha:
            raise IntegrityError(f"{where}: {m.name} hashes to {digest}; not placed in the download "
                                 "cache, nothing imported")
        placed += 1
    if placed:
        ctx.out.info(f"{placed} source file(s) verified (sha256) and placed in "
                     f"{sources.cache_root(ctx.paths)}")


def _place_kits(ctx: Context, tar: tarfile.TarFile) -> None:
    """Kits the bundle carries go to the kits folder unless a file is already there."""
    folder = kits_dir(ctx.paths, ctx.config.kits_dir, ctx.env)
    for m in tar.getmembers():
        rel = _safe_rel(m.name, "kits")
        if rel is None or not m.isfile() or len(rel.parts) != 1:
            continue
        target = folder / rel.name
        if target.exists():
            continue
        folder.mkdir(parents=True, exist_ok=True)
        src = tar.extractfile(m)
        with target.open("wb") as out:
            shutil.copyfileobj(src, out)  # type: ignore[arg-type]
        ctx.out.info(f"kit {rel.name}: sha256 {sha256_file(target)[:12]} placed in {folder}")
