"""From a recipe version to an image: render the build, fingerprint it, build only when new.

The fingerprint is the image's portable identity: the normalized build settings, the Dockerfile
text, every file in the build context, the kit checksums and the *reference* of each base image
(`debian:bookworm-slim`), never a local image id, so two machines compute the same fingerprint
and a teammate finds in the registry what a colleague pushed, with no base here at all. The base
image ids a build really used are a local build fact: the `io.sandman.bases` label of the image.
An image built here on a base that has been bootstrapped again since is not taken from the
cache (images.moved: `image-stale: base` in `sandman list`); it is built again, and kept only if
that build fails. The same fingerprint is never built twice (a file lock makes parallel
installs wait for the first), and a new image only gets its tag once it has built *and* passed
its smoke test, so a failed build never replaces a good one.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import stat
import tarfile
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from sandman.errors import (
    BuildError,
    ImageMissingError,
    KitError,
    MissingCommandError,
    PlatformError,
    RecipeError,
    RemoteError,
    SandmanError,
    UnsafeInputError,
    VersionMismatchError,
)
from sandman.names import (
    LABEL_BASES,
    LABEL_BUILD_STEP,
    LABEL_FINGERPRINT,
    LABEL_INPUTS,
    LABEL_SOURCE,
    LABEL_TOOL,
    LABEL_VERSION,
)
from sandman.paths import Paths
from sandman.recipe_inputs import build_inputs
from sandman.recipe_source import MAX_DOCKERFILE_BYTES, NotRegularError, locate, read_regular
from sandman.recipes import Recipe, Source, Version, VersionCheck
from sandman.text import quoted, safe

if TYPE_CHECKING:  # the SDK: only a build, a pull or a probe needs it (engine_reads.py)
    from sandman.engine import Engine

FINGERPRINT_VERSION = 2  # 2: base references, not local base ids (portable across machines)
REPOSITORY = "sandman"


@dataclass(frozen=True)
class BuildPlan:
    tool: str
    version: str
    source: str
    dockerfile: str
    files: dict[str, Path]  # archive name -> real path of a regular file (recipe files, kits)
    buildargs: dict[str, str]
    bases: dict[str, str]  # base image ref -> local image id, for the refs present here
    fingerprint: str
    smoke: tuple[str, ...] = ()
    inputs: dict[str, str] = field(default_factory=dict)  # what went into the fingerprint
    commands: tuple[str, ...] = ()  # what the shims will exec: checked in the image after a build
    sources: tuple[Source, ...] = ()  # downloaded into the context (sources/<file>) only to build
    version_check: VersionCheck | None = None  # proves the image is the version it is named
    base_refs: tuple[str, ...] = ()  # every base the Dockerfile starts from (in the fingerprint)
    platform: str | None = None  # the recipe's `platform` (in the fingerprint when set)

    @property
    def tag(self) -> str:
        return image_ref(self.tool, self.version, self.fingerprint)

    @property
    def labels(self) -> dict[str, str]:
        return {
            LABEL_TOOL: self.tool,
            LABEL_VERSION: self.version,
            LABEL_FINGERPRINT: self.fingerprint,
            LABEL_SOURCE: self.source,
            LABEL_BASES: json.dumps(self.bases, sort_keys=True),  # what it was built on, here
            LABEL_INPUTS: json.dumps({  # kits and sources by sha256, for `sandman sbom`
                "kits": json.loads(self.inputs.get("build", "{}")).get("kits", []),
                "sources": [[s.file, s.sha256, s.url] for s in self.sources]}, sort_keys=True),
        }


@dataclass(frozen=True)
class BuildResult:
    image_id: str
    tag: str
    fingerprint: str
    built: bool  # False: the cache had it
    origin: str = ""  # built | registry | local (install.build says which); "" when unknown
    full_version: str | None = None  # what the version check matched in the image
    # the cached image on a base bootstrapped again since, kept because the build on the new
    # base failed: why (install says it as a warning); "" otherwise
    kept_stale: str = ""


def image_ref(tool: str, version: str, fingerprint: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", version)
    return f"{REPOSITORY}/{tool}:{safe}-{fingerprint[:12]}"


def render_dockerfile(version: Version) -> str:
    """The Dockerfile sandman writes for a base-plus-packages version."""
    b = version.build
    lines = [f"FROM {b.base}", "ENV DEBIAN_FRONTEND=noninteractive"]
    if b.packages:
        pkgs = " ".join(b.packages)
        lines.append(
            "RUN apt-get update && apt-get install -y --no-install-recommends "
            f"{pkgs} && apt-get clean && rm -rf /var/lib/apt/lists/*"
        )
    if b.files:
        for rel in b.files:
            lines.append(f"COPY {json.dumps(['files/' + rel, '/opt/sandman/files/' + rel])}")
    if b.kits:
        lines.append('COPY ["kits/", "/tmp/kits/"]')
    if b.sources:
        lines.append('COPY ["sources/", "/tmp/sources/"]')
    for step in b.run:
        lines.append(f"RUN {step}")
    if b.kits:
        lines.append("RUN rm -rf /tmp/kits")
    if b.sources:
        lines.append("RUN rm -rf /tmp/sources")
    return "\n".join(lines) + "\n"


def kits_dir(paths: Paths, config_kits_dir: Path | None, env: dict[str, str]) -> Path:
    if env.get("SANDMAN_KITS_DIR"):
        return Path(env["SANDMAN_KITS_DIR"]).expanduser()
    return config_kits_dir or paths.kits_dir


def check_kits(recipe: Recipe, version: Version, folder: Path) -> dict[str, Path]:
    """Every kit present with the declared sha256, before anything is built or pulled.

    A kit must be a regular file inside the kits folder once symlinks are resolved: a link to
    a device would never finish hashing, and one elsewhere reads what the user did not put there.
    """
    found: dict[str, Path] = {}
    root = folder.resolve()
    for i, kit in enumerate(version.build.kits):
        path = folder / kit.file
        where = f"{recipe.tool}@{version.version} needs the kit {quoted(kit.file)}"
        if not path.exists():
            raise KitError(f"{where}; download it and put it at {safe(path)}")
        real = path.resolve()
        key = ("versions", version.version, "kits", i, "file")
        if not real.is_relative_to(root):
            raise UnsafeInputError(
                f"{locate(recipe.path, key)}: kit {quoted(kit.file)}: {safe(path)} resolves to "
                f"{safe(real)}, outside the kits folder {safe(root)}; copy the file into it")
        mode = real.stat().st_mode
        if stat.S_ISDIR(mode):  # a mistake, not an attack: the kit is unreadable as a file
            raise KitError(f"{where}; {safe(path)} is a directory, not the kit file")
        if not stat.S_ISREG(mode):
            raise UnsafeInputError(f"{locate(recipe.path, key)}: kit {quoted(kit.file)}: "
                                   f"{safe(path)} is not a regular file")
        path = real
        try:
            digest = sha256_file(path)
        except OSError as e:
            raise KitError(f"{where}; cannot read {path}: {e.strerror}") from e
        if digest != kit.sha256:
            raise KitError(
                f"{where}; {path} has sha256 {digest}, the recipe expects {kit.sha256} "
                "(wrong or corrupted download?)"
            )
        found[f"kits/{kit.file}"] = path
    return found


def sha256_file(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


FROM_RE = re.compile(r"^\s*FROM\s+(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?", re.IGNORECASE | re.MULTILINE)
ARG_RE = re.compile(r"^\s*ARG\s+([A-Za-z_][A-Za-z0-9_]*)(?:=(\S*))?", re.IGNORECASE | re.MULTILINE)


def base_refs(dockerfile: str, buildargs: dict[str, str]) -> list[str]:
    """The external images a Dockerfile starts from (stage names and scratch excluded)."""
    defaults = {m.group(1): (m.group(2) or "").strip("\"'") for m in ARG_RE.finditer(dockerfile)}
    values = {**defaults, **buildargs}
    stages: set[str] = set()
    refs: list[str] = []
    for m in FROM_RE.finditer(dockerfile):
        ref = re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda a: values.get(a.group(1), ""),
                     m.group(1))
        if ref.lower() != "scratch" and ref not in stages and ref not in refs:
            refs.append(ref)
        if m.group(2):
            stages.add(m.group(2))
    return refs


def plan_build(
    recipe: Recipe, version: Version, *, source: str, kits_folder: Path, engine: Engine,
    pull_missing_bases: bool = True,
) -> BuildPlan:
    """The plan and fingerprint of one version; it needs no base image here (pull_missing_bases
    is accepted for older callers: planning never pulls, ensure_image does before a build)."""
    b = version.build
    files = check_kits(recipe, version, kits_folder)
    files.update(build_inputs(recipe, version))
    settings = {"base": b.base, "packages": b.packages, "run": b.run, "dockerfile": b.dockerfile,
                "build_args": b.build_args, "files": b.files,
                "kits": [[k.file, k.sha256] for k in b.kits], "smoke": version.runtime.smoke}
    if b.sources:  # by name and sha256: a mirror or a moved URL is the same input
        settings["sources"] = [[s.file, s.sha256] for s in b.sources]
    if version.runtime.platform:  # only when set: the images of other recipes keep their ids
        settings["platform"] = version.runtime.platform
    if b.dockerfile:
        dockerfile = _read_dockerfile(recipe, version, files[b.dockerfile])
        refs = base_refs(dockerfile, b.build_args)
    else:
        dockerfile = render_dockerfile(version)
        refs = [str(b.base)]
    # Planning needs no base: the fingerprint names bases by reference. The ids of those here
    # are kept for the build (with_bases pulls or names the fix for the rest, only to build).
    bases = {ref: info.id for ref in refs if (info := engine.image(ref)) is not None}
    inputs = {
        "fingerprint_version": str(FINGERPRINT_VERSION),
        "tool": recipe.tool,
        "version": version.version,
        "build": json.dumps(settings, sort_keys=True),
        "dockerfile": hashlib.sha256(dockerfile.encode()).hexdigest(),
        "bases": json.dumps(refs),
    }
    for name, path in sorted(files.items()):
        if name.startswith("kits/"):
            continue  # already in "build" by declared (and verified) checksum
        inputs[f"file:{name}"] = f"{path.stat().st_mode & 0o777:o}:{sha256_file(path)}"
    fingerprint = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()
    return BuildPlan(
        tool=recipe.tool, version=version.version, source=source, dockerfile=dockerfile,
        files=files, buildargs=dict(b.build_args), bases=bases, fingerprint=fingerprint,
        smoke=version.runtime.smoke, inputs=inputs, commands=declared_commands(version),
        sources=b.sources, version_check=version.check, base_refs=tuple(refs),
        platform=version.runtime.platform,
    )


def declared_commands(version: Version) -> tuple[str, ...]:
    """What the shims of a version exec in its image: each command, and the entrypoint's."""
    rt = version.runtime
    out = [rt.entrypoint[0]] if rt.entrypoint else []
    out += [rt.run_name(c) for c in rt.commands if rt.run_name(c) not in out]
    return tuple(out)


