"""A Faust table the fire loop may write: rows go to the partition of their key, not of the current event.

Faust routes a table write to the partition of the event being processed, so a write from a timer or task (the
fire loop) is refused. ``use_partitioner=True`` makes the changelog record take its key's partition instead;
faust-streaming 0.15's RocksDB store still asks for the current event when it picks the local database
(``faust/stores/rocksdb.py``, ``Store._set``). This store picks the key's partition the same way the producer
does (murmur2, as for ``chime.schedules``), so the changelog and the local database agree.

``write_many`` writes a batch of rows the way Faust's ``table[key] = value`` does (local store, changelog record,
persisted changelog offset) without its per-key machinery: a future, a buffered send and a callback for each
row, and an offset write per acknowledged record. That machinery was three quarters of the planner's cost per
fire.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Awaitable, Iterable, Iterator
from typing import Any, Protocol, cast

import faust
from aiokafka import AIOKafkaProducer
from faust.stores.rocksdb import Store as RocksDBStore
from faust.tables import TableManager
from faust.tables.recovery import Recovery
from faust.types import TP
from rocksdict import WriteBatch
from yarl import URL

from shared.partitioning import key_partition
from shared.publisher import OutBatch, send_all

log = logging.getLogger(__name__)


class KafkaProducing(Protocol):
    """The app the table belongs to can hand over its aiokafka producer (``PlannerApp``)."""

    def kafka_producer(self) -> AIOKafkaProducer: ...


class _KeyPartitionedRocksDB(RocksDBStore):
    def _set(self, key: bytes, value: bytes | None) -> None:
        partition = key_partition(key, self.table.partitions or self.app.conf.topic_partitions)
        self._key_index[key] = partition
        self._db_for_partition(partition).put(key, value)

    def put_many(self, rows: Iterable[tuple[int, bytes, bytes]]) -> None:
        """One RocksDB write per partition for a batch of rows whose partitions the caller knows."""
        batches: dict[int, WriteBatch] = {}
        for partition, key, value in rows:
            batch = batches.get(partition)
            if batch is None:
                batch = batches[partition] = WriteBatch(raw_mode=True)
            batch.put(key, value)
            self._key_index[key] = partition
        for partition, batch in batches.items():
            self._db_for_partition(partition).write(batch)

    def reset_partition(self, partition: int) -> None:
        """Start this partition's local database over, empty: its changelog no longer has what it holds."""
        db = self._dbs.pop(partition, None)
        if db is not None:
            db.close()
        shutil.rmtree(self.partition_path(partition), ignore_errors=True)
        for key in [k for k, p in self._key_index.items() if p == partition]:
            del self._key_index[key]

    def get_in(self, partition: int, key: bytes) -> bytes | None:
        value: bytes | None = self._db_for_partition(partition).get(key)
        return value

    def items_in(self, partition: int) -> Iterator[tuple[bytes, bytes]]:
        yield from self._visible_items(self._db_for_partition(partition))


