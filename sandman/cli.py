"""The command line: options in, one call into the core, a table or JSON out.

This is the only module that knows Typer. Errors from the core arrive as SandmanError
subclasses and leave here as one line on stderr and the exit code of their type.

Start-up time is a feature: `--version` and every shell-completion Tab run this module. It
imports only Typer and errors.py at the top (the catalog, config, engine and Rich load inside
the commands that use them), and it has no `from __future__ import annotations`: Typer would
eval every stringified option at each start (~25 ms). Write types that are only imported under
TYPE_CHECKING in quotes ("Context"). tests/integration/test_cli_speed.py holds the line.
"""

import contextlib
import os
import re
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sandman import __version__
from sandman.errors import EXIT_GROUPS, SandmanError

if TYPE_CHECKING:  # the catalog, the config and the engine load when a command runs, not before
    from sandman.batch import Batch
    from sandman.catalog import Spec
    from sandman.context import Context
    from sandman.installs import InstallRecord

try:  # newer Typer carries its own copy of click (and no longer depends on click itself)
    from typer._click import Command as ClickCommand
    from typer._click.exceptions import UsageError as _VendoredUsageError
except ImportError:  # an older Typer on the real click
    from click import Command as ClickCommand
    from click.exceptions import UsageError as _VendoredUsageError