def _read_dockerfile(recipe: Recipe, version: Version, path: Path) -> str:
    """The recipe's Dockerfile, bounded in size; an error never quotes its content."""
    def where() -> str:  # the line is looked up only for an error (it reads the recipe again)
        return locate(recipe.path, ("versions", version.version, "dockerfile"))

    try:
        data = read_regular(path, MAX_DOCKERFILE_BYTES)
    except NotRegularError as e:
        raise UnsafeInputError(f"{where()}: dockerfile {quoted(version.build.dockerfile)} {e}") from e
    except OSError as e:
        raise RecipeError(f"{where()}: dockerfile {quoted(version.build.dockerfile)} cannot be "
                          f"read: {e.strerror}") from e
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RecipeError(f"{where()}: dockerfile {quoted(version.build.dockerfile)} is not UTF-8 "
                          f"text (byte {e.start})") from e


def resolve_base(engine: Engine, ref: str, *, pull: bool) -> str:
    info = engine.image(ref)
    if info is not None:
        return info.id
    fix = f"make it locally with: sandman bootstrap {ref}" if ref.startswith("debian:") else \
        "load it with docker load, or build it, then retry"
    if not pull:
        raise ImageMissingError(f"base image {ref} is not available locally; {fix}")
    try:
        return engine.pull(ref).id
    except RemoteError as e:
        raise ImageMissingError(
            f"base image {ref} is not available locally and cannot be pulled ({e.message}); {fix}"
        ) from e


