"""Text from recipes, repos and bundles, made safe to show on a terminal or write to a log.

A recipe is data from someone else: its description, env values, commands and paths may hold
escape sequences that move the cursor or erase lines (a consent prompt could be rewritten
under the user's eyes). Everything such text reaches a terminal or a log through `safe`.
"""

from __future__ import annotations

import re

# C0 controls (tab and newline included: recipe values are one-liners), DEL, C1 controls, and
# the Unicode line/paragraph separators and bidi overrides that reorder what is shown.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escape(m: re.Match[str]) -> str:
    c = m.group(0)
    named = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\x1b": "\\e"}
    if c in named:
        return named[c]
    code = ord(c)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe(value: object) -> str:
    """`value` as text with every control character shown as an escape (`\\e[1A`, `\\r`)."""
    return _CONTROL.sub(_escape, str(value))


def has_control(value: str) -> bool:
    return _CONTROL.search(value) is not None


def safe_lines(value: object) -> str:
    """Like `safe`, but keeps line breaks: for messages that are several lines on purpose.

    Values from recipes reach such messages through `safe` first (so a newline inside a value
    shows as `\\n`); this is the last guard before a terminal or a log.
    """
    return "\n".join(safe(line) for line in str(value).split("\n"))


def quoted(value: object) -> str:
    """`value` in single quotes, escaped: how an error message quotes text from a recipe."""
    return f"'{safe(value)}'"
