"""The bench's webhook receiver: records when each call arrived and which fire it was, and answers 200.

It is the measuring instrument, so it must not add lag of its own. It parses with httptools on a bare
asyncio protocol (a fraction of a web framework's CPU per call, on a machine every process shares) and keeps
one small tuple per call, so a minute at thousands of calls a second does not grow a heap whose garbage
collection would pause the receiver and show up as lag.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import NamedTuple, cast

import httptools

from tests.e2e.stack import free_port

_REPLY = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"
_REPLY_CLOSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"


class Arrival(NamedTuple):
    received: datetime
    schedule_id: str
    nominal: datetime
    webhook_id: str


class _Receiver(asyncio.Protocol):
    def __init__(self, sink: BenchSink) -> None:
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
        schedule, nominal, webhook = self._schedule, self._nominal, self._webhook
        self._schedule = self._nominal = self._webhook = ""
        if self._transport is not None:
            self._sink.answer(self._transport, self._parser.should_keep_alive(), schedule, nominal, webhook)


class BenchSink:
    def __init__(self) -> None:
        self.port = free_port()
        self.arrivals: list[Arrival] = []
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def answer(self, transport: asyncio.Transport, keep_alive: bool, schedule: str, nominal: str, webhook: str) -> None:
        """Record the call and answer 200 (a subclass may answer otherwise)."""
        if nominal:
            self.arrivals.append(Arrival(datetime.now(UTC), schedule, datetime.fromisoformat(nominal), webhook))
        if keep_alive:
            transport.write(_REPLY)
        else:
            transport.write(_REPLY_CLOSE)
            transport.close()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Receiver(self), "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
