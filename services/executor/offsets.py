"""Commit only below the lowest unfinished record of a partition, so a crash never skips a run."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.structs import OffsetAndMetadata
from sortedcontainers import SortedSet

log = logging.getLogger(__name__)


class OffsetTracker:
    def __init__(self) -> None:
        self._pending: SortedSet = SortedSet()
        self._highest_seen = -1

    def started(self, offset: int) -> None:
        self._pending.add(offset)
        self._highest_seen = max(self._highest_seen, offset)

    def finished(self, offset: int) -> None:
        self._pending.discard(offset)

    def committable(self) -> int | None:
        """The offset to commit (the next record to read after a restart), or None if nothing was seen."""
        if self._pending:
            first: int = self._pending[0]
            return first
        return self._highest_seen + 1 if self._highest_seen >= 0 else None

    def __len__(self) -> int:
        return len(self._pending)


class PartitionOffsets:
    """One consumer's trackers by partition, and the commit of what each of them allows."""

    def __init__(self, consumer_name: str) -> None:
        self.trackers: dict[TopicPartition, OffsetTracker] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._name = consumer_name

    def tracker(self, tp: TopicPartition) -> OffsetTracker:
        tracker = self.trackers.get(tp)
        if tracker is None:
            tracker = self.trackers[tp] = OffsetTracker()
        return tracker

    def pending(self) -> int:
        return sum(len(t) for t in self.trackers.values())

    async def commit(self, consumer: AIOKafkaConsumer) -> dict[TopicPartition, int]:
        """Commit each assigned partition whose committable offset moved; what was committed (nothing on failure:
        the next round tries again, and at worst records are delivered again)."""
        assigned = consumer.assignment()
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        for tp, tracker in self.trackers.items():
            offset = tracker.committable()
            if tp in assigned and offset is not None and offset > self._committed.get(tp, -1):
                offsets[tp] = OffsetAndMetadata(offset, "")
        if not offsets:
            return {}
        try:
            await consumer.commit(offsets)
        except Exception as exc:  # noqa: BLE001 - retried next round; records re-deliver at worst
            log.warning("%s offset commit failed: %s", self._name, exc)
            return {}
        done = {tp: meta.offset for tp, meta in offsets.items()}
        self._committed.update(done)
        return done

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        for tp in partitions:
            self.trackers.pop(tp, None)
            self._committed.pop(tp, None)


class Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """A rebalance listener that hands both events to its owner."""

    def __init__(
        self,
        revoked: Callable[[list[TopicPartition]], Awaitable[None]],
        assigned: Callable[[list[TopicPartition]], None],
    ) -> None:
        self._revoked = revoked
        self._assigned = assigned

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._revoked(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self._assigned(assigned)
