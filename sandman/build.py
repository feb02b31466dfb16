"""From a recipe version to an image: render the build, fingerprint it, build only when new.

The fingerprint is the image's identity: the normalized build settings, the Dockerfile text,
every file in the build context, the kit checksums and the id of each base image. The same
fingerprint is never built twice (a file lock makes parallel installs wait for the first), and
a new image only gets its tag once it has built *and* passed its smoke test, so a failed build
never replaces a good one.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock

from sandman.engine import LABEL, Engine
from sandman.errors import BuildError, ImageMissingError, KitError, RemoteError
from sandman.paths import Paths
from sandman.recipes import Recipe, Version

FINGERPRINT_VERSION = 1
REPOSITORY = "sandman"


@dataclass(frozen=True)
class BuildPlan:
    tool: str
    version: str
    source: str
    dockerfile: str
    files: dict[str, Path]  # archive name -> file on disk (recipe files and kits)
    buildargs: dict[str, str]
    bases: dict[str, str]  # base image ref -> image id
    fingerprint: str
    smoke: tuple[str, ...] = ()
    inputs: dict[str, str] = field(default_factory=dict)  # what went into the fingerprint

    @property
    def tag(self) -> str:
        return image_ref(self.tool, self.version, self.fingerprint)

    @property
    def labels(self) -> dict[str, str]:
        return {
            f"{LABEL}.tool": self.tool,
            f"{LABEL}.version": self.version,
            f"{LABEL}.fingerprint": self.fingerprint,
            f"{LABEL}.source": self.source,
        }


@dataclass(frozen=True)
class BuildResult:
    image_id: str
    tag: str
    fingerprint: str
    built: bool  # False: the cache had it


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
    for step in b.run:
        lines.append(f"RUN {step}")
    if b.kits:
        lines.append("RUN rm -rf /tmp/kits")
    return "\n".join(lines) + "\n"


def kits_dir(paths: Paths, config_kits_dir: Path | None, env: dict[str, str]) -> Path:
    if env.get("SANDMAN_KITS_DIR"):
        return Path(env["SANDMAN_KITS_DIR"]).expanduser()
    return config_kits_dir or paths.kits_dir


def check_kits(recipe: Recipe, version: Version, folder: Path) -> dict[str, Path]:
    """Every kit present with the declared sha256, before anything is built or pulled."""
    found: dict[str, Path] = {}
    for kit in version.build.kits:
        path = folder / kit.file
        where = f"{recipe.tool}@{version.version} needs the kit '{kit.file}'"
        if not path.is_file():
            raise KitError(f"{where}; download it and put it at {path}")
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
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _context_files(recipe: Recipe, version: Version) -> dict[str, Path]:
    b = version.build
    rels = list(b.files) + ([b.dockerfile] if b.dockerfile else [])
    out: dict[str, Path] = {}
    prefix = "" if b.dockerfile else "files/"
    for rel in rels:
        p = recipe.folder / rel
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file():
                    out[prefix + str(f.relative_to(recipe.folder))] = f
        elif p.is_file():
            out[(prefix if rel != b.dockerfile else "") + rel] = p
    return out


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
    b = version.build
    files = check_kits(recipe, version, kits_folder)
    files.update(_context_files(recipe, version))
    if b.dockerfile:
        dockerfile = (recipe.folder / b.dockerfile).read_text(encoding="utf-8")
        refs = base_refs(dockerfile, b.build_args)
    else:
        dockerfile = render_dockerfile(version)
        refs = [str(b.base)]
    bases = {ref: resolve_base(engine, ref, pull=pull_missing_bases) for ref in refs}
    inputs = {
        "fingerprint_version": str(FINGERPRINT_VERSION),
        "tool": recipe.tool,
        "version": version.version,
        "build": json.dumps(
            {"base": b.base, "packages": b.packages, "run": b.run, "dockerfile": b.dockerfile,
             "build_args": b.build_args, "files": b.files,
             "kits": [[k.file, k.sha256] for k in b.kits], "smoke": version.runtime.smoke},
            sort_keys=True),
        "dockerfile": hashlib.sha256(dockerfile.encode()).hexdigest(),
        "bases": json.dumps(bases, sort_keys=True),
    }
    for name, path in sorted(files.items()):
        if name.startswith("kits/"):
            continue  # already in "build" by declared (and verified) checksum
        inputs[f"file:{name}"] = f"{path.stat().st_mode & 0o777:o}:{sha256_file(path)}"
    fingerprint = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()
    return BuildPlan(
        tool=recipe.tool, version=version.version, source=source, dockerfile=dockerfile,
        files=files, buildargs=dict(b.build_args), bases=bases, fingerprint=fingerprint,
        smoke=version.runtime.smoke, inputs=inputs,
    )


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


def write_context(plan: BuildPlan, out: io.BufferedIOBase | tempfile._TemporaryFileWrapper) -> None:
    with tarfile.open(fileobj=out, mode="w") as tar:
        data = plan.dockerfile.encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(data))
        for name, path in sorted(plan.files.items()):
            if name == "Dockerfile":
                continue
            tar.add(str(path), arcname=name, recursive=False)


def cached(engine: Engine, plan: BuildPlan) -> str | None:
    info = engine.image(plan.tag)
    if info and info.labels.get(f"{LABEL}.fingerprint") == plan.fingerprint:
        return info.id
    return None


def ensure_image(
    plan: BuildPlan, engine: Engine, paths: Paths, *, on_line: Callable[[str], None],
    force: bool = False, fetch: Callable[[BuildPlan], str | None] | None = None,
) -> BuildResult:
    """The image for plan: from the cache, from `fetch` (a registry), or built now."""
    paths.locks_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(paths.locks_dir / f"{plan.tool}@{plan.version}.lock"))
    with lock:
        if not force:
            hit = cached(engine, plan)
            if hit:
                return BuildResult(hit, plan.tag, plan.fingerprint, built=False)
            if fetch is not None:
                got = fetch(plan)
                if got:
                    return BuildResult(got, plan.tag, plan.fingerprint, built=False)
        what = f"{plan.tool}@{plan.version}"
        with tempfile.TemporaryFile() as ctx:
            write_context(plan, ctx)
            ctx.seek(0)
            image_id = engine.build(ctx, labels=plan.labels, buildargs=plan.buildargs,
                                    on_line=on_line, what=what)
        if plan.smoke:
            on_line(f"smoke test: {' '.join(plan.smoke)}")
            code, out = engine.run_capture(image_id, list(plan.smoke), entrypoint=[])
            if code != 0:
                _discard(engine, image_id)
                tail = "\n".join(out.splitlines()[-25:])
                raise BuildError(
                    f"building {what}: smoke test `{' '.join(plan.smoke)}` exited {code}; "
                    "the new image was discarded", detail=tail or None)
        engine.tag(image_id, plan.tag)
        return BuildResult(image_id, plan.tag, plan.fingerprint, built=True)


def _discard(engine: Engine, image_id: str) -> None:
    with contextlib.suppress(Exception):
        engine.remove_image(image_id, force=True)
