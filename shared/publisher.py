"""One produce request per interval for records that many tasks publish one at a time.

aiokafka lingers per partition: each partition's batch waits ``linger_ms`` from its own first record, so
records spread over time and over a dozen partitions mature at different moments and leave as many small
produce requests. Each request costs the client an encode, a write and a response decode, and the broker far
more. Collecting records here and handing them to the producer together makes their batches mature at the
same instant: one request for all of them (docs/decisions.md, "One produce request per interval").

A round fills one record batch per partition itself (``create_batch``/``send_batch``) instead of handing the
producer one record at a time: its ``send`` cost a future, a partitioner call (murmur2 in Python) and the
accumulator's bookkeeping per record. Keyed records land where the producer's own partitioner puts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaTimeoutError
from aiokafka.partitioner import murmur2
from aiokafka.producer.message_accumulator import BatchBuilder

log = logging.getLogger(__name__)

Headers = Sequence[tuple[str, bytes]]


class PublisherStopped(RuntimeError):
    """The publisher stopped before the broker acknowledged the record: it was not published."""


_RETRY_FIRST_S = 0.5
_RETRY_MAX_S = 5.0

_Item = tuple[str, bytes, bytes | None, Headers, "asyncio.Future[None]"]
# What ``fill_batches`` takes: topic, partition (None: the key's), key, value, headers.
OutRecord = tuple[str, int | None, bytes | None, bytes, Headers]


@dataclass(slots=True)
class OutBatch:
    """One record batch for one partition, and which of the caller's records it holds (their indexes, in order)."""

    topic: str
    partition: int
    builder: BatchBuilder
    members: list[int] = field(default_factory=list)


async def topic_partitions(producer: AIOKafkaProducer, topics: set[str]) -> dict[str, list[int]]:
    """Each topic's partitions, sorted; waits for metadata the producer does not have yet."""
    return {topic: sorted(await producer.partitions_for(topic)) for topic in topics}


def fill_batches(
    producer: AIOKafkaProducer,
    partitions: dict[str, list[int]],
    records: Sequence[OutRecord],
    refuse: Callable[[int, Exception], None],
) -> list[OutBatch]:
    """Record batches for ``records``, ready for ``send_batch`` in the order given (a partition's records stay in
    order across its batches). A record the producer would refuse (larger than ``max_request_size``) is passed to
    ``refuse`` with its index and left out."""
    open_batches: dict[tuple[str, int], OutBatch] = {}
    out: list[OutBatch] = []
    for n, (topic, partition, key, value, given) in enumerate(records):
        headers = list(given)
        try:
            # The producer's own check (the record against max_request_size), as its ``send`` makes it.
            producer._serialize(key, value, headers)
        except Exception as exc:  # noqa: BLE001 - this record's fault: only its caller hears of it
            refuse(n, exc)
            continue
        if partition is None:
            partition = _partition(key, partitions[topic])
        batch = open_batches.get((topic, partition))
        if batch is None:
            batch = open_batches[topic, partition] = OutBatch(topic, partition, producer.create_batch())
        if batch.builder.append(timestamp=None, key=key, value=value, headers=headers) is None:
            # The batch is full: it goes as it is, and the record starts the partition's next one.
            out.append(batch)
            batch = open_batches[topic, partition] = OutBatch(topic, partition, producer.create_batch())
            # A record larger than a batch still fits an empty one: the producer sends it alone.
            batch.builder.append(timestamp=None, key=key, value=value, headers=headers)
        batch.members.append(n)
    out.extend(open_batches.values())
    return out


async def send_all(
    producer: AIOKafkaProducer, partitions: dict[str, list[int]], records: Sequence[OutRecord]
) -> list[tuple[OutBatch, Awaitable[Any]]]:
    """Hand ``records`` to the producer as one batch per partition (``fill_batches``), all before yielding to its
    sender; each batch comes with the future of the broker's acknowledgement (its first record's metadata).
    A record the producer refuses raises: callers with a single owner for every record use this."""

    def refuse(_: int, exc: Exception) -> None:
        raise exc

    batches = fill_batches(producer, partitions, records, refuse)
    return [(b, await producer.send_batch(b.builder, b.topic, partition=b.partition)) for b in batches]


