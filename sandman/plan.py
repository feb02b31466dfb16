"""The launch plan: everything about a tool's container that does not depend on the call.

A shim's container is one `docker run` (or `podman run`). Most of its argv is known when the
shim is written: the image, the security options, the network as this engine spells it, the
user namespace, the platform, added capabilities and devices, the labels that say whose
container it is. Python renders those words once, here, into the shim's values (`SM_RUN`,
and `SM_RUN_USER` where a non-root caller gets other words: rootless Podman); the bash runtime
adds only what each call brings (the name and pid label, the caller's uid:gid and groups, a
terminal, the cwd and path mounts, the environment, warm routing). The containers sandman
starts itself (probes, doctor's check, the agent's build) take their security options from
here too, so "no new privileges, every capability dropped" is written once.

Nothing here imports the SDK or touches the engine: a plan is a value, and its argv is what
tests assert (tests/unit/test_plan.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from sandman import names
from sandman.engine_choice import EngineChoice, security_args

# a shim's container: removed at exit, stdin kept open, an init that forwards signals and
# reaps, no logs kept by the engine, never a pull on the hot path
RUN_FIXED = ("--rm", "-i", "--init", "--log-driver", "none", "--pull", "never")


@dataclass(frozen=True)
class LaunchPlan:
    """What a tool@version's shim container is made of, before any call."""

    tool: str
    version: str
    image: str
    network: str  # the recipe's (or config.toml's) network: none, bridge, host
    platform: str = ""  # another CPU's image, run through QEMU user emulation
    cap_add: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    host: str = ""  # the host name shims put in their label (the reaper's: whose pid it is)
    reaper_pidfile: str = ""  # the reaper in charge of the container

    def run_args(self, engine: EngineChoice) -> list[str]:
        """The call-independent words of `ENGINE run`, before the image, for this engine."""
        args = [*RUN_FIXED]
        for key, value in ((names.LABEL_ROLE, names.ROLE_RUN), (names.LABEL_TOOL, self.tool),
                           (names.LABEL_VERSION, self.version), (names.LABEL_HOST, self.host),
                           (names.LABEL_REAPER, self.reaper_pidfile)):
            args += ["--label", f"{key}={value}"]
        args += security_args()
        args += ["--network", engine.network_mode(self.network), "--entrypoint", ""]
        if userns := engine.userns():
            args += ["--userns", userns]
        if self.platform:
            args += ["--platform", self.platform]
        for cap in self.cap_add:
            args += ["--cap-add", cap]
        for dev in self.devices:
            args += ["--device", dev]
        return args

    def run_args_by_caller(self, engine: EngineChoice) -> tuple[list[str], list[str]]:
        """(for root, for any other user): a shim written by one user may be run by another,
        and rootless Podman (any caller but root) spells the user namespace and network its
        own way. Docker's two are the same."""
        return self.run_args(engine.for_caller(root=True)), self.run_args(engine.for_caller(root=False))
