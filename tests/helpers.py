"""Plain helpers shared by unit and integration tests (fixtures live in the conftest.py files).

Tests never spell sandman's on-disk layout ("state/installs", "bin", ...) themselves: they ask
`Paths` (and the product's own path functions) where things are, so a layout change in
sandman/paths.py cannot leave tests checking folders sandman no longer writes.

Importable as `helpers` from any test module: pytest puts tests/ on sys.path when it loads
tests/conftest.py. (Not `from conftest import ...`: tests/integration has its own conftest.py,
and the name `conftest` means whichever was loaded last.)
"""

from __future__ import annotations

import os
from pathlib import Path

from sandman import shims, sources, warm
from sandman.installs import record_path
from sandman.paths import Paths


def paths_of(home: Path) -> Paths:
    """Where sandman keeps everything for SANDMAN_HOME=home (no SANDMAN_BIN_DIR override)."""
    return Paths.from_env({"SANDMAN_HOME": str(home)})


def log_file(home: Path) -> Path:
    """sandman's log for that home (the CLI writes `Paths.log_dir / "sandman.log"`)."""
    return paths_of(home).log_dir / "sandman.log"


def record_file(home: Path, tool: str, version: str) -> Path:
    """The install record of tool@version in that home."""
    return record_path(paths_of(home), tool, version)


def warm_dir(home: Path) -> Path:
    """The home's warm folder: the `io.sandman.home` label of its warm containers on the
    default daemon, and the parent of their state folders."""
    return warm.warm_dir(paths_of(home))


def runtime_dir(home: Path) -> Path:
    """Where the shared shim runtimes (`shim-<sha12>.bash`) of that home are written."""
    return shims.runtime_dir(paths_of(home))


def env_file(home: Path, tool: str, version: str) -> Path:
    """The private file holding config.toml's env values for tool@version's shims."""
    return shims.env_file(paths_of(home), tool, version)


def source_cache(home: Path) -> Path:
    """The content-addressed cache of downloaded recipe sources (one file per sha256)."""
    return sources.cache_root(paths_of(home))


def base_env(home: Path) -> dict[str, str]:
    """This process's environment for a run against home: no stray SANDMAN_*, its bin on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANDMAN_")}
    env["SANDMAN_HOME"] = str(home)
    env["PATH"] = f"{paths_of(home).bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return env
