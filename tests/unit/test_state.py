"""sandman/state.py: atomic, private, versioned files, and typed errors when they cannot be written."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from sandman import installs, state
from sandman.errors import NoSpaceError, StateError, StateWriteError
from sandman.installs import InstallRecord
from sandman.paths import Paths


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_atomic_write_is_private_by_default(tmp_path: Path) -> None:
    f = tmp_path / "new" / "deeper" / "x.json"
    state.atomic_write(f, b"one")
    assert f.read_bytes() == b"one"
    assert mode(f) == 0o600 and mode(f.parent) == 0o700
    state.atomic_write(f, b"two", 0o644)  # a shared file says so
    assert f.read_bytes() == b"two" and mode(f) == 0o644
    assert [p.name for p in f.parent.iterdir()] == ["x.json"]  # no temp file left


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "x"
    state.atomic_write(f, b"old")

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(NoSpaceError, match=f"no space left to write {f}"):
        state.atomic_write(f, b"new")
    assert f.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["x"]


def test_write_failures_are_typed_and_name_the_path(tmp_path: Path) -> None:
    target = tmp_path / "state" / "x.json"
    ro = state.write_failure(target, OSError(errno.EROFS, "Read-only file system"))
    assert isinstance(ro, StateWriteError) and ro.exit_code == StateWriteError.exit_code
    assert str(target) in ro.message and "read-only" in ro.message
    denied = state.write_failure(target, OSError(errno.EACCES, "Permission denied"))
    assert isinstance(denied, StateWriteError) and f"make {target.parent} writable" in denied.message
    quota = state.write_failure(target, OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert isinstance(quota, NoSpaceError) and quota.exit_code == NoSpaceError.exit_code
    tmp = state.write_failure(tmp_path / ".x.json.abc123.tmp", OSError(errno.EROFS, "ro"))
    assert tmp is not None and ".tmp" not in tmp.message and str(tmp_path) in tmp.message
    assert state.write_failure(target, OSError(errno.EIO, "I/O error")) is None


def test_versioned_json_round_trip_and_refusals(tmp_path: Path) -> None:
    f = tmp_path / "s.json"
    state.write_json(f, {"a": 1}, schema=2)
    assert state.read_json(f, schema=2, what="thing", repair="fix it") == {"a": 1, "schema": 2}
    assert mode(f) == 0o600
    with pytest.raises(StateError, match=r"thing of schema 2; this sandman reads schema 3 \(fix it\)"):
        state.read_json(f, schema=3, what="thing", repair="fix it")
    with pytest.raises(StateError, match=r"written by a newer sandman .*upgrade sandman, or fix it"):
        state.read_json(f, schema=1, what="thing", repair="fix it")
    f.write_text("[1]")
    with pytest.raises(StateError, match="not a JSON object; fix it"):
        state.read_json(f, schema=2, what="thing", repair="fix it")
    f.write_text('{"schema": 2, "a"')
    with pytest.raises(StateError, match=f"{f}: this thing is not valid JSON"):
        state.read_json(f, schema=2, what="thing", repair="fix it")
    with pytest.raises(FileNotFoundError):
        state.read_json(tmp_path / "absent.json", schema=2, what="thing", repair="fix it")


def test_migrations_step_an_older_schema_forward(tmp_path: Path) -> None:
    f = tmp_path / "s.json"
    state.write_json(f, {"name": "x"}, schema=1)
    def rename(d: dict) -> dict:
        return {"names": [d["name"]], "schema": d["schema"]}

    steps = {1: rename, 2: lambda d: {**d, "extra": True}}
    got = state.read_json(f, schema=3, what="thing", repair="r", migrations=steps)
    assert got == {"names": ["x"], "extra": True, "schema": 3}
    with pytest.raises(StateError, match="schema 2; this sandman reads schema 3"):
        state.read_json(f, schema=3, what="thing", repair="r", migrations={1: steps[1]})


def test_make_private_creates_and_tightens(tmp_path: Path) -> None:
    home = tmp_path / "home"
    paths = Paths.from_env({"SANDMAN_HOME": str(home)})
    home.mkdir()
    paths.cache_dir.mkdir(mode=0o755)
    paths.repos_dir.mkdir(parents=True)
    paths.config_file.write_text("")
    os.chmod(paths.cache_dir, 0o755)
    os.chmod(paths.repos_dir, 0o775)
    os.chmod(paths.config_file, 0o664)
    state.make_private(paths)
    for d in (paths.state_dir, paths.log_dir, paths.cache_dir, paths.repos_dir):
        assert mode(d) == 0o700, d
    assert mode(paths.config_file) == 0o600
    assert not paths.kits_dir.exists()  # only tightened when present, never created
    assert mode(home) == 0o755  # the home holds bin/ and data/: others reach the shims


def test_records_are_private_and_installs_atomic_write_keeps_its_old_default(tmp_path: Path) -> None:
    paths = Paths.from_env({"SANDMAN_HOME": str(tmp_path / "home")})
    rec = InstallRecord(tool="t", version="1", source="builtin", recipe_file="/r", fingerprint="f",
                        image_id="sha256:x", image_tag="sandman/t:1-f", shims=("t-1",),
                        bin_dir=str(paths.bin_dir), installed_at="now")
    path = installs.write_record(paths, rec)
    assert mode(path) == 0o600 and installs.read_record(path) == rec
    shared = tmp_path / "project" / ".sandman.toml"
    installs.atomic_write(shared, b"[tools]\n")  # a team's project file stays readable
    assert mode(shared) == 0o644


def test_a_corrupt_record_says_how_to_remove_it(tmp_path: Path) -> None:
    paths = Paths.from_env({"SANDMAN_HOME": str(tmp_path / "home")})
    f = installs.record_path(paths, "t", "1")
    f.parent.mkdir(parents=True)
    f.write_text('{"schema": 1, "shims": "t-1"}')
    with pytest.raises(StateError, match="run: sandman uninstall --force t@1"):
        installs.load(paths, "t", "1")
    assert installs.load(paths, "t", "2") is None