class PartitionerTable(faust.Table[bytes, bytes]):
    """A table written from outside stream iteration (``use_partitioner=True``), on any store."""

    def __init__(self, app: faust.App, **kwargs: Any) -> None:
        super().__init__(app, use_partitioner=True, **kwargs)
        self._pending: set[asyncio.Task[None]] = set()

    def row(self, partition: int, key: bytes) -> bytes | None:
        """One row, read from its partition's store without Faust's search across partitions."""
        store = self.data
        if isinstance(store, _KeyPartitionedRocksDB):
            return store.get_in(partition, key)
        value: bytes | None = store.get(key)
        return value

    def rows(self, partition: int) -> Iterator[tuple[bytes, bytes]]:
        """Every row of one partition, streamed (recovery reads a million rows without holding them)."""
        store = self.data
        if isinstance(store, _KeyPartitionedRocksDB):
            yield from store.items_in(partition)
            return
        for key, value in list(store.items()):
            if key_partition(key, self.partitions or self.app.conf.topic_partitions) == partition:
                yield key, value

    async def write_many(self, rows: list[tuple[int, bytes, bytes]]) -> None:
        """Write (partition, key, value) rows to the local store now and to the changelog in one go;
        acknowledgements are awaited in the background (``flush``). A row the changelog loses is older state after
        a restart: a repeated fire, never a lost one, since a fire's ``run.due`` is acknowledged before its cursor
        is written. The partition is the key's (``key_partition``); callers know it already."""
        store = self.data
        if isinstance(store, _KeyPartitionedRocksDB):
            store.put_many(rows)
        else:
            for _, key, value in rows:
                store[key] = value
        topic = self.changelog_topic.get_topic_name()
        if not rows:
            return
        # Whole batches to the aiokafka producer under Faust's: a send per row cost a future and the accumulator's
        # bookkeeping for each of them, twice per fire with the run's own record.
        producer = cast("KafkaProducing", self.app).kafka_producer()
        records = [(topic, partition, key, value, ()) for partition, key, value in rows]
        sent = await send_all(producer, {}, records)
        task = asyncio.create_task(self._persist_offsets(topic, sent))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _persist_offsets(self, topic: str, sent: list[tuple[OutBatch, Awaitable[Any]]]) -> None:
        try:
            acked = await asyncio.gather(*(ack for _, ack in sent))
        except Exception:  # noqa: BLE001 - see write_many: a lost cursor write repeats a fire
            log.exception("writing %d cursor batches to the changelog failed", len(sent))
            return
        highest: dict[int, int] = {}
        for (batch, _), meta in zip(sent, acked, strict=True):
            # A batch's acknowledgement carries its first record's offset; its records follow one by one.
            last = meta.offset + len(batch.members) - 1
            highest[batch.partition] = max(highest.get(batch.partition, -1), last)
        for partition, offset in highest.items():
            self.data.set_persisted_offset(TP(topic, partition), offset)

    async def flush(self) -> None:
        """Wait for every changelog write handed over so far."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    def _new_store_by_url(self, url: str | URL) -> Any:
        if URL(str(url)).scheme != "rocksdb":
            return super()._new_store_by_url(url)
        return _KeyPartitionedRocksDB(
            url,
            self.app,
            self,
            table_name=self.name,
            key_type=self.key_type,
            key_serializer=self.key_serializer,
            value_serializer=self.value_serializer,
            value_type=self.value_type,
            loop=self.loop,
            options=self.options,
        )


class _Recovery(Recovery):
    """Faust's recovery, which starts a partition's local store over when its changelog is behind it.

    The local RocksDB store is a copy of the changelog topic, and the changelog is the truth. A store that has read
    further than the topic now goes (its persisted offset past the topic's end) holds what a recreated or emptied
    topic no longer has: a broker reset under a planner that kept its data directory. Faust stops the worker there
    (``ConsistencyError``), and a restart meets the same store. Kafka Streams wipes such a store and restores it from
    the changelog; so does this, for the partitions concerned, and the planner rebuilds its plan from what it reads.
    """

    async def _build_offsets(self, consumer: Any, tps: set[TP], destination: Any, title: str) -> None:
        await super()._build_offsets(consumer, tps, destination, title)
        if title != "active":
            return  # the planner keeps no standby replicas
        for tp in tps:
            highwater = self.active_highwaters.get(tp)
            table: Any = self.tp_to_table.get(tp)
            store = table.data if table is not None else None
            if highwater is None or destination[tp] <= highwater or not isinstance(store, _KeyPartitionedRocksDB):
                continue
            log.warning(
                "the local store of %s partition %d has read to offset %d, past the end of its changelog (%d): the "
                "topic was recreated or emptied; starting the store over from the changelog",
                tp.topic,
                tp.partition,
                destination[tp],
                highwater,
            )
            store.reset_partition(tp.partition)
            destination[tp] = -1


class PlannerTableManager(TableManager):
    """Faust's table manager with the recovery above."""

    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = _Recovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery
