"""A team's image cache in an ordinary OCI registry (Docker Distribution or any other).

An image is pushed under a tag derived from its fingerprint, which is portable (recipe content,
inputs and base *references*, no local id: see build.py), so a teammate on another machine asks
for exactly the image a build would make there, without any base image of their own; after the
pull the image's fingerprint label is checked before it is used. Docker keeps the image id (the
config digest) across push and pull, so an install from the registry is the same image, by
digest, as the build that was pushed.

Each image's bases travel with it: `push` also pushes every base named in the image's
`io.sandman.bases` label under `<registry>/sandman-base/<name>:sha256-<digest>` (the full config
digest in the tag), and a pull fetches them and checks each digest exactly. A teammate so gets
the very base the image was built on, for `export` or an SBOM, under that by-digest name only:
never its plain name (`debian:bookworm-slim`), which this machine's own builds, and the warm
agent that runs on the host, are made from; a registry must not choose what that name holds.
A pulled image is tagged only after every check (its fingerprint label, the signature policy)
has passed: a failure leaves no name behind. Credentials are Docker's own
(~/.docker/config.json, read by the SDK); sandman stores none.

This module sits below install (which tries `fetcher` before building): it takes build plans
and image ids, and never resolves or builds a recipe itself.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from sandman.build import BuildPlan, cached
from sandman.context import Context
from sandman.errors import ImageMissingError, RemoteError, UsageError
from sandman.images import built_on, local_base_ref
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


def base_remote_ref(registry: str, ref: str, image_id: str) -> str:
    """`<registry>/sandman-base/<name>:sha256-<hex>`: one base by its full digest (its image id).

    The name is the base reference made safe for a repository path (`debian:bookworm-slim` ->
    `debian-bookworm-slim`); the tag, not the name, identifies the content.
    """
    return f"{registry}/{local_base_ref(ref, image_id)}"


@dataclass(frozen=True)
class Transfer:
    ref: str  # the registry reference
    image_id: str
    fingerprint: str
    bases: dict[str, str] = field(default_factory=dict)  # base ref -> digest moved with it


def pull_missing(ctx: Context, plan: BuildPlan, registry: str) -> Transfer | None:
    """Pull plan's image into the local cache; None when it is there already."""
    if cached(ctx.engine, plan):
        return None
    return pull(ctx, plan, registry)


def push(ctx: Context, tool: str, version: str, fingerprint: str, image_id: str,
         registry: str) -> Transfer:
    """Push one local image and the bases it was built on (by digest); the registry tags are
    only names, removed locally after. The bases go first: a teammate who finds the image
    finds its bases."""
    info = ctx.engine.image(image_id)
    bases = built_on(info.labels) if info is not None else {}
    for base, base_id in sorted(bases.items()):
        if ctx.engine.image(base_id) is None:
            raise ImageMissingError(f"{tool}@{version} was built on {base} {base_id[:19]}, which "
                                    "is not here any more; nothing was pushed; rebuild it "
                                    f"(sandman install --force {tool}@{version}) or pull it again")
        _push_one(ctx, base_id, base_remote_ref(registry, base, base_id), registry)
    ref = remote_ref(registry, tool, version, fingerprint)
    _push_one(ctx, image_id, ref, registry)
    return Transfer(ref, image_id, fingerprint, bases)


def _push_one(ctx: Context, image_id: str, ref: str, registry: str) -> None:
    ctx.engine.tag(image_id, ref)
    try:
        ctx.engine.push(ref, ctx.out.step)
    except RemoteError as e:
        raise RemoteError(f"registry {registry}: {_short(e.message)}") from e
    finally:
        ctx.engine.remove_image(ref)


def pull(ctx: Context, plan: BuildPlan, registry: str) -> Transfer:
    """Pull plan's fingerprint and tag it as the local image; RemoteError if not there or wrong."""
    ref = remote_ref(registry, plan.tool, plan.version, plan.fingerprint)
    try:
        info = ctx.engine.pull(ref)
    except RemoteError as e:
        raise RemoteError(f"registry {registry}: {_short(e.message)}") from e
    from sandman.commands import signing  # the signature policy, before anything names the image

    try:
        got = info.labels.get(LABEL_FINGERPRINT)
        if got != plan.fingerprint:
            raise RemoteError(f"registry {registry}: {ref} has fingerprint {got}, expected "
                              f"{plan.fingerprint}; not using it")
        signing.check_pulled(ctx, ref, source=plan.source, tool=plan.tool, version=plan.version,
                             fingerprint=plan.fingerprint, image_id=info.id, local_tag=plan.tag)
        held = ctx.engine.image(plan.tag)
        if held is not None and held.id != info.id:  # never moved: another home may run it
            raise RemoteError(f"registry {registry}: {plan.tag} here names other content "
                              f"({held.id[:19]}); not moved")
        ctx.engine.tag(info.id, plan.tag)
    finally:
        ctx.engine.remove_image(ref)  # the remote name; the image stays under plan.tag, if any
    signing.verified_pulls(ctx).add((plan.source, info.id))
    bases = built_on(info.labels)
    for base, base_id in sorted(bases.items()):
        pull_base(ctx, registry, base, base_id)
    return Transfer(ref, info.id, plan.fingerprint, bases)


def pull_base(ctx: Context, registry: str, base: str, base_id: str) -> bool:
    """The base an image was built on, by digest: here already, or pulled and checked. Named
    only by its digest (`sandman-base/...`), never `base` itself. A base the registry lacks is
    a warning, not a failure: the image holds all its layers and runs without it. Returns
    whether the base is here."""
    if ctx.engine.image(base_id) is None:
        ref = base_remote_ref(registry, base, base_id)
        try:
            info = ctx.engine.pull(ref)
        except RemoteError as e:
            ctx.out.warn(f"registry {registry}: no base {base} {base_id[:19]} "
                         f"({_short(e.message)}); the image runs without it")
            return False
        try:
            if info.id != base_id:
                ctx.out.warn(f"registry {registry}: {ref} is {info.id[:19]}, not {base_id[:19]}; "
                             "not using it")
                return False
            _name_base(ctx, base, base_id)  # before the remote name goes: it holds the image
        finally:
            ctx.engine.remove_image(ref)
        ctx.out.step(f"pulled base {base} {base_id[:19]}")
    else:
        _name_base(ctx, base, base_id)
    return True


def _name_base(ctx: Context, base: str, base_id: str) -> None:
    """`sandman-base/<name>:sha256-<hex>`: a name that says its content, which no build and
    nothing run on the host takes for `base` (gc leaves it alone: it is not a sandman tag)."""
    name = local_base_ref(base, base_id)
    held = ctx.engine.image(name)
    if held is None:
        ctx.engine.tag(base_id, name)


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
