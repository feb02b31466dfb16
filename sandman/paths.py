"""Every directory sandman reads or writes, decided in one place.

Tests and CI point ``SANDMAN_HOME`` at a temporary folder and everything (config, state, cache,
shims) follows, so no test ever touches the real user's files.

Who may read what (docs/runtime.md, "Who can read what"): the state folder (install records,
logs, locks, secrets for the shims), the cache and a separate config folder are the owner's
alone (0700); the bin folder and, under data/, the shim runtime and the images' passwd files
are read by whoever runs the shims (0755). state.make_private applies it on every command.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

APP = "sandman"


@dataclass(frozen=True)
class Paths:
    config_dir: Path
    data_dir: Path
    cache_dir: Path
    state_dir: Path
    bin_dir: Path

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Paths:
        env = dict(os.environ) if env is None else env
        home = env.get("SANDMAN_HOME")
        if home:
            root = Path(home).expanduser().absolute()
            paths = cls(
                config_dir=root,
                data_dir=root / "data",
                cache_dir=root / "cache",
                state_dir=root / "state",
                bin_dir=root / "bin",
            )
        else:
            import platformdirs

            paths = cls(
                config_dir=Path(platformdirs.user_config_dir(APP)),
                data_dir=Path(platformdirs.user_data_dir(APP)),
                cache_dir=Path(platformdirs.user_cache_dir(APP)),
                state_dir=Path(platformdirs.user_state_dir(APP)),
                bin_dir=Path.home() / ".local" / "bin",
            )
        if env.get("SANDMAN_BIN_DIR"):
            paths = paths.with_bin_dir(Path(env["SANDMAN_BIN_DIR"]).expanduser().absolute())
        return paths

    def with_bin_dir(self, bin_dir: Path) -> Paths:
        return Paths(self.config_dir, self.data_dir, self.cache_dir, self.state_dir, bin_dir)

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.toml"

    @property
    def user_recipes_dir(self) -> Path:
        return self.config_dir / "recipes"

    @property
    def kits_dir(self) -> Path:
        return self.data_dir / "kits"

    @property
    def repos_dir(self) -> Path:
        return self.data_dir / "repos"

    @property
    def installs_dir(self) -> Path:
        return self.state_dir / "installs"

    @property
    def locks_dir(self) -> Path:
        return self.state_dir / "locks"

    @property
    def passwd_dir(self) -> Path:
        """The images' passwd/group files: shared (0755/0644) like the shim runtime, because
        whoever runs the shims reads them; they hold no secret (an image's own /etc/passwd)."""
        return self.data_dir / "passwd"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "log"

    @property
    def reaper_pidfile(self) -> Path:
        return self.state_dir / "reaper.pid"

    @property
    def facts_dir(self) -> Path:
        """What sandman learnt about each image (passwd, locales), keyed by image id."""
        return self.cache_dir / "facts"


def builtin_recipes_dir() -> Path:
    """Built-in recipes: `sandman/recipes` when installed from a wheel, `recipes/` in a checkout."""
    here = Path(__file__).resolve().parent
    packaged = here / "_data" / "recipes"
    return packaged if packaged.is_dir() else here.parent / "recipes"


@functools.lru_cache(maxsize=1)
def shim_templates_dir() -> Path:
    """Where the shim templates are: packaged beside the code, or the checkout's shims/ (a
    resolve and a stat: asked once per process, for every shim a reshim renders)."""
    here = Path(__file__).resolve().parent
    packaged = here / "_data" / "shims"
    return packaged if packaged.is_dir() else here.parent / "shims"