app = typer.Typer(
    name="sandman",
    help="Run several versions of a legacy command-line tool side by side, each in its own container.",
    no_args_is_help=True,
    add_completion=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
recipes_app = typer.Typer(help="Look at the recipe catalog.", no_args_is_help=True)
app.add_typer(recipes_app, name="recipes")

_state = {"debug": False, "verbosity": 1}


class _Progress:
    """The live line under the spinner: current step, time since the build began, last output.

    Rich re-renders it several times a second, so the clock runs even when a step is silent.
    """

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.phase = "starting"
        self.detail = ""

    def __rich__(self) -> object:
        from rich.text import Text

        secs = int(time.monotonic() - self.started)
        text = Text(f"{self.phase[:90]}  [{secs // 60}:{secs % 60:02d}]", no_wrap=True,
                    overflow="ellipsis")
        if self.detail:
            text.append(f"  {self.detail}", style="dim")
        return text


class CliReporter:
    """Progress for people on a terminal, plain lines for logs, nothing with -q."""

    def __init__(self, verbosity: int, log_file: Path | None) -> None:
        self.verbosity = verbosity
        self.tty = sys.stderr.isatty()
        self.log = None
        if log_file is not None:
            try:  # the log holds every command line (secrets too): its owner's alone, 0600
                log_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                fd = os.open(log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
                with contextlib.suppress(OSError):
                    os.fchmod(fd, 0o600)  # a log an older sandman left 0644
                self.log = os.fdopen(fd, "a", encoding="utf-8")
                self.log.write(f"--- {datetime.now(UTC).isoformat(timespec='seconds')} "
                               f"sandman {' '.join(sys.argv[1:])}\n")
            except OSError:
                self.log = None
        self._status = None
        self._progress: _Progress | None = None

    def log_line(self, line: str) -> None:
        """One line in state/log/sandman.log only (the run's end, a traceback)."""
        if self.log:
            from sandman.text import safe_lines  # recipe and repo text: no raw control chars

            try:
                self.log.write(safe_lines(line) + "\n")
                self.log.flush()
            except OSError:  # a full disk: the command's own error matters more than its log
                self._drop_log()

    def _drop_log(self) -> None:
        log, self.log = self.log, None
        with contextlib.suppress(OSError):
            if log:
                log.close()

    def clear(self) -> None:
        """Stop the spinner, so that what comes next (a prompt, a report) is not drawn over."""
        if self._status is not None:
            self._status.stop()
            self._status = None

    def info(self, msg: str) -> None:
        from sandman.text import safe_lines

        msg = safe_lines(msg)
        self.log_line(msg)
        if self.verbosity >= 1:
            self.clear()
            print(msg, file=sys.stderr)

    def warn(self, msg: str) -> None:
        from sandman.text import safe_lines

        msg = safe_lines(msg)
        self.log_line("warning: " + msg)
        self.clear()
        print(f"sandman: warning: {msg}", file=sys.stderr)

    def step(self, line: str) -> None:
        from sandman.text import safe_lines

        line = safe_lines(line)
        self.log_line(line)
        if self.verbosity >= 2:
            self.clear()
            print(line, file=sys.stderr)
        elif self.verbosity == 1:
            m = re.match(r"^Step (\d+)/(\d+) : (.*)", line)
            if m:
                line = f"Step {m.group(1)}/{m.group(2)}: {m.group(3).strip()}"
            # a source's download (not each progress line) or its cache hit is said too
            important = bool(m) or line.startswith(("smoke test", "$ ", "importing ", "source ",
                                                    "downloaded ")) \
                or (line.startswith("downloading ") and " from " in line)
            if self.tty:
                if (m and m.group(1) == "1") or self._progress is None:
                    self._progress = _Progress()  # a new build: the clock starts again
                if important:
                    self._progress.phase, self._progress.detail = line, ""
                elif not line.lstrip().startswith(("--->", "Removing intermediate")):
                    self._progress.detail = line.strip()  # the step's own output, not docker's
                if self._status is None:
                    from rich.console import Console

                    self._status = Console(stderr=True).status(self._progress)
                    self._status.start()
            elif important:
                print(line, file=sys.stderr)

    def close(self) -> None:
        self.clear()
        self._drop_log()


def _reporter(verbosity: int) -> CliReporter:
    """The reporter of this run, logging to state/log; first, the owner's folders are made
    private (and an older home's tightened): see state.make_private."""
    from sandman import state
    from sandman.paths import Paths

    paths = Paths.from_env()
    state.make_private(paths)
    return CliReporter(verbosity, paths.log_dir / "sandman.log")


# Commands that work, or report, without a usable engine: the others check it first (_ctx).
_NO_ENGINE_COMMANDS = frozenset({"doctor", "recipes", "repo", "exit-codes", "outdated"})


def _ctx() -> "Context":
    from sandman.context import Context

    ctx = Context.from_env(engine_option=_state.get("engine"))
    if _state.get("command") not in _NO_ENGINE_COMMANDS:  # refused before anything is made
        from sandman.commands import status

        status.preflight(ctx)
    out = _reporter(_state["verbosity"])
    _state["reporter"] = out
    ctx.out = out
    return ctx


def parse_spec(text: str, *, need_version: bool = True) -> "Spec":
    """catalog.parse_spec, imported on first use: `--version` and a Tab never load the catalog."""
    from sandman.catalog import parse_spec as parse

    return parse(text, need_version=need_version)


def _emit_json(data: object) -> None:
    import json

    print(json.dumps(data, indent=2, sort_keys=True))


def _human_size(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return str(n)


def _table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def _version_cb(value: bool) -> None:
    if value:
        print(f"sandman {__version__}")
        raise typer.Exit()


def _complete_recipe(incomplete: str) -> list[str]:
    from sandman.completion import recipe_specs

    return recipe_specs(incomplete)


def _complete_installed(incomplete: str) -> list[str]:
    from sandman.completion import installed_specs

    return installed_specs(incomplete)


def _complete_matrix(incomplete: str) -> list[str]:
    from sandman.completion import matrix_specs

    return matrix_specs(incomplete)


def _clear_progress() -> None:
    """The spinner stops before a prompt or a report takes the terminal."""
    rep = _state.get("reporter")
    if rep is not None:
        rep.clear()


def _approver(yes: bool) -> Callable[[str, list[str]], bool] | None:
    """--yes accepts; on a terminal ask; otherwise None, which refuses (exit 124)."""
    if yes:
        return lambda key, diff: True
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        return None

    def ask(key: str, diff: list[str]) -> bool:
        _clear_progress()
        print(f"{key}: what the tool may access (+ granted, - taken back):", file=sys.stderr)
        for line in diff:
            print(f"  {line}", file=sys.stderr)
        return typer.confirm("Accept these changes?", default=False, err=True)

    return ask


@app.callback()
def main_options(
    cli_ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Print only errors.")] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose",
                                          help="Print every build line.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version_cb, is_eager=True,
                                          help="Print sandman's version and exit.")] = False,
    engine: Annotated[str | None, typer.Option(
        "--engine", metavar="docker|podman|auto",
        help="The container engine for this command (default: config.toml `engine`, else auto: "
             "a reachable Docker socket, else Podman). Wins over SANDMAN_ENGINE.")] = None,
) -> None:
    """Run several versions of a legacy command-line tool side by side, each in its own container."""
    _state["engine"] = engine  # chosen once, by the command's Context (sandman/engine_choice.py)
    _state["command"] = cli_ctx.invoked_subcommand
    _state["debug"] = debug or bool(os.environ.get("SANDMAN_DEBUG"))
    _state["verbosity"] = 0 if quiet else 2 if verbose else 1


# -- recipes ---------------------------------------------------------------------------------
@recipes_app.command("list")
def recipes_list(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List every recipe, where it comes from, its versions, and what it shadows."""
    from sandman.commands import recipes as recipecheck
    from sandman.text import safe

    rows = recipecheck.listing(_ctx())
    if as_json:
        _emit_json(rows)
        return
    _table([[safe(r["tool"]), safe(", ".join(r["versions"])) or "-", safe(r["source"]),
             (f"(shadowed by {safe(r['shadowed_by'])}) " if r["shadowed_by"] else "")
             + safe("INVALID: " + r["error"] if r["error"] else r["description"])] for r in rows],
           ["TOOL", "VERSIONS", "SOURCE", "DESCRIPTION"])


@recipes_app.command("show")
def recipes_show(tool: Annotated[str, typer.Argument(help="Tool name, optionally SOURCE/TOOL.")]) -> None:
    """Show a recipe: its versions, how each is built and how it runs."""
    from sandman.shims import shim_names
    from sandman.text import safe  # a recipe's text is someone else's: no escape sequences

    spec = parse_spec(tool, need_version=False)
    ctx = _ctx()
    entry, recipe = ctx.catalog.load(spec.tool, spec.source)
    print(f"{recipe.tool}: {safe(recipe.description)}")
    if recipe.homepage:
        print(f"homepage: {safe(recipe.homepage)}")
    print(f"source:   {safe(entry.source.name)} ({safe(entry.recipe_file)})")
    for v in recipe.versions:
        b, rt = v.build, v.runtime
        pkgs = ", ".join(b.packages) or "no packages"
        how = f"dockerfile {b.dockerfile}" if b.dockerfile else f"{b.base} + {pkgs}"
        print(f"\n{recipe.tool}@{v.version}: {safe(how)}")
        if v.full_version:
            print(f"  full version: {safe(v.full_version)}")
        if v.check:
            print(f"  version check: `{safe(' '.join(v.check.command))}` must print /{safe(v.check.expect)}/")
        if b.kits:
            print("  kits:       " + safe(", ".join(k.file for k in b.kits)))
        if b.sources:
            print("  sources:    " + safe(", ".join(f"{s.file} <- {s.url}" for s in b.sources)))
        print(f"  shims:      {', '.join(shim_names(recipe.tool, v.version, rt))}")
        if rt.entrypoint:
            print(f"  entrypoint: {safe(' '.join(rt.entrypoint))}")
        print(f"  network:    {rt.network}")
        if rt.platform:
            print(f"  platform:   {rt.platform} (through QEMU user emulation on another CPU)")
        for label, values in (("aliases", rt.aliases), ("home files", rt.home_files),
                              ("devices", rt.devices), ("cap_add", rt.cap_add)):
            if values:
                print(f"  {label + ':':<11} {safe(', '.join(values))}")
        for shim, run in rt.command_run.items():
            print(f"  command:    {safe(shim)} runs {safe(run)} in the image")
        for m in rt.mounts:
            print(f"  mount:      {safe(m.name)}: {safe(m.source)} -> {safe(m.target)} ({m.mode}"
                  f"{', optional' if m.optional else ''})")
        if rt.env:
            print("  env:        " + " ".join(f"{k}={safe(val)}" for k, val in rt.env.items()))
        if rt.pass_env:
            print("  pass_env:   " + " ".join(rt.pass_env))


@recipes_app.command("check")
def recipes_check(
    paths: Annotated[list[Path] | None, typer.Argument(
        help="recipe.toml files, recipe folders, or folders of recipe folders; default: every "
             "recipe in the catalog.")] = None,
) -> None:
    """Validate recipes without building anything.

    A folder may be one recipe's folder or hold several (a recipe repository's root).
    """
    from sandman.commands import recipes as recipecheck
    from sandman.text import safe_lines

    res = recipecheck.check(_ctx(), paths)
    for e in res.errors:
        print(safe_lines(e.message), file=sys.stderr)
        if e.detail:
            print(safe_lines(e.detail), file=sys.stderr)
    if res.errors:
        raise typer.Exit(res.exit_code)
    if _state["verbosity"]:
        print(f"{res.checked} recipe(s) OK", file=sys.stderr)


# -- images ----------------------------------------------------------------------------------
@app.command()
def bootstrap(
    bases: Annotated[list[str], typer.Argument(help="Base images, e.g. debian:bookworm-slim.")],
    mirror: Annotated[str | None, typer.Option(
        help="Debian mirror URL (default: config.toml `mirror`, else deb.debian.org; for archived "
             "suites, buster and older: config.toml `archive_mirror`; no default).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if the image exists.")] = False,
    from_rootfs: Annotated[Path | None, typer.Option(
        "--from-rootfs", metavar="FILE",
        help="Make the one NAME:TAG base from this root filesystem tarball (a vendor OS: plain, "
             "gz, bz2 or xz) instead of Debian's mirror.")] = None,
    platform: Annotated[str | None, typer.Option(
        help="With --from-rootfs: the tarball's platform (e.g. linux/arm/v7) when its /bin/sh "
             "cannot tell; checked against it.")] = None,
) -> None:
    """Make base images locally: Debian's with mmdebstrap (arm64v8/debian:SUITE and the like
    for another CPU, run through QEMU), or a vendor OS's from its root filesystem tarball."""
    from sandman.commands import bases as core
    from sandman.errors import UsageError as SandmanUsage

    ctx = _ctx()
    if from_rootfs is not None or platform is not None:
        if from_rootfs is None or len(bases) != 1:
            raise SandmanUsage("--from-rootfs FILE takes exactly one NAME:TAG (e.g. "
                             "sandman bootstrap --from-rootfs centos7.tar.xz vendor/centos:7); "
                             "--platform goes with it")
        core.from_rootfs(ctx, bases[0], from_rootfs, platform=platform, force=force)
        return
    core.bootstrap(ctx, bases, mirror=mirror, force=force)


