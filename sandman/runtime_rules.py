"""The shim runtime's rules, asked by sandman's own commands instead of kept twice (issue 20).

A rule that runs on the hot path (a shim call: the mount refusals, the pin grammar, the warm
daemon key) has its one copy in the bash of shims/, where a shim runs it with builtins. When
sandman needs the same answer (`sandman run --mount`, `sandman which`, `warm list`), it does
not keep a Python twin that could drift from it: it cuts the rule out of its file and runs it in
bash, a fork that costs milliseconds on a command, never on a shim call.

A rule sits in its file between two comment lines, `# -- NAME ...` and `# -- end of NAME --`, so
the shim's own text is the same with or without this module; tests/unit/test_one_copy.py fails
when a second copy of one appears in sandman/ or shims/.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

# what bash's matching ([[:space:]], globs, regexes) depends on besides the values given
_LOCALE = ("LANG", "LC_ALL", "LC_CTYPE", "LC_COLLATE")


def _end(name: str) -> str:
    return f"# -- end of {name} --"


def block(text: str, name: str) -> str:
    """The rule `name` of a runtime file's text, from its first marker to its end marker."""
    m = re.search(rf"^# -- {re.escape(name)}\b", text, re.MULTILINE)
    if m is None:
        raise ValueError(f"no rule {name!r} in the runtime's text")
    return text[m.start():text.index(_end(name), m.start())]


def upto(text: str, name: str) -> str:
    """A script's text from its start to the end marker of `name`: it runs as far as that."""
    return text[:text.index(_end(name))]


def assign(name: str, value: str | Sequence[str]) -> str:
    """A bash assignment of a value or an array, quoted: `name=value` or `name=(a b)`."""
    if isinstance(value, str):
        return f"{name}={shlex.quote(value)}\n"
    return f"{name}=(" + " ".join(shlex.quote(v) for v in value) + ")\n"


def _bash() -> str:
    # the shims' own (#!/bin/bash), so the rule runs in the bash it runs in on a call
    return "/bin/bash" if os.access("/bin/bash", os.X_OK) else (shutil.which("bash") or "bash")


def run(script: str, args: Sequence[str] = (), *, env: Mapping[str, str] | None = None,
        stdin: bytes = b"", cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run script in bash with only the locale and env in its environment; bytes out.

    Nothing else of sandman's environment goes in (BASH_ENV, functions exported by the user):
    the rule sees the values it is given, as a shim sees its own.
    """
    e = {k: os.environ[k] for k in _LOCALE if k in os.environ}
    e.update(env or {})
    return subprocess.run([_bash(), "-c", script, "sandman-rule", *args], input=stdin,
                          capture_output=True, env=e, cwd=cwd, check=False)


def text_of(data: bytes) -> str:
    """A rule's output as text: paths come back as they were given (surrogateescape)."""
    return os.fsdecode(data)
