"""Build, install, uninstall, reshim and run: the main job, as plain functions over a Context.

Data flows one way: recipe -> validated model -> build plan (fingerprint) -> image -> install
record -> shims. A failed step leaves what was there before: shims are checked for conflicts
before anything is built, and written all at once after the image exists.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from sandman import consent, images, installs, repos, shims
from sandman.batch import Batch, each
from sandman.build import BuildPlan, BuildResult, ensure_image, kits_dir, plan_build
from sandman.catalog import Entry, Spec
from sandman.config import ToolSettings
from sandman.context import Context
from sandman.errors import ImageMissingError, NotFoundError, SandmanError, StateError, UntrustedError
from sandman.images import built_on
from sandman.installs import InstallRecord
from sandman.recipes import Mount, Recipe, Runtime, Version


@dataclass(frozen=True)
class Resolved:
    entry: Entry
    recipe: Recipe
    version: Version

    @property
    def key(self) -> str:
        return f"{self.recipe.tool}@{self.version.version}"


@dataclass(frozen=True)
class InstallResult:
    record: InstallRecord
    built: bool
    shims: list[Path]


def resolve(ctx: Context, spec: Spec) -> Resolved:
    entry, recipe, version = ctx.catalog.resolve(spec)
    if not entry.source.trusted:
        raise UntrustedError(
            f"{recipe.tool}@{version.version} comes from repo '{entry.source.name}', which you "
            f"have not trusted; review it, then run: sandman repo trust {entry.source.name}"
        )
    return Resolved(entry, recipe, version)


def repo_to_trust(ctx: Context, spec: Spec) -> tuple[Entry, repos.Repo] | None:
    """The recipe of spec and the untrusted repo it comes from, which a terminal may offer to
    trust before resolve refuses it (exit 120); None when there is nothing to trust, or no
    such recipe (the command itself then says why)."""
    try:
        entry = ctx.catalog.find(spec.tool, ctx.catalog.pick(spec).source)  # an install's own
    except SandmanError:
        return None
    if entry.source.trusted or entry.source.kind != "repo":
        return None
    return entry, repos.get(ctx.paths, entry.source.name)


def trust_repo(ctx: Context, name: str) -> repos.Repo:
    """Trust a repo at its pinned commit; the catalog is read again, so its recipes now resolve."""
    repo = repos.trust(ctx.paths, name)
    ctx.forget_catalog()
    return repo


def plan(ctx: Context, r: Resolved, known: images.Known | None = None) -> BuildPlan:
    """r's build plan; `known` (a command's images, read once) answers its base lookups."""
    folder = kits_dir(ctx.paths, ctx.config.kits_dir, ctx.env)
    return plan_build(r.recipe, r.version, source=r.entry.source.name, kits_folder=folder,
                      engine=known if known is not None else ctx.engine)


def build(ctx: Context, r: Resolved, *, force: bool = False) -> BuildResult:
    """The image for r: this daemon's cache, else the registry (by the portable fingerprint:
    no base needed here), else a build. The result says which (origin)."""
    from dataclasses import replace

    p = plan(ctx, r)
    ctx.out.info(f"{r.key}: fingerprint {p.fingerprint[:12]}")
    from sandman.commands import registry  # a configured registry is tried before building

    reg = registry.configured(ctx)
    pulled: list[str] = []
    fetch = None
    if reg:
        fetch_one = registry.fetcher(ctx, reg)

        def fetch(plan: BuildPlan) -> str | None:
            got = fetch_one(plan)
            if got:
                pulled.append(got)
            return got
    from sandman.sources import configured_mirror

    result = ensure_image(p, ctx.engine, ctx.paths, on_line=ctx.out.step, force=force, fetch=fetch,
                          mirror=configured_mirror(ctx.config.sources_mirror, ctx.env))
    origin = "built" if result.built else "registry" if pulled else "local"
    from sandman.commands import signing  # the policy of the source being installed, on every path

    signing.check_provenance(ctx, source=p.source, bundle=r.entry.source.kind == "bundle",
                             tool=p.tool, version=p.version, fingerprint=p.fingerprint,
                             image_id=result.image_id, built=result.built,
                             remote=registry.remote_ref(reg, p.tool, p.version, p.fingerprint)
                             if reg else None)
    if result.kept_stale:
        ctx.out.warn(f"{r.key}: {result.kept_stale} (sandman list: image-stale: base)")
    if origin != "registry":  # a pull said its own line ("pulled <registry ref>")
        ctx.out.info(f"{r.key}: {'built' if result.built else 'cached'} {result.tag}")
    return replace(result, origin=origin)


def runtime_to_dict(rt: Runtime) -> dict:
    return asdict(rt)


def runtime_from_dict(d: dict) -> Runtime:
    d = dict(d)
    d["mounts"] = tuple(Mount(**m) for m in d.get("mounts", ()))
    for key in ("entrypoint", "commands", "pass_env", "smoke"):
        d[key] = tuple(d.get(key, ()))
    return Runtime(**d)


def shim_context(ctx: Context, tool: str, version: str, image_tag: str, image_id: str,
                 runtime: Runtime, *, extra_mounts: tuple[str, ...] = (),
                 refresh: bool = True) -> shims.ShimContext:
    f = images.facts(lambda: ctx.engine, ctx.paths, image_id)
    uid, gid = images.current_ids()
    pw_dir = images.passwd_dir(ctx.paths, image_id, f, uid, gid)
    return shims.ShimContext(
        tool=tool, version=version, image=image_tag, runtime=runtime,
        settings=ctx.config.for_tool(tool, version), locales=f.locales,
        utf8_locale=f.utf8_locale, passwd_uid=uid, passwd_dir=pw_dir, paths=ctx.paths,
        extra_mounts=extra_mounts, refresh=refresh,
        warm_idle_minutes=ctx.config.warm_idle_minutes, engine=ctx.engine_choice,
        shell=f.shell, image_platform=f.platform,
    )


def install(ctx: Context, spec: Spec, *, force: bool = False,
            approve: consent.Approver | None = None) -> InstallResult:
    """Install spec; an update that changes mounts, env or network needs `approve` to say yes."""
    r = prepare(ctx, spec, approve)
    return finish(ctx, r, build(ctx, r, force=force))


def prepare(ctx: Context, spec: Spec, approve: consent.Approver | None = None) -> Resolved:
    """Everything an install checks before it builds: a failure here changes nothing."""
    r = resolve(ctx, spec)
    rt = r.version.runtime
    names = shims.shim_names(r.recipe.tool, r.version.version, rt)
    shims.check_targets(ctx.paths.bin_dir, names, r.key)  # fail before building
    previous = installs.load(ctx.paths, r.recipe.tool, r.version.version)
    old_rt = (consent.granted(runtime_from_dict(previous.runtime), previous.shim_inputs)
              if previous and previous.runtime else None)
    settings = ctx.config.for_tool(r.recipe.tool, r.version.version)
    consent.check_devices(r.recipe.path, r.version.version, rt, settings, ctx.config.path)
    if previous is None:
        lines = consent.disclose(rt, settings)
        ctx.out.info(f"{r.key} will be able to reach:\n" + "\n".join("  " + x for x in lines))
    consent.check(r.key, old_rt, settings.apply(rt), approve,  # before building: a refusal
                  cause=_consent_cause(ctx, rt, previous, settings))  # changes nothing
    return r


def _consent_cause(ctx: Context, rt: Runtime, previous: InstallRecord | None,
                   settings: ToolSettings) -> str:
    """What asks for the access a consent is about: the recipe, config.toml (by its path), or
    both; a refusal names the file the user has to look at."""
    config = str(ctx.config.path or ctx.paths.config_file)
    if previous is None:
        by_recipe = bool(consent.beyond_default(rt))
        by_config = consent.beyond_default(settings.apply(rt)) != consent.beyond_default(rt)
        recipe = "the recipe"
    else:
        old = runtime_from_dict(previous.runtime) if previous.runtime else rt
        by_recipe = bool(consent.changes(old, rt))
        by_config = (consent.changes(consent.granted(old, previous.shim_inputs), settings.apply(old))
                     != [])
        recipe = "the updated recipe"
    if by_config and by_recipe:
        return f"{recipe} (and {config})"
    return config if by_config else recipe


def install_many(ctx: Context, specs: list[Spec], *, force: bool = False,
                 approve: consent.Approver | None = None,
                 ) -> list[tuple[Spec, InstallResult | SandmanError]]:
    """Install several versions: checks one by one, builds in parallel, shims one by one.

    Builds of independent images overlap (at most os.cpu_count() at once, each with its own
    daemon connection); images from the same base share its layers. One failure does not stop
    or undo the others: every spec gets its result or its error, in the order given.
    """
    from concurrent.futures import ThreadPoolExecutor
    from dataclasses import replace

    outcome: dict[int, InstallResult | SandmanError] = {}
    ready: list[tuple[int, Resolved]] = []
    for i, spec in enumerate(specs):
        try:
            ready.append((i, prepare(ctx, spec, approve)))
        except SandmanError as e:
            outcome[i] = e
    lock = threading.Lock()

    def build_one(r: Resolved) -> BuildResult:
        own = replace(ctx, out=_Prefixed(ctx.out, r.key, lock))  # its own daemon connection
        return build(own, r, force=force)

    workers = max(1, min(len(ready), os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [(i, r, pool.submit(build_one, r)) for i, r in ready]
        for i, r, fut in futures:
            try:
                outcome[i] = finish(ctx, r, fut.result())
            except SandmanError as e:
                outcome[i] = e
    return [(spec, outcome[i]) for i, spec in enumerate(specs)]


def install_all(ctx: Context, specs: list[Spec], *, force: bool = False,
                approve: consent.Approver | None = None) -> Batch[InstallResult]:
    """`install A B ...`: one spec is installed as it is (its error raised); several go through
    install_many, and one failure leaves the others installed (sandman/batch.py)."""
    if len(specs) == 1:
        return Batch(((str(specs[0]), install(ctx, specs[0], force=force, approve=approve)),))
    return Batch(tuple((str(spec), got) for spec, got in
                       install_many(ctx, specs, force=force, approve=approve)))


class _Prefixed:
    """A reporter for one of several builds running at once: each line says whose it is."""

    def __init__(self, out: object, key: str, lock: threading.Lock) -> None:
        self.out, self.key, self.lock = out, key, lock

    def info(self, msg: str) -> None:
        with self.lock:
            self.out.info(msg)  # type: ignore[attr-defined]

    def warn(self, msg: str) -> None:
        with self.lock:
            self.out.warn(msg)  # type: ignore[attr-defined]

    def step(self, line: str) -> None:
        with self.lock:
            self.out.step(f"{self.key}: {line}")  # type: ignore[attr-defined]


def finish(ctx: Context, r: Resolved, result: BuildResult) -> InstallResult:
    """The image exists: write the shims and the install record (with what the shims bake in)."""
    rt = r.version.runtime
    names = shims.shim_names(r.recipe.tool, r.version.version, rt)
    previous = installs.load(ctx.paths, r.recipe.tool, r.version.version)
    sctx = shim_context(ctx, r.recipe.tool, r.version.version, result.tag, result.image_id, rt)
    written = shims.write_shims(ctx.paths.bin_dir, {n: shims.render(sctx, n) for n in names}, r.key)
    for name in names:
        other = shims.shadowed(ctx.paths.bin_dir, name)
        if other:
            ctx.out.warn(f"{name}: {other} comes earlier on PATH and will run instead")
    if previous:
        stale = [n for n in previous.shims if n not in names]
        shims.remove_shims(Path(previous.bin_dir), stale, r.key)
    info = ctx.engine.image(result.image_id)
    bases = built_on(info.labels) if info is not None else {}
    origin = result.origin
    if previous is not None and previous.image_id == result.image_id:
        bases = bases or previous.bases  # an image from before the bases label
        if origin in ("", "local"):
            origin = previous.origin or origin  # reinstalling a pulled image keeps "registry"
    record = InstallRecord(
        tool=r.recipe.tool, version=r.version.version, source=r.entry.source.name,
        recipe_file=str(r.entry.recipe_file), fingerprint=result.fingerprint,
        image_id=result.image_id, image_tag=result.tag, shims=tuple(names),
        bin_dir=str(ctx.paths.bin_dir), installed_at=datetime.now(UTC).isoformat(timespec="seconds"),
        runtime=runtime_to_dict(rt), shim_inputs=shims.made_from(sctx.settings, sctx.warm_idle_minutes),
        full_version=result.full_version, bases=bases, origin=origin,
    )
    images.add_root(ctx.engine, ctx.paths, record)  # this home holds the image: no gc takes it
    installs.write_record(ctx.paths, record)
    _aliases_changed(ctx, record.tool)
    tool_files(ctx, record, rt, list(r.version.build.packages))
    return InstallResult(record, result.built, written)


def tool_files(ctx: Context, rec: InstallRecord, rt: Runtime, packages: list[str] | None, *,
               retry: bool = False) -> None:
    """The tool's own completion and man pages beside its shims (sandman/toolfiles.py).
    packages None: from the cache only (a reshim starts no container). Never fails an install."""
    from sandman import toolfiles

    try:
        files = toolfiles.install_files(
            lambda: ctx.engine, ctx.paths, rec.key, rec.version, rec.image_id,
            toolfiles.plan_for(rec.tool, rec.version, rt, list(rec.shims)), packages or [],
            extract_ok=packages is not None, retry=retry)
    except (SandmanError, OSError) as e:
        ctx.out.warn(f"{rec.key}: no completion or manual pages: {getattr(e, 'message', e)}")
        return
    if files is not None and files.man_error:
        ctx.out.warn(f"{rec.key}: no manual pages of {', '.join(packages or [])}: "
                     f"{files.man_error.splitlines()[-1]}")


def _aliases_changed(ctx: Context, tool: str) -> None:
    """A pinned alias runs the installed version that has it (the plain shim reads this file)."""
    from sandman import aliases

    aliases.write_alias_file(ctx.paths, tool)


def rewrite_shims(ctx: Context, spec: Spec, approve: consent.Approver | None = None) -> InstallResult:
    """Bring an install's shims up to date with its recipe (no build): `upgrade` of a stale shim.

    The recipe's runtime settings may have changed (env, mounts, commands...): changed
    permissions need consent as with `install`. The image must still be the one installed.
    """
    rec = installed(ctx, spec)
    info = ctx.engine.image(rec.image_tag)
    if info is None or (rec.image_id and info.id != rec.image_id):
        raise ImageMissingError(f"{rec.key}: image {rec.image_tag} is gone or was replaced; "
                                f"run: sandman upgrade {rec.key}")
    r = prepare(ctx, spec, approve)
    return finish(ctx, r, BuildResult(image_id=rec.image_id, tag=rec.image_tag,
                                      fingerprint=rec.fingerprint, built=False,
                                      full_version=rec.full_version, origin=rec.origin))


def installed(ctx: Context, spec: Spec) -> InstallRecord:
    rec = installs.load(ctx.paths, spec.tool, spec.version or "")
    if rec is None and spec.version:  # an alias of an installed version (recipes.Recipe.version)
        with contextlib.suppress(SandmanError):
            rec = installs.load(ctx.paths, spec.tool, ctx.catalog.resolve(spec)[2].version)
    if rec is None:
        have = ", ".join(r.key for r in installs.all_records(ctx.paths)) or "none"
        raise NotFoundError(f"{spec.tool}@{spec.version} is not installed; installed: {have}")
    return rec


@dataclass(frozen=True)
class Uninstalled:
    spec: Spec
    removed: list[Path]  # the shims removed; forced: also the record, last
    forced: bool = False  # the record could not be read: removed what names spec (--force)


def uninstall_all(ctx: Context, specs: list[Spec], *, force: bool = False) -> Iterator[Uninstalled]:
    """Uninstall each spec in turn, stopping at the first error. force: a record that cannot be
    read (or none) still lets the shims whose header names the spec go, and the record; this
    home's root on the image goes too when the daemon answers. With nothing of that kind to
    remove, the error stands."""
    for spec in specs:
        try:
            removed = uninstall(ctx, spec)
        except (StateError, NotFoundError):  # a record that cannot be read, or none
            if not force:
                raise
            removed = installs.remove_unreadable(ctx.paths, spec.tool, spec.version or "")
            if not removed:
                raise
            with contextlib.suppress(SandmanError):  # this home's root on the image
                ctx.engine.untag(images.root_ref(ctx.paths, spec.tool, spec.version or ""))
            yield Uninstalled(spec, removed, forced=True)
            continue
        yield Uninstalled(spec, removed)


def uninstall(ctx: Context, spec: Spec) -> list[Path]:
    rec = installed(ctx, spec)
    images.drop_root(ctx.engine, ctx.paths, rec)  # gc may take the image once no home holds it
    removed = shims.remove_shims(Path(rec.bin_dir), rec.shims, rec.key)
    from sandman import toolfiles

    with contextlib.suppress(OSError):
        toolfiles.remove(ctx.paths, rec.key)  # its completion and man pages
    installs.remove_record(ctx.paths, rec.tool, rec.version)
    _aliases_changed(ctx, rec.tool)
    if (ctx.paths.state_dir / "warm").is_dir():  # its warm containers go too (daemon permitting)
        from sandman import warm

        with contextlib.suppress(SandmanError):
            warm.stop(ctx.engine, ctx.paths, [rec.key])
    return removed


def reshim(ctx: Context, spec: Spec, known: images.Known | None = None, *,
           aliases_done: set[str] | None = None, record: InstallRecord | None = None) -> list[Path]:
    """Rewrite an install's shims from its record, the current config and runtime (no build).

    The recipe's settings stay those of the record (taking a changed recipe's is `upgrade`,
    which asks for consent when permissions change); what changes is the shim runtime (a new
    sandman), config.toml, the host's docker. The record then says what the shims are made of.
    `known`: the engine's images as this command read them (one listing for `reshim --all`);
    `aliases_done`: the tools whose alias file this command already wrote (it depends on the
    tool's records alone, which a reshim does not change: once per tool, not per install);
    `record`: spec's install record, when the command has just read it.
    """
    from dataclasses import replace

    rec = record if record is not None else installed(ctx, spec)
    known = known if known is not None else images.Known(engine_of=lambda: ctx.image_reads)
    if known.image(rec.image_tag) is None:
        raise ImageMissingError(f"{rec.key}: image {rec.image_tag} is gone; run: sandman install {rec.key}")
    # claims an install made before roots existed; no tag posted when both are already there
    images.ensure_root(lambda: ctx.engine, ctx.paths, rec, known)
    rt = runtime_from_dict(rec.runtime)
    sctx = shim_context(ctx, rec.tool, rec.version, rec.image_tag, rec.image_id, rt)
    consent.check(rec.key, consent.granted(rt, rec.shim_inputs), sctx.settings.apply(rt), None,
                  cause=str(ctx.paths.config_file))  # config.toml granting more needs a yes
    written = shims.write_shims(ctx.paths.bin_dir, {n: shims.render(sctx, n) for n in rec.shims},
                                rec.key)
    inputs = shims.made_from(sctx.settings, sctx.warm_idle_minutes)
    if inputs != rec.shim_inputs:
        installs.write_record(ctx.paths, replace(rec, shim_inputs=inputs))
    if aliases_done is None or rec.tool not in aliases_done:
        _aliases_changed(ctx, rec.tool)  # an install made before alias files existed
        if aliases_done is not None:
            aliases_done.add(rec.tool)
    tool_files(ctx, rec, rt, None)  # from the cache: a shim's refresh runs this
    return written


def reshim_all(ctx: Context, specs: list[Spec], *, every: bool = False) -> Batch[list[Path]]:
    """`reshim`: the shims of specs (and with every, of each install) rewritten, one failure
    leaving the others done (sandman/batch.py). The engine's images are read once for all,
    and each tool's alias file written once."""
    read: dict[Spec, InstallRecord] = {}  # each record read once (all_records), not again
    if every:
        read = {Spec(r.tool, r.version): r for r in installs.all_records(ctx.paths)}
        specs = [*specs, *read]
    known = images.Known(engine_of=lambda: ctx.image_reads)
    aliases_done: set[str] = set()

    def one(spec: Spec) -> list[Path]:
        written = reshim(ctx, spec, known, aliases_done=aliases_done, record=read.get(spec))
        for p in written:
            ctx.out.info(f"rewrote {p}")
        return written

    return each(specs, one, failed=lambda spec, e: ctx.out.warn(f"{spec} not rewritten: {e.message}"))


def run_script(ctx: Context, spec: Spec, extra_mounts: tuple[str, ...], *,
               dry_run: bool = False) -> tuple[str, str]:
    """The shim script for a one-off `sandman run` (building the image first if needed; a dry
    run builds, pulls and creates nothing: it names the tag it would use)."""
    ctx = ctx.looking_only() if dry_run else ctx
    r = resolve(ctx, spec)
    rec = installs.load(ctx.paths, r.recipe.tool, r.version.version)
    if rec is not None and ctx.engine.image(rec.image_tag) is not None:
        tag, image_id = rec.image_tag, rec.image_id
    elif dry_run:
        tag, image_id = planned_image(ctx, r)
    else:
        result = build(ctx, r)
        tag, image_id = result.tag, result.image_id
    rt = r.version.runtime
    rt = Runtime(**{**rt.__dict__, "entrypoint": ()})  # `run` runs CMD ARGS as given
    sctx = shim_context(ctx, r.recipe.tool, r.version.version, tag, image_id, rt,
                        extra_mounts=extra_mounts, refresh=False)
    name = f"{r.recipe.tool}-{r.version.version}"
    return name, shims.render(sctx, name)


def exec_script(name: str, script: str, args: list[str], env: dict[str, str] | None = None, *,
                dry_run: bool = False) -> None:
    """Replace this process with the shim script (so signals and exit status are the tool's);
    dry_run: the script prints its docker command instead of running it."""
    env = dict(env or os.environ)
    if dry_run:
        env["SANDMAN_DRY_RUN"] = "1"
    os.execve("/bin/bash", ["bash", "-c", script, name, *args], env)


def man_page(ctx: Context, spec: Spec, page: str | None) -> Path:
    """The file of an installed version's manual page: `page`, else the tool's own, else its
    first command's. Pages not read at install (or whose download failed) are tried again."""
    from sandman import toolfiles

    rec = installed(ctx, spec)
    found = toolfiles.pages(ctx.paths, rec.key)
    if not found:  # not read yet, or the download failed at install: try again now
        r = resolve(ctx, Spec(rec.tool, rec.version))
        tool_files(ctx, rec, runtime_from_dict(rec.runtime), list(r.version.build.packages),
                   retry=True)
        found = toolfiles.pages(ctx.paths, rec.key)
    names = {f.name.split(f"-{rec.version}.", 1)[0]: f for f in sorted(found)}
    wanted = [page] if page else [rec.tool, *(n[: -len(rec.version) - 1] for n in rec.shims)]
    hit = next((names[w] for w in wanted if w in names), None)
    if hit is None:
        have = ", ".join(sorted(names)) or "none"
        raise NotFoundError(f"{rec.key} has no manual page {page or rec.tool} (its pages: {have})")
    return hit


# -- dry runs: what `run` and `matrix` would do, found without changing anything ----------------
# A dry run's Context (Context.looking_only) has an engine that can look but not touch
# (engine.DryRunEngine): building, pulling, tagging, creating or starting a container raises, so
# "nothing happens" is enforced at the Docker boundary. What the shim would need from a missing
# image (its tag, its passwd and locale facts) is computed or replaced by plain defaults instead.
NOT_BUILT = "sha256:not-built"  # stands for the id of an image a dry run did not build


def planned_image(ctx: Context, r: Resolved) -> tuple[str, str]:
    """The tag and image id a run of r would use (NOT_BUILT for an image not built yet), found
    without building or pulling anything; says on stderr when the image is not built yet."""
    from sandman.build import REPOSITORY, cached, kits_dir, plan_build

    try:
        plan = plan_build(r.recipe, r.version, source=r.entry.source.name,
                          kits_folder=kits_dir(ctx.paths, ctx.config.kits_dir, ctx.env),
                          engine=ctx.engine, pull_missing_bases=False)
    except ImageMissingError as e:
        safe = images.SAFE_TAG_RE.sub("_", r.version.version)
        ctx.out.warn(f"dry run: {r.key} is not built and its tag is not known yet ({e.message})")
        return f"{REPOSITORY}/{r.recipe.tool}:{safe}-NOT-BUILT", NOT_BUILT
    image_id = cached(ctx.engine, plan)
    if image_id is None:
        ctx.out.warn(f"dry run: image {plan.tag} is not built yet; a real run builds it first")
        return plan.tag, NOT_BUILT
    return plan.tag, image_id
