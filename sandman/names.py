"""Names that Python, the bash shim runtime and the tests must spell the same way.

Docker label names and sandman's exit codes are typed once, here (the codes once, in
sandman/errors.py), and rendered into the shim runtime as bash variables when the runtime is
written (`bash_values`), so `shims/shim.bash` says `$SM_EXIT_MOUNT`, not 118, and
`$SM_LABEL_ROLE`, not `io.sandman.role`. Nothing heavy is imported: the reaper and the shim
renderer load this module.
"""

from __future__ import annotations

import shlex

from sandman import errors

LABEL = "io.sandman"  # the prefix of every label sandman puts on images and containers

# label name -> what it says (used by the engine, build, reaper, warm mode and the shims)
LABEL_ROLE = f"{LABEL}.role"  # run (a shim's container), warm, probe
LABEL_TOOL = f"{LABEL}.tool"
LABEL_VERSION = f"{LABEL}.version"
LABEL_FINGERPRINT = f"{LABEL}.fingerprint"  # on images: the build plan's fingerprint
LABEL_SOURCE = f"{LABEL}.source"  # on images: the recipe source
LABEL_PID = f"{LABEL}.pid"  # the shim's pid, for the reaper
LABEL_HOST = f"{LABEL}.host"  # the host the shim ran on
LABEL_UID = f"{LABEL}.uid"  # the invoking uid
LABEL_REAPER = f"{LABEL}.reaper"  # the reaper pidfile in charge of the container
LABEL_HOME = f"{LABEL}.home"  # warm containers: the warm folder of their SANDMAN_HOME
LABEL_IDLE = f"{LABEL}.idle"  # warm containers: idle limit in seconds

LABELS: dict[str, str] = {
    "ROLE": LABEL_ROLE, "TOOL": LABEL_TOOL, "VERSION": LABEL_VERSION,
    "FINGERPRINT": LABEL_FINGERPRINT, "SOURCE": LABEL_SOURCE, "PID": LABEL_PID,
    "HOST": LABEL_HOST, "UID": LABEL_UID, "REAPER": LABEL_REAPER, "HOME": LABEL_HOME,
    "IDLE": LABEL_IDLE,
}

# warm mode: the folder (under a daemon's warm folder) where a retired container's state waits
# for its calls to end before the reaper removes both (sandman/warm.py, shims/warm.bash)
WARM_RETIRED = ".retired"

# bash name suffix -> exit code, for the failures the shim runtime detects itself
EXIT_CODES: dict[str, int] = {
    "USAGE": errors.USAGE,
    "NOT_FOUND": errors.NotFoundError.exit_code,
    "DAEMON_UNAVAILABLE": errors.DaemonUnavailableError.exit_code,
    "DAEMON_PERMISSION": errors.DaemonPermissionError.exit_code,
    "IMAGE_MISSING": errors.ImageMissingError.exit_code,
    "MOUNT": errors.MountError.exit_code,
    "STATE": errors.StateError.exit_code,
    "DEVICE": errors.DeviceError.exit_code,
    "ENGINE_MISSING": errors.EngineNotInstalledError.exit_code,
    "SUBID": errors.SubidError.exit_code,
    "ENGINE_SETUP": errors.EngineSetupError.exit_code,
}


def bash_values() -> dict[str, str]:
    """`SM_LABEL_<NAME>` and `SM_EXIT_<NAME>` for the shim runtime, already quoted for bash."""
    out = {f"SM_LABEL_{k}": shlex.quote(v) for k, v in LABELS.items()}
    out.update({f"SM_EXIT_{k}": str(v) for k, v in EXIT_CODES.items()})
    out["SM_WARM_RETIRED"] = shlex.quote(WARM_RETIRED)
    return out
