"""The executor's consume loop through a rebalance: what is left of a batch when its partitions are revoked is not
dispatched, and a partition assigned again is tracked from scratch."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition

from services.executor.worker import Executor
from shared.events import RunDue, encode_event
from shared.events.runs import RunDueData
from shared.events.schedule import DeliverySpec, RetryPolicy
from shared.settings import Settings
from shared.timefmt import utcnow

_TP = TopicPartition("chime.runs.due", 0)


def _record(offset: int) -> ConsumerRecord[bytes, bytes]:
    """A run due in an hour: dispatching it holds it until then."""
    sid = uuid.uuid4()
    nominal = utcnow() + timedelta(hours=1)
    data = RunDueData(
        run_id=uuid.uuid4(),
        schedule_id=sid,
        tenant_id="t",
        schedule_version=1,
        nominal_time=nominal,
        planned_time=nominal,
        delivery=DeliverySpec(url="http://127.0.0.1:9/hook"),
        retry_policy=RetryPolicy(),
    )
    value = encode_event(RunDue(subject=str(sid), tenant="t", time=utcnow(), data=data))
    return ConsumerRecord(_TP.topic, _TP.partition, offset, 0, 0, b"k", value, None, len(b"k"), len(value), [])


class _Consumer:
    """Hands out one batch; while the executor dispatches it, the group revokes the partition and assigns it back."""

    def __init__(self, executor: Executor, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        self._executor = executor
        self._records = records
        self.committed: list[dict[TopicPartition, Any]] = []

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[Any]]:
        if not self._records:
            self._executor.stop()
            return {}
        records, self._records = self._records, []
        # Runs at the loop's first turn after this returns, that is at the first slice boundary of the dispatch.
        asyncio.get_running_loop().call_soon(lambda: asyncio.ensure_future(self._rebalance()))
        return {_TP: records}

    async def _rebalance(self) -> None:
        await self._executor.on_revoked([_TP])
        self._executor.on_assigned([_TP])

    def assignment(self) -> set[TopicPartition]:
        return {_TP}

    async def commit(self, offsets: dict[TopicPartition, Any]) -> None:
        self.committed.append(offsets)


async def test_the_rest_of_a_batch_revoked_under_it_is_not_dispatched() -> None:
    executor = Executor(Settings(), "worker-1")
    consumer = _Consumer(executor, [_record(offset) for offset in range(100)])
    executor._consumer = consumer
    await asyncio.wait_for(executor._loop(), timeout=10)
    # The revocation cancelled the runs held so far; nothing after it was taken up, so nothing is held or tracked,
    # and the partition is read again from the offset of its first record, which is all that was ever committed.
    assert executor._held == {}
    tracker = executor._offsets.trackers[_TP]
    assert len(tracker) == 0
    assert tracker.committable() is None
    assert [offsets[_TP].offset for offsets in consumer.committed if _TP in offsets] == [0]
