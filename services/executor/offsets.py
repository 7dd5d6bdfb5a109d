"""Commit only below the lowest unfinished record of a partition, so a crash never skips a run."""

from __future__ import annotations

from sortedcontainers import SortedSet


class OffsetTracker:
    def __init__(self) -> None:
        self._pending: SortedSet = SortedSet()
        self._highest_seen = -1

    def started(self, offset: int) -> None:
        self._pending.add(offset)
        self._highest_seen = max(self._highest_seen, offset)

    def finished(self, offset: int) -> None:
        self._pending.discard(offset)

    def committable(self) -> int | None:
        """The offset to commit (the next record to read after a restart), or None if nothing was seen."""
        if self._pending:
            first: int = self._pending[0]
            return first
        return self._highest_seen + 1 if self._highest_seen >= 0 else None

    def __len__(self) -> int:
        return len(self._pending)
