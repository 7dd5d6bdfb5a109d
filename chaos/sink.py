"""A webhook receiver that misbehaves on purpose: errors, timeouts and reset connections, at set rates.

Only calls it answered 200 count as arrivals (what the invariants check); the rest are counted by kind.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

import httptools

from bench.sink import Arrival
from tests.e2e.stack import free_port

_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
_ERROR = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\noops"


@dataclass(frozen=True, slots=True)
class Faults:
    """Shares of calls answered 500, left unanswered past the caller's timeout, and reset."""

    error: float = 0.30
    timeout: float = 0.05
    reset: float = 0.05
    # Longer than the schedules' timeout_seconds, so the executor gives up first.
    hang_s: float = 2.5


class _Receiver(asyncio.Protocol):
    def __init__(self, sink: FaultySink) -> None:
        self._sink = sink
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._schedule = self._nominal = self._webhook = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast("asyncio.Transport", transport)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            if self._transport is not None:
                self._transport.close()

    def on_header(self, name: bytes, value: bytes) -> None:
        lower = name.lower()
        if lower == b"chime-schedule-id":
            self._schedule = value.decode()
        elif lower == b"chime-scheduled-for":
            self._nominal = value.decode()
        elif lower == b"webhook-id":
            self._webhook = value.decode()

    def on_message_complete(self) -> None:
        transport, sink = self._transport, self._sink
        schedule, nominal, webhook = self._schedule, self._nominal, self._webhook
        self._schedule = self._nominal = self._webhook = ""
        if transport is None:
            return
        roll = sink.rng.random()
        faults = sink.faults
        if roll < faults.error:
            sink.answered["500"] += 1
            transport.write(_ERROR)
        elif roll < faults.error + faults.timeout:
            sink.answered["timeout"] += 1
            # Answer too late: the caller has given up and closed the connection by then.
            asyncio.get_running_loop().call_later(faults.hang_s, transport.close)
        elif roll < faults.error + faults.timeout + faults.reset:
            sink.answered["reset"] += 1
            transport.abort()
        else:
            sink.answered["200"] += 1
            if nominal:
                sink.arrivals.append(Arrival(datetime.now(UTC), schedule, datetime.fromisoformat(nominal), webhook))
            transport.write(_OK)


class FaultySink:
    def __init__(self, faults: Faults, seed: int = 11) -> None:
        self.port = free_port()
        self.faults = faults
        self.rng = random.Random(seed)  # noqa: S311 - a repeatable run, not a secret
        self.arrivals: list[Arrival] = []
        self.answered: Counter[str] = Counter()
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Receiver(self), "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
