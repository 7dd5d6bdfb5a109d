"""A Faust table the fire loop may write: rows go to the partition of their key, not of the current event.

Faust routes a table write to the partition of the event being processed, so a write from a timer or task (the
fire loop) is refused. ``use_partitioner=True`` makes the changelog record take its key's partition instead;
faust-streaming 0.15's RocksDB store still asks for the current event when it picks the local database
(``faust/stores/rocksdb.py``, ``Store._set``). This store picks the key's partition the same way the producer
does (murmur2, as for ``chime.schedules``), so the changelog and the local database agree.
"""

from __future__ import annotations

from typing import Any

import faust
from aiokafka.partitioner import murmur2
from faust.stores.rocksdb import Store as RocksDBStore
from yarl import URL


def key_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives ``key``: the one its schedule lives in."""
    partition: int = (murmur2(key) & 0x7FFFFFFF) % partitions
    return partition


class _KeyPartitionedRocksDB(RocksDBStore):
    def _set(self, key: bytes, value: bytes | None) -> None:
        partition = key_partition(key, self.table.partitions or self.app.conf.topic_partitions)
        self._key_index[key] = partition
        self._db_for_partition(partition).put(key, value)


class PartitionerTable(faust.Table[bytes, bytes]):
    """A table written from outside stream iteration (``use_partitioner=True``), on any store."""

    def __init__(self, app: faust.App, **kwargs: Any) -> None:
        super().__init__(app, use_partitioner=True, **kwargs)

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
