"""`push`, `pull` and `verify`: a team's images through its registry, named by TOOL@VERSION.

registry.py moves images it is given (by fingerprint and id) and never resolves or builds a
recipe, since install tries the registry before it builds. These commands start from a
recipe version instead: resolve it, build it when needed, then hand the image to the registry,
signed first when asked (a bad key pushes nothing).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sandman.catalog import Spec
from sandman.commands import install, registry, signing
from sandman.context import Context


@dataclass(frozen=True)
class Pushed:
    spec: Spec
    transfer: registry.Transfer
    signature: str | None = None  # the signature's reference in the registry (--sign)


def push(ctx: Context, specs: list[Spec], to: str | None, sign: Path | None = None) -> Iterator[Pushed]:
    """Each spec's image (built when needed) pushed under its fingerprint tag with the bases it
    was built on, one after the other; the first failure stops the rest. to: --registry."""
    target = registry.required(ctx, to)
    for spec in specs:
        r = install.resolve(ctx, spec)
        b = install.build(ctx, r)
        signed = None
        if sign is not None:  # signed before anything is pushed: a bad key pushes nothing
            signed = signing.sign_image(ctx, sign, source=r.entry.source.name, tool=r.recipe.tool,
                                        version=r.version.version, fingerprint=b.fingerprint,
                                        image_id=b.image_id)
        t = registry.push(ctx, r.recipe.tool, r.version.version, b.fingerprint, b.image_id, target)
        yield Pushed(spec, t, signing.push_signature(ctx, t.ref, signed) if signed is not None else None)


def pull(ctx: Context, specs: list[Spec], to: str | None) -> Iterator[tuple[Spec, registry.Transfer | None]]:
    """Each spec's image of its fingerprint pulled from the registry (None: here already),
    without installing; the first failure stops the rest. to: --registry."""
    target = registry.required(ctx, to)
    for spec in specs:
        yield spec, registry.pull_missing(ctx, install.plan(ctx, install.resolve(ctx, spec)), target)


def verify(ctx: Context, spec: Spec, to: str | None = None) -> signing.Report:
    """Who signed an installed image, checked now: the signature kept at install, else the one
    beside the image in the registry (when one is configured)."""
    rec = install.installed(ctx, spec)
    target = registry.configured(ctx, to)
    remote = registry.remote_ref(target, rec.tool, rec.version, rec.fingerprint) if target else None
    return signing.verify_installed(ctx, rec, remote)
