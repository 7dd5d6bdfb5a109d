"""Faust's Kafka transport with Chime's fetch wait, and a rebalance that loses no record.

Faust builds its consumer with ``fetch_max_wait_ms=1500`` and no setting to change it. aiokafka keeps one fetch
in flight per broker, and a fetch that happens to cover only idle partitions (the commands topic, say) is held
by the broker for that whole wait, while the records that arrive meanwhile on other partitions (a schedule
change, a run-now) cannot be fetched. The planner's consumer paces its fetches (``shared/fetch_pacing.py``): while
its input is quiet it asks for any record and the broker answers as soon as one lands, so a lone change is read at
once; while changes stream in (hundreds a second from a bulk import) each fetch waits up to 20 ms for 16 KiB,
about fifty fetches a second instead of one per change or two.

A rebalance must not lose a record: the consumer below reads again, in order, every record it fetched but did
not hand to an agent, and commits none of them (docs/decisions.md, "A rebalance loses no record").
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, cast

import aiokafka
import faust
from faust.transport.drivers import aiokafka as driver
from faust.types import TP, Message
from faust.types.tuples import ack_lock
from mode.utils.futures import notify

from shared.fetch_pacing import FetchPace, pace_fetches
from shared.kafka import FETCH_MAX_WAIT_MS
from shared.producer_topics import track_produced_topics
from shared.settings import Settings

# While changes stream in: a fetch per 20 ms at most, which is what a change may wait on top of its way here.
_BUSY_WAIT_MS = 20
_BUSY_MIN_BYTES = 16 * 1024


async def seek_to_committed_or_start(
    consumer: aiokafka.AIOKafkaConsumer, sought: Callable[[], None] | None = None
) -> dict[aiokafka.TopicPartition, int | None]:
    """Seek every assigned partition to its committed offset, and one the group never committed to its start;
    the committed offset of each (None: none). ``sought`` is called once every position has moved.

    Faust seeks back to the committed offsets after a rebalance to read again what it fetched but did not hand to
    a stream (records fetched while flow was stopped, or in an earlier generation). aiokafka seeks only to a
    committed offset above zero and leaves any other partition where its fetches had got to, so the head of a
    partition the group had not committed yet (one that was empty until shortly before) was skipped: schedule
    changes the API had accepted never reached the plan.

    The committed offsets are read first and the positions then all move without a pause in between, so a fetch
    in the same event loop returns records from before every move or from after all of them, never a mix.
    """
    assigned = sorted(consumer.assignment())
    committed = {tp: await consumer.committed(tp) for tp in assigned}
    unread = []
    for tp, offset in committed.items():
        if offset is not None and offset > 0:
            consumer.seek(tp, offset)
        else:
            unread.append(tp)
    if sought is not None:
        sought()
    if unread:
        # Moves them before it first waits (a position reset the fetcher carries out), then waits for it.
        await consumer.seek_to_beginning(*unread)
    return committed


class _Fetched(dict[Any, Any]):
    """The records of one fetch, and how many seeks back the consumer's thread had done when it took them."""

    def __init__(self, records: Mapping[Any, Any], seeks: int) -> None:
        super().__init__(records)
        self.seeks = seeks


class _ConsumerThread(driver.AIOKafkaConsumerThread):
    # Seeks back done so far, counted in the consumer's thread, where fetches and seeks take turns.
    seeks = 0

    async def on_start(self) -> None:
        await super().on_start()
        pace_fetches(self._ensure_consumer(), FetchPace(_BUSY_WAIT_MS, _BUSY_MIN_BYTES))

    def rejoin(self) -> None:
        """Refresh the cluster metadata and rejoin the group; safe to call from any thread."""

        async def _rejoin() -> None:
            consumer = self._ensure_consumer()
            await consumer._client.force_metadata_update()
            consumer._coordinator.request_rejoin()

        asyncio.run_coroutine_threadsafe(_rejoin(), self.thread_loop)

    async def seek_to_committed(self) -> Mapping[TP, int]:
        """Seek every assigned partition back to its committed offset (``seek_to_committed_or_start``)."""

        def sought() -> None:
            self.seeks += 1

        async def _seek() -> Mapping[TP, int]:
            committed = await seek_to_committed_or_start(self._ensure_consumer(), sought)
            return {TP(tp.topic, tp.partition): offset for tp, offset in committed.items() if offset is not None}

        result: Mapping[TP, int] = await self.call_thread(_seek)
        return result

    async def committed_offsets(self, partitions: list[TP]) -> dict[TP, int | None]:
        """The group's committed offset (the next record to read) of each partition, read in the consumer's thread."""

        async def _read() -> dict[TP, int | None]:
            consumer = self._ensure_consumer()
            return {tp: await consumer.committed(aiokafka.TopicPartition(tp.topic, tp.partition)) for tp in partitions}

        result: dict[TP, int | None] = await self.call_thread(_read)
        return result

    async def _fetch_records(self, *args: Any, **kwargs: Any) -> _Fetched:
        """A fetch's records, marked with the seeks done before they were taken from the fetcher."""
        records = await super()._fetch_records(*args, **kwargs)
        return _Fetched(records, self.seeks)

    def highwater_of(self, tp: TP) -> int | None:
        """The partition's high watermark from the last fetch response (None before one arrived)."""
        consumer = self._ensure_consumer()
        partition = aiokafka.TopicPartition(tp.topic, tp.partition)
        if partition not in consumer.assignment():
            return None
        value: int | None = consumer.highwater(partition)
        return value

    def _create_consumer(self, loop: asyncio.AbstractEventLoop) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_consumer(loop)
        # Read by AIOKafkaConsumer.start() when it builds its fetcher; the constructor argument is what Faust
        # hard-codes, so this is the one place it can be set.
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        consumer._fetch_min_bytes = 1
        return consumer


