"""The planner's fire heaps: earliest first across partitions, and a turn bounded in size."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.planner.heaps import PartitionHeaps

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def _filled() -> PartitionHeaps:
    heaps = PartitionHeaps()
    for n in range(30):
        due = T0 + timedelta(milliseconds=n)
        heaps.push(n % 3, due, f"s{n}".encode(), 1, due)
    return heaps


def test_due_items_come_earliest_first_across_partitions() -> None:
    heaps = _filled()
    popped = heaps.pop_due(T0 + timedelta(milliseconds=9))
    assert [item.key for _, item in popped] == [f"s{n}".encode() for n in range(10)]
    assert [partition for partition, _ in popped] == [n % 3 for n in range(10)]
    assert len(heaps) == 20


def test_a_limit_leaves_the_latest_for_the_next_turn() -> None:
    heaps = _filled()
    first = heaps.pop_due(T0 + timedelta(seconds=1), limit=12)
    assert [item.key for _, item in first] == [f"s{n}".encode() for n in range(12)]
    rest = heaps.pop_due(T0 + timedelta(seconds=1), limit=100)
    assert [item.key for _, item in rest] == [f"s{n}".encode() for n in range(12, 30)]
    assert len(heaps) == 0 and heaps.earliest() is None
