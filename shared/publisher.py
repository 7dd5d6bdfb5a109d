"""One produce request per interval for records that many tasks publish one at a time.

aiokafka lingers per partition: each partition's batch waits ``linger_ms`` from its own first record, so
records spread over time and over a dozen partitions mature at different moments and leave as many small
produce requests. Each request costs the client an encode, a write and a response decode, and the broker far
more. Collecting records here and handing them to the producer together makes their batches mature at the
same instant: one request for all of them (docs/decisions.md, "One produce request per interval").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer

log = logging.getLogger(__name__)

Headers = Sequence[tuple[str, bytes]]


class BatchPublisher:
    """Publishes records in rounds of ``interval_s``; each caller gets a future that resolves on the broker's ack.

    The producer should not linger itself (``linger_ms=0``): the round is the linger.
    """

    def __init__(self, producer: AIOKafkaProducer, interval_s: float) -> None:
        self._producer = producer
        self._interval_s = interval_s
        self._pending: list[tuple[str, bytes, bytes | None, Headers, asyncio.Future[None]]] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._rounds(), name="batch-publisher")

    async def stop(self) -> None:
        """Hand what is pending to the producer and stop; the producer's own stop flushes it to the broker."""
        self._stopping = True
        self._wakeup.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def publish(self, topic: str, value: bytes, key: bytes | None, headers: Headers) -> asyncio.Future[None]:
        if self._stopping or self._task is None:
            raise RuntimeError("publisher is not running")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((topic, value, key, headers, future))
        self._wakeup.set()
        return future

    async def _rounds(self) -> None:
        while True:
            await self._wakeup.wait()
            if not self._stopping:
                await asyncio.sleep(self._interval_s)
            self._wakeup.clear()
            batch, self._pending = self._pending, []
            if batch:
                await self._send(batch)
            if self._stopping and not self._pending:
                return

    async def _send(self, batch: list[tuple[str, bytes, bytes | None, Headers, asyncio.Future[None]]]) -> None:
        # Every record is appended before this task yields, so the producer's sender finds all of them ready
        # at once and sends one request per broker.
        for topic, value, key, headers, future in batch:
            try:
                ack = await self._producer.send(topic, value, key=key, headers=list(headers))
            except Exception as exc:  # noqa: BLE001 - handed to the caller, who decides
                if not future.done():
                    future.set_exception(exc)
                continue
            ack.add_done_callback(lambda done, f=future: _settle(f, done))


def _settle(future: asyncio.Future[None], ack: asyncio.Future[object]) -> None:
    if future.done():
        return
    if ack.cancelled():
        future.cancel()
    elif (exc := ack.exception()) is not None:
        future.set_exception(exc)
    else:
        future.set_result(None)
