"""What this home bootstrapped itself: the bases whose content sandman vouches for.

A base's name proves nothing: an import, a pull or `docker tag` can put any content under
`debian:bookworm-slim`. What runs on the host (the warm agent, sandman/agent.py) is built only
from an image this home's `sandman bootstrap` made, known by its id, kept in the home's private
state. A small module of its own, under both the bootstrap that records and the agent that asks.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from sandman.paths import Paths

BASE_RE = re.compile(r"^(?:(?P<prefix>[a-z0-9]+)/)?debian:(?P<suite>[a-z]+)(?P<slim>-slim)?$")


def _made_file(paths: Paths) -> Path:
    return paths.state_dir / "bootstrapped.json"


def made_here(paths: Paths) -> dict[str, str]:
    """{base ref: image id} of the bases this home's `sandman bootstrap` made."""
    try:
        data = json.loads(_made_file(paths).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)
            and re.fullmatch(r"sha256:[0-9a-f]{64}", v)}


def record_made(paths: Paths, ref: str, image_id: str) -> None:
    """Remember that this home's bootstrap made `ref` as image_id (a later one replaces it)."""
    from filelock import FileLock

    from sandman.state import atomic_write

    paths.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with FileLock(str(_made_file(paths)) + ".lock"):
        data = made_here(paths)
        data[ref] = image_id
        atomic_write(_made_file(paths), (json.dumps(data, indent=2, sort_keys=True) + "\n").encode(),
                     0o600)