def with_bases(engine: Engine, plan: BuildPlan) -> BuildPlan:
    """plan with every base present here (pulled when missing, else ImageMissingError naming the
    fix): only a build needs them; the image records their ids in its LABEL_BASES."""
    bases = {ref: plan.bases.get(ref) or resolve_base(engine, ref, pull=True)
             for ref in plan.base_refs}
    return replace(plan, bases=bases)


def require_platform(platform: str | None, what: str) -> None:
    """PlatformError (with the fix) unless this host runs `platform`, natively or through QEMU
    user emulation: checked before a build and before an install from the cache, since shims
    of an image the kernel cannot run fail with an engine message nobody can act on."""
    if platform is None:
        return
    from sandman import platforms

    found = platforms.lookup(platform)
    if found is None:  # the recipe loader refuses it first; an install record may not
        raise PlatformError(f"{what}: unknown platform {quoted(platform)}; sandman knows "
                            f"{platforms.known_names()}")
    problem = platforms.emulation_problem(found, platforms.host_platform())
    if problem:
        raise PlatformError(f"{what}: {problem}")


def check_base_platforms(engine: Engine, plan: BuildPlan, what: str) -> None:
    """Each base is of the plan's platform (the host's when the recipe names none).

    docker 20.10's builder keeps a base's platform whatever `--platform` says, so an arm64 base
    would give an arm64 image named for amd64; and a shim of a foreign image that has no
    `platform` makes `docker run` warn on the user's stderr.
    """
    from sandman import platforms

    host = platforms.host_platform()
    want = plan.platform or (host.name if host else None)
    for ref, ident in plan.bases.items():
        info = engine.image(ident)
        if want is None or info is None or not info.platform or platforms.same(info.platform, want):
            continue
        if plan.platform:
            found = platforms.lookup(plan.platform)
            prefix = found.hub_prefix if found else "ARCH"
            raise PlatformError(
                f"{what}: base {ref} is {info.platform}, but the recipe's platform is {want}; "
                f"name a {want} base in `base` (made with: sandman bootstrap {prefix}/debian:SUITE, "
                "or sandman bootstrap --from-rootfs FILE NAME:TAG)")
        raise PlatformError(
            f"{what}: base {ref} is {info.platform}, not this host's {want}; add "
            f"platform = \"{info.platform}\" to the recipe to run it through QEMU emulation")


