"""Recipe repositories shared through git (see docs/teams.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sandman.paths import Paths

if TYPE_CHECKING:
    from sandman.catalog import Source


def recipe_sources(paths: Paths) -> list[Source]:
    """The recipe sources of every added repository, in the order they were added."""
    return []
