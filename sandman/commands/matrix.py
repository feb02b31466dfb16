"""One command, several versions: run it against each and put the results side by side.

Each version runs through the very script its shim would run (``install.run_script``), so the
mounts, user, environment and privileges are the shim's; only the entrypoint is left out, as in
``sandman run``: CMD ARGS run as given. The versions run in parallel, at most one per core,
because the point is comparing behaviour, and on a small machine a pile of containers only
makes every timing worse. Stdin is not shared: every version reads /dev/null, since one
stream cannot be replayed to several readers without buffering it all first.
"""

from __future__ import annotations

import difflib
import itertools
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from sandman import installs
from sandman.catalog import Spec, parse_spec
from sandman.context import Context
from sandman.errors import NotFoundError, UsageError

JSON_SCHEMA = 1


@dataclass(frozen=True)
class Target:
    """One version, ready to run: the shim script rendered for it."""

    tool: str
    version: str
    name: str  # $0 of the script, `tool-version`
    script: str

    @property
    def key(self) -> str:
        return f"{self.tool}@{self.version}"


@dataclass(frozen=True)
class Outcome:
    tool: str
    version: str
    exit_code: int  # the tool's status; 128+N when it died of signal N
    seconds: float
    stdout: bytes
    stderr: bytes

    @property
    def key(self) -> str:
        return f"{self.tool}@{self.version}"


def parse_targets(text: str, ctx: Context | None = None) -> list[Spec]:
    """`tool@v1,v2`, `tool@all`, or `a@1,b@2` into specs, in the order given.

    A bare version after a comma belongs to the tool named before it; `all` means every
    installed version of that tool (it needs ctx to read the install records).
    """
    specs: list[Spec] = []
    tool: str | None = None
    source: str | None = None
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            raise UsageError(f"'{text}' has an empty item; write TOOL@V1,V2 (e.g. sqlite3@3.34,3.46)")
        if "@" in item:
            spec = parse_spec(item)
            tool, source, version = spec.tool, spec.source, spec.version or ""
        elif tool is None:
            raise UsageError(f"'{text}' must start with TOOL@VERSION (e.g. sqlite3@3.34,3.46)")
        else:
            version = item
            parse_spec(f"{tool}@{version}")  # same syntax check as everywhere else
        if version == "all":
            if ctx is None:
                raise UsageError("'all' needs the install records")
            have = [r.version for r in installs.all_records(ctx.paths) if r.tool == tool]
            if not have:
                raise NotFoundError(f"{tool}@all: no version of {tool} is installed; "
                                    f"install some first, e.g. sandman install {tool}@VERSION")
            new = [Spec(tool, v, source) for v in have]
        else:
            new = [Spec(tool, version, source)]
        specs.extend(s for s in new if s not in specs)
    return specs


def check_command(targets: str, command: Sequence[str], argv: Sequence[str]) -> None:
    """Refuse a second target written without a comma (`matrix a@1 a@2 -- CMD`).

    Such a word ends up as the command's first word, and every version would be asked to run
    a program called `a@2`. A first word that looks like TOOL@VERSION is taken as the command
    only when the user wrote `--` right before it (argv: the raw arguments).
    """
    if not command or "@" not in command[0] or command[0].startswith("-"):
        return
    word = command[0]
    try:
        spec = parse_spec(word)
    except UsageError:
        return  # not TOOL@VERSION: an ordinary command word
    if any(a == "--" and b == word for a, b in itertools.pairwise(argv)):
        return
    last = targets.split(",")[-1]
    same_tool = "@" in last and last.split("@")[0] == word.split("@")[0]
    joined = f"{targets},{spec.version if same_tool else word}"
    raise UsageError(f"'{word}' after '{targets}' looks like a second target: separate targets "
                     f"with a comma, not a space (sandman matrix {joined} -- CMD ARGS)")


def prepare(ctx: Context, specs: Sequence[Spec], extra_mounts: tuple[str, ...] = (), *,
            dry_run: bool = False) -> list[Target]:
    """Render each version's run script (building any image that is missing, one at a time;
    a dry run builds nothing and says which images are not built yet)."""
    from sandman.commands.install import run_script

    out = []
    for spec in specs:
        name, script = run_script(ctx, spec, extra_mounts, dry_run=dry_run)
        out.append(Target(spec.tool, str(spec.version), name, script))
    return out


def default_jobs() -> int:
    return max(1, os.cpu_count() or 1)


def run_one(target: Target, args: Sequence[str], env: dict[str, str]) -> Outcome:
    start = time.monotonic()
    proc = subprocess.run(["/bin/bash", "-c", target.script, target.name, *args],
                          stdin=subprocess.DEVNULL, capture_output=True, env=env, check=False)
    seconds = time.monotonic() - start
    code = proc.returncode if proc.returncode >= 0 else 128 - proc.returncode
    return Outcome(target.tool, target.version, code, seconds, proc.stdout, proc.stderr)


def run_all(targets: Sequence[Target], args: Sequence[str], env: dict[str, str], *,
            jobs: int | None = None) -> list[Outcome]:
    """Run every target, at most `jobs` at once; results in the order of targets."""
    workers = max(1, min(jobs or default_jobs(), len(targets)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda t: run_one(t, args, env), targets))