def mark_build_steps(dockerfile: str) -> str:
    """The Dockerfile docker gets: LABEL_BUILD_STEP="1" after each FROM, "" at the end.

    docker gives a build's intermediate containers no labels of their own, but they inherit
    their image's: so the containers a build killed mid-way leaves behind can be recognised and
    removed later (Engine.remove_build_leftovers), while containers of the finished image cannot
    be mistaken for them. The fingerprint is taken from the recipe's Dockerfile, not this one,
    and the values are constant, so the layer cache is shared between builds as before.
    """
    out: list[str] = []
    for line in dockerfile.splitlines():
        out.append(line)
        if FROM_RE.match(line) and not line.rstrip().endswith("\\"):
            out.append(f'LABEL {LABEL_BUILD_STEP}="1"')
    out.append(f'LABEL {LABEL_BUILD_STEP}=""')
    return "\n".join(out) + "\n"


def write_context(plan: BuildPlan, out: io.BufferedIOBase | tempfile._TemporaryFileWrapper) -> None:
    """The tar docker builds from: the Dockerfile and the *content* of each input file.

    Files go in as regular tar members read from their resolved paths (never as symlinks for
    docker to follow), each opened without following a link and checked again.
    """
    with tarfile.open(fileobj=out, mode="w") as tar:
        data = mark_build_steps(plan.dockerfile).encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(data))
        for name, path in sorted(plan.files.items()):
            if name == "Dockerfile":
                continue
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
            with os.fdopen(fd, "rb") as f:
                st = os.fstat(f.fileno())
                if not stat.S_ISREG(st.st_mode):
                    raise UnsafeInputError(f"{safe(path)} changed into something other than a "
                                           "regular file during the build")
                info = tarfile.TarInfo(name)
                info.size = st.st_size
                info.mode = st.st_mode & 0o777
                info.mtime = int(st.st_mtime)
                if name.startswith("sources/"):  # known by content: same bytes, same member
                    info.mode, info.mtime = 0o644, 0
                tar.addfile(info, f)


