"""Per-user settings from config.toml: where a tool's data lives on this host, and defaults.

The recipe says what a tool needs; the config says where those things are on *this* machine.
Like recipes, the file is validated once at load time and every error names file, line and key.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandman.errors import StateError
from sandman.recipe_check import capability_problem, device_problem, network_value, toml_kind
from sandman.recipe_source import LineLocator, dotted
from sandman.recipes import ENV_NAME_RE, Runtime

TOP_KEYS = {"bin_dir", "kits_dir", "registry", "mirror", "warm_idle_minutes", "tools", "sources_mirror",
            "archive_mirror", "signatures", "engine", "proxy_env"}
TOOL_KEYS = {"mounts", "extra_mounts", "env", "warm", "network", "devices", "cap_add", "proxy_env"}
# Passed to a tool that has a network (never with network "none") unless proxy_env = false.
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY", "ALL_PROXY", "NO_PROXY",
              "http_proxy", "https_proxy", "ftp_proxy", "all_proxy", "no_proxy")


@dataclass(frozen=True)
class ToolSettings:
    mounts: dict[str, str] = field(default_factory=dict)  # mount name -> host path
    extra_mounts: tuple[str, ...] = ()  # HOST:CONTAINER[:ro|rw]
    env: dict[str, str] = field(default_factory=dict)
    warm: bool | None = None
    # this host's answer to the recipe's network, devices and cap_add (None: the recipe's)
    network: str | None = None
    devices: tuple[str, ...] | None = None
    cap_add: tuple[str, ...] | None = None
    proxy_env: bool | None = None  # pass the host's proxy variables (None: config's default, on)

    def apply(self, rt: Runtime) -> Runtime:
        """rt with this host's network, devices and cap_add: what the shim really grants."""
        from dataclasses import replace

        return replace(rt, network=self.network if self.network is not None else rt.network,
                       devices=self.devices if self.devices is not None else rt.devices,
                       cap_add=self.cap_add if self.cap_add is not None else rt.cap_add)


@dataclass(frozen=True)
class Config:
    path: Path | None = None
    bin_dir: Path | None = None
    kits_dir: Path | None = None
    registry: str | None = None
    mirror: str | None = None
    warm_idle_minutes: int = 10
    tools: dict[str, ToolSettings] = field(default_factory=dict)
    sources_mirror: str | None = None  # a folder or URL prefix tried before a source's URL
    archive_mirror: str | None = None  # the Debian mirror for archived suites (stretch and older)
    signatures: str | None = None  # require | warn | off; None: the repo's word, else warn (signing.py)
    engine: str | None = None  # docker | podman | auto (sandman/engine_choice.py); None: auto
    proxy_env: bool = True  # the host's HTTP_PROXY & co. reach tools with a network

    def for_tool(self, tool: str, version: str) -> ToolSettings:
        """Settings for tool@version: `[tools."tool@version"]` wins over `[tools.tool]`."""
        general = self.tools.get(tool, ToolSettings())
        specific = self.tools.get(f"{tool}@{version}", ToolSettings())
        return ToolSettings(
            mounts={**general.mounts, **specific.mounts},
            extra_mounts=general.extra_mounts + specific.extra_mounts,
            env={**general.env, **specific.env},
            warm=specific.warm if specific.warm is not None else general.warm,
            network=specific.network if specific.network is not None else general.network,
            devices=specific.devices if specific.devices is not None else general.devices,
            cap_add=specific.cap_add if specific.cap_add is not None else general.cap_add,
            proxy_env=next(v for v in (specific.proxy_env, general.proxy_env, self.proxy_env)
                           if v is not None),
        )


