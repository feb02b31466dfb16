"""sandman's own files on disk: written atomically, private by default, versioned when JSON.

Every state file goes through here so three promises hold in one place:
- a crash never leaves half a file: write to a temp file in the same folder, fsync, rename;
- other local users read nothing: folders 0700, files 0600 unless the caller says the file is
  shared (shims, the shim runtime, image passwd files are read by whoever runs the shims);
- a file that cannot be written is one clear line: a full disk is NoSpaceError, a
  read-only or foreign folder StateWriteError, each naming the path and the fix.

A versioned JSON file is an object with a "schema" number; the reader refuses a file of an
unknown schema (or one that is not JSON) with the path and how to repair it, and can step an
older schema forward through the migrations the caller passes.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from sandman.errors import NoSpaceError, SandmanError, StateError, StateWriteError
from sandman.paths import Paths

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
SHARED_DIR = 0o755  # folders other users must read through (bin, the shim runtime)
SHARED_FILE = 0o644

NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)


def write_failure(path: Path | str | None, e: OSError) -> SandmanError | None:
    """The typed error for an OSError met while writing path; None if it is not one of ours.

    A temp file of an atomic write (`.name.XXXX.tmp`) is named by its folder: that is what
    the user can act on.
    """
    target = Path(path) if path else None
    if target is not None and target.name.startswith(".") and target.name.endswith(".tmp"):
        target = target.parent
    where = f" {target}" if target else ""
    if e.errno in NO_SPACE:
        return NoSpaceError(f"no space left to write{where}: free some space on that file system "
                            "(`sandman gc` removes images no install uses), then retry")
    if e.errno == errno.EROFS:
        return StateWriteError(f"cannot write{where}: read-only file system; remount it read-write, "
                               "or point SANDMAN_HOME at a writable folder")
    if e.errno in NOT_WRITABLE:
        folder = target if target is not None and target.is_dir() else target.parent if target else None
        return StateWriteError(f"cannot write{where}: permission denied; make {folder or 'it'} "
                               "writable by you, or point SANDMAN_HOME at a folder you can write")
    return None


def os_failure(e: BaseException, paths: Paths | None = None) -> SandmanError | None:
    """An OSError that is no bug, typed: a full disk anywhere (122), or one of sandman's own
    folders (of paths, else the environment's) that cannot be written (107). The writes here
    raise these typed already; this catches those made elsewhere (a tempfile, a mkdir), so
    that exit 1 stays reserved for bugs."""
    if not isinstance(e, OSError) or e.errno not in (*NO_SPACE, *NOT_WRITABLE):
        return None
    if e.errno in NO_SPACE:
        return write_failure(e.filename, e)
    if not e.filename:
        return None
    p = paths or Paths.from_env()
    target = Path(os.path.abspath(e.filename))
    ours = (p.config_dir, p.data_dir, p.cache_dir, p.state_dir, p.bin_dir)
    if any(target == d or d in target.parents for d in ours):
        return write_failure(target, e)
    return None


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn a full disk or an unwritable folder met while writing path into a typed error."""
    try:
        yield
    except OSError as e:
        typed = write_failure(e.filename or path, e)
        if typed is None:
            raise
        raise typed from e


def private_dir(path: Path) -> Path:
    """Create path (and missing parents) as 0700; tighten it to 0700 if it is ours and looser.

    Only the folder itself is tightened: what is inside cannot be reached through it.
    """
    with writing(path):
        path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
    tighten(path, PRIVATE_DIR)
    return path


def tighten(path: Path, mode: int) -> None:
    """chmod path to mode when it is ours and grants more than mode; never follows a symlink.

    Used on every start so a home made by an older sandman becomes private; it never fails
    (a read-only home can still be read).
    """
    with contextlib.suppress(OSError):
        st = path.lstat()
        if st.st_uid == os.geteuid() and not stat.S_ISLNK(st.st_mode) and stat.S_IMODE(st.st_mode) & ~mode:
            os.chmod(path, stat.S_IMODE(st.st_mode) & mode)


def atomic_write(path: Path, data: bytes, mode: int = PRIVATE_FILE, *,
                 dir_mode: int = PRIVATE_DIR) -> None:
    """Replace path with data in one step: readers see the old file or the new one, never half.

    A missing folder is created with dir_mode (0700 unless the caller shares it).
    """
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True, mode=dir_mode)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, mode)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise


def unchanged(path: Path, data: bytes, mode: int) -> bool:
    """path is already exactly what a write of data with mode would leave: a regular file (not
    a symlink) owned by this user, of that mode, holding those bytes. A write that finds it so
    can be skipped (issue 24: work in proportion to what changed); any doubt says False."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        if (not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid()
                or stat.S_IMODE(st.st_mode) != mode or st.st_size != len(data)):
            return False
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(len(data) + 1) == data
    except OSError:
        return False
    finally:
        os.close(fd)


def write_if_changed(path: Path, data: bytes, mode: int = PRIVATE_FILE, *,
                     dir_mode: int = PRIVATE_DIR) -> bool:
    """atomic_write, unless path is already unchanged(path, data, mode); returns whether it wrote."""
    if unchanged(path, data, mode):
        return False
    atomic_write(path, data, mode, dir_mode=dir_mode)
    return True


def write_json(path: Path, data: Mapping[str, Any], *, schema: int, mode: int = PRIVATE_FILE) -> None:
    """Write a versioned JSON object (sorted keys, one trailing newline) atomically."""
    body = {**data, "schema": schema}
    atomic_write(path, (json.dumps(body, indent=2, sort_keys=True) + "\n").encode(), mode)


Migration = Callable[[dict[str, Any]], dict[str, Any]]


def read_json(path: Path, *, schema: int, what: str, repair: str,
              migrations: Mapping[int, Migration] | None = None) -> dict[str, Any]:
    """Read a versioned JSON object written by write_json.

    `what` names the file for people ("install record"); `repair` says how to get past a bad
    one ("run: sandman uninstall --force sqlite3@3.46"). migrations[n] turns a schema-n object
    into a schema n+1 one; the result has schema `schema` or this raises StateError.
    A missing file raises FileNotFoundError: callers decide whether absence is an error.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) else "not UTF-8"
        raise StateError(f"{path}: cannot read this {what} ({reason}); {repair}") from e
    try:
        data = json.loads(text)
    except ValueError as e:
        raise StateError(f"{path}: this {what} is not valid JSON ({e}); {repair}") from e
    if not isinstance(data, dict):
        raise StateError(f"{path}: this {what} is not a JSON object; {repair}")
    got = data.get("schema")
    while isinstance(got, int) and not isinstance(got, bool) and got < schema \
            and migrations and got in migrations:
        data = {**migrations[got](data), "schema": got + 1}
        got = data["schema"]
    if isinstance(got, int) and not isinstance(got, bool) and got > schema:
        raise StateError(f"{path}: {what} of schema {got}, written by a newer sandman (this one "
                         f"reads schema {schema}): upgrade sandman, or {repair}")
    if got != schema:
        raise StateError(f"{path}: {what} of schema {got!r}; this sandman reads schema {schema} "
                         f"({repair})")
    return data


def make_private(paths: Paths) -> None:
    """Run at the start of every command: the owner's folders exist and are theirs alone.

    Creates the state, log and cache folders 0700 and tightens them (and a separate config
    folder, recipe clones, kits and config.toml) when an older sandman or a umask left them
    readable by others. Files inside need no chmod: a 0700 folder cannot be entered. Never
    fails: on a read-only home the commands that only read still work, and the first write
    says what is wrong.
    """
    for d in (paths.state_dir, paths.log_dir, paths.cache_dir):
        with contextlib.suppress(SandmanError, OSError):
            private_dir(d)
    shared = (paths.data_dir, paths.bin_dir)
    if not any(paths.config_dir == s or paths.config_dir in s.parents for s in shared):
        with contextlib.suppress(SandmanError, OSError):  # its own folder (no SANDMAN_HOME)
            private_dir(paths.config_dir)
    for d in (paths.repos_dir, paths.kits_dir):
        tighten(d, PRIVATE_DIR)
    tighten(paths.config_file, PRIVATE_FILE)