def cached(engine: Engine, plan: BuildPlan) -> str | None:
    info = engine.image(plan.tag)
    if info and info.labels.get(LABEL_FINGERPRINT) == plan.fingerprint:
        return info.id
    return None


def moved_under(engine: Engine, image_id: str) -> list[str]:
    """The bases the cached image (of a plan) was built on here that have been bootstrapped
    again since (images.moved): the fingerprint names bases by reference, so it still
    matches, but a build now would start from the new base, and `list` would call the old
    image `image-stale: base` the moment it was installed."""
    from sandman.images import built_on, moved

    info = engine.image(image_id)
    return moved(engine, built_on(info.labels), built_from=info) if info is not None else []


def ensure_image(
    plan: BuildPlan, engine: Engine, paths: Paths, *, on_line: Callable[[str], None],
    force: bool = False, fetch: Callable[[BuildPlan], str | None] | None = None,
    mirror: str | None = None,
) -> BuildResult:
    """The image for plan: from the cache, from `fetch` (a registry), or built now.

    Sources are downloaded only for a build (a cached or pulled image needs none), before it
    starts; `mirror` is the sources mirror in effect (sources.configured_mirror).
    """
    paths.locks_dir.mkdir(parents=True, exist_ok=True)
    from filelock import FileLock  # (and asyncio): only a build takes the lock, not list or reshim

    lock = FileLock(str(paths.locks_dir / f"{plan.tool}@{plan.version}.lock"))
    with lock:
        what = f"{plan.tool}@{plan.version}"
        require_platform(plan.platform, what)
        stale_hit: str | None = None
        stale: list[str] = []
        if not force:
            hit = cached(engine, plan)
            stale = moved_under(engine, hit) if hit else []
            if stale:  # built again; publish gives the new image the tag (or another home's)
                on_line(f"{what}: the cached image was built on an older {', '.join(stale)}; "
                        "building it again")
                stale_hit, hit = hit, None
            if not hit and not stale and fetch is not None:  # a pull could not take the tag
                hit = fetch(plan)
            if hit:
                # commands and the version check are not part of the fingerprint: a recipe that
                # declares a new one reuses the image, which must pass it too (the image itself
                # stays: it is good)
                full_version = check_existing(engine, paths, hit, plan)
                return BuildResult(hit, plan.tag, plan.fingerprint, built=False,
                                   full_version=full_version)
        try:
            return _build_new(plan, engine, paths, on_line=on_line, take_tag=force, mirror=mirror)
        except SandmanError as e:
            if stale_hit is None:
                raise
            # the image that worked stays in use (a source gone, a mirror moved): said, not hidden
            full_version = check_existing(engine, paths, stale_hit, plan)
            return BuildResult(stale_hit, plan.tag, plan.fingerprint, built=False,
                               full_version=full_version,
                               kept_stale=f"building on the new {', '.join(stale)} failed "
                                          f"({e.message}); using the image built on the old one")