@app.command()
def build(
    specs: Annotated[list[str], typer.Argument(help="TOOL@VERSION to build.",
                                               autocompletion=_complete_recipe)],
    force: Annotated[bool, typer.Option("--force", help="Build even if the image is cached.")] = False,
) -> None:
    """Build images (cached by fingerprint) without installing shims."""
    from sandman.commands import install as core

    parsed = [parse_spec(s) for s in specs]
    ctx = _ctx()
    for spec in parsed:
        _offer_trust(ctx, spec)
        result = core.build(ctx, core.resolve(ctx, spec), force=force)
        print(result.tag)


@app.command()
def install(
    specs: Annotated[list[str] | None, typer.Argument(
        help="TOOL@VERSION to install; none: what the nearest .sandman.toml pins.",
        autocompletion=_complete_recipe)] = None,
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if the image is cached.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help=(
        "Accept an updated recipe's changed mounts, env or network without asking "
        "(without it: asked on a terminal, refused with exit 124 otherwise)."))] = False,
    update_lock: Annotated[bool, typer.Option("--update-lock", help=(
        "Project install: accept fingerprints that differ from sandman.lock and rewrite it."))] = False,
) -> None:
    """Build (if needed) and put the shims of each TOOL@VERSION on PATH.

    The first install of a version lists what the tool will be able to reach (mounts and
    whether they are writable, environment, network, devices). Reinstalling after the recipe
    changed any of these shows the difference and needs a yes.

    With a registry configured, the image of the exact fingerprint is pulled before building.
    Without TOOL@VERSION, installs the versions the nearest .sandman.toml pins, writes their
    unversioned shims, and checks (then writes) sandman.lock beside it (see docs/teams.md).
    """
    from sandman.commands import install as core

    parsed = [parse_spec(s) for s in specs or []]
    ctx = _ctx()
    approve = _approver(yes)
    if not parsed:
        _project_install(ctx, update_lock=update_lock, force=force, approve=approve)
        return
    for spec in parsed:
        _offer_trust(ctx, spec)
    batch = core.install_all(ctx, parsed, force=force, approve=approve)
    for spec, got in batch.outcomes:
        if isinstance(got, SandmanError):  # the others are installed all the same
            print(f"sandman: {spec}: {got.message}", file=sys.stderr)
            if got.detail:
                print(got.detail, file=sys.stderr)
        else:
            ctx.out.info(_installed_line(got.record))
    _exit_if_failed(batch)


def _installed_line(rec: "InstallRecord", how: str = "") -> str:
    return f"installed {rec.key}{how}: {', '.join(rec.shims)} in {rec.bin_dir}"


def _exit_if_failed(batch: "Batch") -> None:
    """A command over several items ends with its first failure's code (sandman/batch.py)."""
    if batch.exit_code:
        raise typer.Exit(batch.exit_code)


@app.command()
def uninstall(
    specs: Annotated[list[str], typer.Argument(
        help="TOOL@VERSION to remove.", autocompletion=_complete_installed)],
    force: Annotated[bool, typer.Option("--force", help=(
        "Also when the install record cannot be read: remove the shims whose header names "
        "TOOL@VERSION, and the record."))] = False,
) -> None:
    """Remove the shims and install record (the image stays until `sandman gc`).

    A record that is corrupt or of an unknown schema stops `uninstall` (and `install`) with
    exit 123; `uninstall --force` then removes what it can identify, and nothing else.
    """
    from sandman.commands import install as core

    parsed = [parse_spec(s) for s in specs]
    ctx = _ctx()
    for u in core.uninstall_all(ctx, parsed, force=force):
        if u.forced:
            ctx.out.warn(f"{u.spec}: removed without a readable install record: "
                         f"{', '.join(str(p) for p in u.removed)}")
        else:
            ctx.out.info(f"uninstalled {u.spec}: removed "
                         f"{', '.join(p.name for p in u.removed) or 'no shims'}")


@app.command()
def reshim(
    specs: Annotated[list[str] | None, typer.Argument(
        help="TOOL@VERSION whose shims to rewrite.", autocompletion=_complete_installed)] = None,
    all_: Annotated[bool, typer.Option("--all", help="Rewrite the shims of every install.")] = False,
) -> None:
    """Rewrite shims from the install record, the current config.toml and shim runtime (no build).

    After upgrading sandman, `sandman reshim --all` moves every shim to the new runtime. A
    changed recipe (env, mounts...) is applied by `sandman upgrade`, which asks for consent.
    """
    from sandman.commands import install as core
    from sandman.errors import UsageError as SandmanUsage

    if not specs and not all_:
        raise SandmanUsage("name the TOOL@VERSION whose shims to rewrite, or use --all")
    parsed = [parse_spec(s) for s in specs or []]
    _exit_if_failed(core.reshim_all(_ctx(), parsed, every=all_))


