"""A command over several items (`install A B`, `reshim --all`, `upgrade`): one rule for failures.

One item that fails stops nothing: the others are done all the same, each failure is said
when it happens, and the command ends with the first failure's exit code. A command given one
item is different: that item's error is the command's, raised as it is (message, detail,
code), as if there were no loop at all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from sandman.errors import SandmanError

T = TypeVar("T")
Item = TypeVar("Item")


@dataclass(frozen=True)
class Batch(Generic[T]):
    """Each item's result or error, under the item's name, in the order the items came."""

    outcomes: tuple[tuple[str, T | SandmanError], ...] = ()

    @property
    def failed(self) -> list[tuple[str, SandmanError]]:
        return [(name, got) for name, got in self.outcomes if isinstance(got, SandmanError)]

    @property
    def exit_code(self) -> int:
        """0 when every item worked, else the first failure's code."""
        failed = self.failed
        return failed[0][1].exit_code if failed else 0


def each(items: Sequence[Item], work: Callable[[Item], T], *,
         failed: Callable[[Item, SandmanError], None],
         name: Callable[[Item], str] = str) -> Batch[T]:
    """work(item) for every item in turn. A lone item's error is raised; with several, each
    error goes to `failed` (to be said at once) and the next item is done."""
    outcomes: list[tuple[str, T | SandmanError]] = []
    for item in items:
        try:
            outcomes.append((name(item), work(item)))
        except SandmanError as e:
            if len(items) == 1:
                raise
            failed(item, e)
            outcomes.append((name(item), e))
    return Batch(tuple(outcomes))
