"""A producer keeps every topic it sends to in its metadata: a topic created later does not push one out."""

from __future__ import annotations

import asyncio
import uuid

from aiokafka.admin import NewTopic

from shared.kafka import admin_client, build_producer
from shared.settings import Settings


async def test_a_batch_for_a_known_topic_is_sent_while_a_new_topic_joins_the_metadata(settings: Settings) -> None:
    known, new = (f"{settings.topic_prefix}tracked-{uuid.uuid4().hex[:8]}" for _ in range(2))
    async with admin_client(settings) as admin:
        await admin.create_topics([NewTopic(known, 2, 1)])
        # The producer's bootstrap learns ``known`` from an answer about every topic, and nothing else adds it.
        producer = build_producer(settings, linger_ms=500, request_timeout_ms=15_000)
        await producer.start()
        try:
            await admin.create_topics([NewTopic(new, 2, 1)])
            # The first batch lingers; meanwhile the send to ``new`` has the client ask for the topics it tracks.
            first = await producer.send(known, b"queued", key=b"k")
            second = await producer.send(new, b"new", key=b"k")
            acked = await asyncio.wait_for(asyncio.gather(first, second), timeout=10)
            assert [meta.topic for meta in acked] == [known, new]
            # Without the tracking, ``known`` left the client's metadata and its batch waited for a leader until it
            # expired, asking for metadata without pause all the while.
            assert known in producer.client._topics
        finally:
            await producer.stop()
            await admin.delete_topics([known, new])
