"""Which partition a key lands on: Kafka's default partitioner (murmur2), as every Chime producer uses it."""

from __future__ import annotations

from aiokafka.partitioner import murmur2


def key_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives ``key``: the one its schedule lives in."""
    partition: int = (murmur2(key) & 0x7FFFFFFF) % partitions
    return partition
