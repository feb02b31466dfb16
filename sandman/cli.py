"""The command line: options in, one call into the core, a table or JSON out.

This is the only module that knows Typer. Errors from the core arrive as SandmanError
subclasses and leave here as one line on stderr and the exit code of their type.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import click
import typer

from sandman import __version__
from sandman.catalog import parse_spec
from sandman.context import Context
from sandman.errors import EXIT_CODES, RecipeError, SandmanError

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


class CliReporter:
    """Progress for people on a terminal, plain lines for logs, nothing with -q."""

    def __init__(self, verbosity: int, log_file: Path | None) -> None:
        self.verbosity = verbosity
        self.tty = sys.stderr.isatty()
        self.log = None
        if log_file is not None:
            try:
                log_file.parent.mkdir(parents=True, exist_ok=True)
                self.log = log_file.open("a", encoding="utf-8")
                self.log.write(f"--- {datetime.now(UTC).isoformat(timespec='seconds')} "
                               f"sandman {' '.join(sys.argv[1:])}\n")
            except OSError:
                self.log = None
        self._status = None

    def _log(self, line: str) -> None:
        if self.log:
            self.log.write(line + "\n")
            self.log.flush()

    def _clear(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def info(self, msg: str) -> None:
        self._log(msg)
        if self.verbosity >= 1:
            self._clear()
            print(msg, file=sys.stderr)

    def warn(self, msg: str) -> None:
        self._log("warning: " + msg)
        self._clear()
        print(f"sandman: warning: {msg}", file=sys.stderr)

    def step(self, line: str) -> None:
        self._log(line)
        if self.verbosity >= 2:
            self._clear()
            print(line, file=sys.stderr)
        elif self.verbosity == 1:
            important = line.startswith(("Step ", "smoke test", "$ ", "importing "))
            if self.tty:
                if self._status is None:
                    from rich.console import Console

                    self._status = Console(stderr=True).status("")
                    self._status.start()
                if important or self._status is not None:
                    self._status.update(line[:120] if important else self._current(line))
            elif important:
                print(line, file=sys.stderr)

    def _current(self, line: str) -> str:
        return line[:120]

    def close(self) -> None:
        self._clear()
        if self.log:
            self.log.close()


def _ctx() -> Context:
    from sandman.paths import Paths

    out = CliReporter(_state["verbosity"], Paths.from_env().log_dir / "sandman.log")
    _state["reporter"] = out
    return Context.from_env(out=out)


def _emit_json(data: object) -> None:
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


@app.callback()
def main_options(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Print only errors.")] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose",
                                          help="Print every build line.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version_cb, is_eager=True,
                                          help="Print sandman's version and exit.")] = False,
) -> None:
    """Run several versions of a legacy command-line tool side by side, each in its own container."""
    _state["debug"] = debug or bool(os.environ.get("SANDMAN_DEBUG"))
    _state["verbosity"] = 0 if quiet else 2 if verbose else 1


# -- recipes ---------------------------------------------------------------------------------
@recipes_app.command("list")
def recipes_list(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List every recipe, where it comes from, its versions, and what it shadows."""
    from sandman.recipes import load_recipe

    ctx = _ctx()
    rows = []
    for e in ctx.catalog.entries():
        item = {"tool": e.tool, "source": e.source.name, "source_kind": e.source.kind,
                "path": str(e.recipe_file), "shadowed_by": e.shadowed_by,
                "versions": [], "description": "", "error": None}
        try:
            r = load_recipe(e.recipe_file, expect_tool=e.tool)
            item["versions"], item["description"] = r.version_names, r.description
        except RecipeError as err:
            item["error"] = err.message
        rows.append(item)
    if as_json:
        _emit_json(rows)
        return
    _table([[r["tool"], ", ".join(r["versions"]) or "-", r["source"],
             (f"shadowed by {r['shadowed_by']}" if r["shadowed_by"] else "")
             + ("INVALID: " + r["error"] if r["error"] else r["description"])] for r in rows],
           ["TOOL", "VERSIONS", "SOURCE", "DESCRIPTION"])


