"""Dry runs: what `run` and `matrix` would do, found without changing anything on the daemon.

A dry run gets an engine that can look but not touch (engine.DryRunEngine): building, pulling,
tagging, creating or starting a container raises, so "nothing happens" is enforced at the
Docker boundary. What the shim would need from a missing image (its tag, its passwd and locale
facts) is computed or replaced by plain defaults instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sandman.errors import ImageMissingError
from sandman.images import SAFE_TAG_RE

if TYPE_CHECKING:
    from sandman.context import Context
    from sandman.install import Resolved


def dry_context(ctx: Context) -> Context:
    """A copy of ctx whose engine looks and never touches (engine.DryRunEngine)."""
    from dataclasses import replace

    from sandman.engine import DryRunEngine

    dry = replace(ctx)
    dry.__dict__["engine"] = DryRunEngine(ctx.engine.client)
    return dry


def planned_image(ctx: Context, r: Resolved) -> tuple[str, str]:
    """The tag and image id a run of r would use (NOT_BUILT for an image not built yet), found
    without building or pulling anything; says on stderr when the image is not built yet."""
    from sandman.build import REPOSITORY, cached, kits_dir, plan_build

    try:
        plan = plan_build(r.recipe, r.version, source=r.entry.source.name,
                          kits_folder=kits_dir(ctx.paths, ctx.config.kits_dir, ctx.env),
                          engine=ctx.engine, pull_missing_bases=False)
    except ImageMissingError as e:
        safe = SAFE_TAG_RE.sub("_", r.version.version)
        ctx.out.warn(f"dry run: {r.key} is not built and its tag is not known yet ({e.message})")
        return f"{REPOSITORY}/{r.recipe.tool}:{safe}-NOT-BUILT", NOT_BUILT
    image_id = cached(ctx.engine, plan)
    if image_id is None:
        ctx.out.warn(f"dry run: image {plan.tag} is not built yet; a real run builds it first")
        return plan.tag, NOT_BUILT
    return plan.tag, image_id


NOT_BUILT = "sha256:not-built"  # stands for the id of an image a dry run did not build
