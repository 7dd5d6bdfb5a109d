"""A time-ordered heap of next fires per partition. A derived index: rebuilt from the table, never stored."""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(order=True, frozen=True, slots=True)
class HeapItem:
    due: datetime
    seq: int
    key: bytes = field(compare=False)
    version: int = field(compare=False)
    nominal: datetime = field(compare=False)


class PartitionHeaps:
    def __init__(self) -> None:
        self._heaps: dict[int, list[HeapItem]] = {}
        self._seq = itertools.count()

    def push(self, partition: int, due: datetime, key: bytes, version: int, nominal: datetime) -> None:
        heapq.heappush(self._heaps.setdefault(partition, []), HeapItem(due, next(self._seq), key, version, nominal))

    def replace(self, partition: int, items: list[tuple[datetime, bytes, int, datetime]]) -> None:
        heap = [HeapItem(due, next(self._seq), key, version, nominal) for due, key, version, nominal in items]
        heapq.heapify(heap)
        self._heaps[partition] = heap

    def drop(self, partition: int) -> None:
        self._heaps.pop(partition, None)

    def partitions(self) -> set[int]:
        return set(self._heaps)

    def earliest(self) -> datetime | None:
        heads = [h[0].due for h in self._heaps.values() if h]
        return min(heads) if heads else None

    def pop_due(self, until: datetime, limit: int | None = None) -> list[tuple[int, HeapItem]]:
        """Items due by ``until``, earliest first across partitions, at most ``limit`` of them."""
        out: list[tuple[int, HeapItem]] = []
        heads = [(heap[0], partition) for partition, heap in self._heaps.items() if heap and heap[0].due <= until]
        heapq.heapify(heads)
        while heads and (limit is None or len(out) < limit):
            _, partition = heapq.heappop(heads)
            heap = self._heaps[partition]
            out.append((partition, heapq.heappop(heap)))
            if heap and heap[0].due <= until:
                heapq.heappush(heads, (heap[0], partition))
        return out

    def __len__(self) -> int:
        return sum(len(h) for h in self._heaps.values())
