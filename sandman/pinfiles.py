"""Pins that asdf's `.tool-versions` and mise's `mise.toml` already hold (issue 21 item 9).

A project that pins its tools with asdf or mise pins sandman's tools too: a line for a tool
sandman manages chooses its version. Walking up from the current directory, each folder is
asked in order `.sandman.toml`, `.tool-versions`, `mise.toml`, `.mise.toml`: the first that
names the tool decides, so `.sandman.toml` wins where both speak, and a nearer folder wins over
a farther one (as with asdf and mise themselves).

Only the lines of the tool asked about are read closely: the rest of the file is asdf's or
mise's business (`nodejs ref:v20`, `"ubi:x" = "latest"`). The unversioned shim
(shims/default.bash, sm_tv and sm_mise) reads these files with bash builtins, rule for rule and
message for message the same as here; a line of the tool it cannot read stops both with
`FILE:LINE: ...` (StateError). A version of `system` (asdf's and mise's word for the host's own
tool) chooses nothing: the walk goes on.
"""

from __future__ import annotations

import re
from pathlib import Path

from sandman.errors import StateError

TOOL_VERSIONS = ".tool-versions"
MISE_FILES = ("mise.toml", ".mise.toml")
SPACE = " \t\r\v\f"
SYSTEM = "system"
_TV_RE = re.compile(r"^[ \t\r\v\f]*([^ \t\r\v\f]+)(?:[ \t\r\v\f]+([^ \t\r\v\f]+))?")
_KEY_RE = re.compile(r"""^(?:([A-Za-z0-9_-]+)|"([A-Za-z0-9._-]+)"|'([A-Za-z0-9._-]+)')"""
                     r"""[ \t\r\v\f]*=[ \t\r\v\f]*(.*)\Z""")
# the shim's sm_mise_vals, in order: "v", 'v', ["v", ...], ['v', ...], { version = "v", ... }
_VALUE_RES = tuple(re.compile(r) for r in (
    r'^"([^"]*)"', r"^'([^']*)'", r'^\[[ \t\r\v\f]*"([^"]*)"', r"^\[[ \t\r\v\f]*'([^']*)'",
    r'^\{(.*[ \t\r\v\f,])?version[ \t\r\v\f]*=[ \t\r\v\f]*"([^"]*)"'))


class _Bad(ValueError):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line, self.message = line, message


def _lines(text: str) -> list[str]:
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def _check_version(tool: str, version: str, n: int) -> None:
    if not version or not version[0].isascii() or not version[0].isalnum() or \
            re.search(r"[^A-Za-z0-9._+-]", version):
        raise _Bad(n, f"{tool}: not a version (letters, digits and . _ + - only)")


def tool_versions_pin(text: str, tool: str) -> str | None:
    """tool's version in a `.tool-versions` (`tool version [fallbacks...]` lines, `#` comments);
    None when the file does not name it (or says `system`)."""
    found: str | None = None
    seen = False
    for n, raw in enumerate(_lines(text), 1):
        m = _TV_RE.match(raw.split("#", 1)[0])
        if not m or m.group(1) != tool:
            continue
        if seen:
            raise _Bad(n, f"{tool} is pinned twice")
        seen = True
        version = m.group(2) or ""
        if not version:
            raise _Bad(n, f"{tool}: no version (write: {tool} VERSION)")
        _check_version(tool, version, n)
        found = version
    return None if found == SYSTEM else found


def mise_pin(text: str, tool: str) -> str | None:
    """tool's version in a mise.toml's [tools]: `tool = "v"`, `tool = ["v", ...]` (the first) or
    `tool = { version = "v", ... }`; None when [tools] does not name it (or says `system`)."""
    section = ""
    found: str | None = None
    seen = False
    for n, raw in enumerate(_lines(text), 1):
        line = raw.strip(SPACE)
        if line.startswith("["):
            head = "" if line.startswith("[[") else "".join(
                c for c in line[1:].split("]", 1)[0] if c not in SPACE + "\"'")
            section = "tools" if head == "tools" else "other"
            continue
        if section != "tools":
            continue
        m = _KEY_RE.match(line)
        if not m or (m.group(1) or m.group(2) or m.group(3)) != tool:
            continue
        if seen:
            raise _Bad(n, f"{tool} is pinned twice")
        seen = True
        value = m.group(4)
        got = next((m.groups()[-1] for m in map(lambda r: r.match(value), _VALUE_RES) if m), None)
        if got is None:
            raise _Bad(n, f'write the pin as {tool} = "version"')
        _check_version(tool, got, n)
        found = got
    return None if found == SYSTEM else found


def read_pin(file: Path, tool: str) -> str | None:
    """tool's version in an asdf or mise file (by its name); StateError `FILE:LINE: ...`."""
    try:
        text = file.read_bytes().decode("utf-8", "replace")
    except OSError as e:
        raise StateError(f"{file}: cannot read: {e.strerror}") from e
    try:
        return tool_versions_pin(text, tool) if file.name == TOOL_VERSIONS else mise_pin(text, tool)
    except _Bad as e:
        raise StateError(f"{file}:{e.line}: {e.message}") from e


def set_tool_versions(file: Path, tool: str, version: str) -> bytes:
    """The content of `.tool-versions` with tool's line set to `tool version` (added at the end
    when missing); other lines as they are."""
    try:
        old = file.read_bytes().decode("utf-8") if file.exists() else ""
    except OSError as e:
        raise StateError(f"{file}: cannot read: {e.strerror}") from e
    try:
        tool_versions_pin(old, tool)  # a broken line of the tool is left for you to fix
    except _Bad as e:
        raise StateError(f"{file}:{e.line}: {e.message}") from e
    lines, done = _lines(old), False
    for i, raw in enumerate(lines):
        m = _TV_RE.match(raw.split("#", 1)[0])
        if m and m.group(1) == tool:
            lines[i] = f"{tool} {version}"
            done = True
    if not done:
        lines.append(f"{tool} {version}")
    return ("\n".join(lines) + "\n").encode()
