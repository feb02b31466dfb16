"""Offline bundles: one tar with the images, the recipes and a manifest, for machines with no
network.

The images travel as one `docker save` stream (the tool images plus their base images, so the
fingerprint computed on the other machine is the same and the install there is a cache hit,
never a build; shared layers are stored once). Docker keeps image ids across save and load.
The recipes become a recipe source named after the bundle (`<data>/repos/<name>/recipes`), so
`NAME/tool@version` and `recipes list` work as for a repository; importing a bundle is the
user's decision to use it, so its recipes are trusted.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from sandman import __version__, consent, repos
from sandman import install as core
from sandman.build import cached, kits_dir, sha256_file
from sandman.catalog import Spec
from sandman.context import Context
from sandman.errors import ConflictError, ImageMissingError, StateError, UsageError

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


def _source_commit(ctx: Context, source: str) -> str:
    for r in repos.load_all(ctx.paths):
        if r.name == source:
            return r.commit
    return ""


def export(ctx: Context, specs: list[Spec], out: Path, name: str | None = None) -> Manifest:
    bname = bundle_name(out, name)
    tools: list[BundleTool] = []
    folders: dict[str, Path] = {}
    kits: dict[str, Path] = {}
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
        for kit in r.version.build.kits:
            kits[kit.file] = kits_dir(ctx.paths, ctx.config.kits_dir, ctx.env) / kit.file
        tools.append(BundleTool(
            tool=plan.tool, version=plan.version, source=r.entry.source.name,
            commit=_source_commit(ctx, r.entry.source.name), fingerprint=plan.fingerprint,
            image_id=image_id, image_tag=plan.tag, bases=dict(plan.bases)))
    manifest = Manifest(name=bname, created_at=datetime.now(UTC).isoformat(timespec="seconds"),
                        sandman_version=__version__, tools=tuple(tools))
    refs = [t.image_tag for t in tools]
    refs += sorted({b for t in tools for b in t.bases} - set(refs))
    out = out.absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    os.close(fd)
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
            images.seek(0, io.SEEK_END)
            info = tarfile.TarInfo(IMAGES)
            info.size = images.tell()
            info.mode = 0o644
            images.seek(0)
            tar.addfile(info, images)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return manifest


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
    with tar:
        manifest = read_manifest(tar, file)
        name = manifest.name
        repos.check_name_syntax(name)
        for r in repos.load_all(ctx.paths):
            if r.name == name and r.kind != "bundle":
                raise ConflictError(f"'{name}' is already a recipe repo; remove it first "
                                    f"(sandman repo remove {name})")
        _warn_retag(ctx, manifest)
        images = tar.extractfile(IMAGES) if IMAGES in tar.getnames() else None
        if images is None:
            raise StateError(f"{file}: not a sandman bundle (no {IMAGES})")
        ctx.out.info(f"loading images from {file}")
        ctx.engine.load(images, ctx.out.step)
        for t in manifest.tools:
            info = ctx.engine.image(t.image_tag)
            if info is None or info.id != t.image_id:
                raise ImageMissingError(f"{file}: loading did not give {t.image_tag} as {t.image_id}")
        _place_recipes(ctx, tar, name)
        _place_kits(ctx, tar)
    repos.register_bundle(ctx.paths, name, str(file.absolute()))
    ctx.__dict__.pop("catalog", None)  # the catalog was read before the new source existed
    results = []
    for t in manifest.tools:
        spec = Spec(t.tool, t.version, source=name)
        plan = core.plan(ctx, core.resolve(ctx, spec))
        if plan.fingerprint != t.fingerprint:
            raise ImageMissingError(
                f"{t.key}: the bundle's recipe gives fingerprint {plan.fingerprint[:12]} here, the "
                f"bundle was built as {t.fingerprint[:12]} (a base image differs?); not building")
        results.append(core.install(ctx, spec, approve=approve))
    return Imported(manifest, tuple(results))


def _warn_retag(ctx: Context, manifest: Manifest) -> None:
    for t in manifest.tools:
        for ref, image_id in t.bases.items():
            info = ctx.engine.image(ref)
            if info is not None and info.id != image_id:
                ctx.out.warn(f"{ref} here is {info.id[:19]}; the bundle's {image_id[:19]} takes the "
                             "tag (the old image stays, untagged)")


def _place_recipes(ctx: Context, tar: tarfile.TarFile, name: str) -> None:
    dest = repos.clone_dir(ctx.paths, name)
    stage = dest.parent / f".{name}.import"
    shutil.rmtree(stage, ignore_errors=True)
    try:
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
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(stage, dest)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


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
