"""A team's image cache in an ordinary OCI registry (Docker Distribution or any other).

An image is pushed under a tag derived from its fingerprint, so a pull asks for exactly the
image a build would make here; after the pull the image's fingerprint label is checked before it
is used. Docker keeps the image id (the config digest) across push and pull, so an install from
the registry is the same image as the build that was pushed. Credentials are Docker's own
(~/.docker/config.json, read by the SDK); sandman stores none.

This module sits below install (which tries `fetcher` before building): it takes build plans
and image ids, and never resolves or builds a recipe itself.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from sandman.build import BuildPlan, cached
from sandman.context import Context
from sandman.errors import RemoteError, UsageError
from sandman.names import LABEL_FINGERPRINT

REGISTRY_RE = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]+)?(/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")


def configured(ctx: Context, override: str | None = None) -> str | None:
    """--registry, else SANDMAN_REGISTRY, else config.toml `registry`; None: no registry."""
    value = override or ctx.env.get("SANDMAN_REGISTRY") or ctx.config.registry
    if not value:
        return None
    value = value.strip().rstrip("/")
    if "://" in value or not REGISTRY_RE.match(value):
        raise UsageError(f"registry '{value}' is not HOST[:PORT][/PREFIX] "
                         "(for example registry.example.com:5000/team, no http://)")
    return value


def required(ctx: Context, override: str | None) -> str:
    reg = configured(ctx, override)
    if reg is None:
        raise UsageError("no registry configured: pass --registry HOST[:PORT][/PREFIX], set "
                         "SANDMAN_REGISTRY, or put registry = \"...\" in config.toml")
    return reg


def remote_ref(registry: str, tool: str, version: str, fingerprint: str) -> str:
    """`<registry>/<tool>:<version>-<fingerprint[:12]>`, the local tag's name under the registry."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", version)
    return f"{registry}/{tool}:{safe}-{fingerprint[:12]}"


@dataclass(frozen=True)
class Transfer:
    ref: str  # the registry reference
    image_id: str
    fingerprint: str


def pull_missing(ctx: Context, plan: BuildPlan, registry: str) -> Transfer | None:
    """Pull plan's image into the local cache; None when it is there already."""
    if cached(ctx.engine, plan):
        return None
    return pull(ctx, plan, registry)


def push(ctx: Context, tool: str, version: str, fingerprint: str, image_id: str,
         registry: str) -> Transfer:
    """Push one local image; the registry tag is only a name, removed locally after."""
    ref = remote_ref(registry, tool, version, fingerprint)
    ctx.engine.tag(image_id, ref)
    try:
        ctx.engine.push(ref, ctx.out.step)
    except RemoteError as e:
        raise RemoteError(f"registry {registry}: {_short(e.message)}") from e
    finally:
        ctx.engine.remove_image(ref)
    return Transfer(ref, image_id, fingerprint)


def pull(ctx: Context, plan: BuildPlan, registry: str) -> Transfer:
    """Pull plan's fingerprint and tag it as the local image; RemoteError if not there or wrong."""
    ref = remote_ref(registry, plan.tool, plan.version, plan.fingerprint)
    try:
        info = ctx.engine.pull(ref)
    except RemoteError as e:
        raise RemoteError(f"registry {registry}: {_short(e.message)}") from e
    try:
        got = info.labels.get(LABEL_FINGERPRINT)
        if got != plan.fingerprint:
            raise RemoteError(f"registry {registry}: {ref} has fingerprint {got}, expected "
                              f"{plan.fingerprint}; not using it")
        ctx.engine.tag(info.id, plan.tag)
    finally:
        ctx.engine.remove_image(ref)  # the remote name; the image stays under plan.tag
    return Transfer(ref, info.id, plan.fingerprint)


def fetcher(ctx: Context, registry: str) -> Callable[[BuildPlan], str | None]:
    """build.ensure_image's `fetch`: the image from the registry, or None to build instead."""

    def fetch(plan: BuildPlan) -> str | None:
        try:
            t = pull(ctx, plan, registry)
        except RemoteError as e:
            line = f"{e.message}; building {plan.tool}@{plan.version} instead"
            if not_there(e.message):
                ctx.out.step(line)  # the usual first build of a version: said with -v only
            else:
                ctx.out.warn(line)
            return None
        ctx.out.info(f"{plan.tool}@{plan.version}: pulled {t.ref}")
        return t.image_id

    return fetch


def not_there(message: str) -> bool:
    """The registry answered, and it has no image of that fingerprint (yet)."""
    return bool(re.search(r"manifest unknown|manifest for \S+ not found|not found: manifest",
                          message, re.IGNORECASE))


def _short(message: str) -> str:
    """Docker's pull/push errors repeat the action; keep the part that says what went wrong."""
    text = message.replace("\n", " ")
    text = re.sub(r"^cannot pull \S+: ", "", text)
    text = re.sub(r"^(pulling|pushing) \S+: ", "", text)
    text = re.sub(r"^docker said: ", "", text)
    return text