@recipes_app.command("show")
def recipes_show(tool: Annotated[str, typer.Argument(help="Tool name, optionally SOURCE/TOOL.")]) -> None:
    """Show a recipe: its versions, how each is built and how it runs."""
    from sandman.shims import shim_names

    spec = parse_spec(tool, need_version=False)
    ctx = _ctx()
    entry, recipe = ctx.catalog.load(spec.tool, spec.source)
    print(f"{recipe.tool}: {recipe.description}")
    if recipe.homepage:
        print(f"homepage: {recipe.homepage}")
    print(f"source:   {entry.source.name} ({entry.recipe_file})")
    for v in recipe.versions:
        b, rt = v.build, v.runtime
        pkgs = ", ".join(b.packages) or "no packages"
        how = f"dockerfile {b.dockerfile}" if b.dockerfile else f"{b.base} + {pkgs}"
        print(f"\n{recipe.tool}@{v.version}: {how}")
        if b.kits:
            print("  kits:       " + ", ".join(k.file for k in b.kits))
        print(f"  shims:      {', '.join(shim_names(recipe.tool, v.version, rt))}")
        if rt.entrypoint:
            print(f"  entrypoint: {' '.join(rt.entrypoint)}")
        print(f"  network:    {'yes' if rt.network else 'none'}")
        for m in rt.mounts:
            print(f"  mount:      {m.name}: {m.source} -> {m.target} ({m.mode}"
                  f"{', optional' if m.optional else ''})")
        if rt.env:
            print("  env:        " + " ".join(f"{k}={val}" for k, val in rt.env.items()))
        if rt.pass_env:
            print("  pass_env:   " + " ".join(rt.pass_env))


@recipes_app.command("check")
def recipes_check(
    paths: Annotated[list[Path] | None, typer.Argument(
        help="recipe.toml files or recipe folders; default: every recipe in the catalog.")] = None,
) -> None:
    """Validate recipes without building anything."""
    from sandman.recipes import load_recipe

    errors: list[RecipeError] = []
    checked = 0
    if paths:
        for p in paths:
            f = p / "recipe.toml" if p.is_dir() else p
            checked += 1
            try:
                load_recipe(f, expect_tool=f.resolve().parent.name)
            except RecipeError as e:
                errors.append(e)
    else:
        ctx = _ctx()
        checked = len(ctx.catalog.entries())
        errors = ctx.catalog.check_all()
    for e in errors:
        print(e.message, file=sys.stderr)
        if e.detail:
            print(e.detail, file=sys.stderr)
    if errors:
        raise typer.Exit(RecipeError.exit_code)
    if _state["verbosity"]:
        print(f"{checked} recipe(s) OK", file=sys.stderr)


# -- images ----------------------------------------------------------------------------------
@app.command()
def bootstrap(
    bases: Annotated[list[str], typer.Argument(help="Base images, e.g. debian:bookworm-slim.")],
    mirror: Annotated[str | None, typer.Option(
        help="Debian mirror URL (default: config.toml `mirror`, else the host's apt sources).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if the image exists.")] = False,
) -> None:
    """Make Debian base images locally with mmdebstrap (no registry needed)."""
    from sandman import bootstrap as bs

    ctx = _ctx()
    plans = [bs.plan(b, mirror or ctx.config.mirror) for b in bases]
    for p in plans:
        if not force and ctx.engine.image(p.ref) is not None:
            ctx.out.info(f"{p.ref}: already present")
            continue
        image_id = bs.bootstrap(p, ctx.engine, tmp_dir=ctx.paths.cache_dir, on_line=ctx.out.step)
        ctx.out.info(f"{p.ref}: imported {image_id[:19]}")


@app.command()
def build(
    specs: Annotated[list[str], typer.Argument(help="TOOL@VERSION to build.")],
    force: Annotated[bool, typer.Option("--force", help="Build even if the image is cached.")] = False,
) -> None:
    """Build images (cached by fingerprint) without installing shims."""
    from sandman import install as core

    parsed = [parse_spec(s) for s in specs]
    ctx = _ctx()
    for spec in parsed:
        result = core.build(ctx, core.resolve(ctx, spec), force=force)
        print(result.tag)


@app.command()
def install(
    specs: Annotated[list[str], typer.Argument(help="TOOL@VERSION to install.")],
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if the image is cached.")] = False,
) -> None:
    """Build (if needed) and put the shims of each TOOL@VERSION on PATH."""
    from sandman import install as core

    parsed = [parse_spec(s) for s in specs]
    ctx = _ctx()
    for spec in parsed:
        res = core.install(ctx, spec, force=force)
        ctx.out.info(f"installed {res.record.key}: {', '.join(res.record.shims)} "
                     f"in {res.record.bin_dir}")


