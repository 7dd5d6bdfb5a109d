"""The planner's entry cache: a bounded working set over the tables (the entries due soonest), scoped to the
partitions it owns."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

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


def due_at(n: int, seconds: float) -> PlanEntry:
    """Entry ``n`` with its next fire ``seconds`` after T0."""
    at = T0 + timedelta(seconds=seconds)
    return entry(n).model_copy(update={"next_nominal": at, "next_planned": at})


def test_memory_holds_at_most_the_limit_and_drops_the_entry_due_furthest_away() -> None:
    tables = Tables()
    cache = EntryCache(2, tables.load)
    cache.own({0})
    for n, (key, seconds) in enumerate(((b"a", 30), (b"b", 10), (b"c", 20))):
        tables.rows[key] = due_at(n, seconds)
        assert cache.put(0, key, tables.rows[key])
    assert len(cache) == 2
    cache.get(0, b"b")
    cache.get(0, b"c")
    assert tables.reads == 0, "b and c fire before a"
    cache.get(0, b"a")
    assert tables.reads == 1, "a, due last, was the one dropped"


def test_an_entry_with_nothing_left_to_fire_goes_first() -> None:
    tables = Tables()
    cache = EntryCache(2, tables.load)
    cache.own({0})
    ended = due_at(1, 10).model_copy(update={"next_nominal": None, "next_planned": None})
    tables.rows.update({b"ended": ended, b"far": due_at(2, 3600), b"near": due_at(3, 5)})
    for key in (b"ended", b"far", b"near"):
        cache.put(0, key, tables.rows[key])
    cache.get(0, b"far")
    cache.get(0, b"near")
    assert tables.reads == 0


def test_more_schedules_than_room_still_find_most_entries_in_memory() -> None:
    """Schedules fire in a cycle: with 25 and room for 20, least-recently-used dropped each just before it fired
    again (every fire a read); keeping the entries due soonest serves four in five from memory."""
    tables = Tables()
    cache = EntryCache(20, tables.load)
    cache.own({0})
    keys = [f"s{n}".encode() for n in range(25)]
    for n, key in enumerate(keys):
        tables.rows[key] = due_at(n, n)
    for cycle in range(4):
        for n, key in enumerate(keys):
            fired = cache.get(0, key)
            assert fired is not None
            # The fire moves the entry on by one cycle, as the fire loop's write does.
            tables.rows[key] = due_at(n, (cycle + 1) * 25 + n)
            cache.put(0, key, tables.rows[key])
    first_cycle = 25
    assert tables.reads - first_cycle <= 3 * 5, f"{tables.reads - first_cycle} reads after the first cycle"


def test_entries_written_many_times_are_still_ranked_by_their_latest_write() -> None:
    tables = Tables()
    cache = EntryCache(3, tables.load)
    cache.own({0})
    for round_ in range(2000):
        for n, key in enumerate((b"a", b"b", b"c")):
            tables.rows[key] = due_at(n, round_ * 10 + n)
            cache.put(0, key, tables.rows[key])
    # The latest writes: a due at +19,990 s, b at +19,991 s, c at +19,992 s. A fourth entry due sooner than all.
    tables.rows[b"d"] = due_at(3, 5)
    cache.put(0, b"d", tables.rows[b"d"])
    assert len(cache) == 3
    for key in (b"a", b"b", b"d"):
        cache.get(0, key)
    assert tables.reads == 0
    cache.get(0, b"c")
    assert tables.reads == 1, "c, due last, was dropped"


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
