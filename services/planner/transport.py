"""Faust's Kafka transport with Chime's fetch wait.

Faust builds its consumer with ``fetch_max_wait_ms=1500`` and no setting to change it. aiokafka keeps one fetch
in flight per broker, and a fetch that happens to cover only idle partitions (the commands topic, say) is held
by the broker for that whole wait, while the records that arrive meanwhile on other partitions (a schedule
change, a run-now) cannot be fetched. The planner's consumer paces its fetches (``shared/fetch_pacing.py``): while
its input is quiet it asks for any record and the broker answers as soon as one lands, so a lone change is read at
once; while changes stream in (hundreds a second from a bulk import) each fetch waits up to 20 ms for 16 KiB,
about fifty fetches a second instead of one per change or two.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiokafka
import faust
from faust.transport.drivers import aiokafka as driver
from faust.types import TP

from shared.fetch_pacing import FetchPace, pace_fetches
from shared.kafka import FETCH_MAX_WAIT_MS
from shared.settings import Settings

# While changes stream in: a fetch per 20 ms at most, which is what a change may wait on top of its way here.
_BUSY_WAIT_MS = 20
_BUSY_MIN_BYTES = 16 * 1024


class _ConsumerThread(driver.AIOKafkaConsumerThread):
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

    async def committed_offsets(self, partitions: list[TP]) -> dict[TP, int | None]:
        """The group's committed offset (the next record to read) of each partition, read in the consumer's thread."""

        async def _read() -> dict[TP, int | None]:
            consumer = self._ensure_consumer()
            return {tp: await consumer.committed(aiokafka.TopicPartition(tp.topic, tp.partition)) for tp in partitions}

        result: dict[TP, int | None] = await self.call_thread(_read)
        return result

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


class _Consumer(driver.Consumer):
    def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(driver.Transport):
    Consumer = _Consumer


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