@app.command("list")
def list_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List installed tool versions: image, shims, size and state.

    STATE is `current`; `image-missing` when the image was removed; `image-replaced` when its
    tag now names another image than the one installed; `shim-missing` when a shim was deleted
    or replaced; `image-stale` when the recipe, its files, its kits or the base it names changed
    since the image was built (or the recipe is gone or broken); `image-stale: base` when it was
    built here on a base that was bootstrapped again since; `shim-stale: WHY` when
    something a shim bakes in changed, WHY naming it: runtime (a new sandman), config
    (config.toml), host (docker client, python, socket), or a recipe field (env, pass_env,
    path_env, path_args, mounts, network, entrypoint, commands). `sandman upgrade` rebuilds or
    rewrites all but `current`. With --json: a list of objects with the keys tool, version,
    source, image, image_id, fingerprint, shims, size (bytes, or null without an image), state,
    reasons (the WHY list), installed_at and full_version (what the recipe's version check
    found in the image, or null; PROVEN in the table).
    """
    from sandman.commands import status

    ctx = _ctx()
    items = status.list_installs(ctx)
    if as_json:
        _emit_json([asdict(i) for i in items])
        return
    if not items:
        print("nothing installed; try: sandman install sqlite3@3.46", file=sys.stderr)
        return
    _table([[f"{i.tool}@{i.version}", i.full_version or "-", i.state, i.image, _human_size(i.size),
             " ".join(i.shims)] for i in items],
           ["TOOL@VERSION", "PROVEN", "STATE", "IMAGE", "SIZE", "SHIMS"])
    behind = [f"{i.tool}@{i.version}" for i in items if i.state != "current"]
    if behind and _state["verbosity"]:
        print(f"{len(behind)} install(s) not current; to rebuild or repair: sandman upgrade",
              file=sys.stderr)
    from sandman import repos  # a repo update waiting for trust: why some installs are stale

    for note in repos.pending_notes(ctx.paths) if _state["verbosity"] else []:
        print(f"note: {note}", file=sys.stderr)


def _run_options(args: list[str]) -> tuple[list[str], bool, list[str]]:
    """`run`'s own options written after TOOL@VERSION, up to `--` or the first command word.

    Parsing stops at TOOL@VERSION (so the command's own options reach it untouched), which
    would otherwise hand `--mount X` or the `--` itself to the tool.
    """
    mounts: list[str] = []
    dry = False
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            return mounts, dry, args[i + 1:]
        if a in ("--mount", "-m") and i + 1 < len(args):
            mounts.append(args[i + 1])
            i += 2
        elif a.startswith("--mount="):
            mounts.append(a.split("=", 1)[1])
            i += 1
        elif a == "--dry-run":
            dry, i = True, i + 1
        else:
            break
    return mounts, dry, args[i:]


@app.command(context_settings={"allow_interspersed_args": False})
def run(
    spec: Annotated[str, typer.Argument(help="TOOL@VERSION to run.", autocompletion=_complete_recipe)],
    command: Annotated[list[str] | None, typer.Argument(help="CMD ARGS to run in the container.")] = None,
    mount: Annotated[list[str] | None, typer.Option(
        "--mount", "-m", help="Extra mount HOST:CONTAINER[:ro|rw] (repeatable).")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print the docker command; run nothing.")] = False,
) -> None:
    """Run CMD ARGS once in TOOL@VERSION's container, with the same mounts and rules as a shim.

    Options may also follow TOOL@VERSION; `--` ends them: sandman run sqlite3@3.34 --mount
    ~/db:/db -- sqlite3 /db/x.db
    """
    from sandman.commands import install as core

    more_mounts, more_dry, command = _run_options(list(command or []))
    mount, dry_run = [*(mount or []), *more_mounts], dry_run or more_dry
    parsed = parse_spec(spec)
    ctx = _ctx()
    name, script = core.run_script(ctx, parsed, tuple(mount or ()), dry_run=dry_run)
    if _state.get("reporter"):
        _state["reporter"].close()
    sys.stdout.flush()
    sys.stderr.flush()
    core.exec_script(name, script, command, dict(os.environ), dry_run=dry_run)


@app.command()
def matrix(
    targets: Annotated[str, typer.Argument(
        help="TOOL@V1,V2,... or TOOL@all (every installed version of TOOL).", metavar="TARGETS",
        autocompletion=_complete_matrix)],
    command: Annotated[list[str], typer.Argument(
        help="CMD ARGS to run, as given, in every version.", metavar="CMD [ARGS]...")],
    diff: Annotated[bool, typer.Option(
        "--diff", help="Show the first version in full, the others as a unified diff against it.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output (schema below).")] = False,
    jobs: Annotated[int | None, typer.Option(
        "--jobs", "-j", min=1, help="Versions run at once (default: the number of cores).")] = None,
    mount: Annotated[list[str] | None, typer.Option(
        "--mount", "-m", help="Extra mount HOST:CONTAINER[:ro|rw] for every version (repeatable).")] = None,
    fail_on_diff: Annotated[bool, typer.Option(
        "--fail-on-diff", help="Exit 102 when the versions differ in exit code, stdout or stderr.")] = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Report each version's docker command (as its stdout); run nothing.")] = False,
) -> None:
    """Run the same CMD ARGS against several versions and report the results side by side.

    Write it as `sandman matrix sqlite3@3.34,3.46 -- sqlite3 db.sqlite 'select 1'`: options of
    matrix go before `--`, everything after it is the command. In
    TARGETS a bare version after a comma belongs to the tool named before it, and another
    TOOL@VERSION may follow. CMD ARGS run as given, like `sandman run`: the recipe's entrypoint
    is not put in front. Each version runs exactly as its shim would (same mounts, user,
    environment and network rules), in parallel, at most --jobs at once. Stdin is not shared:
    every version reads an empty stdin (/dev/null), and no terminal is allocated.

    The report gives per version the exit code, the wall time, stdout and stderr: side by side
    when the terminal is wide enough, else one below the other; with --diff the first version
    in full and the others as a unified diff against it. The exit status is 0 when every
    version ran, whatever their own exit codes (102 with --fail-on-diff when they differ), or
    sandman's own code for its errors.

    \b
    --json prints one object:
      {"schema": 1, "command": ["CMD", "ARG", ...], "agree": true,
       "results": [{"tool": "sqlite3", "version": "3.34", "key": "sqlite3@3.34",
                    "exit_code": 0, "seconds": 0.41, "stdout": "...", "stderr": "...",
                    "stdout_diff": null, "stderr_diff": null}, ...]}

    "agree" is true when every version has the same exit code, stdout and stderr. Results
    keep the order of TARGETS. Output is decoded as UTF-8 (invalid bytes become U+FFFD).
    The *_diff keys appear only with --diff: null for the first version, "" when identical.
    """
    from sandman.commands import matrix as core

    core.check_command(targets, command, sys.argv[1:])
    ctx = _ctx()
    specs = core.parse_targets(targets, ctx)
    outcomes = core.run(ctx, specs, command, dict(os.environ), extra_mounts=tuple(mount or ()),
                        dry_run=dry_run, jobs=jobs, prepared=_clear_progress)
    if as_json:
        _emit_json(core.to_json(command, outcomes, diff=diff))
    else:
        sys.stdout.write(core.render_report(command, outcomes, diff=diff))
    if fail_on_diff and not core.agree(outcomes):
        from sandman.errors import CHECK_FAILED

        raise typer.Exit(CHECK_FAILED)


@app.command()
def upgrade(
    specs: Annotated[list[str] | None, typer.Argument(
        help="Installed TOOL@VERSION to upgrade; default: every install that is not current.",
        autocompletion=_complete_installed)] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help=(
        "Accept changed mounts, env or network without asking "
        "(without it: asked on a terminal, refused with exit 124 otherwise)."))] = False,
) -> None:
    """Bring installs up to date: rebuild stale or replaced images, rewrite stale shims.

    `sandman list` shows which installs are not current and why: image-stale, image-missing and
    image-replaced are rebuilt (image-replaced without the cache); shim-stale and shim-missing
    only get their shims rewritten from the current recipe. A changed recipe that also changes
    what the tool may access needs consent, as with `install`.
    """
    from sandman.commands import upgrade as core

    keys = []
    for s in specs or []:
        p = parse_spec(s)
        keys.append(f"{p.tool}@{p.version}")
    ctx = _ctx()
    batch = core.upgrade(ctx, keys, _approver(yes))
    if not batch.outcomes:
        ctx.out.info("nothing to upgrade: every install is current")
    _exit_if_failed(batch)


@app.command()
def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Check the daemon, the shim directory, and every install's image and shims."""
    from sandman.commands import status

    checks = status.doctor(_ctx())
    if as_json:
        _emit_json([asdict(c) for c in checks])
    else:
        for c in checks:
            print(f"{'ok  ' if c.ok else 'FAIL'}  {c.what}: {c.detail}")
    if not all(c.ok for c in checks):
        from sandman.errors import CHECK_FAILED

        raise typer.Exit(CHECK_FAILED)


@app.command()
def gc(
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="List every sandman image with what gc would do and why; remove nothing.")] = False,
    unclaimed: Annotated[bool, typer.Option(
        "--unclaimed", help="Also remove images from an earlier sandman that no home has claimed.")] = False,
    tool: Annotated[list[str] | None, typer.Option(
        "--tool", help="Only the images of this tool (repeatable); default: every sandman image.")] = None,
) -> None:
    """Remove the sandman images no home holds and no container uses (anyone's, on this daemon).

    Each SANDMAN_HOME holds a root (a `sandman-root/...` tag) on the image of every version it
    has installed; `uninstall` drops it. gc first roots this home's own installs, then removes
    each sandman image that has no root and no container (running or stopped), and untagged
    sandman images older than 10 minutes. Images from a sandman without roots are kept until a
    home that uses them claims them (its next install, reshim or gc) or --unclaimed.
    """
    from sandman.commands import status

    ctx = _ctx()
    res = status.gc(ctx, dry_run=dry_run, unclaimed=unclaimed, tools=frozenset(tool or ()))
    for v in res.verdicts:
        size = _human_size(v.image.size)
        if dry_run:
            print(f"{v.name} ({size}): {'would remove' if v.remove else 'kept'}: {v.reason}")
        elif v.done:
            print(f"removed {v.name} ({size}): {v.reason}")
        elif v.remove or _state["verbosity"] > 1:
            print(f"kept {v.name} ({size}): {v.reason}")
    for f in res.runtimes:
        print(f"{f} (shim runtime): would remove: no shim of this home sources it" if dry_run
              else f"removed {f} (shim runtime): no shim of this home sources it")
    if not dry_run:
        ctx.out.info(f"gc removed {res.removed} image(s); layers that kept images share stay")


