"""The parsed entries of the partitions a planner owns: the most recently used ones in memory, the rest on disk.

A parsed entry (pydantic models for the definition, its payload and policies, and the cursor) takes about
4 KB; a million of them would not fit the planner's 1 GiB budget. The tables (RocksDB, written through on every
change and fire) are the entries' durable copy, so memory holds only a bounded working set, and a miss parses
the entry from its two table rows (tens of microseconds). The heap keeps what decides when to fire, so an entry
is read only when it fires or changes.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable

from services.planner.entries import PlanEntry

Loader = Callable[[int, bytes], PlanEntry | None]


class EntryCache:
    def __init__(self, limit: int, load: Loader) -> None:
        self._limit = max(1, limit)
        self._load = load
        self._owned: set[int] = set()
        self._lru: OrderedDict[bytes, tuple[int, PlanEntry]] = OrderedDict()

    def owns(self, partition: int) -> bool:
        return partition in self._owned

    def owned(self) -> set[int]:
        return set(self._owned)

    def get(self, partition: int, key: bytes) -> PlanEntry | None:
        """The entry of ``key`` if its partition is owned: from memory, else parsed from the tables."""
        if partition not in self._owned:
            return None
        hit = self._lru.get(key)
        if hit is not None:
            self._lru.move_to_end(key)
            return hit[1]
        entry = self._load(partition, key)
        if entry is not None:
            self._remember(partition, key, entry)
        return entry

    def put(self, partition: int, key: bytes, entry: PlanEntry, *, take: bool = False) -> bool:
        """Remember the entry just written to the tables; False (and not kept) for a partition not owned.

        ``take`` owns the partition first: a schedule change arrives only for a partition the consumer was given,
        possibly a moment before the recovery callback has declared it owned.
        """
        if take:
            self._owned.add(partition)
        elif partition not in self._owned:
            return False
        self._remember(partition, key, entry)
        return True

    def own(self, partitions: Iterable[int]) -> None:
        """Own exactly these partitions (after recovery): forget every parsed entry, the tables may have moved on."""
        self._owned = set(partitions)
        self._lru.clear()

    def release(self, partition: int) -> None:
        """Forget a revoked partition; should it come back, its entries are read afresh from the tables."""
        self._owned.discard(partition)
        for key in [k for k, (p, _) in self._lru.items() if p == partition]:
            del self._lru[key]

    def __len__(self) -> int:
        return len(self._lru)

    def _remember(self, partition: int, key: bytes, entry: PlanEntry) -> None:
        self._lru[key] = (partition, entry)
        self._lru.move_to_end(key)
        while len(self._lru) > self._limit:
            self._lru.popitem(last=False)
