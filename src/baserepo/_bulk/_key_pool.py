"""Primary keys drawn from a sequence for rows that were then rolled back, kept for reuse.

``nextval`` is not transactional: a key drawn by a statement that is rolled back is gone for
good. When a batch is refused and replayed (the culprit search, error isolation), each attempt
would draw the batch's keys again, a dozen times the batch for one culprit. A pool per bulk
call hands the keys of rolled-back attempts to the next attempt instead, so a refused batch
draws no more keys than it holds rows (docs/bulk-operations.md has the numbers). A key is
*out* from the moment an insert takes it until its unit of work commits (then it is spent) or
rolls back (then it is free again). A key whose row was never written (a skipped conflict) is
free at once.
"""

from __future__ import annotations

from typing import Any

__all__ = ["KeyPool"]


class KeyPool:
    """Free keys (never written, reusable) and keys out in a unit not yet finished."""

    def __init__(self) -> None:
        self._free: list[Any] = []
        self._out: list[Any] = []

    def reuse(self, count: int) -> list[Any]:
        """Up to ``count`` free keys, smallest first, now out."""
        taken = self._free[:count]
        del self._free[:count]
        self._out.extend(taken)
        return taken

    def drawn(self, keys: list[Any]) -> None:
        """Fresh keys just drawn from the sequence, now out."""
        self._out.extend(keys)

    def unused(self, keys: list[Any]) -> None:
        """Keys of rows that were certainly not written (skipped, or their statement failed)."""
        gone = set(keys)
        self._out = [key for key in self._out if key not in gone]
        self._free.extend(keys)
        self._free.sort()

    def mark(self) -> int:
        """Where the unit about to start begins; give it to ``rolled_back``."""
        return len(self._out)

    def rolled_back(self, mark: int = 0) -> None:
        """The unit started at ``mark`` was rolled back: its keys are free again."""
        self.unused(self._out[mark:])

    def committed(self) -> None:
        """The outermost unit committed (or was released into the caller's transaction)."""
        self._out.clear()