class BatchPublisher:
    """Publishes records in rounds of ``interval_s``; each caller gets a future that resolves on the broker's ack.

    A record the producer refuses or the broker does not acknowledge (the broker is away) is kept and sent again
    in a later round, backing off to 5 s, until it is acknowledged: a caller waits out an outage rather than
    lose its record. Only ``stop`` fails what is still unsent. The producer should not linger itself
    (``linger_ms=0``): the round is the linger.
    """

    def __init__(self, producer: AIOKafkaProducer, interval_s: float) -> None:
        self._producer = producer
        self._interval_s = interval_s
        self._pending: list[_Item] = []
        self._retry_s = 0.0
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        # Bound in ``start``: looking up the running loop per record costs a system call on Python 3.11.
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._rounds(), name="batch-publisher")

    async def stop(self) -> None:
        """Hand what is pending to the producer and stop; the producer's own stop flushes it to the broker.

        A record that still cannot be handed over (the broker is away) fails its caller."""
        self._stopping = True
        self._wakeup.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for *_, future in self._pending:
            if not future.done():
                future.set_exception(PublisherStopped("stopped before the broker acknowledged the record"))
        self._pending = []

    def publish(self, topic: str, value: bytes, key: bytes | None, headers: Headers) -> asyncio.Future[None]:
        if self._stopping or self._task is None or self._loop is None:
            raise RuntimeError("publisher is not running")
        future: asyncio.Future[None] = self._loop.create_future()
        self._pending.append((topic, value, key, headers, future))
        self._wakeup.set()
        return future

    async def _rounds(self) -> None:
        while True:
            await self._wakeup.wait()
            if not self._stopping:
                await asyncio.sleep(max(self._interval_s, self._retry_s))
            self._wakeup.clear()
            batch, self._pending = self._pending, []
            if batch:
                await self._send(batch)
            if self._stopping:
                return

    async def _send(self, batch: list[_Item]) -> None:
        # Every batch is handed over before this task yields, so the producer's sender finds all of them ready
        # at once and sends one request per broker.
        batch = [item for item in batch if not item[4].done()]
        try:
            partitions = await topic_partitions(self._producer, {item[0] for item in batch})
        except Exception as exc:  # noqa: BLE001 - no metadata: the broker is away (or the topic is missing)
            self._failed(batch, exc)
            return
        records = [(topic, None, key, value, headers) for topic, value, key, headers, _ in batch]
        batches = fill_batches(self._producer, partitions, records, lambda n, exc: batch[n][4].set_exception(exc))
        for n, out in enumerate(batches):
            items = [batch[i] for i in out.members]
            try:
                ack = await self._producer.send_batch(out.builder, out.topic, partition=out.partition)
            except Exception as exc:  # noqa: BLE001 - kept for the next round if the broker is away, else the callers'
                if not _broker_away(exc):
                    for *_, future in items:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                self._failed([batch[i] for later in batches[n:] for i in later.members], exc)
                return
            ack.add_done_callback(lambda done, held=items: self._settle_all(held, done))
        self._retry_s = 0.0

    def _settle_all(self, items: list[_Item], ack: asyncio.Future[object]) -> None:
        """One batch's acknowledgement settles its records; a broker away keeps them all for a later round."""
        exc = None if ack.cancelled() else ack.exception()
        if exc is not None and _broker_away(exc):
            self._failed([i for i in items if not i[4].done()], exc)
            return
        for item in items:
            self._settle(item, ack)

    def _failed(self, items: list[_Item], exc: BaseException) -> None:
        """Keep records the broker did not take for a later round, backing off while it stays away."""
        if self._stopping:
            for *_, future in items:
                if not future.done():
                    future.set_exception(PublisherStopped(f"stopped while the broker was away: {exc}"))
            return
        self._retry_s = min(max(self._retry_s * 2, _RETRY_FIRST_S), _RETRY_MAX_S)
        log.warning("%d records not published (%s); retrying in %.1f s", len(items), exc, self._retry_s)
        self._pending[:0] = items
        self._wakeup.set()

    def _settle(self, item: _Item, ack: asyncio.Future[object]) -> None:
        future = item[4]
        if future.done():
            return
        if ack.cancelled():
            future.cancel()
        elif (exc := ack.exception()) is not None:
            if _broker_away(exc):
                self._failed([item], exc)
            else:
                future.set_exception(exc)
        else:
            future.set_result(None)


@lru_cache(maxsize=65536)
def _keyed_partition(key: bytes, count: int) -> int:
    """The producer's default partitioner for a key (murmur2, as Kafka's Java client): keys repeat, so it is cached."""
    return int(murmur2(key) & 0x7FFFFFFF) % count


def _partition(key: bytes | None, partitions: list[int]) -> int:
    if key is None:
        return random.choice(partitions)  # noqa: S311 - spreading load, not security
    return partitions[_keyed_partition(key, len(partitions))]


def _broker_away(exc: BaseException) -> bool:
    """Whether the error says the broker (or a partition's leader) is unavailable, not that the record is bad."""
    return bool(getattr(exc, "retriable", False)) or isinstance(exc, KafkaTimeoutError | OSError | TimeoutError)
