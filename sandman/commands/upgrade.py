"""`sandman upgrade`: each install that is not current brought up to date, the cheapest way.

What `list` calls image-stale, image-missing or image-replaced needs an image: a new install
of the same version (image-replaced and `image-stale: base` without the cache, so the image is
made again rather than found under its old fingerprint). shim-stale and shim-missing need only
their shims rewritten from the current recipe. Either way a recipe that changes what the tool
may access asks for consent, as `install` does.
"""

from __future__ import annotations

from sandman.batch import Batch, each
from sandman.catalog import Spec
from sandman.commands import install, status
from sandman.commands.install import InstallResult
from sandman.consent import Approver
from sandman.context import Context

# states whose image is made again without the cache: the tag names other content, or the base moved
REBUILT_UNCACHED = ("image-replaced", "image-stale: base")


def upgrade_one(ctx: Context, item: status.InstallStatus,
                approve: Approver | None = None) -> InstallResult:
    """item's install: a new image (install) for an image-* state, else its shims rewritten."""
    spec = Spec(item.tool, item.version)
    if item.state.startswith("image-"):
        return install.install(ctx, spec, approve=approve, force=item.state in REBUILT_UNCACHED)
    return install.rewrite_shims(ctx, spec, approve=approve)


def upgrade(ctx: Context, keys: list[str] | None = None,
            approve: Approver | None = None) -> Batch[InstallResult]:
    """The named installs (TOOL@VERSION), or every one that is not current, upgraded in turn;
    one failure leaves the others done (sandman/batch.py). No outcome: nothing to upgrade."""
    todo = status.needing_upgrade(ctx, keys)

    def one(item: status.InstallStatus) -> InstallResult:
        res = upgrade_one(ctx, item, approve)
        ctx.out.info(f"upgraded {_key(item)} ({item.state}): {item.image} -> {res.record.image_tag}")
        return res

    return each(todo, one, name=_key,
                failed=lambda item, e: ctx.out.warn(f"{_key(item)} not upgraded: {e.message}"))


def _key(item: status.InstallStatus) -> str:
    return f"{item.tool}@{item.version}"
