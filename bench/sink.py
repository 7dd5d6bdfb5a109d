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
        received = datetime.now(UTC)
        if self._nominal:
            nominal = datetime.fromisoformat(self._nominal)
            self._sink.arrivals.append(Arrival(received, self._schedule, nominal, self._webhook))
        self._schedule = self._nominal = self._webhook = ""
        if self._transport is None:
            return
        if self._parser.should_keep_alive():
            self._transport.write(_REPLY)
        else:
            self._transport.write(_REPLY_CLOSE)
            self._transport.close()


class BenchSink:
    def __init__(self) -> None:
        self.port = free_port()
        self.arrivals: list[Arrival] = []
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
