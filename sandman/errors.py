"""Every failure sandman reports on purpose, and its exit code.

One root type; each subclass carries a user-facing one-line message and the exit code that
scripts can rely on. The CLI maps them in one place (``cli.main``). Every code is written once,
in ``EXIT_GROUPS`` below, with the name the classes and the shim runtime know it by
(``RUNTIME_CODES`` hands some of them to the runtime as ``$SM_EXIT_<NAME>``) and what it
means; `sandman exit-codes`, docs/cli.md and docs/runtime.md print that table (sandman/docgen.py).

sandman's own codes stay clear of the common tool codes, of sysexits' 64-78 and of the engine's
125-127, so a script can tell them apart. Exit 1 means a bug: every failure sandman reports on
purpose raises a subclass here, never SandmanError itself (tests/integration/test_state_errors.py
checks the source for it). The numbers are a promise to scripts: tests/unit/test_test_hygiene.py
pins them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ExitCode:
    code: int
    name: str  # the code's name in the error classes and the shim runtime ($SM_EXIT_<NAME>)
    meaning: str  # one line for `sandman exit-codes` and the docs


@dataclass(frozen=True)
class ExitGroup:
    title: str
    codes: tuple[ExitCode, ...]  # in numeric order


def _group(title: str, *rows: tuple[int, str, str]) -> ExitGroup:
    return ExitGroup(title, tuple(ExitCode(*row) for row in rows))


# The one table of exit codes: grouped by what failed, each group in numeric order.
EXIT_GROUPS: tuple[ExitGroup, ...] = (
    _group(
        "Any command",
        (0, "OK", "success; for a shim or `sandman run`, the tool's own status, 0-255, is passed on"),
        (1, "BUG", "unexpected internal error, a bug (run with `--debug` for the traceback)"),
        (2, "USAGE", "bad command-line usage: unknown option, bad `TOOL@VERSION` syntax, a shim "
                     "without a command"),
        (102, "CHECK_FAILED", "a check failed: `doctor` found a problem, or `matrix --fail-on-diff` "
                              "saw the versions differ"),
        (130, "INTERRUPTED", "interrupted (Ctrl-C) while sandman itself was working"),
    ),
    _group(
        "Recipes and their inputs",
        (99, "PLATFORM", "the recipe's `platform` is unknown, or this host cannot emulate it (no "
                         "QEMU binfmt_misc entry)"),
        (104, "SOURCE", "a source (`sources`) cannot be downloaded or has the wrong sha256; "
                        "nothing was built"),
        (108, "UNSAFE_INPUT", "a build input is not a regular file inside its recipe folder, or too large"),
        (111, "NOT_FOUND", "unknown tool, version or repo (the message lists what exists)"),
        (112, "RECIPE", "a recipe does not parse or validate (the message starts with file:line)"),
        (113, "KIT", "a vendor kit is missing, unreadable or has the wrong sha256"),
    ),
    _group(
        "Builds and images",
        (101, "MISSING_PROGRAM", "a program sandman runs on the host is not installed (`mmdebstrap`)"),
        (103, "VERSION_MISMATCH", "the new image reports another version than its recipe's "
                                  "`version_check` expects (nothing installed, a new image not kept)"),
        (106, "MISSING_COMMAND", "commands the recipe declares are missing from the built image "
                                 "(nothing is kept)"),
        (114, "BUILD", "an image build or its smoke test failed (the previous image is kept)"),
        (117, "IMAGE_MISSING", "the image an install needs is gone, or a base image cannot be had"),
    ),
    _group(
        "The container engine",
        (92, "NO_ENGINE", "no container engine: neither Docker nor Podman is installed"),
        (93, "ENGINE_MISSING", "the engine named by `--engine`, `SANDMAN_ENGINE` or config.toml's "
                               "`engine` is not installed, or not docker/podman/auto"),
        (94, "SUBID", "rootless Podman: no subordinate uid/gid ranges for the user in /etc/subuid, "
                      "/etc/subgid (nothing was started)"),
        (95, "STALE_SOCKET", "the Podman API socket is stale: a file nothing listens on (remove it)"),
        (96, "ENGINE_SETUP", "the engine fails for a host set-up reason sandman recognises (OCI "
                             "runtime, ulimits, cgroups); the message gives the fix"),
        (100, "ENGINE", "the Docker daemon refused or failed a request (its message follows)"),
        (115, "DAEMON_UNAVAILABLE", "the Docker daemon cannot be reached"),
        (116, "DAEMON_PERMISSION", "permission denied on the Docker socket"),
    ),
    _group(
        "A shim running its tool",
        (98, "DEVICE", "a device the recipe or config.toml passes in (`devices`) does not exist on "
                       "this host"),
        (105, "PIN", "a pin cannot be honoured: the plain command's shim is missing"),
        (118, "MOUNT", "a mount source is missing, refused (/, home, Docker socket) or cannot be mapped"),
        (125, "ENGINE_RUN", "docker could not create or start the container (docker's own code; its "
                            "message follows)"),
        (126, "CANNOT_INVOKE", "the command in the image cannot be run (docker's own code)"),
        (127, "COMMAND_NOT_FOUND", "the command does not exist in the image (docker's own code)"),
    ),
    _group(
        "sandman's own files",
        (107, "STATE_WRITE", "sandman's folders cannot be written (permission or read-only file "
                             "system); the message names the path"),
        (119, "CONFLICT", "a file sandman did not write is in the way"),
        (122, "NO_SPACE", "no space left on the device (Docker data root or sandman's folders)"),
        (123, "STATE", "install state or config.toml is unreadable or invalid (the message says "
                       "how to repair it)"),
    ),
    _group(
        "Repositories, registries and trust",
        (97, "SIGNATURE", "an image or bundle is unsigned or not signed by a key in `allowed_signers`: "
                          "refused by the `require` policy (nothing installed) or by `sandman verify`"),
        (109, "INTEGRITY", "a bundle or image does not match its manifest or fingerprint "
                           "(nothing imported, no tag moved)"),
        (110, "LOCK", "a project's `sandman.lock` records another fingerprint than the install would give"),
        (120, "UNTRUSTED", "a recipe from a repository that is not trusted yet"),
        (121, "REMOTE", "a registry or git remote failed"),
        (124, "CONSENT", "an updated recipe changes mounts, env or network: rerun with `--yes` to accept"),
    ),
)

# the same table, looked up: name -> code, and code -> meaning (in the table's order)
CODE: dict[str, int] = {e.name: e.code for g in EXIT_GROUPS for e in g.codes}
EXIT_CODES: dict[int, str] = {e.code: e.meaning for g in EXIT_GROUPS for e in g.codes}

USAGE = CODE["USAGE"]  # Typer/click's own code for bad options and arguments
CHECK_FAILED = CODE["CHECK_FAILED"]  # not an error: `doctor` found a problem, `matrix` a difference


class SandmanError(Exception):
    """A failure with a message meant for the user, not a traceback."""

    exit_code = CODE["BUG"]

    def __init__(self, message: str, *, detail: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail  # extra lines (a build log tail), shown below the message


# The classes, in the table's order (a subclass after its base); what each means is in the table.
class UsageError(SandmanError):
    exit_code = CODE["USAGE"]


class PlatformError(SandmanError):
    exit_code = CODE["PLATFORM"]


class SourceError(SandmanError):
    exit_code = CODE["SOURCE"]


class RecipeError(SandmanError):
    exit_code = CODE["RECIPE"]


class UnsafeInputError(RecipeError):
    exit_code = CODE["UNSAFE_INPUT"]


class NotFoundError(SandmanError):
    exit_code = CODE["NOT_FOUND"]


class KitError(SandmanError):
    exit_code = CODE["KIT"]


class MissingProgramError(SandmanError):
    exit_code = CODE["MISSING_PROGRAM"]


class BuildError(SandmanError):
    exit_code = CODE["BUILD"]


class VersionMismatchError(BuildError):
    exit_code = CODE["VERSION_MISMATCH"]


class MissingCommandError(BuildError):
    exit_code = CODE["MISSING_COMMAND"]


class ImageMissingError(SandmanError):
    exit_code = CODE["IMAGE_MISSING"]


class NoEngineError(SandmanError):
    exit_code = CODE["NO_ENGINE"]


class EngineNotInstalledError(SandmanError):
    exit_code = CODE["ENGINE_MISSING"]


class SubidError(SandmanError):
    exit_code = CODE["SUBID"]


class StaleSocketError(SandmanError):
    exit_code = CODE["STALE_SOCKET"]


class EngineSetupError(SandmanError):
    exit_code = CODE["ENGINE_SETUP"]


class EngineError(SandmanError):
    exit_code = CODE["ENGINE"]


class DaemonUnavailableError(SandmanError):
    exit_code = CODE["DAEMON_UNAVAILABLE"]


class DaemonPermissionError(SandmanError):
    exit_code = CODE["DAEMON_PERMISSION"]


class DeviceError(SandmanError):
    exit_code = CODE["DEVICE"]


class PinError(SandmanError):
    exit_code = CODE["PIN"]


class MountError(SandmanError):
    exit_code = CODE["MOUNT"]


class StateWriteError(SandmanError):
    exit_code = CODE["STATE_WRITE"]


class ConflictError(SandmanError):
    exit_code = CODE["CONFLICT"]


class NoSpaceError(SandmanError):
    exit_code = CODE["NO_SPACE"]


class StateError(SandmanError):
    exit_code = CODE["STATE"]


class SignatureError(SandmanError):
    exit_code = CODE["SIGNATURE"]


class IntegrityError(SandmanError):
    exit_code = CODE["INTEGRITY"]


class LockError(SandmanError):
    exit_code = CODE["LOCK"]


class UntrustedError(SandmanError):
    exit_code = CODE["UNTRUSTED"]


class RemoteError(SandmanError):
    exit_code = CODE["REMOTE"]


class ConsentError(SandmanError):
    exit_code = CODE["CONSENT"]


# the failures the shim runtime detects itself: rendered into it as SM_EXIT_<NAME> (shims.py)
RUNTIME_EXITS = ("USAGE", "NOT_FOUND", "DAEMON_UNAVAILABLE", "DAEMON_PERMISSION", "IMAGE_MISSING",
                 "MOUNT", "STATE", "DEVICE", "ENGINE_MISSING", "SUBID", "ENGINE_SETUP")
RUNTIME_CODES: dict[str, int] = {name: CODE[name] for name in RUNTIME_EXITS}