def _build_new(plan: BuildPlan, engine: Engine, paths: Paths, *, on_line: Callable[[str], None],
               take_tag: bool, mirror: str | None) -> BuildResult:
    """A build of plan, checked, then tagged (publish) unless another home's build won
    (take_tag, `--force`: regardless)."""
    what = f"{plan.tool}@{plan.version}"
    plan = with_bases(engine, plan)
    check_base_platforms(engine, plan, what)
    files = dict(plan.files)
    if plan.sources:
        from sandman import sources

        files.update(sources.fetch_all(plan.sources, paths, mirror=mirror, on_line=on_line,
                                       what=what))
    with tempfile.TemporaryFile() as ctx:
        write_context(replace(plan, files=files), ctx)
        ctx.seek(0)
        image_id = engine.build(ctx, labels=plan.labels, buildargs=plan.buildargs,
                                on_line=on_line, what=what, platform=plan.platform)
    try:
        full_version = verify_image(engine, plan, image_id, on_line)
    except BuildError:
        _discard(engine, image_id)
        raise
    _remember_verified(paths, image_id, plan.commands)
    _remember_version(paths, image_id, plan.version_check, full_version)
    from sandman.images import publish  # another home's build may have won the tag

    image_id = publish(engine, image_id, plan.tag, plan.fingerprint, replace=take_tag)
    return BuildResult(image_id, plan.tag, plan.fingerprint, built=True, full_version=full_version)


# Runs in the new image with /bin/sh. First, with `--version-check N WORD...`, runs the version
# command (its N words) and keeps what it printed; then looks each declared command up the way
# exec does (each PATH entry, or the path itself when it has a slash; shell builtins do not
# count) and prints one report line; then the version command's output and status after it,
# ended by a mark line; then runs the smoke test (the words after `--`) in the same container.
CHECK_MARK = "sandman-missing-commands:"
VERSION_MARK = "sandman-version-check-status:"
CHECK_SCRIPT = """vcode=
if [ "$1" = "--version-check" ]; then
  vn=$2
  shift 2
  vout=$(
    i=0
    for a do
      [ "$i" -lt "$vn" ] && set -- "$@" "$a"
      i=$((i + 1))
    done
    shift "$i"
    "$@" 2>&1
  )
  vcode=$?
  shift "$vn"
fi
missing=
while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do
  found=
  case $1 in
    */*) [ -f "$1" ] && [ -x "$1" ] && found=1 ;;
    *) IFS=:
       for d in $PATH; do
         [ -n "$d" ] && [ -f "$d/$1" ] && [ -x "$d/$1" ] && found=1 && break
       done
       unset IFS ;;
  esac
  [ -n "$found" ] || missing="$missing $1"
  shift
done
[ "$#" -gt 0 ] && shift
echo "@MARK@$missing"
[ -z "$missing" ] || exit 97
[ -z "$vcode" ] || printf '%s\\n@VMARK@%s\\n' "$vout" "$vcode"
[ "$#" -eq 0 ] && exit 0
exec "$@"
""".replace("@MARK@", CHECK_MARK).replace("@VMARK@", VERSION_MARK)


def check_argv(commands: tuple[str, ...], check: VersionCheck | None,
               smoke: tuple[str, ...]) -> list[str]:
    """The argv of the check container (CHECK_SCRIPT) for these commands, check and smoke test."""
    head: list[str] = []
    if check is not None:
        head = ["--version-check", str(len(check.command)), *check.command]
    elif commands and commands[0] == "--version-check":  # an entrypoint spelt like the flag
        head = ["--version-check", "0"]
    return ["/bin/sh", "-c", CHECK_SCRIPT, "sandman-check", *head, *commands, "--", *smoke]


