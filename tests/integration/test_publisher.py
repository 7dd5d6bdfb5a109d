"""The batch publisher against the real broker: every record lands, each caller learns of its own ack."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError
from aiokafka.partitioner import DefaultPartitioner

from shared.kafka import build_producer
from shared.publisher import BatchPublisher, PublisherStopped
from shared.settings import Settings
from shared.topics import RUNS_RESULTS, topic_name
from tests.integration.helpers import read_records


async def _started(settings: Settings) -> AIOKafkaProducer:
    producer = build_producer(settings)
    await producer.start()
    return producer


@asynccontextmanager
async def _publishing(settings: Settings, interval_s: float) -> AsyncIterator[BatchPublisher]:
    producer = await _started(settings)
    publisher = BatchPublisher(producer, interval_s)
    publisher.start()
    try:
        yield publisher
    finally:
        await publisher.stop()
        await producer.stop()


async def test_records_from_many_tasks_all_land_and_are_acknowledged(settings: Settings) -> None:
    topic = topic_name(settings, RUNS_RESULTS)
    keys = [str(uuid.uuid4()) for _ in range(200)]
    async with _publishing(settings, 0.02) as publisher:
        acks = [publisher.publish(topic, f"value-{k}".encode(), k.encode(), [("tenant", b"acme")]) for k in keys]
        await asyncio.wait_for(asyncio.gather(*acks), 10)
    records = await read_records(settings, topic, keys=keys, count=len(keys))
    assert sorted(r.key for r in records if r.key) == sorted(k.encode() for k in keys)
    assert all(r.value == b"value-" + (r.key or b"") for r in records)
    assert all(dict(r.headers).get("tenant") == b"acme" for r in records)


async def test_records_land_on_the_partition_of_their_key_in_order_beyond_one_batch(settings: Settings) -> None:
    """The round builds its own batches: a key's records land where the producer's partitioner (Kafka's murmur2)
    puts them, and in order even when one partition's share of a round fills several batches."""
    topic = topic_name(settings, RUNS_RESULTS)
    keys = [str(uuid.uuid4()) for _ in range(40)]
    hot = keys[0]
    async with _publishing(settings, 0.05) as publisher:
        # 300 records of 1 KiB for one key: about 20 of the producer's 16 KiB batches in one round.
        acks = [publisher.publish(topic, b"%04d" % n + b"x" * 1020, hot.encode(), []) for n in range(300)]
        acks += [publisher.publish(topic, b"other", k.encode(), []) for k in keys[1:]]
        await asyncio.wait_for(asyncio.gather(*acks), 20)
        partitions = sorted(await publisher._producer.partitions_for(topic))
    records = await read_records(settings, topic, keys=keys, count=300 + len(keys) - 1)
    hot_records = [r for r in records if r.key == hot.encode()]
    assert [r.value[:4] for r in hot_records] == [b"%04d" % n for n in range(300)]
    partitioner = DefaultPartitioner()
    for record in records:
        assert record.partition == partitioner(record.key, partitions, partitions), record.key


async def test_stop_hands_over_what_is_pending(settings: Settings) -> None:
    topic = topic_name(settings, RUNS_RESULTS)
    producer = await _started(settings)
    publisher = BatchPublisher(producer, 5.0)
    publisher.start()
    key = str(uuid.uuid4())
    ack = publisher.publish(topic, b"last", key.encode(), [])
    # The round would wait 5 s; stopping sends at once, and the producer's stop flushes it.
    await publisher.stop()
    await producer.stop()
    await asyncio.wait_for(ack, 5)
    records = await read_records(settings, topic, keys=[key], count=1)
    assert [r.value for r in records] == [b"last"]


async def test_a_record_the_producer_refuses_fails_only_its_caller(settings: Settings) -> None:
    topic = topic_name(settings, RUNS_RESULTS)
    key = str(uuid.uuid4())
    async with _publishing(settings, 0.01) as publisher:
        too_big = publisher.publish(topic, b"x" * (2 * 1024 * 1024), key.encode(), [])
        fine = publisher.publish(topic, b"fine", key.encode(), [])
        results = await asyncio.wait_for(asyncio.gather(too_big, fine, return_exceptions=True), 10)
    assert isinstance(results[0], Exception)
    assert results[1] is None


class _Flaky:
    """The real producer, refusing its first sends as it does while the broker is away."""

    def __init__(self, producer: AIOKafkaProducer, refusals: int) -> None:
        self._producer = producer
        self.refusals = refusals

    def __getattr__(self, name: str) -> Any:
        return getattr(self._producer, name)

    async def send_batch(self, *args: Any, **kwargs: Any) -> Any:
        if self.refusals > 0:
            self.refusals -= 1
            raise KafkaConnectionError("broker away")
        return await self._producer.send_batch(*args, **kwargs)


async def test_records_wait_out_a_broker_outage_instead_of_failing(settings: Settings) -> None:
    topic = topic_name(settings, RUNS_RESULTS)
    producer = await _started(settings)
    flaky = _Flaky(producer, refusals=3)
    publisher = BatchPublisher(flaky, 0.01)
    publisher.start()
    keys = [str(uuid.uuid4()) for _ in range(5)]
    try:
        acks = [publisher.publish(topic, b"kept", k.encode(), []) for k in keys]
        await asyncio.wait_for(asyncio.gather(*acks), 20)
    finally:
        await publisher.stop()
        await producer.stop()
    assert flaky.refusals == 0, "the outage was seen"
    records = await read_records(settings, topic, keys=keys, count=len(keys))
    assert sorted(r.key for r in records if r.key) == sorted(k.encode() for k in keys)


async def test_stop_fails_what_the_broker_never_took(settings: Settings) -> None:
    topic = topic_name(settings, RUNS_RESULTS)
    producer = await _started(settings)
    publisher = BatchPublisher(_Flaky(producer, refusals=1_000), 0.01)
    publisher.start()
    ack = publisher.publish(topic, b"never", b"k", [])
    await asyncio.sleep(0.2)
    await publisher.stop()
    await producer.stop()
    with pytest.raises(PublisherStopped):
        await asyncio.wait_for(ack, 5)
