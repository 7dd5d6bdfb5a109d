"""Records each of the installation's consumer groups has still to handle, read from the brokers for the console's
overview: committed offsets against the partitions' ends."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from shared.kafka import admin_client, build_consumer
from shared.settings import Settings

# A page load asks at most this often; the answer is a few seconds old at worst, and the brokers are spared.
_FRESH_FOR_S = 5.0
_TIMEOUT_S = 3.0


class ConsumerLagProbe:
    """Connects for each read and holds nothing between them. One read at a time, shared by concurrent callers."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = asyncio.Lock()
        self._read_at = 0.0
        self._last: dict[str, int] = {}

    async def lag(self) -> dict[str, int]:
        """Records not yet committed, per consumer group under the topic prefix (Kafka's own ``__`` groups aside)."""
        async with self._lock:
            if time.monotonic() - self._read_at > _FRESH_FOR_S:
                self._last = await asyncio.wait_for(self._read(), _TIMEOUT_S)
                self._read_at = time.monotonic()
            return dict(self._last)

    async def _read(self) -> dict[str, int]:
        async with admin_client(self._settings) as admin:
            committed = await self._committed(admin)
        partitions = {tp for offsets in committed.values() for tp in offsets}
        if not partitions:
            return {}
        consumer: AIOKafkaConsumer = build_consumer(self._settings)
        await consumer.start()
        try:
            ends: dict[Any, int] = await consumer.end_offsets(list(partitions))
        finally:
            await consumer.stop()
        lag: dict[str, int] = defaultdict(int)
        for group, offsets in committed.items():
            lag[group] += sum(max(0, ends.get(tp, offset) - offset) for tp, offset in offsets.items())
        return dict(sorted(lag.items()))

    async def _committed(self, admin: AIOKafkaAdminClient) -> dict[str, dict[Any, int]]:
        prefix = self._settings.topic_prefix
        groups = [g for g, _ in await admin.list_consumer_groups() if g.startswith(prefix)]
        committed: dict[str, dict[Any, int]] = {}
        for group in groups:
            offsets = await admin.list_consumer_group_offsets(group)
            committed[group] = {tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}
        return committed
