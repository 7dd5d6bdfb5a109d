"""The executor's HTTP/1.1 client: keep-alive connections to each target, opened to addresses the guard checked.

A webhook call needs little of a general client: one request with a small body, a status, one header
(``Retry-After``) and the first few KiB of the answer. No redirects, cookies, proxies or decompression.
aiohttp did all of that per call and was the largest share of the executor's CPU at 700 calls/s; this client
parses with ``httptools`` (llhttp, the parser uvicorn uses) and keeps its own per-call work to building one
request buffer and reading one response.

It is also where the SSRF guard lives: the resolver answers only addresses Chime may call, and the client
connects to exactly those addresses, so a DNS answer that changes between a check and the connection
(rebinding) cannot reach a private address (docs/decisions.md, "Executor HTTP client").
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from typing import cast
from urllib.parse import urlsplit

import httptools

from shared.eventloop import LoopBinding
from shared.resolver import GuardedResolver

# Responses larger than this are not read to their end: the connection is closed instead of drained.
_DRAIN_LIMIT = 1 << 20
# An idle connection older than this is closed rather than reused; most servers close theirs sooner or later.
_IDLE_SECONDS = 15.0
# Kept per target when the caller does not say: enough for a small caller; the executor passes its concurrency.
_IDLE_PER_TARGET = 64
# How often calls under way are checked against their deadlines: one timer for all of them instead of an
# ``asyncio.timeout`` per call, which was a tenth of the executor's CPU in a burst. A deadline is met to within this.
_SWEEP_S = 0.05


class HttpError(Exception):
    """The call did not produce a response: refused, reset, closed early, or an unreadable answer."""


class InvalidRequest(ValueError):
    """The request cannot be sent as given (an unsupported URL or header); retrying cannot help."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    retry_after: str | None
    excerpt: bytes


@dataclass(frozen=True, slots=True)
class _Target:
    tls: bool
    host: str
    port: int
    request_target: bytes
    host_header: bytes


