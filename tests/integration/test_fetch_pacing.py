"""Fetch pacing against the real broker: a quiet consumer asks rarely, and still reads a record as soon as it lands."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.fetch_pacing import FetchPace, pace_fetches
from shared.kafka import build_consumer, build_producer
from shared.settings import Settings
from shared.topics import RUNS_RESULTS, topic_name

_QUIET_MS = 10_000
_BUSY = FetchPace(busy_wait_ms=50, busy_min_bytes=1024 * 1024, quiet_wait_ms=_QUIET_MS)


@pytest.fixture
async def quiet_consumer(settings: Settings) -> AsyncIterator[tuple[AIOKafkaConsumer, list[float]]]:
    """A paced consumer at the end of the results topic, and the times at which its fetches came back."""
    topic = topic_name(settings, RUNS_RESULTS)
    consumer = build_consumer(settings, fetch_max_wait_ms=50, fetch_min_bytes=1024 * 1024)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or await _partitions(consumer, topic)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        pace_fetches(consumer, _BUSY)
        fetcher: Any = consumer._fetcher
        paced = fetcher._proc_fetch_request
        answers: list[float] = []

        async def counted(*args: Any) -> bool:
            found: bool = await paced(*args)
            answers.append(time.monotonic())
            return found

        fetcher._proc_fetch_request = counted
        yield consumer, answers
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()
    return consumer.partitions_for_topic(topic) or set()


async def _until_quiet(consumer: AIOKafkaConsumer, answers: list[float]) -> None:
    """Poll until an empty fetch has come back, so the one in flight is a quiet one."""
    deadline = time.monotonic() + 5
    while not answers and time.monotonic() < deadline:
        await consumer.getmany(timeout_ms=100)
    assert answers, "no fetch came back within 5 s"
    assert consumer._fetcher._fetch_max_wait_ms == _QUIET_MS
    assert consumer._fetcher._fetch_min_bytes == 1


async def test_a_quiet_consumer_reads_a_new_record_at_once(
    settings: Settings, quiet_consumer: tuple[AIOKafkaConsumer, list[float]]
) -> None:
    consumer, answers = quiet_consumer
    await _until_quiet(consumer, answers)
    producer = build_producer(settings)
    await producer.start()
    try:
        key = uuid.uuid4().hex.encode()
        await asyncio.sleep(0.2)  # the quiet fetch is in the broker by now
        sent = time.monotonic()
        await producer.send_and_wait(topic_name(settings, RUNS_RESULTS), b"pacing", key=key)
        got: list[bytes | None] = []
        while not got and time.monotonic() - sent < _QUIET_MS / 1000:
            batch = await consumer.getmany(timeout_ms=100)
            got = [r.value for rs in batch.values() for r in rs if r.key == key]
        took = time.monotonic() - sent
    finally:
        await producer.stop()
    assert got == [b"pacing"]
    # The broker answered the quiet fetch when the record landed, not when its 10 s wait ran out.
    assert took < 2, f"read {took:.2f} s after it was sent"
    # Records found: the next fetch is a busy one again.
    assert consumer._fetcher._fetch_max_wait_ms == _BUSY.busy_wait_ms
    assert consumer._fetcher._fetch_min_bytes == _BUSY.busy_min_bytes


async def test_a_quiet_consumer_asks_once_per_quiet_wait(
    quiet_consumer: tuple[AIOKafkaConsumer, list[float]],
) -> None:
    consumer, answers = quiet_consumer
    await _until_quiet(consumer, answers)
    before = len(answers)
    window_end = time.monotonic() + 2
    while time.monotonic() < window_end:
        await consumer.getmany(timeout_ms=100)
    # A busy consumer would have asked about forty times in these 2 s (one fetch per 50 ms).
    assert len(answers) - before <= 1
