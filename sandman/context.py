"""What every operation needs: paths, the user's config, the environment, the daemon, a voice.

The CLI builds one Context per command; tests build their own with a private SANDMAN_HOME.
The engine connects lazily so commands that never touch Docker (recipes check, list --json
of an empty state) work without a daemon.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from sandman.catalog import Catalog
from sandman.config import Config, load_config
from sandman.paths import Paths

if TYPE_CHECKING:  # the docker SDK costs ~175 ms of imports: only commands that use it pay
    from sandman.engine import Engine
    from sandman.engine_choice import EngineChoice
    from sandman.engine_reads import SocketReads


class Reporter(Protocol):
    def info(self, msg: str) -> None: ...
    def warn(self, msg: str) -> None: ...
    def step(self, line: str) -> None: ...


class SilentReporter:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, msg: str) -> None:
        self.lines.append(msg)

    def warn(self, msg: str) -> None:
        self.lines.append(f"warning: {msg}")

    def step(self, line: str) -> None:
        self.lines.append(line)


@dataclass
class Context:
    paths: Paths
    config: Config
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    out: Reporter = field(default_factory=SilentReporter)
    engine_option: str | None = None  # --engine, which wins over SANDMAN_ENGINE and config.toml

    @classmethod
    def from_env(cls, out: Reporter | None = None, engine_option: str | None = None) -> Context:
        paths = Paths.from_env()
        config = load_config(paths.config_file)
        if config.bin_dir and not os.environ.get("SANDMAN_BIN_DIR"):
            paths = paths.with_bin_dir(config.bin_dir)
        return cls(paths=paths, config=config, out=out or SilentReporter(),
                   engine_option=engine_option)

    @cached_property
    def choice(self) -> EngineChoice:
        """The engine of this command, chosen once: the SDK connection, doctor and the shims
        it writes all read this one decision (raises when the one asked for cannot be had)."""
        from sandman.engine_choice import choose

        return choose(self.env, self.config.engine, self.engine_option)

    def looking_only(self) -> Context:
        """A copy whose engine looks and never touches (engine.DryRunEngine): a dry run's."""
        from dataclasses import replace

        from sandman.engine import DryRunEngine

        dry = replace(self)
        dry.__dict__["engine"] = DryRunEngine(self.engine.client)  # the cached property's slot
        return dry

    @cached_property
    def engine(self) -> Engine:
        from sandman.engine import Engine

        return Engine.connect(self.choice, service_log=self._service_log, say=self.out.info)

    @property
    def _service_log(self) -> Path:
        """Where a Podman API service sandman starts writes its log."""
        return self.paths.state_dir / "podman-service.log"

    @property
    def engine_choice(self) -> EngineChoice:
        """The engine's decision without connecting to it: the connected (or a dry run's)
        engine's own when there is one, else the command's (what connecting would take)."""
        engine = self.__dict__.get("engine")
        return engine.choice if engine is not None else self.choice

    @cached_property
    def image_reads(self) -> Engine | SocketReads:
        """The engine's image reads for a command that only looks (`list`, `doctor`,
        `upgrade`'s look, `reshim`): without the SDK over the engine's local socket
        (engine_reads.py), else the SDK's engine, as for everything else."""
        choice = self.choice
        if ("engine" in self.__dict__ or not choice.socket_path  # connected, or a dry run's
                or self.env.get("DOCKER_TLS_VERIFY") or self.env.get("DOCKER_CERT_PATH")):
            return self.engine
        choice.ready(self._service_log, self.out.info)
        from sandman.engine_reads import SocketReads

        return SocketReads(choice.socket_path)

    @cached_property
    def catalog(self) -> Catalog:
        return Catalog.default(self.paths)

    def forget_catalog(self) -> None:
        """The next use of `catalog` reads the recipe sources again (a repo was just trusted)."""
        self.__dict__.pop("catalog", None)