@lru_cache(maxsize=4096)
def _target(url: str) -> _Target:
    """Parsed once per distinct URL: a schedule calls the same URL on every fire."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest(f"unsupported URL {url!r}")
    tls = parts.scheme == "https"
    default_port = 443 if tls else 80
    try:
        port = parts.port or default_port
    except ValueError as exc:
        raise InvalidRequest(f"invalid port in {url!r}") from exc
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host
    host_header = shown if port == default_port else f"{shown}:{port}"
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    for text in (path, host_header):
        if any(c in text for c in "\r\n ") or not text.isascii():
            raise InvalidRequest(f"URL {url!r} cannot be sent as is")
    return _Target(tls, host, port, path.encode(), host_header.encode())


class _Connection(asyncio.Protocol):
    """One keep-alive connection, carrying one request at a time."""

    __slots__ = (
        "_body_size",
        "_excerpt",
        "_excerpt_limit",
        "_loop",
        "_parser",
        "_retry_after",
        "_status",
        "_waiter",
        "closed",
        "idle_since",
        "received",
        "reusable",
        "transport",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, excerpt_limit: int) -> None:
        self._loop = loop
        self._excerpt_limit = excerpt_limit
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reusable = False
        self.received = False
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[Response] | None = None
        self._status = 0
        self._retry_after: str | None = None
        self._excerpt = bytearray()
        self._body_size = 0

    # -- asyncio.Protocol -----------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream connection; uvloop's transports do not subclass asyncio.Transport, so no isinstance.
        self.transport = cast("asyncio.Transport", transport)

    def data_received(self, data: bytes) -> None:
        self.received = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.fail(HttpError(f"unreadable response: {exc}"))
            return
        if self._body_size > _DRAIN_LIMIT and self._waiter is not None and not self._waiter.done():
            # Enough has been read for the excerpt; the rest is not worth the bandwidth.
            self._finish(reusable=False)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reusable = False
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self._status and self._parser.should_keep_alive() is False:
            # A response without a length ends when the server closes the connection.
            self._finish(reusable=False)
        else:
            waiter.set_exception(HttpError("server closed the connection before answering"))

    # -- httptools callbacks --------------------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"retry-after":
            self._retry_after = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        room = self._excerpt_limit - len(self._excerpt)
        if room > 0:
            self._excerpt += body[:room]

    def on_message_complete(self) -> None:
        if 100 <= self._status < 200:
            # An interim answer (103 Early Hints): the real one follows on the same connection.
            self._status, self._retry_after = 0, None
            return
        self._finish(reusable=self._parser.should_keep_alive())

    # -- one exchange ---------------------------------------------------------------------------------------

    def send(self, request: bytes) -> asyncio.Future[Response]:
        assert self.transport is not None  # noqa: S101 - connected
        self._waiter = self._loop.create_future()
        self._status, self._retry_after, self._body_size = 0, None, 0
        self._excerpt = bytearray()
        self.received = False
        self.reusable = False
        self.transport.write(request)
        return self._waiter

    def _finish(self, *, reusable: bool) -> None:
        self.reusable = reusable and not self.closed
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(Response(self._status, self._retry_after, bytes(self._excerpt)))
        if not self.reusable:
            self.close()

    def fail(self, exc: Exception) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.close()

    def close(self) -> None:
        self.reusable = False
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.close()


class HttpClient:
    """Keep-alive pools per (scheme, host, port). The caller bounds concurrency; this only reuses sockets."""

    def __init__(
        self,
        resolver: GuardedResolver,
        *,
        excerpt_limit: int,
        user_agent: str,
        ssl_context: ssl.SSLContext | None = None,
        max_idle_per_target: int = _IDLE_PER_TARGET,
    ) -> None:
        self._resolver = resolver
        # A connection finished while the pool is full is closed; with fewer idle slots than concurrent calls,
        # every call above that count opened and closed a connection of its own.
        self._max_idle = max_idle_per_target
        self._excerpt_limit = excerpt_limit
        self._user_agent = user_agent.encode()
        self._ssl = ssl_context
        self._idle: dict[tuple[bool, str, int], list[_Connection]] = defaultdict(list)
        self._closed = False
        # Connections waiting for an answer, with their deadline on the loop's clock.
        self._waiting: dict[_Connection, float] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        # The loop of the first call (``LoopBinding``): a call makes no loop lookups of its own.
        self._loop = LoopBinding()

    async def request(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes,
        deadline_s: float,
    ) -> Response:
        """One call; raises TimeoutError, HttpError, InvalidRequest, or BlockedTarget (from the resolver)."""
        return await self.send(url, self.build(method, url, headers, body), deadline_s)

    def build(self, method: str, url: str, headers: dict[str, str], body: bytes) -> bytes:
        """The request's bytes, to be sent later with ``send``; raises InvalidRequest."""
        return self._serialize(method, _target(url), headers, body)

    async def send(self, url: str, payload: bytes, deadline_s: float) -> Response:
        """Send a request ``build`` made for ``url``; raises TimeoutError, HttpError, InvalidRequest, BlockedTarget."""
        target = _target(url)
        deadline = self._loop().time() + deadline_s
        key = (target.tls, target.host, target.port)
        connection = self._take_idle(key)
        if connection is not None:
            try:
                return await self._exchange(key, connection, payload, deadline)
            except HttpError:
                if connection.received:
                    raise
                # The server closed the idle connection as it was reused, before reading the request:
                # one fresh connection is the usual answer, and the webhook-id makes a repeat harmless.
        async with asyncio.timeout_at(deadline):
            connection = await self._connect(target)
        return await self._exchange(key, connection, payload, deadline)

    def idle_count(self) -> int:
        """Connections kept open for reuse, over every target."""
        return sum(len(pool) for pool in self._idle.values())

    async def close(self) -> None:
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for pool in self._idle.values():
            for connection in pool:
                connection.close()
        self._idle.clear()

    def _serialize(self, method: str, target: _Target, headers: dict[str, str], body: bytes) -> bytes:
        lines = [
            f"{method} ".encode(),
            target.request_target,
            b" HTTP/1.1\r\nHost: ",
            target.host_header,
            b"\r\nUser-Agent: ",
            self._user_agent,
            b"\r\n",
        ]
        for name, value in headers.items():
            lines.append(f"{name}: {value}\r\n".encode())
        if body or method != "GET":
            lines.append(b"Content-Length: %d\r\n" % len(body))
        lines.append(b"\r\n")
        lines.append(body)
        return b"".join(lines)

    def _take_idle(self, key: tuple[bool, str, int]) -> _Connection | None:
        pool = self._idle.get(key)
        if not pool:
            return None
        oldest_allowed = time.monotonic() - _IDLE_SECONDS
        while pool:
            connection = pool.pop()
            if not connection.closed and connection.idle_since >= oldest_allowed:
                return connection
            connection.close()
        return None

    async def _exchange(
        self, key: tuple[bool, str, int], connection: _Connection, payload: bytes, deadline: float
    ) -> Response:
        waiter = connection.send(payload)
        self._waiting[connection] = deadline
        if self._sweeper is None:
            self._sweeper = self._loop().call_later(_SWEEP_S, self._sweep)
        try:
            response = await waiter
        except BaseException:
            connection.close()
            raise
        finally:
            del self._waiting[connection]
        if connection.reusable and not self._closed:
            pool = self._idle[key]
            if len(pool) < self._max_idle:
                connection.idle_since = time.monotonic()
                pool.append(connection)
            else:
                connection.close()
        return response

    def _sweep(self) -> None:
        """Fail the calls past their deadline; runs every ``_SWEEP_S`` while any call is waiting."""
        loop = self._loop()
        now = loop.time()
        for connection, deadline in list(self._waiting.items()):
            if deadline <= now:
                connection.fail(TimeoutError())
        self._sweeper = loop.call_later(_SWEEP_S, self._sweep) if self._waiting else None

    async def _connect(self, target: _Target) -> _Connection:
        addresses = await self._resolver.resolve(target.host)
        loop = self._loop()
        errors: list[str] = []
        for address in addresses:
            try:
                _, protocol = await loop.create_connection(
                    lambda: _Connection(loop, self._excerpt_limit),
                    host=address,
                    port=target.port,
                    ssl=self._tls() if target.tls else None,
                    server_hostname=target.host if target.tls else None,
                )
            except OSError as exc:
                errors.append(f"{address}: {exc.strerror or exc}")
                continue
            return protocol
        raise HttpError(f"cannot connect to {target.host}:{target.port} ({'; '.join(errors) or 'no address'})")

    def _tls(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl
