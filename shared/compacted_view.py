"""An in-memory view of a whole compacted topic, read by every process that needs all of it (no group)."""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from typing import Generic, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from shared.consumer_runtime import Backoff, DependencyMissing, QuarantineTopic, is_transient
from shared.errors import EventDecodeError
from shared.events import decode_event
from shared.events.envelope import Envelope
from shared.kafka import build_consumer
from shared.settings import Settings
from shared.topics import TopicSpec, topic_name

log = logging.getLogger(__name__)

_IDLE_FETCH_WAIT_MS = 500

E = TypeVar("E", bound=Envelope)


class CompactedView(ABC, Generic[E]):
    """Reads ``spec`` from its start and keeps applying it until stopped.

    A record that cannot be applied is set aside in ``chime.quarantine`` (each process reads the topic from its
    start, so each start reports it again until the key is written anew); a broker that goes away is waited for,
    so the view outlives an outage instead of going stale.
    """

    def __init__(
        self, settings: Settings, spec: TopicSpec, event: type[E], quarantine: QuarantineTopic | None = None
    ) -> None:
        self._settings = settings
        self._spec = spec
        self._event = event
        self._quarantine = quarantine
        self._producer: AIOKafkaProducer | None = None
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.caught_up = asyncio.Event()

    def _apply(self, key: bytes | None, raw: bytes | None) -> str | None:
        """Take in one record; why it could not be, or None. A tombstone is nothing to take."""
        if raw is None:
            return None
        try:
            event = decode_event(raw)
        except EventDecodeError as exc:
            return f"undecodable: {exc}"
        if not isinstance(event, self._event):
            return f"not {self._spec.suffix}: {event.type}"
        return self._take(event)

    @abstractmethod
    def _take(self, event: E) -> str | None:
        """Take in one event of the topic's type; why it could not be, or None."""

    @property
    def running(self) -> bool:
        """False once the reader has ended for good (it never should while its process runs)."""
        return self._task is not None and not self._task.done()

    async def start(self, producer: AIOKafkaProducer) -> None:
        """``producer`` looks up the topic's partitions (its metadata lookup is public API) and quarantines."""
        self._producer = producer
        topic = topic_name(self._settings, self._spec)
        # Rarely written: a fetch that answers as soon as anything arrives, and otherwise waits long, costs the
        # process next to nothing while the topic is quiet.
        consumer = build_consumer(
            self._settings, auto_offset_reset="earliest", fetch_min_bytes=1, fetch_max_wait_ms=_IDLE_FETCH_WAIT_MS
        )
        try:
            await consumer.start()
            partitions = await asyncio.wait_for(producer.partitions_for(topic), timeout=30)
            if not partitions:
                raise DependencyMissing(f"topic {topic} does not exist yet; `chime topics create` makes it")
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            end = await consumer.end_offsets(tps)
        except BaseException:
            await consumer.stop()
            raise
        self._task = asyncio.create_task(self._run(consumer, end), name=self._spec.suffix)

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _run(self, consumer: AIOKafkaConsumer, end: dict[TopicPartition, int]) -> None:
        remaining = {tp: offset for tp, offset in end.items() if offset > 0}
        if not remaining:
            self.caught_up.set()
        backoff = Backoff(self._stopping)
        try:
            while True:
                try:
                    batch = await consumer.getmany(timeout_ms=500)
                except Exception as exc:
                    if not is_transient(exc):
                        raise
                    log.warning("%s: waiting for Kafka: %s: %s", self._spec.suffix, type(exc).__name__, exc)
                    await backoff.wait()
                    continue
                for tp, records in batch.items():
                    for record in records:
                        error = self._apply(record.key, record.value)
                        if error is not None:
                            await self._set_aside(record, error)
                        if tp in remaining and record.offset + 1 >= remaining[tp]:
                            del remaining[tp]
                if not remaining and not self.caught_up.is_set():
                    self.caught_up.set()
                if batch:
                    async with self._changed:
                        self._changed.notify_all()
        finally:
            await consumer.stop()

    async def _set_aside(self, record: ConsumerRecord[bytes, bytes], error: str) -> None:
        log.error("%s record set aside: %s", self._spec.suffix, error, extra={"offset": record.offset})
        if self._quarantine is None or self._producer is None:
            return
        try:
            await self._quarantine.put(self._producer, record, error)
        except Exception as exc:  # noqa: BLE001 - the records that do load matter more than reporting one that did not
            log.warning("%s record could not be quarantined: %s: %s", self._spec.suffix, type(exc).__name__, exc)
