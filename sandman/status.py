"""What is installed and is it healthy: `list`, `doctor` and `gc`."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from sandman import images, installs, shims
from sandman.context import Context
from sandman.engine import ImageInfo
from sandman.errors import SandmanError


@dataclass(frozen=True)
class InstallStatus:
    tool: str
    version: str
    source: str
    image: str
    image_id: str
    fingerprint: str
    shims: list[str]
    size: int | None  # bytes; None when the image is missing
    state: str  # current | stale | image-missing | shim-missing
    installed_at: str


def list_installs(ctx: Context, *, check_stale: bool = True) -> list[InstallStatus]:
    from sandman.catalog import Spec
    from sandman.install import plan, resolve

    out = []
    for rec in installs.all_records(ctx.paths):
        info = ctx.engine.image(rec.image_tag)
        state = "current"
        if info is None:
            state = "image-missing"
        elif any(shims.owner_of(Path(rec.bin_dir) / n) != rec.key for n in rec.shims):
            state = "shim-missing"
        elif check_stale:
            try:
                p = plan(ctx, resolve(ctx, Spec(rec.tool, rec.version)))
                if p.fingerprint != rec.fingerprint:
                    state = "stale"
            except SandmanError:
                state = "stale"  # the recipe or its inputs are gone or broken: not current
        out.append(InstallStatus(
            tool=rec.tool, version=rec.version, source=rec.source, image=rec.image_tag,
            image_id=rec.image_id, fingerprint=rec.fingerprint, shims=list(rec.shims),
            size=info.size if info else None, state=state, installed_at=rec.installed_at,
        ))
    return out


def needing_upgrade(ctx: Context, keys: list[str] | None = None) -> list[InstallStatus]:
    """Installs that `upgrade` should rebuild: the named ones, or every one that is not current.

    A named install that is current is left out (nothing to do); a name that is not installed
    is an error, so a typo does not pass as "already up to date".
    """
    from sandman.errors import NotFoundError

    items = list_installs(ctx)
    if not keys:
        return [i for i in items if i.state != "current"]
    by_key = {f"{i.tool}@{i.version}": i for i in items}
    missing = [k for k in keys if k not in by_key]
    if missing:
        raise NotFoundError(f"not installed: {', '.join(missing)}; installed: "
                            f"{', '.join(by_key) or 'none'}")
    return [by_key[k] for k in dict.fromkeys(keys) if by_key[k].state != "current"]


@dataclass(frozen=True)
class Check:
    ok: bool
    what: str
    detail: str


def doctor(ctx: Context) -> list[Check]:
    checks: list[Check] = []
    docker_cli = shutil.which("docker")
    checks.append(Check(bool(docker_cli), "docker client", docker_cli or
                        "not on PATH: shims exec `docker run`; install the docker CLI"))
    try:
        v = ctx.engine.version()
        checks.append(Check(True, "docker daemon",
                            f"engine {v.get('Version')}, API {v.get('ApiVersion')}"))
        daemon = True
    except SandmanError as e:
        checks.append(Check(False, "docker daemon", e.message))
        daemon = False
    bin_dir = ctx.paths.bin_dir
    on_path = any(Path(d).resolve() == bin_dir.resolve()
                  for d in os.environ.get("PATH", "").split(os.pathsep) if d)
    checks.append(Check(on_path, "shim directory on PATH",
                        str(bin_dir) if on_path else f"{bin_dir} is not on PATH; add it"))
    checks.append(Check(bool(shutil.which("mmdebstrap")), "mmdebstrap (for bootstrap)",
                        shutil.which("mmdebstrap") or "not installed (only needed by bootstrap)"))
    records = installs.all_records(ctx.paths)
    owned = {(Path(r.bin_dir) / n) for r in records for n in r.shims}
    for rec in records:
        for n in rec.shims:
            owner = shims.owner_of(Path(rec.bin_dir) / n)
            if owner != rec.key:
                checks.append(Check(False, f"{rec.key} shim {n}",
                                    f"missing; run: sandman install {rec.key}"))
        if daemon and ctx.engine.image(rec.image_tag) is None:
            checks.append(Check(False, f"{rec.key} image",
                                f"{rec.image_tag} is missing; run: sandman install {rec.key}"))
    if bin_dir.is_dir():
        for f in sorted(bin_dir.iterdir()):
            owner = shims.owner_of(f)
            # an owner without "@" is an unversioned shim (`sandman use`, docs/teams.md): it
            # belongs to no single install
            if owner and "@" in owner and f not in owned:
                checks.append(Check(False, f"dangling shim {f.name}",
                                    f"written for {owner}, which is not installed; "
                                    f"remove {f} or reinstall {owner}"))
    return checks


def gc(ctx: Context, *, dry_run: bool) -> list[ImageInfo]:
    garbage = images.garbage(ctx.engine, installs.all_records(ctx.paths))
    if not dry_run:
        for img in garbage:
            ctx.engine.remove_image(img.id, force=True)
    return garbage