def run(ctx: Context, specs: Sequence[Spec], args: Sequence[str], env: dict[str, str], *,
        extra_mounts: tuple[str, ...] = (), dry_run: bool = False, jobs: int | None = None,
        prepared: Callable[[], None] = lambda: None) -> list[Outcome]:
    """`matrix`: every version's script made (building what is missing, one at a time), then
    all run at once, at most `jobs`. env: the environment they run in, told to print instead
    of run for a dry run and only then; prepared: called once the builds are over."""
    targets = prepare(ctx, specs, extra_mounts, dry_run=dry_run)
    prepared()
    env = dict(env)
    env.pop("SANDMAN_DRY_RUN", None)
    if dry_run:
        env["SANDMAN_DRY_RUN"] = "1"
    return run_all(targets, args, env, jobs=jobs)


# -- reporting --------------------------------------------------------------------------------
def text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def unified(first: Outcome, other: Outcome, stream: str) -> str:
    a = text(getattr(first, stream)).splitlines(keepends=True)
    b = text(getattr(other, stream)).splitlines(keepends=True)
    lines = difflib.unified_diff(a, b, f"{first.key} {stream}", f"{other.key} {stream}")
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"
                   for line in lines)


def agree(outcomes: Sequence[Outcome]) -> bool:
    first = outcomes[0]
    return all((o.exit_code, o.stdout, o.stderr) == (first.exit_code, first.stdout, first.stderr)
               for o in outcomes[1:])


def to_json(command: Sequence[str], outcomes: Sequence[Outcome], *, diff: bool) -> dict:
    """The `--json` document; its shape is documented in the command's help (keep it stable)."""
    results = []
    for i, o in enumerate(outcomes):
        item: dict[str, object] = {
            "tool": o.tool, "version": o.version, "key": o.key, "exit_code": o.exit_code,
            "seconds": round(o.seconds, 3), "stdout": text(o.stdout), "stderr": text(o.stderr),
        }
        if diff:
            item["stdout_diff"] = None if i == 0 else unified(outcomes[0], o, "stdout")
            item["stderr_diff"] = None if i == 0 else unified(outcomes[0], o, "stderr")
        results.append(item)
    return {"schema": JSON_SCHEMA, "command": list(command), "agree": agree(outcomes),
            "results": results}


def _wrap(line: str, width: int) -> list[str]:
    line = line.expandtabs(8).replace("\r", "")
    return [line[i:i + width] for i in range(0, len(line), width)] or [""]


def _columns(blocks: Sequence[list[str]], width: int, gap: str = " | ") -> list[str]:
    """Lay blocks of lines next to each other, each wrapped (never cut) to `width`."""
    wrapped = [[part for line in b for part in _wrap(line, width)] for b in blocks]
    height = max(len(w) for w in wrapped)
    rows = []
    for i in range(height):
        cells = [(w[i] if i < len(w) else "").ljust(width) for w in wrapped]
        rows.append(gap.join(cells).rstrip())
    return rows


def render_report(command: Sequence[str], outcomes: Sequence[Outcome], *, diff: bool,
                  width: int | None = None) -> str:
    """The report for people: a side-by-side table, or one section per version.

    Columns when every version fits in at least 24 characters of the terminal and no --diff;
    otherwise sections one below the other (with --diff: the first version in full, the
    others as a unified diff against it).
    """
    width = width or shutil.get_terminal_size((120, 24)).columns
    n = len(outcomes)
    col = (width - 3 * (n - 1)) // n
    lines: list[str] = [f"$ {shlex.join(command)}"]
    codes = {o.exit_code for o in outcomes}
    if not diff and col >= 24:
        blocks = [[o.key, f"exit {o.exit_code}", f"{o.seconds:.2f}s"] for o in outcomes]
        lines += _columns(blocks, col)
        for stream in ("stdout", "stderr"):
            if any(getattr(o, stream) for o in outcomes):
                lines.append(f"--- {stream} ".ljust(n * col + 3 * (n - 1), "-"))
                lines += _columns([text(getattr(o, stream)).splitlines() for o in outcomes], col)
    else:
        first = outcomes[0]
        for i, o in enumerate(outcomes):
            lines.append(f"== {o.key}: exit {o.exit_code}, {o.seconds:.2f}s")
            for stream in ("stdout", "stderr"):
                if i > 0 and diff:
                    d = unified(first, o, stream)
                    lines.append(f"-- {stream}: same as {first.key}" if not d else f"-- {stream}:")
                    if d:
                        lines += d.rstrip("\n").splitlines()
                elif getattr(o, stream):
                    lines.append(f"-- {stream}:")
                    lines += text(getattr(o, stream)).rstrip("\n").splitlines()
    if len(codes) > 1:
        lines.append("exit codes differ: " + ", ".join(f"{o.version}={o.exit_code}" for o in outcomes))
    elif agree(outcomes):
        lines.append(f"all {n} versions agree (exit {outcomes[0].exit_code}, same output)")
    else:
        lines.append(f"same exit code ({outcomes[0].exit_code}), different output")
    return "\n".join(lines) + "\n"

