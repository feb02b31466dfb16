"""Install records: one small versioned JSON file per installed tool@version.

The record is what `list`, `doctor`, `gc` and `uninstall` trust about an install, and what
the shims were generated from; state.py writes it atomically (a crash never leaves half a
record) and private to its owner, and reads it back schema-checked.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sandman import state
from sandman.errors import StateError
from sandman.paths import Paths

RECORD_SCHEMA = 1


@dataclass(frozen=True)
class InstallRecord:
    tool: str
    version: str
    source: str  # recipe source name: builtin, user, env, or a repo name
    recipe_file: str
    fingerprint: str
    image_id: str
    image_tag: str
    shims: tuple[str, ...]  # file names in the bin dir
    bin_dir: str
    installed_at: str
    runtime: dict = field(default_factory=dict)  # the runtime settings the shims were made with
    shim_inputs: dict = field(default_factory=dict)  # digests of the rest a shim bakes in (shims.made_from)
    full_version: str | None = None  # what the recipe's version_check proved the image is
    # The local build facts beside the portable fingerprint: the bases the image was built on
    # ({ref: digest}, from its io.sandman.bases label) and where this install got it: built
    # (here), registry (pulled: a teammate's build), local (already in this daemon's cache).
    bases: dict = field(default_factory=dict)
    origin: str = ""  # "" in records written before origins were kept
    schema: int = RECORD_SCHEMA

    @property
    def key(self) -> str:
        return f"{self.tool}@{self.version}"


def record_path(paths: Paths, tool: str, version: str) -> Path:
    return paths.installs_dir / f"{tool}@{version}.json"


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """state.atomic_write with this module's old default (0644), for the modules that still
    import it from here: pins writes project files a team shares, images the passwd files that
    other users' shim calls read; what they put in state/ or cache/ stays private through its
    0700 folder. New code: use sandman.state and say which files are shared."""
    state.atomic_write(path, data, mode, dir_mode=0o755)


def write_record(paths: Paths, record: InstallRecord) -> Path:
    path = record_path(paths, record.tool, record.version)
    data = asdict(record)
    state.write_json(path, data, schema=data.pop("schema"))
    return path


def repair_hint(path: Path) -> str:
    """How to get past a record that cannot be read: its name is tool@version.json."""
    return (f"to remove that install and its shims, run: sandman uninstall --force {path.stem}; "
            "then install it again")


def read_record(path: Path) -> InstallRecord:
    data = state.read_json(path, schema=RECORD_SCHEMA, what="install record", repair=repair_hint(path))
    try:
        if not isinstance(data.get("shims"), list):
            raise TypeError("'shims' is not a list")
        data["shims"] = tuple(data["shims"])
        return InstallRecord(**data)
    except TypeError as e:
        raise StateError(f"{path}: malformed install record ({e}); {repair_hint(path)}") from e


def load(paths: Paths, tool: str, version: str) -> InstallRecord | None:
    try:
        return read_record(record_path(paths, tool, version))
    except FileNotFoundError:
        return None


def all_records(paths: Paths) -> list[InstallRecord]:
    if not paths.installs_dir.is_dir():
        return []
    return [read_record(p) for p in sorted(paths.installs_dir.glob("*.json"))]


def remove_record(paths: Paths, tool: str, version: str) -> None:
    path = record_path(paths, tool, version)
    with state.writing(path), contextlib.suppress(FileNotFoundError):
        path.unlink()


def remove_unreadable(paths: Paths, tool: str, version: str) -> list[Path]:
    """`uninstall --force` of an install whose record cannot be read (corrupt, unknown schema).

    Removes the shims that say in their header that they belong to tool@version (in the bin
    folder, and in the one the broken record names if that much of it parses) and the record.
    A file without that header is never touched. Returns what was removed, the record last.
    """
    import json

    key = f"{tool}@{version}"
    path = record_path(paths, tool, version)
    bin_dirs = [paths.bin_dir]
    with contextlib.suppress(OSError, ValueError, AttributeError):
        named = json.loads(path.read_text(encoding="utf-8")).get("bin_dir")
        if isinstance(named, str) and Path(named).is_absolute():
            bin_dirs.append(Path(named))
    removed: list[Path] = []
    for d in dict.fromkeys(bin_dirs):
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            for shim in sorted(d.iterdir()):
                if owner_of(shim) == key:
                    with state.writing(shim):
                        shim.unlink()
                    removed.append(shim)
    if path.exists():
        remove_record(paths, tool, version)
        removed.append(path)
    return removed


# -- which install a file on PATH belongs to ----------------------------------------------
MARKER = "# sandman-shim v1"  # line 2 of every file sandman writes on PATH (see owner_of)


def owner_of(path: Path) -> str | None:
    """`tool@version` of the sandman shim at path, '' for a foreign file, None if absent."""
    try:
        with path.open("rb") as f:
            head = f.read(256).decode("utf-8", "replace").splitlines()
    except FileNotFoundError:
        return None
    except (IsADirectoryError, PermissionError):
        return ""
    if len(head) >= 3 and head[1] == MARKER and head[2].startswith("# for: "):
        return head[2][len("# for: "):]
    return ""
