"""The planner's entry cache: a bounded working set over the tables, scoped to the partitions it owns."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from services.planner.entries import PlanEntry, apply_upsert
from services.planner.entrycache import EntryCache
from shared.events.schedule import DeliverySpec, ScheduleState

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def entry(n: int, version: int = 1) -> PlanEntry:
    state = ScheduleState(
        id=uuid.UUID(int=n),
        tenant_id="acme",
        name=f"s{n}",
        type="interval",
        interval_seconds=10,
        payload=DeliverySpec(url="https://example.com/hook"),
        status="active",
        version=version,
        created_at=T0,
        updated_at=T0,
    )
    made, _ = apply_upsert(None, state, T0)
    assert made is not None
    return made


class Tables:
    """Stands in for the planner's tables: what a miss reads, and how often."""

    def __init__(self) -> None:
        self.rows: dict[bytes, PlanEntry] = {}
        self.reads = 0

    def load(self, partition: int, key: bytes) -> PlanEntry | None:
        self.reads += 1
        return self.rows.get(key)


def test_a_miss_reads_the_tables_once_then_memory_serves() -> None:
    tables = Tables()
    tables.rows[b"a"] = entry(1)
    cache = EntryCache(10, tables.load)
    cache.own({0})
    assert cache.get(0, b"a") == tables.rows[b"a"]
    assert cache.get(0, b"a") == tables.rows[b"a"]
    assert tables.reads == 1
    assert cache.get(0, b"missing") is None


def test_memory_holds_at_most_the_limit_and_drops_the_least_recently_used() -> None:
    tables = Tables()
    cache = EntryCache(2, tables.load)
    cache.own({0})
    for n, key in enumerate((b"a", b"b", b"c")):
        tables.rows[key] = entry(n)
        assert cache.put(0, key, tables.rows[key])
    assert len(cache) == 2
    cache.get(0, b"b")  # in memory
    cache.get(0, b"a")  # evicted: read again
    assert tables.reads == 1
    cache.get(0, b"b")
    assert tables.reads == 1, "b was used after c and stays"


def test_partitions_not_owned_are_neither_served_nor_kept() -> None:
    tables = Tables()
    tables.rows[b"a"] = entry(1)
    cache = EntryCache(10, tables.load)
    cache.own({0})
    assert cache.get(1, b"a") is None and tables.reads == 0
    assert not cache.put(1, b"a", entry(1))
    # A schedule change arrives only for an assigned partition: it takes the partition.
    assert cache.put(1, b"a", entry(1), take=True)
    assert cache.owns(1)


def test_a_revoked_partition_comes_back_from_the_tables_not_from_memory() -> None:
    tables = Tables()
    cache = EntryCache(10, tables.load)
    cache.own({0, 1})
    cache.put(1, b"a", entry(1, version=1))
    cache.release(1)
    assert not cache.owns(1) and len(cache) == 0
    tables.rows[b"a"] = entry(1, version=2)  # another planner moved it on meanwhile
    cache.own({0, 1})
    got = cache.get(1, b"a")
    assert got is not None and got.version == 2