def verify_image(engine: Engine, plan: BuildPlan, image_id: str,
                 on_line: Callable[[str], None]) -> str | None:
    """The declared commands exist in the new image, it reports the version its recipe names,
    and the smoke test passes: one container. Returns what the version check matched.

    Raises MissingCommandError, VersionMismatchError or BuildError; the caller discards the
    image. An image without /bin/sh has its PATH folders listed instead, and the version
    command and the smoke test run on their own.
    """
    what = f"{plan.tool}@{plan.version}"
    check = plan.version_check
    if not plan.commands and not plan.smoke and check is None:
        return None
    if plan.smoke:
        on_line(f"smoke test: {' '.join(plan.smoke)}")
    if plan.commands:
        on_line(f"checking commands: {' '.join(plan.commands)}")
    if check is not None:
        on_line(f"checking the version: {' '.join(check.command)}")
    argv = check_argv(plan.commands, check, plan.smoke)
    code, out = engine.run_capture(image_id, argv, entrypoint=[])
    first, _, rest = out.partition("\n")
    version_out: str | None = None
    if first.startswith(CHECK_MARK):
        missing = first[len(CHECK_MARK):].split()
        out = rest
        if check is not None and not missing:
            version_out, out = _split_version_output(rest)
    else:  # the shell never ran: the image has no /bin/sh
        missing = missing_without_shell(engine, image_id, plan.commands)
        if not missing and check is not None:
            version_out = engine.run_capture(image_id, list(check.command), entrypoint=[])[1]
        if not missing and plan.smoke:
            code, out = engine.run_capture(image_id, list(plan.smoke), entrypoint=[])
        else:
            code = 0
    if missing:
        raise MissingCommandError(
            f"building {what}: {_missing_text(missing)} in the new image; it was discarded "
            "(fix the recipe's `commands`/`entrypoint` or install what provides them)")
    full_version = None
    if check is not None:
        full_version = match_version(check, version_out or "", f"building {what}",
                                     "the new image was discarded")
    if code != 0 and plan.smoke:
        tail = "\n".join(safe(x) for x in out.splitlines()[-25:])
        raise BuildError(
            f"building {what}: smoke test `{safe(' '.join(plan.smoke))}` exited {code}; "
            "the new image was discarded", detail=tail or None)
    return full_version


def _split_version_output(text: str) -> tuple[str, str]:
    """(what the version command printed, the rest: the smoke test's output) from CHECK_SCRIPT's."""
    head, sep, tail = ("\n" + text).partition("\n" + VERSION_MARK)
    if not sep:
        return text, ""
    return head[1:], tail.partition("\n")[2]


def match_version(check: VersionCheck, printed: str, what: str, outcome: str) -> str:
    """The text the check's `expect` matched in what the version command printed (its first
    group when it has one); VersionMismatchError showing both when it does not match."""
    m = re.search(check.expect, printed, re.MULTILINE)
    if m is None:
        shown = printed.strip()
        shown = quoted(shown if len(shown) <= 300 else shown[:300] + "...") if shown else "nothing"
        raise VersionMismatchError(
            f"{what}: the version check `{safe(' '.join(check.command))}` printed {shown}, "
            f"which does not match {quoted(check.expect)}; {outcome} (is the recipe's base or "
            "package the version it names?)")
    if m.re.groups and m.group(1) is not None:
        return m.group(1)
    return m.group(0)


def missing_without_shell(engine: Engine, image_id: str, commands: tuple[str, ...]) -> list[str]:
    """The commands not found in an image that has no shell, by listing its PATH folders."""
    if not commands:
        return []
    info = engine.image(image_id)
    env = dict(e.split("=", 1) for e in (info.env if info else ()) if "=" in e)
    path = [d for d in env.get("PATH", DEFAULT_PATH).split(":") if d.startswith("/")]
    wanted = {c: [os.path.dirname(c)] if "/" in c else path for c in commands}
    folders = sorted({d for ds in wanted.values() for d in ds})
    listing = engine.read_files(image_id, folders)
    names = {d: set(listing.get(d, b"").decode("utf-8", "replace").split("\n")) for d in folders}
    return [c for c, ds in wanted.items() if not any(os.path.basename(c) in names[d] for d in ds)]


DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _missing_text(missing: list[str]) -> str:
    what = "command" if len(missing) == 1 else "commands"
    return f"declared {what} {', '.join(quoted(m) for m in missing)} not found"


def _verified_file(paths: Paths, image_id: str) -> Path:
    return paths.facts_dir / f"{image_id.replace('sha256:', '')}.commands.json"


def _version_file(paths: Paths, image_id: str) -> Path:
    return paths.facts_dir / f"{image_id.replace('sha256:', '')}.version.json"


def _remember_verified(paths: Paths, image_id: str, commands: tuple[str, ...]) -> None:
    """Record which commands were found in an image, so a cache hit need not look again."""
    from sandman.installs import atomic_write

    f = _verified_file(paths, image_id)
    known: set[str] = set()
    with contextlib.suppress(OSError, ValueError, TypeError):
        known = set(json.loads(f.read_text()))
    with contextlib.suppress(OSError):
        atomic_write(f, json.dumps(sorted(known | set(commands))).encode())