class _ReadOffsets(dict[TP, int | None]):
    """The consumer's read offset per partition: the last record its fetch loop handed on. The loop drops a fetched
    record below it as one already handed on, so while ``held`` it is not moved.

    A rebalance clears it and later seeks back to the committed offsets, but the fetch loop can still set it in
    between, from a record of the old generation it finishes after the revocation (one that was never delivered).
    The first records read again after the seek, below that stale value, were then dropped as already handed
    on, and nothing read them again: a schedule change lost in the running planner. So it is held from the
    revocation until the seek back is done; meanwhile nothing is dropped (a record handed on twice is applied
    twice, which changes nothing).
    """

    held = False

    def __missing__(self, tp: TP) -> None:
        return None

    def __setitem__(self, tp: TP, offset: int | None) -> None:
        if not self.held:
            super().__setitem__(tp, offset)


class _Consumer(driver.Consumer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_offset = self._reads = _ReadOffsets()
        self._batch_seeks: int | None = None

    async def _getmany(self, active_partitions: set[TP] | None, timeout: float) -> Any:  # noqa: ASYNC109 - Faust's
        records = await super()._getmany(active_partitions, timeout)
        self._batch_seeks = getattr(records, "seeks", None)
        return records

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Message]]:  # noqa: ASYNC109 - Faust's
        """The records of one fetch, as Faust hands them on, unless a seek back has come since it was taken.

        Faust hands a fetched batch on record by record, waiting for room in the streams' buffers, so a batch
        fetched before a seek back to the committed offsets could still be handed on after it, out of order
        with the records read again from there. The fetch loop then took the gap before them as records absent
        from the log (and a later commit could pass over them) and dropped the records read again as already
        handed on. The rest of such a batch is passed over: the seek has set the position back, and those records
        are read again in order.
        """
        thread = cast("_ConsumerThread", self._thread)
        async for tp, message in super().getmany(timeout):
            if self._batch_seeks is None or self._batch_seeks == thread.seeks:
                yield tp, message

    def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        self._reads.held = True
        await super().on_partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TP], generation_id: int = 0) -> None:
        self._reads.held = True
        await super().on_partitions_assigned(assigned, generation_id)

    async def perform_seek(self) -> None:
        """Seek back to the committed offsets; once flow has resumed after a rebalance, read offsets move again."""
        await super().perform_seek()
        if self.app.flow_control.is_active():
            self._reads.held = False

    def ack(self, message: Message) -> bool:
        """Mark a record safe to commit, unless it was taken while the group was rebalancing.

        A stream skips the records it takes while flow is stopped for a rebalance, or that were fetched in an
        earlier generation of the group, and acknowledges them anyway (so that lag does not grow). The revocation
        has cleared the partition's committed offset in the consumer's bookkeeping, so those acknowledgements alone
        would make a run of offsets that the next commit writes, past records no agent applied. The assignment
        seeks back to the committed offset, so a record refused here is read again and applied then (a change
        applied twice is the same change; a command carries its run's id).
        """
        app = self.app
        if app.flow_control.is_active() and message.generation_id == app.consumer_generation_id:
            return bool(super().ack(message))
        with ack_lock:
            message.acked = True
            self._unacked_messages.discard(message)
            notify(self._waiting_for_ack)
        return False


class _Producer(driver.Producer):
    def _new_producer(self, transactional_id: str | None = None) -> aiokafka.AIOKafkaProducer:
        return track_produced_topics(super()._new_producer(transactional_id))


class _Transport(driver.Transport):
    Consumer = _Consumer
    Producer = _Producer


class PlannerApp(faust.App):
    """A Faust app whose consumer uses Chime's fetch wait and can be asked to rejoin its group."""

    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)

    def kafka_producer(self) -> aiokafka.AIOKafkaProducer:
        """The aiokafka producer under Faust's: the planner hands it whole record batches (``send_all``)."""
        producer: aiokafka.AIOKafkaProducer = self.producer._ensure_producer()  # type: ignore[attr-defined]
        return producer

    def rejoin_group(self) -> None:
        self._consumer_thread().rejoin()

    async def committed_offsets(self, partitions: list[TP]) -> dict[TP, int | None]:
        return await self._consumer_thread().committed_offsets(partitions)

    def highwater_of(self, tp: TP) -> int | None:
        return self._consumer_thread().highwater_of(tp)

    def _consumer_thread(self) -> _ConsumerThread:
        consumer: Any = self.consumer  # the driver's Consumer, built by _Transport above
        thread: _ConsumerThread = consumer._thread
        return thread


def credentials(settings: Settings) -> Any:
    """Faust's credentials for the configured Kafka security protocol."""
    if settings.kafka_security_protocol == "PLAINTEXT":
        return None
    import ssl

    context = ssl.create_default_context(cafile=settings.kafka_ssl_cafile)
    if settings.kafka_security_protocol == "SSL":
        return faust.SSLCredentials(context)
    password = settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else ""
    return faust.SASLCredentials(
        username=settings.kafka_sasl_username or "",
        password=password,
        mechanism=settings.kafka_sasl_mechanism or "PLAIN",
        ssl_context=context if settings.kafka_security_protocol == "SASL_SSL" else None,
    )