# -- teams: recipe repos, registry, bundles, pins (docs/teams.md) ------------------------------
repo_app = typer.Typer(help="Recipe repositories shared through git.", no_args_is_help=True)
app.add_typer(repo_app, name="repo")


def _offer_trust(ctx: "Context", spec: "Spec") -> None:
    """On a terminal, offer to trust the repo an untrusted recipe comes from (y/N).

    Without a terminal nothing is asked: install.resolve refuses (exit 120) with the command.
    """
    from sandman.commands import install as core

    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        return
    offer = core.repo_to_trust(ctx, spec)
    if offer is None:
        return
    entry, repo = offer
    _clear_progress()
    print(f"{entry.tool} comes from repo '{repo.name}' ({repo.url}) at commit {repo.commit[:12]}, "
          f"which you have not trusted.\nIts build steps run in a container with network access; "
          f"review them in {entry.recipe_file.parent}", file=sys.stderr)
    if typer.confirm(f"Trust repo '{repo.name}' at {repo.commit[:12]}?", default=False, err=True):
        core.trust_repo(ctx, repo.name)


def _project_install(ctx: "Context", *, update_lock: bool, force: bool, approve: object) -> None:
    from sandman.commands import pins

    cwd = pins.cwd_of(dict(os.environ))
    for spec in pins.project_specs(cwd):
        _offer_trust(ctx, spec)
    res = pins.install_project(ctx, cwd, update_lock=update_lock, force=force, approve=approve)
    for r in res.results:
        ctx.out.info(_installed_line(r.record))
    ctx.out.info(f"{'wrote' if res.lock_changed else 'checked'} {res.lock}")


@repo_app.command("add")
def repo_add(
    name: Annotated[str, typer.Argument(help="Name for the repo; its recipes are NAME/TOOL@VERSION.")],
    url: Annotated[str, typer.Argument(help="git URL or local path of the repository.")],
    ref: Annotated[str | None, typer.Option("--ref", help="Branch, tag or commit to follow "
                                            "(default: the remote's default branch).")] = None,
) -> None:
    """Clone a recipe repository and pin it to the ref's current commit (untrusted until `repo trust`)."""
    from sandman import repos

    ctx = _ctx()
    r = repos.add(ctx.paths, name, url, ref)
    tools = repos.tools_in(ctx.paths, r)
    ctx.out.info(f"added repo {r.name} at {r.commit[:12]}: {', '.join(tools) or 'no recipes'}")
    ctx.out.info(f"its recipes are untrusted; review {repos.clone_dir(ctx.paths, r.name)}, "
                 f"then run: sandman repo trust {r.name}")


