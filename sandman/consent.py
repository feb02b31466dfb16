"""What an install lets a tool reach, said before it first runs, and asked again when it grows.

A recipe may come from someone else, and its runtime settings decide which host folders the
tool can read or write, which environment variables cross into the container, and whether it
has a network. Those are the user's permissions to give, so `install` shows them the first time
and, when an updated recipe changes them, shows the difference and wants a yes before the new
shims are written. Nothing else about a recipe (its build steps, its entrypoint) needs consent:
those change what runs inside the container, not what the container can reach.
"""

from __future__ import annotations

from collections.abc import Callable

from sandman.config import ToolSettings
from sandman.errors import ConsentError
from sandman.recipes import Mount, Runtime
from sandman.text import safe

# decides about a list of changed permissions for tool@version: True to go on
Approver = Callable[[str, list[str]], bool]


# Every value below comes from a recipe (or config.toml) and goes through `safe`: an env value
# holding "\r\x1b[1A\x1b[J" must not erase the line above it on the user's terminal.


def _mount(m: Mount, settings: ToolSettings | None = None) -> str:
    src = safe(m.source)
    if settings and m.name in settings.mounts:
        src = f"{safe(settings.mounts[m.name])} (config.toml; recipe default {safe(m.source)})"
    opt = ", optional" if m.optional else ""
    mode = "read-write" if m.mode == "rw" else "read-only"
    return f"{safe(m.name)}: {src} -> {safe(m.target)} ({mode}{opt})"


def disclose(rt: Runtime, settings: ToolSettings | None = None) -> list[str]:
    """Everything a shim of this runtime can reach, one line each, for people."""
    lines = ["current directory: mounted read-write at the same path (always)"]
    if rt.path_args == "off":
        lines.append("absolute paths in arguments: not mounted")
    else:
        mode = "read-write" if rt.path_args == "rw" else "read-only"
        lines.append(f"absolute paths in arguments: their folder mounted {mode}")
    lines += [f"mount {_mount(m, settings)}" for m in rt.mounts]
    extra = settings.extra_mounts if settings else ()
    lines += [f"extra mount (config.toml): {safe(e)}" for e in extra]
    env = {**rt.env, **(settings.env if settings else {})}
    if env:
        lines.append("env set: " + ", ".join(f"{safe(k)}={safe(v)}" for k, v in env.items()))
    basics = "USER, LOGNAME, TERM, COLUMNS, LINES, TZ, LANG and LC_*"
    passed = ", ".join(safe(k) for k in rt.pass_env)
    lines.append(f"env from your shell: {passed}, plus {basics}" if rt.pass_env
                 else f"env from your shell: only {basics}")
    for name, mode in rt.path_env.items():
        lines.append(f"env path ${safe(name)}: passed, and its path mounted "
                     f"{'read-write' if mode == 'rw' else 'read-only'}")
    lines.append(f"network: {'yes (bridge)' if rt.network else 'none'}")
    lines.append("devices: none; capabilities: all dropped; no new privileges")
    return lines


def changes(old: Runtime, new: Runtime) -> list[str]:
    """The permission differences from old to new, one line each ('+' granted, '-' taken back)."""
    out: list[str] = []
    old_m = {m.name: m for m in old.mounts}
    new_m = {m.name: m for m in new.mounts}
    for name in sorted(old_m.keys() | new_m.keys()):
        a, b = old_m.get(name), new_m.get(name)
        if a == b:
            continue
        if a is not None:
            out.append(f"- mount {_mount(a)}")
        if b is not None:
            out.append(f"+ mount {_mount(b)}")
    for k in sorted(old.env.keys() | new.env.keys()):
        if old.env.get(k) != new.env.get(k):
            if k in old.env:
                out.append(f"- env set {safe(k)}={safe(old.env[k])}")
            if k in new.env:
                out.append(f"+ env set {safe(k)}={safe(new.env[k])}")
    for k in sorted(set(old.pass_env) ^ set(new.pass_env)):
        out.append(f"{'+' if k in new.pass_env else '-'} env passed from your shell: {safe(k)}")
    for k in sorted(old.path_env.keys() | new.path_env.keys()):
        if old.path_env.get(k) != new.path_env.get(k):
            if k in old.path_env:
                out.append(f"- env path ${safe(k)} ({safe(old.path_env[k])})")
            if k in new.path_env:
                out.append(f"+ env path ${safe(k)} ({safe(new.path_env[k])})")
    if old.path_args != new.path_args:
        out.append(f"- absolute paths in arguments: {safe(old.path_args)}")
        out.append(f"+ absolute paths in arguments: {safe(new.path_args)}")
    if old.network != new.network:
        out.append(f"{'+' if new.network else '-'} network")
    return out


def check(key: str, old: Runtime | None, new: Runtime, approve: Approver | None) -> list[str]:
    """Raise ConsentError unless the permission changes (if any) are approved; return them."""
    if old is None:
        return []
    diff = changes(old, new)
    if diff and (approve is None or not approve(key, diff)):
        raise ConsentError(
            f"{key}: the updated recipe changes what the tool may access; nothing was changed. "
            "Review the difference below, then rerun with --yes to accept it",
            detail="\n".join("  " + d for d in diff))
    return diff
