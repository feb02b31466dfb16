"""Install records: one small versioned JSON file per installed tool@version.

The record is what `list`, `doctor`, `gc` and `uninstall` trust about an install, and what
the shims were generated from; it is written with write-to-temp-then-rename so a crash never
leaves half a record.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

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
    schema: int = RECORD_SCHEMA

    @property
    def key(self) -> str:
        return f"{self.tool}@{self.version}"


def record_path(paths: Paths, tool: str, version: str) -> Path:
    return paths.installs_dir / f"{tool}@{version}.json"


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
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


def write_record(paths: Paths, record: InstallRecord) -> Path:
    path = record_path(paths, record.tool, record.version)
    atomic_write(path, (json.dumps(asdict(record), indent=2, sort_keys=True) + "\n").encode())
    return path


def read_record(path: Path) -> InstallRecord:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise StateError(f"{path}: unreadable install record ({e})") from e
    if not isinstance(data, dict) or data.get("schema") != RECORD_SCHEMA:
        raise StateError(
            f"{path}: install record of schema {data.get('schema') if isinstance(data, dict) else '?'}"
            f"; this sandman reads schema {RECORD_SCHEMA} (reinstall the tool)"
        )
    try:
        data["shims"] = tuple(data["shims"])
        return InstallRecord(**data)
    except TypeError as e:
        raise StateError(f"{path}: malformed install record ({e})") from e


def load(paths: Paths, tool: str, version: str) -> InstallRecord | None:
    path = record_path(paths, tool, version)
    return read_record(path) if path.exists() else None


def all_records(paths: Paths) -> list[InstallRecord]:
    if not paths.installs_dir.is_dir():
        return []
    return [read_record(p) for p in sorted(paths.installs_dir.glob("*.json"))]


def remove_record(paths: Paths, tool: str, version: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        record_path(paths, tool, version).unlink()
