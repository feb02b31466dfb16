"""Per-user configuration: config.toml moves a recipe's mounts, adds mounts and env, and the
shims already on PATH pick a change up by themselves; `sandman run --mount` for one command."""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import paths_of, stop_reapers

pytest.register_assert_rewrite("runtime_helpers")
from runtime_helpers import Kit, one_line_error  # noqa: E402

from sandman.errors import MountError, StateError  # noqa: E402

pytestmark = pytest.mark.docker


@pytest.fixture
def own(kit: Kit) -> Iterator[Kit]:
    """A private home with rtprobe@1 installed (a cache hit), so config.toml is ours to change."""
    root = kit.scratch("cfg")
    mine = dataclasses.replace(kit, root=root, home=root / "home")
    p = mine.sandman("-q", "install", "--yes", "rtprobe@1")  # its read-write `out` mount
    assert p.returncode == 0, p.stderr
    yield mine
    stop_reapers(mine.home)
    shutil.rmtree(root, ignore_errors=True)


def write_config(k: Kit, text: str) -> None:
    cfg = paths_of(k.home).config_file
    cfg.write_text(text)
    later = time.time() + 2  # newer than the shims, whatever the clock's granularity
    os.utime(cfg, (later, later))


def test_config_moves_mounts_adds_mounts_and_env(own: Kit, mode: str, work: Path) -> None:
    alt, extra = own.scratch("alt-data"), own.scratch("extra")
    (alt / "hello.txt").write_text("from the config\n")
    (extra / "x.txt").write_text("extra\n")
    before = own.run([own.shim("rtprobe-1"), "cat", "/data/hello.txt"], env=own.env(mode), cwd=work)
    assert before.stdout == b"hello from data\n"
    write_config(own, f'[tools.rtprobe.mounts]\ndata = "{alt}"\n\n'
                      f'[tools.rtprobe]\nextra_mounts = ["{extra}:/extra:ro"]\n'
                      f'env = {{ FROM_CONFIG = "yes" }}\n')
    script = 'cat /data/hello.txt /extra/x.txt; echo "$FROM_CONFIG"; touch /extra/no 2>/dev/null || echo ro'
    p = own.run([own.shim("rtprobe-1"), "sh", "-c", script], env=own.env(mode), cwd=work)
    assert p.returncode == 0, p.stderr
    assert p.stdout == b"from the config\nextra\nyes\nro\n"
    # a per-version table wins over the per-tool one
    write_config(own, f'[tools."rtprobe@1".mounts]\ndata = "{extra}"\n'
                      f'[tools.rtprobe.mounts]\ndata = "{alt}"\n')
    p = own.run([own.shim("rtprobe-1"), "ls", "/data"], env=own.env(mode), cwd=work)
    assert p.stdout == b"x.txt\n", p.stderr
    # the environment variable wins for one command
    p = own.run([own.shim("rtprobe-1"), "ls", "/data"], env=own.env(mode, SANDMAN_RTPROBE_DATA=str(alt)),
            cwd=work)
    assert p.stdout == b"hello.txt\n", p.stderr


def test_broken_config_stops_the_shim_with_one_line(own: Kit, mode: str, work: Path) -> None:
    write_config(own, "[tools.rtprobe\n")
    p = own.run([own.shim("rtprobe-1"), "true"], env=own.env(mode), cwd=work)
    assert p.returncode == StateError.exit_code
    lines = [ln for ln in p.stderr.decode().splitlines() if ln.strip()]
    assert all(ln.startswith("sandman: ") for ln in lines) and "Traceback" not in p.stderr.decode()
    assert any("config.toml" in ln for ln in lines)
    write_config(own, "")  # fixed: the shim runs again
    assert own.run([own.shim("rtprobe-1"), "true"], env=own.env(mode), cwd=work).returncode == 0


def test_sandman_run_with_extra_mounts(own: Kit, work: Path) -> None:
    src = own.scratch("run-mount")
    (src / "f.txt").write_text("mounted\n")
    src.chmod(0o777)
    env = own.env()
    ro = own.sandman("-q", "run", "rtprobe@1", "--mount", f"{src}:/m:ro", "--", "sh", "-c",
                     "cat /m/f.txt; touch /m/new 2>/dev/null || echo ro", env=env, cwd=work)
    assert (ro.returncode, ro.stdout) == (0, b"mounted\nro\n"), ro.stderr
    rw = own.sandman("-q", "run", "--mount", f"{src}:/m", "rtprobe@1", "touch", "/m/new", env=env,
                     cwd=work)
    assert rw.returncode == 0, rw.stderr
    assert (src / "new").exists()
    bad = own.sandman("-q", "run", "rtprobe@1", "--mount", "relative", "--", "true", env=env, cwd=work)
    assert bad.returncode == MountError.exit_code
    one_line_error(bad.stderr, "relative")
    missing = own.sandman("-q", "run", "rtprobe@1", "--mount", f"{own.root}/nope:/m", "--", "true",
                          env=env, cwd=work)
    assert missing.returncode == MountError.exit_code
    one_line_error(missing.stderr, f"{own.root}/nope")
    assert not (own.root / "nope").exists()
