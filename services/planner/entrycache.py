"""The parsed entries of the partitions a planner owns: those due soonest in memory, the rest on disk.

A parsed entry (pydantic models for the definition, its payload and policies, and the cursor) takes about
4 KB; a million of them would not fit the planner's 1 GiB budget. The tables (RocksDB, written through on every
change and fire) are the entries' durable copy, so memory holds only a bounded working set, and a miss parses
the entry from its two table rows (tens of microseconds). The heap keeps what decides when to fire, so an entry
is read only when it fires or changes.

When memory is full, the entry whose next fire is furthest away goes: the planner knows when each entry is next
needed, so it can keep what a perfect cache would (Belady's rule). Least recently used, the rule before, is the
worst one for a planner's traffic: schedules fire in a cycle, and with more schedules than room each one had been
dropped just before its next fire, so every fire missed. With 25,000 interval schedules every 10 s and room for
20,000, the misses were a quarter of the planner's samples, and its CPU went from a quarter of a core at 2,000
fires/s (20,000 schedules, all in memory) to half a core at 2,500/s. With this rule, in such a cycle the share that
fits is served from memory: four fires in five (``tests/unit/test_entry_cache.py``). An entry with nothing left to
fire (paused, deleted, ended) goes first.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable

from services.planner.entries import PlanEntry

Loader = Callable[[int, bytes], PlanEntry | None]

# The eviction heap keeps an item per write and drops stale ones lazily; past this many per live entry it is rebuilt.
_HEAP_SLACK = 2


def _rank(entry: PlanEntry) -> float:
    """Heap order: the entry whose next fire is furthest away comes first (nothing to fire: first of all)."""
    nxt = entry.next_fire()
    return -math.inf if nxt is None else -nxt.planned.timestamp()


class EntryCache:
    def __init__(self, limit: int, load: Loader) -> None:
        self._limit = max(1, limit)
        self._load = load
        self._owned: set[int] = set()
        # key → (partition, entry, its rank, the sequence number of its current heap item)
        self._entries: dict[bytes, tuple[int, PlanEntry, float, int]] = {}
        self._by_next: list[tuple[float, int, bytes]] = []
        self._seq = 0

    def owns(self, partition: int) -> bool:
        return partition in self._owned

    def owned(self) -> set[int]:
        return set(self._owned)

    def get(self, partition: int, key: bytes) -> PlanEntry | None:
        """The entry of ``key`` if its partition is owned: from memory, else parsed from the tables."""
        if partition not in self._owned:
            return None
        hit = self._entries.get(key)
        if hit is not None:
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
        self._entries.clear()
        self._by_next.clear()

    def release(self, partition: int) -> None:
        """Forget a revoked partition; should it come back, its entries are read afresh from the tables."""
        self._owned.discard(partition)
        for key in [k for k, (p, *_) in self._entries.items() if p == partition]:
            del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)

    def _remember(self, partition: int, key: bytes, entry: PlanEntry) -> None:
        self._seq += 1
        rank = _rank(entry)
        self._entries[key] = (partition, entry, rank, self._seq)
        heapq.heappush(self._by_next, (rank, self._seq, key))
        while len(self._entries) > self._limit:
            _, seq, evicted = heapq.heappop(self._by_next)
            held = self._entries.get(evicted)
            if held is not None and held[3] == seq:
                del self._entries[evicted]
        if len(self._by_next) > _HEAP_SLACK * len(self._entries) + 1024:
            # Drop the items of entries written again since (or evicted): one per entry is left.
            self._by_next = [(r, seq, k) for k, (_, _, r, seq) in self._entries.items()]
            heapq.heapify(self._by_next)