def _remember_version(paths: Paths, image_id: str, check: VersionCheck | None,
                      matched: str | None) -> None:
    """Record what a version check matched in an image, so a cache hit need not run it again."""
    if check is None or matched is None:
        return
    from sandman.installs import atomic_write

    data = {"command": list(check.command), "expect": check.expect, "matched": matched}
    with contextlib.suppress(OSError):
        atomic_write(_version_file(paths, image_id), json.dumps(data).encode())


def _known_version(paths: Paths, image_id: str, check: VersionCheck) -> str | None:
    """What this very check matched in the image before, or None."""
    with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
        data = json.loads(_version_file(paths, image_id).read_text())
        if data.get("command") == list(check.command) and data.get("expect") == check.expect \
                and isinstance(data.get("matched"), str):
            return data["matched"]
    return None


def check_existing(engine: Engine, paths: Paths, image_id: str, plan: BuildPlan) -> str | None:
    """An image from the cache or a registry: its declared commands are there and it reports
    the version the recipe names (each looked at once per image: what was seen is remembered).

    Returns the proven full version; raises MissingCommandError or VersionMismatchError and
    keeps the image (it is good for what its fingerprint says; nothing is installed).
    """
    what = f"{plan.tool}@{plan.version}"
    known: set[str] = set()
    with contextlib.suppress(OSError, ValueError, TypeError):
        known = set(json.loads(_verified_file(paths, image_id).read_text()))
    todo = tuple(c for c in plan.commands if c not in known)
    check = plan.version_check
    full_version = _known_version(paths, image_id, check) if check else None
    run_check = check if check is not None and full_version is None else None
    if not todo and run_check is None:
        return full_version
    _, out = engine.run_capture(image_id, check_argv(todo, run_check, ()), entrypoint=[])
    first, _, rest = out.partition("\n")
    version_out = None
    if first.startswith(CHECK_MARK):
        missing = first[len(CHECK_MARK):].split()
        if run_check is not None and not missing:
            version_out = _split_version_output(rest)[0]
    else:
        missing = missing_without_shell(engine, image_id, todo)
        if run_check is not None and not missing:
            version_out = engine.run_capture(image_id, list(run_check.command), entrypoint=[])[1]
    if missing:
        raise MissingCommandError(
            f"{what}: {_missing_text(missing)} in its image {plan.tag}; nothing was "
            "installed (fix the recipe's `commands`/`entrypoint` or what it installs)")
    _remember_verified(paths, image_id, plan.commands)
    if run_check is not None:
        full_version = match_version(run_check, version_out or "", what,
                                     f"nothing was installed (its image {plan.tag} is kept)")
        _remember_version(paths, image_id, run_check, full_version)
    return full_version


def _discard(engine: Engine, image_id: str) -> None:
    with contextlib.suppress(Exception):
        engine.remove_image(image_id, force=True)


def packages_without_apt(engine: Engine, versions: Iterable[tuple[Recipe, Version]]) -> list[RecipeError]:
    """Versions that declare `packages` on a base that has no apt-get: the build would fail at
    its first step (BuildError); `recipes check` says so before, at the line of `packages`. Only
    bases present here are looked at (read from the image, nothing runs; once per base)."""
    has_apt: dict[str, bool] = {}
    errors: list[RecipeError] = []
    for recipe, v in versions:
        info = engine.image(v.build.base)
        if info is None:
            continue
        if info.id not in has_apt:
            has_apt[info.id] = "/usr/bin/apt-get" in engine.read_files(info.id, ["/usr/bin/apt-get"])
        if not has_apt[info.id]:
            where = locate(recipe.path, ("versions", v.version, "packages"))
            errors.append(RecipeError(
                f"{where}: versions.{safe(v.version)}.packages: its base {safe(v.build.base)} has no "
                "apt-get (not a Debian or Ubuntu image): install with the base's own package "
                "manager in `run`, or use a Debian base"))
    return errors
