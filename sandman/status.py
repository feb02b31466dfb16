"""What is installed and is it healthy: `list`, `doctor` and `gc`."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from sandman import images, installs, pins, shims
from sandman.context import Context
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
    # current | image-missing | image-replaced | shim-missing | image-stale | shim-stale: WHY, ...
    state: str
    installed_at: str
    reasons: list[str] = field(default_factory=list)  # shim-stale: the fields that changed
    full_version: str | None = None  # what the recipe's version_check proved, when it has one


def list_installs(ctx: Context, *, check_stale: bool = True) -> list[InstallStatus]:
    """Every install and its state, the first that applies of:

    image-missing (the tag is gone), image-replaced (the tag names another image than the one
    installed), shim-missing, image-stale (the recipe, its inputs or its base changed: a
    rebuild; `image-stale: base` when built here on a base bootstrapped again since),
    shim-stale (something a shim bakes in changed: the runtime, config.toml, the host's docker,
    or a recipe runtime field such as env or mounts: a rewrite, no build).
    """
    from sandman.catalog import Spec
    from sandman.install import plan, resolve

    runtime = shims.runtime_digest()
    out = []
    for rec in installs.all_records(ctx.paths):
        info = ctx.engine.image(rec.image_tag)
        state, reasons = "current", []
        if info is None:
            state = "image-missing"
        elif rec.image_id and info.id != rec.image_id:
            state = "image-replaced"
        elif any(shims.owner_of(Path(rec.bin_dir) / n) != rec.key for n in rec.shims):
            state = "shim-missing"
        else:
            recipe_rt = None
            if check_stale:
                try:
                    r = resolve(ctx, Spec(rec.tool, rec.version))
                    recipe_rt = r.version.runtime
                    if plan(ctx, r).fingerprint != rec.fingerprint:
                        state = "image-stale"
                    elif images.moved_bases(ctx.engine, rec):  # built here on an older base
                        state = "image-stale: base"
                except SandmanError:
                    state = "image-stale"  # the recipe or its inputs are gone or broken: not current
            if state == "current":
                settings = ctx.config.for_tool(rec.tool, rec.version)
                now = shims.made_from(settings, ctx.config.warm_idle_minutes, runtime=runtime)
                reasons = shims.stale_reasons(rec.shim_inputs, rec.runtime, ctx.paths, now, recipe_rt,
                                              rec.tool, rec.version, settings.env)
                if reasons:
                    state = "shim-stale: " + ", ".join(reasons)
        out.append(InstallStatus(
            tool=rec.tool, version=rec.version, source=rec.source, image=rec.image_tag,
            image_id=rec.image_id, fingerprint=rec.fingerprint, shims=list(rec.shims),
            size=info.size if info else None, state=state, installed_at=rec.installed_at,
            reasons=reasons, full_version=rec.full_version,
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
        checks += _device_checks(ctx, rec)
    if daemon:  # what `list` calls image-replaced, image-stale or shim-stale (missing: above)
        for item in list_installs(ctx):
            if item.state not in ("current", "image-missing", "shim-missing"):
                key = f"{item.tool}@{item.version}"
                checks.append(Check(False, f"{key} state", f"{item.state}; run: sandman upgrade {key}"))
    if bin_dir.is_dir():
        for f in sorted(bin_dir.iterdir()):
            owner = shims.owner_of(f)
            # an owner without "@" is an unversioned shim (`sandman use`, docs/teams.md): it
            # belongs to no single install
            if owner and "@" in owner and f not in owned:
                checks.append(Check(False, f"dangling shim {f.name}",
                                    f"written for {owner}, which is not installed; "
                                    f"remove {f} or reinstall {owner}"))
    checks += [Check(*c) for c in pins.doctor_checks(ctx.paths, pins.cwd_of(ctx.env), ctx.env)]
    return checks


def _device_checks(ctx: Context, rec: installs.InstallRecord) -> list[Check]:
    """A device an install's shims pass in that is not a device here: every run would stop
    (exit 98), so doctor says it first."""
    import stat

    from sandman import consent
    from sandman.install import runtime_from_dict

    try:
        rt = consent.granted(runtime_from_dict(rec.runtime), rec.shim_inputs)
    except (TypeError, ValueError):
        return []
    out = []
    for dev in rt.devices:
        host = dev.split(":", 1)[0]
        try:
            mode = os.stat(host).st_mode
            ok = stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
        except OSError:
            ok = False
        out.append(Check(ok, f"{rec.key} device {host}", "present" if ok else
                         f"not a device on this host; set [tools.{rec.tool}] devices in config.toml"))
    return out


def gc(ctx: Context, *, dry_run: bool, unclaimed: bool = False,
       tools: frozenset[str] = frozenset()) -> list[images.Verdict]:
    """Every sandman image on the daemon (of `tools`, when given) with gc's verdict; removes
    the unheld ones unless dry_run. Images are judged by the daemon's roots and containers,
    never by this home's records alone (another home's shims may use an image this home
    knows nothing of)."""
    return images.collect(ctx.engine, ctx.paths, installs.all_records(ctx.paths),
                          dry_run=dry_run, unclaimed=unclaimed, tools=tools)
