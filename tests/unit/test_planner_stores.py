"""A planner's local store that has read further than its changelog now goes starts over (services/planner/tables.py).

The store is a real RocksDB database in a temporary directory; only the consumer's offsets are given by hand."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from faust.types import TP

from services.planner.tables import PartitionerTable, PlannerTableManager, _Recovery
from services.planner.transport import PlannerApp


class _Offsets:
    """The one consumer call recovery makes here: each changelog partition's first offset."""

    async def earliest_offsets(self, *tps: TP) -> dict[TP, int]:
        return dict.fromkeys(tps, 0)


async def test_a_store_ahead_of_its_changelog_starts_over_and_the_others_keep_theirs(tmp_path: Path) -> None:
    app = PlannerApp(
        id="stale-store",
        datadir=str(tmp_path),
        store="rocksdb://",
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=2,
        TableManager=PlannerTableManager,
    )
    table = PartitionerTable(app, name="cursors", partitions=2, key_type=bytes, value_type=bytes)
    app.tables.add(table)
    store: Any = table.data
    topic = table.changelog_topic.get_topic_name()
    stale, current = TP(topic, 1), TP(topic, 0)
    store.put_many([(1, b"gone", b"old"), (0, b"kept", b"new")])
    store.set_persisted_offset(stale, 12)  # the topic was recreated: it now ends before offset 0
    store.set_persisted_offset(current, 3)  # the topic goes on to offset 5

    recovery = app.tables.recovery
    assert isinstance(recovery, _Recovery)
    recovery.tp_to_table.update({stale: table, current: table})
    recovery.active_highwaters.update({stale: -1, current: 5})
    offsets: Counter[TP] = Counter({stale: 12, current: 3})
    await recovery._build_offsets(_Offsets(), {stale, current}, offsets, "active")  # type: ignore[arg-type]

    assert offsets[stale] == -1, "the stale partition is read again from the changelog's start"
    assert store.get_in(1, b"gone") is None and store.persisted_offset(stale) is None
    assert offsets[current] == 3
    assert store.get_in(0, b"kept") == b"new" and store.persisted_offset(current) == 3
