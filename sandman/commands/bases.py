"""`sandman bootstrap`: base images made here, then the warm agent built from one of them.

bootstrap.py makes one image (from Debian's mirror, or a vendor's root filesystem tarball) and
remembers which ones this home made; this module decides which to make. A name that already
holds the image this home made is kept (unless forced); a name held by anything else (an
import, a pull, `docker tag`) is made again, since its content is unknown and the agent that
runs on the host is built from it.
"""

from __future__ import annotations

from pathlib import Path

from sandman import agent, provenance
from sandman import bootstrap as bs
from sandman.context import Context
from sandman.errors import SandmanError


def from_rootfs(ctx: Context, ref: str, tarball: Path, *, platform: str | None = None,
                force: bool = False) -> str | None:
    """The one base `ref` made from a root filesystem tarball; its image id, or None when ref
    already holds the image this home made from it (and not force)."""
    bs.check_rootfs_ref(ref)
    bs.check_rootfs_file(tarball)
    if not force and bs.present_as_made(ctx.engine, ctx.paths, ref):
        ctx.out.info(f"{ref}: already present (--force to replace it)")
        return None
    _not_made_here(ctx, ref)
    image_id = bs.from_rootfs(tarball, ref, ctx.engine, platform=platform,
                              tmp_dir=ctx.paths.cache_dir, on_line=ctx.out.step)
    provenance.record_made(ctx.paths, ref, image_id)
    ctx.out.info(f"{ref}: made {image_id[:19]} from {tarball}")
    return image_id


def bootstrap(ctx: Context, bases: list[str], *, mirror: str | None = None,
              force: bool = False) -> None:
    """Each Debian base made with mmdebstrap (mirror: --mirror, else config.toml's), then the
    warm agent. Every base is planned before any is made: a bad name makes nothing."""
    plans = [bs.plan(b, mirror or ctx.config.mirror, archive_mirror=mirror or ctx.config.archive_mirror)
             for b in bases]
    for p in plans:
        if not force and bs.present_as_made(ctx.engine, ctx.paths, p.ref):
            ctx.out.info(f"{p.ref}: already present")
            continue
        _not_made_here(ctx, p.ref)
        for note in p.notes():
            ctx.out.info(f"{p.ref}: {note}")
        image_id = bs.bootstrap(p, ctx.engine, tmp_dir=ctx.paths.cache_dir, on_line=ctx.out.step)
        provenance.record_made(ctx.paths, p.ref, image_id)
        ctx.out.info(f"{p.ref}: imported {image_id[:19]}")
    build_agent(ctx)


def _not_made_here(ctx: Context, ref: str) -> None:
    """Say so when the name is held by an image this home did not bootstrap (it is made again)."""
    held = ctx.engine.image(ref)
    if held is not None:
        ctx.out.step(f"{ref}: here as {held.id[:19]}, which this home did not bootstrap "
                     "(an import, a pull or docker put it there): making it")


def build_agent(ctx: Context) -> None:
    """The warm agent's binary (docs/performance.md), built once from a bootstrapped base. A
    failure is a warning: warm calls then use `docker exec`."""
    if not agent.can_build(ctx.engine, ctx.paths):
        return
    try:
        ctx.out.info(f"warm agent: {agent.build(ctx.engine, ctx.paths, on_line=ctx.out.step)}")
    except SandmanError as e:
        ctx.out.warn(f"the warm agent could not be built (warm calls use docker exec): {e}")