@repo_app.command("list")
def repo_list(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List recipe repos and imported bundles, in precedence order, with their pinned commit.

    TRUSTED is `yes`, `NO`, or `pending` for a repo updated to a commit not trusted yet (its
    recipes that did not change since the trusted commit stay trusted).

    \b
    --json prints a list of objects, in precedence order:
      {"name": "team", "kind": "repo" | "bundle", "url": "...", "ref": null | "main",
       "commit": "<40 hex>" ("" for a bundle), "trusted": true, "path": "<recipes folder>",
       "tools": ["sqlite3", ...], "trusted_commit": "<40 hex>" | null,
       "pending_trust": false}
    """
    from sandman import repos

    ctx = _ctx()
    rows = [repos.describe(ctx.paths, r) for r in repos.load_all(ctx.paths)]
    if as_json:
        _emit_json(rows)
        return
    if not rows:
        print("no recipe repos; add one with: sandman repo add NAME URL", file=sys.stderr)
        return
    _table([[r["name"], r["kind"], r["commit"][:12] or "-",
             "yes" if r["trusted"] else "pending" if r["pending_trust"] else "NO",
             r["ref"] or "-", r["url"], ", ".join(r["tools"])] for r in rows],
           ["NAME", "KIND", "COMMIT", "TRUSTED", "REF", "URL", "TOOLS"])
    for note in repos.pending_notes(ctx.paths):
        print(f"note: {note}", file=sys.stderr)


@repo_app.command("update")
def repo_update(
    name: Annotated[str | None, typer.Argument(help="Repo to update (default: every repo).")] = None,
    ref: Annotated[str | None, typer.Option("--ref", help="Follow this branch, tag or commit "
                                            "from now on.")] = None,
) -> None:
    """Fetch and move the pin to the newest commit of the followed ref; a new commit is untrusted."""
    from sandman import repos
    from sandman.errors import UsageError as SandmanUsage

    if ref and not name:
        raise SandmanUsage("--ref needs the NAME of the repo to update")
    ctx = _ctx()
    for done in repos.update_all(ctx.paths, name, ref):
        u, n = done.update, done.update.repo.name
        if not u.moved:
            ctx.out.info(f"{n}: already at {u.repo.commit[:12]}")
            continue
        ctx.out.info(f"{n}: {u.old_commit[:12]} -> {u.repo.commit[:12]} "
                     f"({done.files_changed} file(s) changed)")
        if done.untrusted_tools is not None:
            ctx.out.warn(f"{n} is untrusted again at the new commit (update pending trust; "
                         f"recipes changed: {', '.join(done.untrusted_tools) or 'none'}, the others "
                         f"stay trusted); review with: git -C {repos.clone_dir(ctx.paths, n)} "
                         f"diff {u.old_commit[:12]} {u.repo.commit[:12]}, then run: "
                         f"sandman repo trust {n}")


@repo_app.command("trust")
def repo_trust(name: Annotated[str, typer.Argument(help="Repo to trust at its pinned commit.")]) -> None:
    """Trust a repo's recipes at its current pinned commit (an update makes them untrusted again)."""
    from sandman import repos

    ctx = _ctx()
    r = repos.trust(ctx.paths, name)
    ctx.out.info(f"trusted {r.name} at {r.commit[:12]}")


@repo_app.command("remove")
def repo_remove(name: Annotated[str, typer.Argument(help="Repo or imported bundle to remove.")]) -> None:
    """Remove a recipe repo (or imported bundle) and its clone; installs from it stay."""
    from sandman import repos

    ctx = _ctx()
    repos.remove(ctx.paths, name)
    ctx.out.info(f"removed {name}")


_REGISTRY_HELP = "Registry HOST[:PORT][/PREFIX] (default: SANDMAN_REGISTRY, then config.toml)."


@app.command()
def push(
    specs: Annotated[list[str], typer.Argument(help="TOOL@VERSION to push.",
                                               autocompletion=_complete_recipe)],
    registry: Annotated[str | None, typer.Option("--registry", help=_REGISTRY_HELP)] = None,
    sign: Annotated[Path | None, typer.Option(
        "--sign", help="SSH private key (or a public key held by ssh-agent) to sign each image "
                       "with (`ssh-keygen -Y sign`, namespace sandman); pushed as TAG.sig.")] = None,
) -> None:
    """Push images to the team registry under their fingerprint tag, with the bases they were
    built on, by digest (building them if needed)."""
    from sandman.commands import publish

    parsed = [parse_spec(s) for s in specs]
    ctx = _ctx()
    for p in publish.push(ctx, parsed, registry, sign):
        if p.signature is not None:
            ctx.out.info(f"{p.spec}: signed, pushed {p.signature}")
        print(p.transfer.ref)
        for base, digest in sorted(p.transfer.bases.items()):
            ctx.out.info(f"{p.spec}: its base {base} ({digest}) is in the registry too")


@app.command()
def pull(
    specs: Annotated[list[str], typer.Argument(help="TOOL@VERSION to pull.",
                                               autocompletion=_complete_recipe)],
    registry: Annotated[str | None, typer.Option("--registry", help=_REGISTRY_HELP)] = None,
) -> None:
    """Pull the images of these versions' fingerprints from the registry, without installing."""
    from sandman.commands import publish

    parsed = [parse_spec(s) for s in specs]
    ctx = _ctx()
    for spec, t in publish.pull(ctx, parsed, registry):
        ctx.out.info(f"{spec}: {'already present' if t is None else 'pulled ' + t.ref}")


@app.command("export")
def export_cmd(
    specs: Annotated[list[str], typer.Argument(help="TOOL@VERSION to put in the bundle.",
                                               autocompletion=_complete_recipe)],
    output: Annotated[Path, typer.Option("--output", "-o", help="The bundle file to write (a tar).")],
    name: Annotated[str | None, typer.Option(
        "--name", help="Recipe source name on import (default: the file name without .tar).")] = None,
    sign: Annotated[Path | None, typer.Option(
        "--sign", help="SSH key to sign each image with, in the manifest (default: the "
                       "signatures kept here from `push --sign` or a verified install).")] = None,
) -> None:
    """Write one offline bundle: the images (docker save), their recipes and a manifest."""
    from sandman.commands import bundle

    parsed = [parse_spec(s) for s in specs]
    ctx = _ctx()
    m = bundle.export(ctx, parsed, output, name, sign=sign)
    ctx.out.info(f"wrote {output} (source '{m.name}'): {', '.join(t.key for t in m.tools)}")


@app.command("import")
def import_cmd(
    file: Annotated[Path, typer.Argument(help="A bundle written by `sandman export`.")],
    yes: Annotated[bool, typer.Option(
        "--yes", "-y", help="Accept changed mounts, env or network without asking.")] = False,
) -> None:
    """Load a bundle's images and recipes and install its tools, with no network and no build."""
    from sandman.commands import bundle

    ctx = _ctx()
    res = bundle.import_bundle(ctx, file, approve=_approver(yes))
    for r in res.results:
        ctx.out.info(_installed_line(r.record, f" from bundle {res.manifest.name}"))


@app.command()
def verify(
    spec: Annotated[str, typer.Argument(help="Installed TOOL@VERSION.",
                                        autocompletion=_complete_installed)],
    registry: Annotated[str | None, typer.Option("--registry", help=_REGISTRY_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show who signed an installed image and when, checked now against allowed_signers.

    The signature kept at install time is used, else the one next to the image in the
    registry. Unsigned, or not by a key in allowed_signers: exit 97, whatever the policy.

    \b
    --json prints {"key", "image_id", "principal", "signing_key", "signed_at", "signers"}.
    """
    from sandman.commands import publish

    parsed = parse_spec(spec)
    rep = publish.verify(_ctx(), parsed, registry)
    if as_json:
        _emit_json(rep.to_json())
        return
    print(f"{rep.key}: image {rep.image_id[:19]} signed by {rep.principal} ({rep.signing_key}) "
          f"at {rep.signed_at}; allowed by {', '.join(rep.signers)}")


@app.command()
def sbom(
    spec: Annotated[str, typer.Argument(help="Installed TOOL@VERSION.",
                                        autocompletion=_complete_installed)],
    as_json: Annotated[bool, typer.Option(
        "--json", help="CycloneDX 1.6 JSON (made with cyclonedx-python-lib).")] = False,
) -> None:
    """List what is inside an installed image: Debian packages, sources and kits, base.

    Read from the image itself (its dpkg database and its labels), not from the recipe.

    \b
    --json prints a CycloneDX 1.6 document: metadata.component is the image (hash: its id,
      property sandman:fingerprint); components are the bases (type container, version: the
      base image id), the Debian packages (purl pkg:deb/debian/NAME@VERSION?arch=...), the
      sources and kits (type file, SHA-256 hash, property sandman:role = source | kit).
    """
    from sandman.commands import install as core
    from sandman.commands import sbom as sb

    parsed = parse_spec(spec)
    ctx = _ctx()
    bom = sb.read(ctx, core.installed(ctx, parsed))
    if as_json:
        print(sb.cyclonedx_json(bom))
    else:
        print(sb.text(bom), end="")


@app.command()
def use(
    tool: Annotated[str, typer.Argument(help="Tool name.")],
    version: Annotated[str, typer.Argument(help="Version the unversioned command runs.")],
    global_: Annotated[bool, typer.Option("--global", help=(
        "Choose it everywhere (<config>/versions.toml) instead of in the nearest .sandman.toml."))]
    = False,
    tool_versions: Annotated[bool, typer.Option("--tool-versions", help=(
        "Write the pin into the nearest .tool-versions (asdf's format, which mise reads too), "
        "or a new one here, instead of .sandman.toml."))] = False,
) -> None:
    """Choose which version the unversioned command (`sqlite3`) runs here, and write that shim."""
    from sandman.commands import pins

    ctx = _ctx()
    res = pins.use(ctx, tool, version, global_=global_, cwd=pins.cwd_of(dict(os.environ)),
                   tool_versions=tool_versions)
    ctx.out.info(f"{tool} {version} in {res.file}; shims: {', '.join(p.name for p in res.shims)}")
    if not res.installed:
        ctx.out.warn(f"{tool}@{version} is not installed yet; run: sandman install {tool}@{version}")


@app.command()
def which(
    tool: Annotated[str, typer.Argument(help="Tool name.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Say which version of TOOL the unversioned command runs here, and why.

    \b
    --json prints one object:
      {"tool": "sqlite3", "version": "3.34" | null,
       "origin": "env" | "project" | "global" | "none",
       "where": "SANDMAN_SQLITE3_VERSION" | "/path/.sandman.toml" | null,
       "installed": true, "shim": "/path/bin/sqlite3-3.34" | null,
       "plain_missing": ["sqlite3"], "runs": "3.34" | null}
    plain_missing: the plain commands of the chosen version that have no unversioned shim, so
    they run the host's tool instead; "runs": the installed version the choice runs (an alias
    resolves to its version, as with `install`), null when not installed. Exit status 0 when
    the chosen version is installed and its plain commands are there, 111 when no version is
    chosen or the chosen one is not installed, 105 when a plain shim is missing, 123 when a pin
    file is broken.
    """
    from sandman.commands import pins

    ctx = _ctx()
    w = pins.which(ctx, tool, pins.cwd_of(dict(os.environ)), dict(os.environ))
    c = w.choice
    failure = w.failure(ctx.paths.bin_dir)
    if as_json:
        _emit_json({"tool": tool, "version": c.version, "origin": c.origin, "where": c.where,
                    "installed": w.installed is not None, "shim": w.shim,
                    "plain_missing": w.plain_missing, "runs": w.installed})
    elif c.version is None and failure is not None:
        print(failure.message, file=sys.stderr)
    elif w.problem is None:
        why = {"env": f"set by ${c.where}", "project": f"set by {c.where}",
               "global": f"set by {c.where} (global)"}[c.origin]
        alias = f" = {w.installed}" if w.installed and w.installed != c.version else ""
        print(f"{tool} {c.version}{alias} ({why}): {w.shim}")
    if failure is None:
        return
    if c.version is None or (as_json and w.problem):  # what went wrong is said above already
        raise typer.Exit(failure.exit_code)
    raise failure


@app.command()
def outdated(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Versions the recipe sources now offer for tools installed here, and installed ones dropped.

    Each installed tool is compared with the source it was installed from, at that source's
    pinned commit (run `sandman repo update` first to see what was pushed since). NEW: versions
    the source has that are not installed here (`sandman install TOOL@VERSION`); DROPPED:
    installed versions the source no longer has (they keep working; `upgrade` cannot rebuild
    them). An untrusted repo's offers are not listed. Only tools with something to say are
    shown; exit status 0 either way.

    \b
    --json prints a list of objects:
      {"tool": "acmecli", "source": "team", "kind": "repo", "installed": ["4.1"],
       "new": ["5.0"], "dropped": [], "trusted": true, "note": null}
    """
    from sandman.commands import outdated as od

    ctx = _ctx()
    rows = od.report(ctx.paths, ctx.catalog)
    if as_json:
        _emit_json([r.as_json() for r in rows])
        return
    if not rows:
        print("nothing new: every installed tool's source offers only what is installed",
              file=sys.stderr)
        return
    _table([[r.tool, r.source, ", ".join(r.installed), ", ".join(r.new) or "-",
             ", ".join(r.dropped) or "-"] for r in rows],
           ["TOOL", "SOURCE", "INSTALLED", "NEW", "DROPPED"])
    for r in rows:
        if r.note:
            print(f"note: {r.tool}: {r.note}", file=sys.stderr)


@app.command("man")
def man_page(
    spec: Annotated[str, typer.Argument(help="Installed TOOL@VERSION.", autocompletion=_complete_installed)],
    page: Annotated[str | None, typer.Argument(help=(
        "Which of its pages (default: the tool's own, else its first command's)."))] = None,
    path_only: Annotated[bool, typer.Option("--path", "-w", help="Print the page's file, like man -w.")]
    = False,
) -> None:
    """Show that version's own manual page (the same page `man TOOL-VERSION` shows)."""
    import shutil

    from sandman.commands import install as core
    from sandman.errors import NotFoundError

    ctx = _ctx()
    hit = core.man_page(ctx, parse_spec(spec), page)
    if path_only:
        print(hit)
        return
    man = shutil.which("man")
    if man is None:
        raise NotFoundError(f"man is not installed; the page is {hit}")
    os.execv(man, ["man", "-l", str(hit)])


# -- warm containers -------------------------------------------------------------------------
warm_app = typer.Typer(help="Warm containers that shims `docker exec` into (see docs/performance.md).",
                       no_args_is_help=True)
app.add_typer(warm_app, name="warm")


def _duration(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


@warm_app.command("list")
def warm_list(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show your warm containers: tool@version, container, idle time, calls running, mounts."""
    from sandman import warm

    ctx = _ctx()
    items = warm.list_warm(ctx.engine, ctx.paths)
    if as_json:
        _emit_json([{**asdict(w), "key": w.key} for w in items])
        return
    if not items:
        print("no warm containers", file=sys.stderr)
        return
    _table([[w.key, w.name, w.status, _duration(w.idle_seconds), str(w.active_calls),
             f"stops after {_duration(w.idle_limit)} idle", "; ".join(w.mounts)] for w in items],
           ["TOOL@VERSION", "CONTAINER", "STATE", "IDLE", "CALLS", "LIMIT", "MOUNTS"])


@warm_app.command("stop")
def warm_stop(
    specs: Annotated[list[str] | None, typer.Argument(
        help="TOOL@VERSION (or TOOL) whose warm containers to stop; none: all of yours.")] = None,
) -> None:
    """Stop warm containers now (the next call starts a new one)."""
    from sandman import warm

    keys = [str(parse_spec(s, need_version=False)) for s in specs or []]
    ctx = _ctx()
    for w in warm.stop(ctx.engine, ctx.paths, keys or None):
        ctx.out.info(f"stopped {w.name} ({w.key})")


@app.command("exit-codes")
def exit_codes() -> None:
    """Print the exit codes sandman and its shims use, grouped by what failed."""
    for i, group in enumerate(EXIT_GROUPS):
        if i:
            print()
        print(f"{group.title}:")
        for e in group.codes:
            print(f"{e.code:>4}  {e.meaning}")


def click_command() -> ClickCommand:
    """The click command tree behind the Typer app (docs/cli.md is generated from it)."""
    return typer.main.get_command(app)


def _log_end(code: int, error: BaseException | None) -> None:
    """Every run ends in state/log/sandman.log with its exit code, and a traceback on error."""
    rep = _state.get("reporter")
    if rep is None and error is None:  # --version, --help, a Tab: no command ran, nothing to log
        return
    from sandman.errors import EngineNotInstalledError, NoEngineError, StaleSocketError, SubidError

    if rep is None and isinstance(error, (NoEngineError, EngineNotInstalledError, SubidError,
                                          StaleSocketError)):
        return  # refused by _ctx's engine check, before anything was made: not even the log
    if rep is None:  # failed before any command started (bad usage): log it all the same
        with contextlib.suppress(Exception):
            rep = _state["reporter"] = _reporter(0)
    if rep is None:
        return
    if isinstance(error, _VendoredUsageError):
        rep.log_line(f"usage error: {error}")
    elif error is not None:
        rep.log_line("".join(traceback.format_exception(error)).rstrip())
    rep.log_line(f"exit {code}")


class _AsTyped:
    """Stands in for Typer's per-parameter coercion while answering a Tab.

    Typer >= 0.25 converts parameter values through pydantic (~100 ms to import); a completion
    request only needs the words typed so far, never their converted values.
    """

    @staticmethod
    def coerce(value: object, param: object, ctx: object) -> object:
        if value is None and (getattr(param, "multiple", False) or getattr(param, "nargs", 1) == -1):
            return ()
        return value


def _quick_completion() -> None:
    """A Tab runs sandman again, so the answer must come at once (test_cli_speed.py).

    Besides the coercion above: zsh, fish and PowerShell completion show each command's help,
    and Typer passes it through Rich when Rich is installed (~40 ms). sandman's help has no
    markup (rich_markup_mode=None), so it is shown as it is written. Both hooks are optional:
    a Typer without them simply answers more slowly.
    """
    from typer import _completion_classes, core

    if hasattr(_completion_classes, "_sanitize_help_text"):
        _completion_classes._sanitize_help_text = lambda text: text
    param = getattr(core, "_TyperParameter", None)
    if param is not None and hasattr(param, "get_runtime_param"):
        param.get_runtime_param = lambda self: _AsTyped


def main() -> None:
    code, error = 1, None
    if os.environ.get("_SANDMAN_COMPLETE"):
        with contextlib.suppress(ImportError):
            _quick_completion()
    try:  # always "sandman" (also as `python -m sandman`): completion reads $_SANDMAN_COMPLETE
        rv = app(standalone_mode=False, prog_name="sandman")
        code = rv if isinstance(rv, int) else 0
    except _VendoredUsageError as e:
        e.show()
        code, error = 2, e
    except typer.Exit as e:
        code = e.exit_code
    except (typer.Abort, KeyboardInterrupt) as e:
        print("sandman: interrupted", file=sys.stderr)
        code, error = 130, e
    except Exception as e:
        if _state["debug"]:
            traceback.print_exc()
        from sandman.state import os_failure  # a full disk, sandman's folders unwritable: no bug

        known = e if isinstance(e, SandmanError) else os_failure(e)
        if known is not None:
            from sandman.text import safe_lines  # the last guard: messages quote recipe text

            print(f"sandman: {safe_lines(known.message)}", file=sys.stderr)
            if known.detail:
                print(safe_lines(known.detail), file=sys.stderr)
            code, error = known.exit_code, e
        else:
            print(f"sandman: internal error: {type(e).__name__}: {e} (run with --debug for details)",
                  file=sys.stderr)
            code, error = 1, e
    finally:
        with contextlib.suppress(Exception):
            _log_end(code, error)
        rep = _state.get("reporter")
        if rep is not None:
            rep.close()
    sys.exit(code)