@app.command()
def uninstall(specs: Annotated[list[str], typer.Argument(help="TOOL@VERSION to remove.")]) -> None:
    """Remove the shims and install record (the image stays until `sandman gc`)."""
    from sandman import install as core

    parsed = [parse_spec(s) for s in specs]
    ctx = _ctx()
    for spec in parsed:
        removed = core.uninstall(ctx, spec)
        ctx.out.info(f"uninstalled {spec}: removed {', '.join(p.name for p in removed) or 'no shims'}")


@app.command()
def reshim(specs: Annotated[list[str], typer.Argument(help="TOOL@VERSION whose shims to rewrite.")]) -> None:
    """Rewrite shims from the install record and the current config.toml (no build)."""
    from sandman import install as core

    parsed = [parse_spec(s) for s in specs]
    ctx = _ctx()
    for spec in parsed:
        for p in core.reshim(ctx, spec):
            ctx.out.info(f"rewrote {p}")


@app.command("list")
def list_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List installed tool versions: image, shims, size and state."""
    from sandman import status

    ctx = _ctx()
    items = status.list_installs(ctx)
    if as_json:
        _emit_json([asdict(i) for i in items])
        return
    if not items:
        print("nothing installed; try: sandman install sqlite3@3.46", file=sys.stderr)
        return
    _table([[f"{i.tool}@{i.version}", i.state, i.image, _human_size(i.size), " ".join(i.shims)]
            for i in items], ["TOOL@VERSION", "STATE", "IMAGE", "SIZE", "SHIMS"])


@app.command(context_settings={"allow_interspersed_args": False})
def run(
    spec: Annotated[str, typer.Argument(help="TOOL@VERSION to run.")],
    command: Annotated[list[str] | None, typer.Argument(help="CMD ARGS to run in the container.")] = None,
    mount: Annotated[list[str] | None, typer.Option(
        "--mount", "-m", help="Extra mount HOST:CONTAINER[:ro|rw] (repeatable).")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print the docker command; run nothing.")] = False,
) -> None:
    """Run CMD ARGS once in TOOL@VERSION's container, with the same mounts and rules as a shim."""
    from sandman import install as core

    parsed = parse_spec(spec)
    ctx = _ctx()
    name, script = core.run_script(ctx, parsed, tuple(mount or ()))
    env = dict(os.environ)
    if dry_run:
        env["SANDMAN_DRY_RUN"] = "1"
    if _state.get("reporter"):
        _state["reporter"].close()
    sys.stdout.flush()
    sys.stderr.flush()
    core.exec_script(name, script, list(command or []), env)


@app.command()
def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Check the daemon, the shim directory, and every install's image and shims."""
    from sandman import status

    ctx = _ctx()
    checks = status.doctor(ctx)
    if as_json:
        _emit_json([asdict(c) for c in checks])
    else:
        for c in checks:
            print(f"{'ok  ' if c.ok else 'FAIL'}  {c.what}: {c.detail}")
    if not all(c.ok for c in checks):
        raise typer.Exit(1)


@app.command()
def gc(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only show what would be removed.")] = False,
) -> None:
    """Remove images of older fingerprints that no install uses any more."""
    from sandman import status

    ctx = _ctx()
    for img in status.gc(ctx, dry_run=dry_run):
        print(f"{'would remove' if dry_run else 'removed'} {', '.join(img.tags) or img.id[:19]} "
              f"({_human_size(img.size)})")


@app.command("exit-codes")
def exit_codes() -> None:
    """Print the exit codes sandman and its shims use."""
    for code, meaning in sorted(EXIT_CODES.items()):
        print(f"{code:>4}  {meaning}")


def main() -> None:
    try:
        rv = app(standalone_mode=False)
        code = rv if isinstance(rv, int) else 0
    except click.exceptions.UsageError as e:
        e.show()
        code = 2
    except click.exceptions.Exit as e:
        code = e.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        print("sandman: interrupted", file=sys.stderr)
        code = 130
    except SandmanError as e:
        if _state["debug"]:
            traceback.print_exc()
        print(f"sandman: {e.message}", file=sys.stderr)
        if e.detail:
            print(e.detail, file=sys.stderr)
        code = e.exit_code
    except Exception as e:
        if _state["debug"]:
            traceback.print_exc()
        print(f"sandman: internal error: {type(e).__name__}: {e} (run with --debug for details)",
              file=sys.stderr)
        code = 1
    finally:
        rep = _state.get("reporter")
        if rep is not None:
            rep.close()
    sys.exit(code)
