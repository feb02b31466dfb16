"""images.facts without a daemon: what is read from an image, and the cache of it.

The engine is tests/fakes.py's, answering `read_files` as Docker's archive API does: a path the
image lacks is absent from the answer, a symlink (/bin/sh -> dash) is there with no content.
"""

from __future__ import annotations

import json
from pathlib import Path

from fakes import FakeEngine

from sandman import images
from sandman.paths import Paths

DEBIAN = {"/etc/passwd": b"root:x:0:0:root:/root:/bin/bash\n", "/etc/group": b"root:x:0:\n",
          "/usr/lib/locale": b"C.utf8", "/bin/sh": b""}


def test_an_image_with_a_shell_and_the_cache(tmp_path: Path) -> None:
    paths = Paths.from_env({"SANDMAN_HOME": str(tmp_path)})
    eng = FakeEngine(files=DEBIAN)
    f = images.facts(lambda: eng, paths, "sha256:abc")  # type: ignore[arg-type]
    assert (f.shell, f.utf8_locale) == (True, "C.UTF-8")
    again = images.facts(lambda: eng, paths, "sha256:abc")  # type: ignore[arg-type]
    assert (again, len(eng.called("read_files"))) == (f, 1)


def test_an_image_without_a_shell(tmp_path: Path) -> None:
    paths = Paths.from_env({"SANDMAN_HOME": str(tmp_path)})
    files = {k: v for k, v in DEBIAN.items() if k != "/bin/sh"}
    assert images.facts(lambda: FakeEngine(files=files), paths, "sha256:def").shell is False  # type: ignore[arg-type]


def test_facts_cached_by_an_older_sandman_are_read_again(tmp_path: Path) -> None:
    """A cache without `shell` (written before it was a fact) is not trusted: it is re-read."""
    paths = Paths.from_env({"SANDMAN_HOME": str(tmp_path)})
    paths.facts_dir.mkdir(parents=True)
    (paths.facts_dir / "old.json").write_text(json.dumps(
        {"passwd": "root:x:0:0::/:/bin/sh\n", "group": "root:x:0:\n", "locales": ["c"]}))
    eng = FakeEngine(files={k: v for k, v in DEBIAN.items() if k != "/bin/sh"})
    f = images.facts(lambda: eng, paths, "sha256:old")  # type: ignore[arg-type]
    assert (f.shell, len(eng.called("read_files"))) == (False, 1)


def test_the_platform_is_a_fact_and_an_older_cache_says_it_does_not_know(tmp_path: Path) -> None:
    """os/architecture for the shim (a warm start then needs no `image inspect`); a cache from
    before the fact leaves it empty, and the shim asks the engine as it always did."""
    from sandman.engine import ImageInfo

    paths = Paths.from_env({"SANDMAN_HOME": str(tmp_path)})
    arm = ImageInfo("sha256:arm", ("t:1",), {}, 1, "", platform="linux/arm64/v8")
    eng = FakeEngine({"t:1": arm}, files=DEBIAN)
    assert images.facts(lambda: eng, paths, "sha256:arm").platform == "linux/arm64"  # type: ignore[arg-type]
    paths.facts_dir.mkdir(parents=True, exist_ok=True)
    (paths.facts_dir / "before.json").write_text(json.dumps(
        {"passwd": "root:x:0:0::/:/bin/sh\n", "group": "root:x:0:\n", "locales": ["c"], "shell": True}))
    assert images.facts(lambda: FakeEngine(), paths, "sha256:before").platform == ""  # type: ignore[arg-type]
