"""gc removes shim runtimes that no shim of the home sources any more, never the current one."""

from __future__ import annotations

from pathlib import Path

from sandman import shims
from sandman.paths import Paths


def _shim(path: Path, owner: str, runtime: Path) -> None:
    path.write_text(f"#!/bin/bash\n{shims.MARKER}\n# for: {owner}\nSM_RUNTIME={runtime}\n"
                    'source "$SM_RUNTIME"\n')


def test_only_runtimes_no_shim_sources_are_unused(tmp_path: Path) -> None:
    paths = Paths.from_env({"SANDMAN_HOME": str(tmp_path)})
    current = shims.write_runtime(paths)
    folder = shims.runtime_dir(paths)
    old_used = folder / "shim-aaaaaaaaaaaa.bash"
    old_unused = folder / "shim-bbbbbbbbbbbb.bash"
    for f in (old_used, old_unused):
        f.write_text("# an older runtime\n")
    paths.bin_dir.mkdir(parents=True)
    _shim(paths.bin_dir / "t-1", "t@1", old_used)
    (paths.bin_dir / "foreign").write_text(f"#!/bin/sh\nSM_RUNTIME={old_unused}\n")  # not ours
    assert shims.unused_runtimes(paths, [paths.bin_dir]) == [old_unused]
    assert current.exists()
