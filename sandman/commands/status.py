"""What is installed and is it healthy: `list`, `doctor` and `gc`."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from sandman import engine_choice, images, installs, platforms, shims
from sandman.commands import pins
from sandman.context import Context
from sandman.errors import SandmanError, StaleSocketError
from sandman.names import LABEL_ROLE, ROLE_DOCTOR


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


def list_installs(ctx: Context, *, check_stale: bool = True,
                  known: images.Known | None = None) -> list[InstallStatus]:
    """Every install and its state, the first that applies of:

    image-missing (the tag is gone), image-replaced (the tag names another image than the one
    installed), shim-missing, image-stale (the recipe, its inputs or its base changed: a
    rebuild; `image-stale: base` when built here on a base bootstrapped again since),
    shim-stale (something a shim bakes in changed: the runtime, config.toml, the host's docker,
    or a recipe runtime field such as env or mounts: a rewrite, no build).

    The engine is read once for the whole list (`known`: one listing of sandman's images,
    each base inspected once), and each recipe parsed once (ctx.catalog keeps it).
    """
    from sandman.catalog import Spec
    from sandman.commands.install import plan, resolve

    runtime = shims.runtime_digest()
    known = known if known is not None else images.Known(engine_of=lambda: ctx.image_reads)
    made: dict[str, dict[str, str]] = {}
    out = []
    for rec in installs.all_records(ctx.paths):
        info = known.image(rec.image_tag)
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
                    if plan(ctx, r, known).fingerprint != rec.fingerprint:
                        state = "image-stale"
                    elif images.moved_bases(known, rec):  # built here on an older base
                        state = "image-stale: base"
                except SandmanError:
                    state = "image-stale"  # the recipe or its inputs are gone or broken: not current
            if state == "current":
                settings = ctx.config.for_tool(rec.tool, rec.version)
                # the same settings make the same digests within one command: computed once
                now = made.get(repr(settings)) or made.setdefault(repr(settings), shims.made_from(
                    settings, ctx.config.warm_idle_minutes, runtime=runtime))
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
    daemon = False
    try:
        choice: engine_choice.EngineChoice | None = ctx.choice
    except SandmanError as e:  # neither engine, or the one named is not here: one line, the fix
        checks.append(Check(False, "engine", e.message))
        choice = None
    if choice is not None:
        checks.append(Check(True, "engine", f"{choice.label} at {choice.base_url} ({choice.why})"))
    if isinstance(choice, engine_choice.Docker):
        docker_cli = shutil.which("docker")
        checks.append(Check(bool(docker_cli), "docker client", docker_cli or
                            "not on PATH: shims exec `docker run`; install the docker CLI"))
        try:
            v = ctx.image_reads.version()
            checks.append(Check(True, "docker daemon",
                                f"engine {v.get('Version')}, API {v.get('ApiVersion')}"))
            daemon = True
        except SandmanError as e:
            checks.append(Check(False, "docker daemon", e.message))
    elif choice is not None:
        podman = podman_checks(ctx, choice)
        checks += podman
        if all(c.ok for c in podman if c.what in ("subordinate ids", "podman API socket")):
            try:  # starts the service when it is not running (and says so), as any command would
                v = ctx.image_reads.version()
                checks.append(Check(True, "podman API service",
                                    f"Podman {v.get('Version')}, Docker API {v.get('ApiVersion')}"))
                daemon = True
            except SandmanError as e:
                checks.append(Check(False, "podman API service", e.message))
    bin_dir = ctx.paths.bin_dir
    on_path = any(Path(d).resolve() == bin_dir.resolve()
                  for d in os.environ.get("PATH", "").split(os.pathsep) if d)
    checks.append(Check(on_path, "shim directory on PATH",
                        str(bin_dir) if on_path else f"{bin_dir} is not on PATH; add it"))
    checks.append(Check(bool(shutil.which("mmdebstrap")), "mmdebstrap (for bootstrap)",
                        shutil.which("mmdebstrap") or "not installed (only needed by bootstrap)"))
    records = installs.all_records(ctx.paths)
    owned = {(Path(r.bin_dir) / n) for r in records for n in r.shims}
    known = images.Known(engine_of=lambda: ctx.image_reads)  # read once for all the checks below
    for rec in records:
        for n in rec.shims:
            owner = shims.owner_of(Path(rec.bin_dir) / n)
            if owner != rec.key:
                checks.append(Check(False, f"{rec.key} shim {n}",
                                    f"missing; run: sandman install {rec.key}"))
        if daemon and known.image(rec.image_tag) is None:
            checks.append(Check(False, f"{rec.key} image",
                                f"{rec.image_tag} is missing; run: sandman install {rec.key}"))
        checks += _device_checks(ctx, rec)
    if daemon:  # what `list` calls image-replaced, image-stale or shim-stale (missing: above)
        for item in list_installs(ctx, known=known):
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
    checks += platform_checks(ctx)
    return checks


def platform_checks(ctx: Context) -> list[Check]:
    """QEMU user emulation, for each CPU an install here was made for (none: nothing to check)."""
    wanted = sorted({str(r.runtime.get("platform")) for r in installs.all_records(ctx.paths)
                     if (r.runtime or {}).get("platform")})
    return [Check(*c) for c in platforms.doctor_checks(wanted)]


def preflight(ctx: Context) -> engine_choice.EngineChoice:
    """The engine of a command that needs one, refused before the command creates anything.

    Only the cheap checks (a PATH lookup, a socket connect, /etc/subuid): no engine (92), the
    named one not installed (93), rootless Podman without subordinate ids (94), a stale
    Podman socket (95). The SDK connection, and starting Podman's service, come later.
    """
    choice = ctx.choice
    choice.check_usable()
    if choice.socket_state() == "stale":
        raise StaleSocketError(engine_choice.stale_message(choice.socket_path))
    return choice


# local bases doctor may start a container from (the first one in the store is used)
PROBE_IMAGES = ("debian:bookworm-slim", "debian:bullseye-slim", "debian:trixie-slim")


def _podman(cli: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([cli, *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, cwd="/")


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("Error")]  # podman's own error, not a warning
    return (errors or lines or ["(no output)"])[-1]


def podman_checks(ctx: Context, choice: engine_choice.EngineChoice) -> list[Check]:
    """Podman as this user will meet it: version and mode, subordinate ids, the API socket,
    the OCI runtime, and a real container (the host problems sandman knows come with their
    fix, engine_choice.setup_fix: crun on hybrid cgroups, ulimits above the hard limit...)."""
    out: list[Check] = []
    uid = os.geteuid()
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    try:
        ver = _podman(choice.cli, "--version").stdout.strip().rpartition(" ")[2] or "unknown"
    except (OSError, subprocess.SubprocessError) as e:
        return [Check(False, "podman", f"{choice.cli} does not run: {e}")]
    mode = (f"rootless as {user}: a private image store, shims run with --userns keep-id"
            if choice.rootless else "rootful: root's image store (/var/lib/containers)")
    out.append(Check(True, "podman", f"{choice.cli}, version {ver}, {mode}"))
    subids_ok = True
    if choice.rootless:
        (subuid, subgid), problem = engine_choice.subid_ranges(user, uid)
        subids_ok = not problem
        out.append(Check(subids_ok, "subordinate ids",
                         problem or f"subuid {subuid}, subgid {subgid}"))
    state = choice.socket_state()
    sock = choice.socket_path
    out.append(Check(state != "stale", "podman API socket", {
        "answers": f"{sock} answers",
        "absent": f"{sock} not running: sandman starts `podman system service` there when a "
                  f"command needs it (it stops after {engine_choice.SERVICE_IDLE_SECONDS // 60} "
                  "idle minutes)",
        "restartable": f"{sock} was left by sandman's service, which has exited: sandman starts "
                       "it again when a command needs it",
        "stale": engine_choice.stale_message(sock),
    }[state]))
    if not subids_ok:
        return out  # nothing can start a container: the line above says why and what to do
    try:
        info = _podman(choice.cli, "info", "--format", "json")
    except (OSError, subprocess.SubprocessError) as e:
        out.append(Check(False, "OCI runtime", f"podman info did not answer: {e}"))
        return out
    # the one repair doctor makes: Podman refuses everything, and nothing runs that it stops
    if (info.returncode != 0 and engine_choice.DEAD_NAMESPACE in info.stderr
            and (done := engine_choice.revive(choice.cli))):
        out.append(Check(True, "podman state", done))
        info = _podman(choice.cli, "info", "--format", "json")
    if info.returncode != 0:
        line = _first_line(info.stderr)
        fix = engine_choice.setup_fix(info.stderr)
        out.append(Check(False, "OCI runtime", f"{fix} (podman said: {line})" if fix
                         else f"podman info failed: {line}"))
        return out
    with contextlib.suppress(ValueError, KeyError, TypeError):
        host = json.loads(info.stdout)["host"]
        rt = host.get("ociRuntime") or {}
        rt_version = (str(rt.get("version") or "").splitlines() or [""])[0]
        out.append(Check(True, "OCI runtime",
                         f"{rt.get('name')} ({rt.get('path')}, {rt_version}), cgroups "
                         f"{host.get('cgroupVersion')} via {host.get('cgroupManager')}"))
    out.append(_container_check(choice))
    return out


def _container_check(choice: engine_choice.EngineChoice) -> Check:
    """Start one tiny container from a local base, as the shims would (keep-id rootless)."""
    image = ""
    for ref in PROBE_IMAGES:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            if _podman(choice.cli, "image", "exists", ref).returncode == 0:
                image = ref
                break
    if not image:
        return Check(True, "podman run", "not tried: no Debian base in this store yet "
                     "(sandman bootstrap debian:bookworm-slim)")
    argv = ["run", "--rm", *engine_choice.security_args(), "--network", choice.network_mode("none"),
            "--label", f"{LABEL_ROLE}={ROLE_DOCTOR}"]
    if userns := choice.userns():
        argv += ["--userns", userns]
    try:
        run = _podman(choice.cli, *argv, image, "true", timeout=120)
    except (OSError, subprocess.SubprocessError) as e:
        return Check(False, "podman run", f"podman run {image} true did not finish: {e}")
    if run.returncode == 0:
        return Check(True, "podman run", f"a container from {image} ran")
    line = _first_line(run.stderr)
    if fix := engine_choice.setup_fix(run.stderr):
        return Check(False, "podman run", f"{fix} (podman said: {line})")
    return Check(False, "podman run", f"podman run {image} true failed (exit {run.returncode}): {line}")


def _device_checks(ctx: Context, rec: installs.InstallRecord) -> list[Check]:
    """A device an install's shims pass in that is not a device here: every run would stop
    (exit 98), so doctor says it first."""
    import stat

    from sandman import consent
    from sandman.commands.install import runtime_from_dict

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


@dataclass(frozen=True)
class Collected:
    """What gc found: every sandman image with its verdict, and the shim runtimes no shim of
    this home sources (both removed, unless it was a dry run)."""

    verdicts: list[images.Verdict]
    runtimes: list[Path]

    @property
    def removed(self) -> int:
        """The images removed (a dry run removes none)."""
        return sum(1 for v in self.verdicts if v.done)


def gc(ctx: Context, *, dry_run: bool, unclaimed: bool = False,
       tools: frozenset[str] = frozenset()) -> Collected:
    """Every sandman image on the daemon (of `tools`, when given) with gc's verdict; removes
    the unheld ones unless dry_run. Images are judged by the daemon's roots and containers,
    never by this home's records alone (another home's shims may use an image this home
    knows nothing of). Then the shim runtimes that no shim in this home's bin folders (the
    current one and those its installs name) sources any more."""
    records = installs.all_records(ctx.paths)
    verdicts = images.collect(ctx.engine, ctx.paths, records, dry_run=dry_run, unclaimed=unclaimed,
                              tools=tools)
    bin_dirs = {ctx.paths.bin_dir, *(Path(r.bin_dir) for r in records)}
    unused = shims.unused_runtimes(ctx.paths, bin_dirs)
    if not dry_run:
        for f in unused:
            with contextlib.suppress(FileNotFoundError):
                f.unlink()
    return Collected(verdicts, unused)
