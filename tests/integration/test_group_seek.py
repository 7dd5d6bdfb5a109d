"""The planner's seek back after a rebalance, against the real broker: every fetched record not yet committed is
read again, including the head of a partition the group never committed."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import NewTopic

from services.planner.transport import seek_to_committed_or_start
from shared.kafka import admin_client, build_consumer, build_producer
from shared.settings import Settings

_RECORDS = 6


@pytest.fixture
async def topic(settings: Settings) -> AsyncIterator[str]:
    """A topic of two partitions with records on both, deleted afterwards."""
    name = f"{settings.topic_prefix}seek-{uuid.uuid4().hex[:8]}"
    async with admin_client(settings) as admin:
        await admin.create_topics([NewTopic(name, num_partitions=2, replication_factor=1)])
    producer = build_producer(settings)
    await producer.start()
    try:
        for partition in (0, 1):
            for i in range(_RECORDS):
                await producer.send_and_wait(name, f"{partition}-{i}".encode(), partition=partition)
    finally:
        await producer.stop()
    try:
        yield name
    finally:
        async with admin_client(settings) as admin:
            await admin.delete_topics([name])


async def _read_all(consumer: AIOKafkaConsumer, want: int) -> dict[int, list[int]]:
    """Offsets read per partition until ``want`` records came (or 10 s passed)."""
    read: dict[int, list[int]] = {0: [], 1: []}
    async with asyncio.timeout(10):
        while sum(map(len, read.values())) < want:
            for tp, records in (await consumer.getmany(timeout_ms=200)).items():
                read[tp.partition].extend(r.offset for r in records)
    return read


async def test_a_seek_back_reads_again_from_the_committed_offset_or_the_start(settings: Settings, topic: str) -> None:
    consumer = build_consumer(
        settings, topic, group_id=f"{settings.topic_prefix}seek-{uuid.uuid4().hex[:8]}", auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        assert await _read_all(consumer, 2 * _RECORDS) == {0: list(range(_RECORDS)), 1: list(range(_RECORDS))}
        # Partition 0 committed up to 4; partition 1 never committed, yet its fetches got to the end.
        first, second = TopicPartition(topic, 0), TopicPartition(topic, 1)
        await consumer.commit({first: 4})
        assert await consumer.position(second) == _RECORDS

        sought: list[int] = []
        committed = await seek_to_committed_or_start(consumer, lambda: sought.append(len(sought)))

        assert committed == {first: 4, second: None}
        assert sought == [0]
        again = await _read_all(consumer, (_RECORDS - 4) + _RECORDS)
        assert again == {0: list(range(4, _RECORDS)), 1: list(range(_RECORDS))}
    finally:
        await consumer.stop()
