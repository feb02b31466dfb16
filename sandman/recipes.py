"""The recipe model: what a recipe says, as frozen values.

A Recipe is built only by recipe_check.load_recipe, after every key was checked, so the rest of
sandman reads it without checking again. The patterns and modes here are the grammar of a
recipe's names and values: the validator applies them, and a module that takes a name from
elsewhere (a pin, an alias, a bundle) matches it against the same pattern. Nothing here reads
a file or imports another sandman module.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

SCHEMA = 1
# Every name pattern ends in \Z, not $: `$` also matches before a final newline, so "ls\n"
# would pass as a command name (and end up in a shim's file name and a consent line).
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*\Z")
VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*\Z")
MOUNT_NAME_RE = re.compile(r"^[a-z0-9_-]+\Z")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
COMMAND_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*\Z")
SHA256_RE = re.compile(r"^[0-9a-f]{64}\Z")
PACKAGE_RE = re.compile(r"^[a-z0-9][a-z0-9+.:=~-]*\Z")
SOURCE_FILE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+~-]*\Z")
SOURCE_SCHEMES = ("http", "https")  # a recipe's source: downloaded, or dropped into the cache
MODES = ("ro", "rw")
PATH_ARG_MODES = ("ro", "rw", "off")
NETWORK_MODES = ("none", "bridge", "host")
# A device as docker takes it: HOST[:CONTAINER][:PERMS], both paths under /dev, PERMS of r, w, m.
DEVICE_RE = re.compile(r"^/dev/[A-Za-z0-9._/+-]+(:/dev/[A-Za-z0-9._/+-]+)?(:[rwm]{1,3})?\Z")
# The Linux capabilities (capabilities(7)); a recipe names them without the CAP_ prefix.
CAPABILITIES = frozenset({
    "AUDIT_CONTROL", "AUDIT_READ", "AUDIT_WRITE", "BLOCK_SUSPEND", "BPF", "CHECKPOINT_RESTORE",
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "IPC_LOCK", "IPC_OWNER",
    "KILL", "LEASE", "LINUX_IMMUTABLE", "MAC_ADMIN", "MAC_OVERRIDE", "MKNOD", "NET_ADMIN",
    "NET_BIND_SERVICE", "NET_BROADCAST", "NET_RAW", "PERFMON", "SETFCAP", "SETGID", "SETPCAP",
    "SETUID", "SYSLOG", "SYS_ADMIN", "SYS_BOOT", "SYS_CHROOT", "SYS_MODULE", "SYS_NICE",
    "SYS_PACCT", "SYS_PTRACE", "SYS_RAWIO", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG",
    "WAKE_ALARM"
})

# what a shim may run in the image: a command name, or an absolute path
RUN_RE = re.compile(r"^(/[A-Za-z0-9._+-]+)*/?[A-Za-z0-9][A-Za-z0-9._+-]*\Z")


@dataclass(frozen=True)
class Mount:
    name: str
    source: str
    target: str
    mode: str = "ro"
    optional: bool = False


@dataclass(frozen=True)
class Kit:
    file: str
    sha256: str


@dataclass(frozen=True)
class Source:
    """A file downloaded on the host (never inside the build), verified by its sha256."""

    url: str
    sha256: str
    file: str  # its name in the build context: sources/<file>


@dataclass(frozen=True)
class VersionCheck:
    """A command run in a new image whose output must match `expect` (a regex, re.MULTILINE,
    searched anywhere in stdout+stderr) with the placeholders already replaced."""

    command: tuple[str, ...]
    expect: str


@dataclass(frozen=True)
class Runtime:
    """How a version runs: everything a shim needs, fixed at install time."""

    entrypoint: tuple[str, ...] = ()
    commands: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    pass_env: tuple[str, ...] = ()
    path_env: dict[str, str] = field(default_factory=dict)
    path_args: str = "ro"
    network: str = "none"  # none | bridge | host
    smoke: tuple[str, ...] = ()
    mounts: tuple[Mount, ...] = ()
    # commands whose name in the image differs from the shim's: shim name -> name in the image
    command_run: dict[str, str] = field(default_factory=dict)
    home_files: tuple[str, ...] = ()  # relative to HOME, mounted read-only when they exist
    devices: tuple[str, ...] = ()  # HOST[:CONTAINER][:PERMS], as docker's --device
    cap_add: tuple[str, ...] = ()  # capability names without CAP_
    aliases: tuple[str, ...] = ()  # other names of this version (tool@alias resolves to it)
    alias_shims: bool = False  # also write a shim per alias (jq-1.7.1 next to jq-1.7)
    platform: str | None = None  # linux/amd64...: images of another CPU, run through QEMU

    def __post_init__(self) -> None:
        """Install records written before these keys existed (or by JSON) come back equal:
        lists become tuples, and the old boolean network means none or bridge."""
        for name in ("entrypoint", "commands", "pass_env", "smoke", "home_files", "devices",
                     "cap_add", "aliases"):
            value = getattr(self, name)
            if not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))
        if isinstance(self.network, bool):
            object.__setattr__(self, "network", "bridge" if self.network else "none")

    def run_name(self, command: str) -> str:
        """What the shim `command` runs in the image."""
        return self.command_run.get(command, command)


@dataclass(frozen=True)
class BuildSpec:
    base: str | None = None
    packages: tuple[str, ...] = ()
    run: tuple[str, ...] = ()
    dockerfile: str | None = None
    build_args: dict[str, str] = field(default_factory=dict)
    files: tuple[str, ...] = ()
    kits: tuple[Kit, ...] = ()
    sources: tuple[Source, ...] = ()


@dataclass(frozen=True)
class Version:
    version: str
    build: BuildSpec
    runtime: Runtime
    check: VersionCheck | None = None  # version_check: proves the image is this version
    full_version: str | None = None  # what the version name stands for, e.g. "1.7.1" for "1.7"


@dataclass(frozen=True)
class Recipe:
    tool: str
    description: str
    homepage: str | None
    path: Path  # the recipe.toml file
    versions: tuple[Version, ...]

    @property
    def folder(self) -> Path:
        return self.path.parent

    def version(self, name: str) -> Version | None:
        """The version named `name`, or the one that has it among its aliases."""
        exact = next((v for v in self.versions if v.version == name), None)
        return exact or next((v for v in self.versions if name in v.runtime.aliases), None)

    @property
    def version_names(self) -> list[str]:
        return [v.version for v in self.versions]


def url_file_name(url: str) -> str:
    """The last segment of a URL's path, percent-decoded: the file name a download gets (a
    Source's `file` when the recipe names none), in the validator and in the source cache."""
    return urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])


def shim_plan(tool: str, version: str, runtime: Runtime) -> dict[str, str | None]:
    """Shim name -> the command it stands for (None: the tool's own shim, `tool-version`).

    A version's aliases get shims too when the recipe asks (`alias_shims = true`): `jq-1.7.1`
    next to `jq-1.7`, the same tool in the same image.
    """
    plan: dict[str, str | None] = {}
    for v in (version, *(runtime.aliases if runtime.alias_shims else ())):
        plan.setdefault(f"{tool}-{v}", None)
        for cmd in runtime.commands:
            plan.setdefault(f"{cmd}-{v}", cmd)
    return plan


def shim_names(tool: str, version: str, runtime: Runtime) -> list[str]:
    return list(shim_plan(tool, version, runtime))
