"""Aliases of installed versions, for the plain shim (issue 21.1).

A recipe version may have other names (`aliases = ["5.3.28"]`); `install bdb@5.3.28` installs
5.3. A pin or `SANDMAN_<TOOL>_VERSION` naming an alias must run that installed version too, and
the plain shim (shims/default.bash) decides with bash builtins only: so each tool's installed
aliases are kept in one small file, `<data>/aliases/<tool>`, one `ALIAS VERSION` line each,
rewritten from the install records whenever they change (install, reshim, uninstall).
"""

from __future__ import annotations

from pathlib import Path

from sandman import installs, state
from sandman.errors import StateError
from sandman.paths import Paths
from sandman.recipes import VERSION_RE


def alias_file(paths: Paths, tool: str) -> Path:
    """`ALIAS VERSION` lines of tool's installed versions: how the plain shim (bash builtins
    only) turns a pinned alias into the installed version, as `install` does (issue 21.1)."""
    return paths.data_dir / "aliases" / tool


def installed_aliases(paths: Paths, tool: str) -> dict[str, str]:
    """alias -> installed version, from tool's install records (a version's own name wins)."""
    out: dict[str, str] = {}
    folder = paths.installs_dir
    recs = []
    for f in sorted(folder.glob(f"{tool}@*.json")) if folder.is_dir() else ():
        try:
            recs.append(installs.read_record(f))
        except (StateError, OSError):
            continue  # an unreadable record: `list` reports it
    names = {r.version for r in recs if r.tool == tool}
    for r in recs:
        if r.tool != tool:
            continue
        for a in (r.runtime or {}).get("aliases", ()) or ():
            if isinstance(a, str) and a not in names and VERSION_RE.match(a):
                out.setdefault(a, r.version)
    return out


def write_alias_file(paths: Paths, tool: str) -> None:
    """Rewrite tool's alias file from its install records (after install, reshim, uninstall)."""
    found = installed_aliases(paths, tool)
    f = alias_file(paths, tool)
    if not found:
        f.unlink(missing_ok=True)
        return
    data = "".join(f"{a} {v}\n" for a, v in sorted(found.items())).encode()
    # shared like the shim runtime: other users may run this home's shims
    state.write_if_changed(f, data, 0o644, dir_mode=0o755)
