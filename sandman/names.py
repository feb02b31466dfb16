"""Names that Python, the bash shim runtime and the tests must spell the same way.

Every Docker label key sandman writes or reads, the values of its role label and the Docker
socket path are typed once, here; the exit codes once, in sandman/errors.py. Those the shim
runtime needs are rendered into it as bash variables when the runtime is written
(sandman/shims.py `runtime_values`), so `shims/shim.bash` says `$SM_EXIT_MOUNT`, not 118,
and `$SM_LABEL_ROLE`, not `io.sandman.role` (tests/unit/test_names.py fails on a label or a
code the shims spell themselves). Nothing heavy is imported: the reaper and the shim renderer
load this module.
"""

from __future__ import annotations

LABEL = "io.sandman"  # the prefix of every label sandman puts on images and containers

# label name -> what it says (used by the engine, build, reaper, warm mode and the shims)
LABEL_ROLE = f"{LABEL}.role"  # what a container is for: one of ROLES
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

# the labels the shim runtime writes: rendered into it as SM_LABEL_<NAME>
LABELS: dict[str, str] = {
    "ROLE": LABEL_ROLE, "TOOL": LABEL_TOOL, "VERSION": LABEL_VERSION,
    "FINGERPRINT": LABEL_FINGERPRINT, "SOURCE": LABEL_SOURCE, "PID": LABEL_PID,
    "HOST": LABEL_HOST, "UID": LABEL_UID, "REAPER": LABEL_REAPER, "HOME": LABEL_HOME,
    "IDLE": LABEL_IDLE,
}

# labels only Python writes and reads (images, build steps, signatures)
LABEL_BASES = f"{LABEL}.bases"  # JSON {base ref: image id}: the bases an image was built on
LABEL_INPUTS = f"{LABEL}.inputs"  # JSON kits and sources by sha256, for `sandman sbom`
# "1" right after each FROM of a Dockerfile sandman builds and "" at its end, so the intermediate
# containers of a build carry it and no container of a finished image does
LABEL_BUILD_STEP = f"{LABEL}.build-step"
LABEL_SIGNATURE = f"{LABEL}.signature"  # a signature image: the statement and its signature
LABEL_ROOTFS_SHA256 = f"{LABEL}.rootfs.sha256"  # a bootstrapped base: its root file system's
LABEL_ROOTFS_FILE = f"{LABEL}.rootfs.file"  # ... and that file's name

IMAGE_LABELS: dict[str, str] = {
    "BASES": LABEL_BASES, "INPUTS": LABEL_INPUTS, "BUILD_STEP": LABEL_BUILD_STEP,
    "SIGNATURE": LABEL_SIGNATURE, "ROOTFS_SHA256": LABEL_ROOTFS_SHA256,
    "ROOTFS_FILE": LABEL_ROOTFS_FILE,
}

# the values of LABEL_ROLE: users filter on them (`docker ps --filter label=io.sandman.role=warm`)
ROLE_RUN = "run"  # a shim's container (the reaper removes it when its shim is gone)
ROLE_WARM = "warm"  # a warm container, kept for the calls that follow
ROLE_PROBE = "probe"  # a short container sandman runs itself (a command check, a file probe)
ROLE_DOCTOR = "doctor"  # `sandman doctor`'s test run
ROLE_SIGNATURE = "signature"  # the image that carries another image's signature
ROLE_AGENT_BUILD = "agent-build"  # the toolchain and the container that compile the warm agent
ROLES = frozenset({ROLE_RUN, ROLE_WARM, ROLE_PROBE, ROLE_DOCTOR, ROLE_SIGNATURE, ROLE_AGENT_BUILD})

# the Docker daemon's socket, where a client looks when DOCKER_HOST is not set
DOCKER_SOCKET = "/var/run/docker.sock"
DEFAULT_DOCKER_HOST = f"unix://{DOCKER_SOCKET}"  # the daemon a shim talks to without DOCKER_HOST

# warm mode: the folder (under a daemon's warm folder) where a retired container's state waits
# for its calls to end before the reaper removes both (sandman/warm.py, shims/warm.bash)
WARM_RETIRED = ".retired"
