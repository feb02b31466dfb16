"""The pin files and their grammar, read by the one reader: the unversioned shim's bash.

A project pins a tool in `.sandman.toml` (`tool = "version"` lines under `[tools]`), and asdf's
`.tool-versions` and mise's `mise.toml` pin sandman's tools too (issue 21 item 9): walking up
from the current directory, each folder is asked in order `.sandman.toml`, `.tool-versions`,
`mise.toml`, `.mise.toml`; the first that names the tool decides, so `.sandman.toml` wins where
both speak, and a nearer folder wins over a farther one (as with asdf and mise themselves).

The unversioned shim (shims/default.bash) reads these files on every call, with bash builtins;
its pin grammar block is the one copy of the rules (issue 20). sandman's own reads and checks
run that block (sandman/runtime_rules.py), so `sandman which`, `use` and a project's install
stop on exactly the lines the shim stops on, with its words: `FILE:LINE: ...` (StateError). Only
the lines of the tool asked about are read closely in asdf's and mise's files: the rest is their
business (`nodejs ref:v20`, `"ubi:x" = "latest"`). A version of `system` (asdf's and mise's word
for the host's own tool) chooses nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from sandman import runtime_rules
from sandman.errors import StateError
from sandman.paths import shim_templates_dir

PROJECT_FILE = ".sandman.toml"
TOOL_VERSIONS = ".tool-versions"
# the reader of each kind of file: the shim's function for it
SANDMAN, ASDF, MISE = "sm_pin", "sm_tv", "sm_mise"
_STDIN = "/dev/stdin"


class PinSyntaxError(ValueError):
    """A line of a pin file that the shim cannot read: `line` is 1-based."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"{line}: {message}")
        self.line = line
        self.message = message


@dataclass(frozen=True)
class Reading:
    """What the shim's reader found in one file's content."""

    version: str | None  # the tool's version (None: not named, or `system`)
    line: int | None  # the line of the tool's pin
    tools_line: int | None = None  # the line of `[tools]` (a .sandman.toml)
    pins: dict[str, str] = field(default_factory=dict)  # every pin of a .sandman.toml, in order


def lines_of(text: str) -> list[str]:
    """The lines as the shim numbers them: split at newlines only."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def read(reader: str, raw: bytes, tool: str = "") -> Reading:
    """Read content with the shim's own reader for its kind of file; PinSyntaxError for a line
    the shim stops on. tool: the tool asked about ('' for none: a .sandman.toml's pins only)."""
    text = (shim_templates_dir() / "default.bash").read_text(encoding="utf-8")
    script = (runtime_rules.assign("SM_TOOL", tool)
              + runtime_rules.assign("SM_EXIT_STATE", str(StateError.exit_code))
              + runtime_rules.block(text, "the pin grammar")
              + f'sm_ver= sm_pins= sm_tools_at=\n{reader} "$1"\n'
              + 'printf "%s\\0" "$sm_ver" "$sm_at" "$sm_tools_at" "$sm_pins"\n')
    p = runtime_rules.run(script, [_STDIN], stdin=raw)
    err = runtime_rules.text_of(p.stderr)
    if p.returncode == StateError.exit_code:
        m = re.fullmatch(rf"sandman: {_STDIN}:(\d+): (.*)\n", err, re.DOTALL)
        if m:
            raise PinSyntaxError(int(m.group(1)), m.group(2))
    if p.returncode != 0 or err:
        raise StateError(f"the shim's pin reader failed: {err.strip() or f'exit {p.returncode}'}")
    version, at, tools_at, pins = runtime_rules.text_of(p.stdout).split("\0")[:4]
    return Reading(version or None, int(at) if at else None, int(tools_at) if tools_at else None,
                   dict(pin.split("=", 1) for pin in pins.split()))


def _file_error(file: Path, e: PinSyntaxError) -> StateError:
    return StateError(f"{file}:{e.line}: {e.message}")


def read_pin(file: Path, tool: str) -> str | None:
    """tool's version in an asdf or mise file (by its name); StateError `FILE:LINE: ...`."""
    try:
        raw = file.read_bytes()
    except OSError as e:
        raise StateError(f"{file}: cannot read: {e.strerror}") from e
    try:
        return read(ASDF if file.name == TOOL_VERSIONS else MISE, raw, tool).version
    except PinSyntaxError as e:
        raise _file_error(file, e) from e


def set_tool_versions(file: Path, tool: str, version: str) -> bytes:
    """The content of `.tool-versions` with tool's line set to `tool version` (added at the end
    when missing); other lines as they are."""
    try:
        old = file.read_bytes().decode("utf-8") if file.exists() else ""
    except OSError as e:
        raise StateError(f"{file}: cannot read: {e.strerror}") from e
    try:
        at = read(ASDF, old.encode(), tool).line  # a broken line of the tool is left for you to fix
    except PinSyntaxError as e:
        raise _file_error(file, e) from e
    lines = lines_of(old)
    if at is None:
        lines.append(f"{tool} {version}")
    else:
        lines[at - 1] = f"{tool} {version}"
    return ("\n".join(lines) + "\n").encode()