def load_config(path: Path) -> Config:
    if not path.exists():
        return Config(path=None)
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except OSError as e:
        raise StateError(f"{path}: cannot read config: {e.strerror}") from e
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise StateError(f"{path}: invalid TOML: {e}") from e
    lines = LineLocator(text)

    def fail(kp: tuple, msg: str) -> StateError:
        line = lines.find(kp)
        return StateError(f"{path}{':' + str(line) if line else ''}: {dotted(kp)}: {msg}")

    for key in data:
        if key not in TOP_KEYS:
            raise fail((key,), "unknown key")

    def opt_path(key: str) -> Path | None:
        if key not in data:
            return None
        if not isinstance(data[key], str):
            raise fail((key,), f"expected a path string, got {toml_kind(data[key])}")
        return Path(os.path.expanduser(data[key]))

    def opt_str(key: str) -> str | None:
        if key in data and not isinstance(data[key], str):
            raise fail((key,), f"expected a string, got {toml_kind(data[key])}")
        return data.get(key)

    sources_mirror = opt_str("sources_mirror")
    if sources_mirror is not None:
        from sandman.sources import mirror_problem

        if problem := mirror_problem(sources_mirror):
            raise fail(("sources_mirror",), problem)
    for key in ("mirror", "archive_mirror"):  # Debian mirrors for bootstrap, checked here so the
        value = opt_str(key)                   # error names config.toml, not the bootstrap call
        if value is not None and value.partition("://")[0] not in ("http", "https", "file"):
            raise fail((key,), "expected an http://, https:// or file:// URL")
    if opt_str("signatures") not in (None, "require", "warn", "off"):
        raise fail(("signatures",), "expected \"require\", \"warn\" or \"off\"")
    if opt_str("engine") not in (None, "docker", "podman", "auto"):
        raise fail(("engine",), "expected \"docker\", \"podman\" or \"auto\"")
    proxy_env = data.get("proxy_env", True)
    if not isinstance(proxy_env, bool):
        raise fail(("proxy_env",), "expected true or false")
    idle = data.get("warm_idle_minutes", 10)
    if not isinstance(idle, int) or isinstance(idle, bool) or idle < 1:
        raise fail(("warm_idle_minutes",), "expected a whole number of minutes >= 1")
    tools: dict[str, ToolSettings] = {}
    raw_tools = data.get("tools", {})
    if not isinstance(raw_tools, dict):
        raise fail(("tools",), "expected a table of [tools.<tool>] tables")
    for name, t in raw_tools.items():
        kp = ("tools", name)
        if not isinstance(t, dict):
            raise fail(kp, f"expected a table, got {toml_kind(t)}")
        for key in t:
            if key not in TOOL_KEYS:
                raise fail((*kp, key), "unknown key")
        tools[name] = _tool_settings(t, kp, fail)
    return Config(
        path=path,
        bin_dir=opt_path("bin_dir"),
        kits_dir=opt_path("kits_dir"),
        registry=opt_str("registry"),
        mirror=opt_str("mirror"),
        warm_idle_minutes=idle,
        tools=tools,
        sources_mirror=sources_mirror,
        archive_mirror=opt_str("archive_mirror"),
        signatures=opt_str("signatures"),
        engine=opt_str("engine"),
        proxy_env=proxy_env,
    )


def _tool_settings(t: dict[str, Any], kp: tuple, fail: Any) -> ToolSettings:
    mounts = t.get("mounts", {})
    if not isinstance(mounts, dict) or not all(isinstance(v, str) for v in mounts.values()):
        raise fail((*kp, "mounts"), "expected a table of mount name = \"/host/path\"")
    extra = t.get("extra_mounts", [])
    if not isinstance(extra, list) or not all(isinstance(v, str) for v in extra):
        raise fail((*kp, "extra_mounts"), "expected a list of \"HOST:CONTAINER[:ro]\" strings")
    for spec in extra:
        if not re.fullmatch(r"[^:\n]+:/[^:\n]*(:(ro|rw))?", spec):
            raise fail((*kp, "extra_mounts"), f"'{spec}' is not HOST:CONTAINER[:ro|rw]")
    env = t.get("env", {})
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        raise fail((*kp, "env"), "expected a table of NAME = \"value\"")
    for k in env:
        if not ENV_NAME_RE.match(k):
            raise fail((*kp, "env", k), "not a valid environment variable name")
    warm = t.get("warm")
    if warm is not None and not isinstance(warm, bool):
        raise fail((*kp, "warm"), "expected true or false")
    proxy_env = t.get("proxy_env")
    if proxy_env is not None and not isinstance(proxy_env, bool):
        raise fail((*kp, "proxy_env"), "expected true or false")
    network = None
    if "network" in t:
        network = network_value(t["network"])
        if network is None:
            raise fail((*kp, "network"), "expected \"none\", \"bridge\", \"host\", true or false")
    devices = _names(t, "devices", kp, fail, device_problem)
    caps = _names(t, "cap_add", kp, fail, capability_problem)
    return ToolSettings(
        mounts={k: os.path.expanduser(v) for k, v in mounts.items()},
        extra_mounts=tuple(extra),
        env=dict(env),
        warm=warm,
        network=network,
        devices=devices,
        cap_add=tuple(dict.fromkeys(c.upper().removeprefix("CAP_") for c in caps))
        if caps is not None else None,
        proxy_env=proxy_env,
    )


def _names(t: dict[str, Any], key: str, kp: tuple, fail: Any,
           problem: Any) -> tuple[str, ...] | None:
    """A list of devices or capabilities replacing the recipe's on this host ([] turns them off)."""
    if key not in t:
        return None
    val = t[key]
    if not isinstance(val, list) or not all(isinstance(v, str) for v in val):
        raise fail((*kp, key), f"expected a list of strings, got {toml_kind(val)}")
    for v in val:
        if why := problem(v):
            raise fail((*kp, key), why)
    return tuple(val)
