"""Every failure sandman reports on purpose, and its exit code.

One root type; each subclass carries a user-facing one-line message and the exit code that
scripts can rely on. The CLI maps them in one place (``cli.main``); the shim template uses the
same numbers for the failures it detects itself (see docs/runtime.md for the table).
The codes live in 92-124 so they stay clear of the common tool codes (and of sysexits' 64-78)
and of docker's own 125 (engine failed), 126 (cannot invoke) and 127 (command not found). Exit 1 means a bug:
every failure sandman reports on purpose raises a subclass here, never SandmanError itself
(tests/integration/test_state_errors.py checks the source for it).
"""

from __future__ import annotations

USAGE = 2  # Typer/click's own code for bad options and arguments


class SandmanError(Exception):
    """A failure with a message meant for the user, not a traceback."""

    exit_code = 1

    def __init__(self, message: str, *, detail: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail  # extra lines (a build log tail), shown below the message


class UsageError(SandmanError):
    exit_code = USAGE


class NotFoundError(SandmanError):
    """Unknown tool, version or repo: the message lists what exists."""

    exit_code = 111


class RecipeError(SandmanError):
    """A recipe file that does not parse or validate; the message starts with file:line."""

    exit_code = 112


class KitError(SandmanError):
    """A vendor kit is missing, unreadable or does not match its checksum."""

    exit_code = 113


class BuildError(SandmanError):
    exit_code = 114


class DaemonUnavailableError(SandmanError):
    exit_code = 115


class DaemonPermissionError(SandmanError):
    exit_code = 116


class ImageMissingError(SandmanError):
    exit_code = 117


class MountError(SandmanError):
    """A mount source is missing, refused (/, home, docker socket) or cannot be mapped."""

    exit_code = 118


class ConflictError(SandmanError):
    """sandman would overwrite a file it did not write."""

    exit_code = 119


class UntrustedError(SandmanError):
    exit_code = 120


class RemoteError(SandmanError):
    """A registry or git remote failed."""

    exit_code = 121


class NoSpaceError(SandmanError):
    exit_code = 122


class StateError(SandmanError):
    """Install state or config on disk is unreadable or of an unknown version."""

    exit_code = 123


class LockError(SandmanError):
    """A project's sandman.lock records another image than an install would produce now."""

    exit_code = 110


class ConsentError(SandmanError):
    """An updated recipe asks for more (or other) access, and the user has not agreed yet."""

    exit_code = 124


CHECK_FAILED = 102  # not an error: `doctor` found a problem, `matrix --fail-on-diff` a difference


class EngineError(SandmanError):
    """The daemon refused or failed a request sandman made (its own message follows)."""

    exit_code = 100


class MissingProgramError(SandmanError):
    """A program sandman runs on the host is not installed (mmdebstrap for `bootstrap`)."""

    exit_code = 101


class VersionMismatchError(BuildError):
    """The version an image reports is not the one its recipe names (the new image is not kept)."""

    exit_code = 103


class SourceError(SandmanError):
    """A source tarball cannot be downloaded or does not match its sha256 (nothing was built)."""

    exit_code = 104


class PinError(SandmanError):
    """A pin (`sandman use`, .sandman.toml) that cannot be honoured: its plain shim is missing."""

    exit_code = 105


class MissingCommandError(BuildError):
    """Commands a recipe declares are not in the built image (nothing is kept)."""

    exit_code = 106


class StateWriteError(SandmanError):
    """sandman's own folders cannot be written: permission denied or a read-only file system."""

    exit_code = 107


class UnsafeInputError(RecipeError):
    """A build input (file, Dockerfile, kit) is not a regular file inside the recipe's folder,
    or is larger than sandman reads into memory."""

    exit_code = 108


class IntegrityError(SandmanError):
    """A bundle or image whose content does not match its manifest or fingerprint; nothing was
    imported, no tag was moved."""

    exit_code = 109


class SignatureError(SandmanError):
    """An image or bundle is unsigned, or its signature is not from a key in the repository's
    allowed_signers, under a `require` signature policy (nothing installed)."""

    exit_code = 97


class DeviceError(SandmanError):
    """A device a recipe or config.toml passes to the container does not exist on this host."""

    exit_code = 98


class PlatformError(SandmanError):
    """An image platform this host cannot run: unknown, or no QEMU user emulation (binfmt_misc)
    registered for it."""

    exit_code = 99


class NoEngineError(SandmanError):
    """Neither Docker nor Podman is installed (engine "auto" found nothing)."""

    exit_code = 92


class EngineNotInstalledError(SandmanError):
    """The engine named by --engine, SANDMAN_ENGINE or config.toml is not installed (or unknown)."""

    exit_code = 93


class SubidError(SandmanError):
    """Rootless Podman without subordinate uid/gid ranges for the user: nothing can run."""

    exit_code = 94


class StaleSocketError(SandmanError):
    """The Podman API socket is a file nothing listens on, and not one sandman can replace."""

    exit_code = 95


class EngineSetupError(SandmanError):
    """The engine fails for a reason of this host's set-up that sandman recognises (the fix follows)."""

    exit_code = 96


# `sandman exit-codes` prints this; docs/runtime.md holds the same table, row for row
# (tests/unit/test_cli_docs.py compares them).
EXIT_CODES: dict[int, str] = {
    0: "success; for a shim or `sandman run`, the tool's own status, 0-255, is passed on",
    1: "unexpected internal error, a bug (run with `--debug` for the traceback)",
    USAGE: "bad command-line usage: unknown option, bad `TOOL@VERSION` syntax, a shim without a command",
    NoEngineError.exit_code: "no container engine: neither Docker nor Podman is installed",
    EngineNotInstalledError.exit_code: "the engine named by `--engine`, `SANDMAN_ENGINE` or config.toml's "
                                       "`engine` is not installed, or not docker/podman/auto",
    SubidError.exit_code: "rootless Podman: no subordinate uid/gid ranges for the user in /etc/subuid, "
                          "/etc/subgid (nothing was started)",
    StaleSocketError.exit_code: "the Podman API socket is stale: a file nothing listens on (remove it)",
    EngineSetupError.exit_code: "the engine fails for a host set-up reason sandman recognises (OCI "
                                "runtime, ulimits, cgroups); the message gives the fix",
    SignatureError.exit_code: "an image or bundle is unsigned or not signed by a key in `allowed_signers`: "
                              "refused by the `require` policy (nothing installed) or by `sandman verify`",
    DeviceError.exit_code: "a device the recipe or config.toml passes in (`devices`) does not exist on "
                           "this host",
    PlatformError.exit_code: "the recipe's `platform` is unknown, or this host cannot emulate it (no "
                             "QEMU binfmt_misc entry)",
    EngineError.exit_code: "the Docker daemon refused or failed a request (its message follows)",
    MissingProgramError.exit_code: "a program sandman runs on the host is not installed (`mmdebstrap`)",
    CHECK_FAILED: "a check failed: `doctor` found a problem, or `matrix --fail-on-diff` saw the "
                  "versions differ",
    VersionMismatchError.exit_code: "the new image reports another version than its recipe's "
                                    "`version_check` expects (nothing installed, a new image not kept)",
    SourceError.exit_code: "a source (`sources`) cannot be downloaded or has the wrong sha256; "
                           "nothing was built",
    PinError.exit_code: "a pin cannot be honoured: the plain command's shim is missing",
    MissingCommandError.exit_code: "commands the recipe declares are missing from the built image "
                                   "(nothing is kept)",
    StateWriteError.exit_code: "sandman's folders cannot be written (permission or read-only file "
                               "system); the message names the path",
    UnsafeInputError.exit_code: "a build input is not a regular file inside its recipe folder, or too large",
    IntegrityError.exit_code: "a bundle or image does not match its manifest or fingerprint "
                              "(nothing imported, no tag moved)",
    LockError.exit_code: "a project's `sandman.lock` records another fingerprint than the install would give",
    NotFoundError.exit_code: "unknown tool, version or repo (the message lists what exists)",
    RecipeError.exit_code: "a recipe does not parse or validate (the message starts with file:line)",
    KitError.exit_code: "a vendor kit is missing, unreadable or has the wrong sha256",
    BuildError.exit_code: "an image build or its smoke test failed (the previous image is kept)",
    DaemonUnavailableError.exit_code: "the Docker daemon cannot be reached",
    DaemonPermissionError.exit_code: "permission denied on the Docker socket",
    ImageMissingError.exit_code: "the image an install needs is gone, or a base image cannot be had",
    MountError.exit_code: "a mount source is missing, refused (/, home, Docker socket) or cannot be mapped",
    ConflictError.exit_code: "a file sandman did not write is in the way",
    UntrustedError.exit_code: "a recipe from a repository that is not trusted yet",
    RemoteError.exit_code: "a registry or git remote failed",
    NoSpaceError.exit_code: "no space left on the device (Docker data root or sandman's folders)",
    StateError.exit_code: "install state or config.toml is unreadable or invalid (the message says "
                          "how to repair it)",
    ConsentError.exit_code: "an updated recipe changes mounts, env or network: rerun with `--yes` to accept",
    125: "docker could not create or start the container (docker's own code; its message follows)",
    126: "the command in the image cannot be run (docker's own code)",
    127: "the command does not exist in the image (docker's own code)",
    130: "interrupted (Ctrl-C) while sandman itself was working",
}
