"""What an install lets a tool reach, said before it first runs, and asked again when it grows.

A recipe may come from someone else, and its runtime settings decide which host folders the
tool can read or write, which environment variables cross into the container, and whether it
has a network, which devices and capabilities it gets, which dotfiles of the home it reads.
Those are the user's permissions to give, so `install` shows them the first time and wants a
yes for anything beyond the default (a network, devices, capabilities, dotfiles, a folder other
than the current directory written to); when an updated recipe grants more, it shows the
difference and wants a yes before the new shims are written. Taking access back needs none.
config.toml's `[tools.X] network / devices / cap_add` count the same way: the install
record keeps what config.toml granted (shims.made_from), and a config that grants more is
refused by the automatic refresh until `sandman install X --yes` accepts it. Nothing else about
a recipe (its build steps, its entrypoint) needs consent: those change what runs inside the
container, not what the container can reach.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

from sandman.config import ToolSettings
from sandman.errors import ConsentError, DeviceError
from sandman.recipe_source import locate
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
    if rt.home_files:
        lines.append("home files (read-only, when they exist): "
                     + ", ".join(f"~/{safe(f)}" for f in rt.home_files))
    eff = settings.apply(rt) if settings else rt
    lines.append("network: " + _network(eff.network)
                 + _from_config(settings and settings.network is not None, _network(rt.network)))
    lines.append("devices: " + (", ".join(safe(d) for d in eff.devices) or "none")
                 + _from_config(settings and settings.devices is not None,
                                ", ".join(safe(d) for d in rt.devices) or "none"))
    caps = ", ".join(safe(c) for c in eff.cap_add)
    lines.append(("capabilities: all dropped except " + caps if caps else "capabilities: all dropped")
                 + _from_config(settings and settings.cap_add is not None,
                                ", ".join(safe(c) for c in rt.cap_add) or "none")
                 + "; no new privileges")
    if rt.platform:  # not a permission, but the user should know the tool runs under QEMU
        lines.append(f"platform: {safe(rt.platform)} (another CPU's image runs under QEMU user "
                     "emulation when this host is not one)")
    return lines


NETWORKS = {"none": "none", "bridge": "yes (bridge: the internet, not the host's 127.0.0.1)",
            "host": "the host's (its 127.0.0.1 and every interface)"}


def _network(mode: str) -> str:
    return NETWORKS.get(mode, safe(mode))


def _from_config(used: object, recipe_says: str) -> str:
    return f" (config.toml; the recipe says {recipe_says})" if used else ""


def granted(rt: Runtime, shim_inputs: dict) -> Runtime:
    """What an install's shims grant: its recorded recipe runtime with what config.toml granted
    then (recorded by shims.made_from; none before that key existed)."""
    try:
        network, devices, caps = json.loads(shim_inputs.get("grants", "[null, null, null]"))
        settings = ToolSettings(network=network, devices=None if devices is None else tuple(devices),
                                cap_add=None if caps is None else tuple(caps))
    except (ValueError, TypeError):
        return rt
    return settings.apply(rt)


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
        out.append(f"- network: {_network(old.network)}")
        out.append(f"+ network: {_network(new.network)}")
    for what, a, b in (("home file ~/", old.home_files, new.home_files),
                       ("device ", old.devices, new.devices),
                       ("capability ", old.cap_add, new.cap_add)):
        out += [f"- {what}{safe(x)}" for x in a if x not in b]
        out += [f"+ {what}{safe(x)}" for x in b if x not in a]
    return out


NETWORK_RANK = {"none": 0, "bridge": 1, "host": 2}  # host reaches all a bridge does, and more
PATH_ARGS_RANK = {"off": 0, "ro": 1, "rw": 2}


def beyond_default(rt: Runtime) -> list[str]:
    """What rt grants beyond the default (no network, no device, no capability, no dotfile,
    nothing writable but the current directory), one '+' line each: a first install asks."""
    out = [f"+ mount {_mount(m)}" for m in rt.mounts if m.mode == "rw"]
    out += [f"+ env path ${safe(k)} (rw)" for k, mode in rt.path_env.items() if mode == "rw"]
    if rt.path_args == "rw":
        out.append("+ absolute paths in arguments: their folder mounted read-write")
    if rt.network != "none":
        out.append(f"+ network: {_network(rt.network)}")
    out += [f"+ home file ~/{safe(x)}" for x in rt.home_files]
    out += [f"+ device {safe(x)}" for x in rt.devices]
    out += [f"+ capability {safe(x)}" for x in rt.cap_add]
    return out


def grows(old: Runtime, new: Runtime) -> bool:
    """Does new let the tool reach anything old did not? Taking access back never needs a yes."""
    old_m = {m.name: m for m in old.mounts}
    for m in new.mounts:
        was = old_m.get(m.name)
        if was is None or (was.source, was.target) != (m.source, m.target) or \
                (m.mode == "rw" and was.mode != "rw"):
            return True
    if any(old.env.get(k) != v for k, v in new.env.items()):
        return True
    if set(new.pass_env) - set(old.pass_env):
        return True
    if any(k not in old.path_env or (v == "rw" and old.path_env[k] != "rw")
           for k, v in new.path_env.items()):
        return True
    if PATH_ARGS_RANK.get(new.path_args, 3) > PATH_ARGS_RANK.get(old.path_args, 3):
        return True
    if NETWORK_RANK.get(new.network, 3) > NETWORK_RANK.get(old.network, 3) or \
            (new.network not in NETWORK_RANK and new.network != old.network):
        return True
    return any(set(b) - set(a) for a, b in ((old.home_files, new.home_files),
                                            (old.devices, new.devices), (old.cap_add, new.cap_add)))


def check(key: str, old: Runtime | None, new: Runtime, approve: Approver | None, *,
          cause: str = "the updated recipe") -> list[str]:
    """Raise ConsentError unless the permission changes (if any) are approved; return them.

    old and new are what the shims grant, config.toml applied (ToolSettings.apply, granted);
    old is None on a first install, whose grants beyond the default need the same yes. A
    change that only takes access back is returned without asking. cause names what asks:
    "the recipe", "the updated recipe", or the config.toml file that changed.
    """
    if old is None:
        diff = beyond_default(new)
        verb, done = "asks for access beyond the default", "nothing was installed"
    else:
        diff = changes(old, new)
        verb, done = "changes what the tool may access", "nothing was changed"
        if not grows(old, new):
            return diff
    if diff and (approve is None or not approve(key, diff)):
        how = ("rerun with --yes to accept it" if cause.startswith("the ")
               else f"run `sandman install {key} --yes` to accept it")
        raise ConsentError(
            f"{key}: {cause} {verb}; {done}. Review the difference below, then {how}",
            detail="\n".join("  " + d for d in diff))
    return diff


def check_devices(recipe_file: Path, version: str, rt: Runtime, settings: ToolSettings,
                  config_file: Path | None) -> None:
    """Raise DeviceError (file:line first) when a device the shims would pass is not a device
    on this host: docker would refuse every run, so the install stops before building."""
    devices = settings.apply(rt).devices
    for dev in devices:
        host = dev.split(":", 1)[0]
        try:
            is_device = stat.S_ISCHR(os.stat(host).st_mode) or stat.S_ISBLK(os.stat(host).st_mode)
        except OSError:
            is_device = False
        if is_device:
            continue
        if settings.devices is not None:
            where = f"{safe(config_file or 'config.toml')}: tools: devices"
        else:
            where = f"{_devices_line(recipe_file, version)}: devices"
        raise DeviceError(f"{where}: {safe(host)} does not exist on this host (or is not a device); "
                          "set [tools.TOOL] devices in config.toml to this host's device")


def _devices_line(recipe_file: Path, version: str) -> str:
    """file:line of the `devices` key that applies to version: its own, else the top-level one."""
    own = locate(recipe_file, ("versions", version, "devices"))
    top = locate(recipe_file, ("devices",))
    try:
        n = int(own.rsplit(":", 1)[1])
        line = recipe_file.read_text(encoding="utf-8").splitlines()[n - 1]
    except (ValueError, IndexError, OSError, UnicodeDecodeError):
        return top
    return own if line.lstrip().startswith("devices") else top
