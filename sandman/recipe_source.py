"""A recipe folder's text, read safely, and the line of a key in it.

recipe.toml and a Dockerfile are the only files of a recipe folder sandman reads into memory;
both may be anything a recipe's author made them (a device, a FIFO, a huge file), so they are
read through read_regular alone, bounded. tomllib reports no line for a valid file, so the
line of a key that failed a later check is found here, from the text, only when an error needs
it: a valid recipe never pays for it.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from pathlib import Path

from sandman.text import safe

# What sandman reads into memory from a recipe folder; a build input larger than this is
# streamed (files, kits), never read whole.
MAX_RECIPE_BYTES = 1 << 20
MAX_DOCKERFILE_BYTES = 1 << 20


class NotRegularError(Exception):
    """A file sandman was about to read is not a regular file, or is too large (the reason)."""


def read_regular(path: Path, limit: int) -> bytes:
    """The bytes of a regular file of at most `limit` bytes (symlinks followed).

    A recipe may point at a device (/dev/zero never ends), a FIFO (opening it blocks) or a
    huge file: each is refused before anything is read, so memory and time stay bounded.
    """
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise NotRegularError("is not a regular file")
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)  # what was opened, in case the path changed since the stat
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularError("is not a regular file")
        if st.st_size > limit:
            raise NotRegularError(f"is larger than {limit} bytes")
        chunks, size = [], 0
        while size <= limit:
            block = os.read(fd, min(1 << 16, limit + 1 - size))
            if not block:
                break
            chunks.append(block)
            size += len(block)
        if size > limit:
            raise NotRegularError(f"is larger than {limit} bytes")
        return b"".join(chunks)
    finally:
        os.close(fd)


def locate(path: Path, keypath: tuple[str | int, ...]) -> str:
    """`file:line` of a key in a recipe (just `file` when the line cannot be found)."""
    try:
        text = read_regular(path, MAX_RECIPE_BYTES).decode("utf-8")
    except (OSError, NotRegularError, UnicodeDecodeError):
        return safe(path)
    line = LineLocator(text).find(keypath)
    return f"{safe(path)}:{line}" if line else safe(path)


def dotted(keypath: tuple[str | int, ...]) -> str:
    """A key path as one TOML key (`versions."1.0".mounts[0].name`), the way errors name it."""
    out = ""
    for part in keypath:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            seg = part if re.fullmatch(r"[A-Za-z0-9_-]+", part) else f'"{part}"'
            out += ("." if out else "") + seg
    return out


class LineLocator:
    """Finds the line of a key path in TOML source (tomllib reports none for valid files).

    It understands the forms recipes use: [table] and [[array]] headers with dotted and quoted
    parts, `key = ...` lines, and inline tables on one line. When a key is not found it falls back
    to the line of the enclosing table, which still points the user to the right place.
    """

    HEADER = re.compile(r"^\s*(\[\[?)\s*(.+?)\s*\]\]?\s*(#.*)?$")
    KEY = re.compile(r"""^\s*("(?:[^"\\]|\\.)*"|'[^']*'|[A-Za-z0-9_-]+)\s*(?:\.|=)""")

    def __init__(self, text: str) -> None:
        # (line number, table path, is array header) and key lines per table occurrence
        self.sections: list[tuple[int, tuple[str, ...], bool, dict[str, int]]] = []
        current: dict[str, int] = {}
        self.sections.append((0, (), False, current))
        for n, raw in enumerate(text.splitlines(), start=1):
            m = self.HEADER.match(raw)
            if m and not raw.lstrip().startswith("#"):
                current = {}
                self.sections.append((n, split_key(m.group(2)), m.group(1) == "[[", current))
                continue
            k = self.KEY.match(raw)
            if k:
                current.setdefault(split_key(k.group(1))[0], n)

    def find(self, keypath: tuple[str | int, ...]) -> int | None:
        parts = list(keypath)
        best: int | None = None
        # Try the longest table prefix that is a header, then look for the next key in it.
        for cut in range(len(parts), -1, -1):
            table, rest = parts[:cut], parts[cut:]
            index = None
            if table and isinstance(table[-1], int):
                index, table = table[-1], table[:-1]
            if any(isinstance(p, int) for p in table):
                continue
            matches = [s for s in self.sections if s[1] == tuple(table)]
            if not matches:
                continue
            if index is not None:
                if index >= len(matches):
                    continue
                matches = [matches[index]]
            line, _, _, keys = matches[0]
            if rest and isinstance(rest[0], str) and rest[0] in keys:
                return keys[rest[0]]
            if best is None and (line or not table):
                best = line or None
            if not rest:
                return line or None
            # The key may be an inline table/array inside this section: `env = { ... }`.
            for r in rest:
                if isinstance(r, str) and r in keys:
                    return keys[r]
            if line:
                return line
        return best


def split_key(key: str) -> tuple[str, ...]:
    """The parts of a dotted TOML key (`a."b.c".d` is a, b.c, d), quotes and escapes undone."""
    parts: list[str] = []
    for m in re.finditer(r"""\s*("(?:[^"\\]|\\.)*"|'[^']*'|[^.\s]+)\s*(?:\.|$)""", key):
        p = m.group(1)
        if p[:1] == '"':  # a basic string: its escapes (\\n, \\u...) mean what TOML says
            try:
                p = tomllib.loads(f"k = {p}")["k"]
            except tomllib.TOMLDecodeError:
                p = p[1:-1]
        elif p[:1] == "'":
            p = p[1:-1]
        parts.append(p)
    return tuple(parts)
