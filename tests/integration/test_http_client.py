"""The executor's HTTP client against real sockets on loopback: reuse, framing, limits, and the SSRF guard."""

from __future__ import annotations

import asyncio
import ssl
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from services.executor.delivery import SIGNED_AHEAD_TOLERANCE_S, call, prepare
from shared.events.runs import RunDueData, Trigger
from shared.events.schedule import DeliverySpec, RetryPolicy
from shared.httpclient import HttpClient, HttpError, InvalidRequest
from shared.resolver import BlockedTarget, GuardedResolver
from shared.runid import planned_run_id
from shared.webhook_signing import verify

Answer = Callable[["_Server", bytes], bytes | None]


class _Server:
    def __init__(self) -> None:
        self.connections = 0
        self.requests: list[bytes] = []
        self.port = 0


@asynccontextmanager
async def _serve(
    answer: Callable[[_Server, bytes], bytes | None], *, keep_alive: bool = True
) -> AsyncIterator[_Server]:
    """A raw HTTP/1.1 server: each request (head and Content-Length body) gets ``answer``'s bytes."""
    state = _Server()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                request = head + await reader.readexactly(length)
                state.requests.append(request)
                reply = answer(state, request)
                if reply is None:
                    break
                writer.write(reply)
                await writer.drain()
                if not keep_alive:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    state.port = server.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        server.close()
        await server.wait_closed()


def _ok(body: bytes = b"ok", extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


def _client(*, allow_private: bool = True, excerpt_limit: int = 4096, **resolver: object) -> HttpClient:
    return HttpClient(
        GuardedResolver(allow_private=allow_private, **resolver),  # type: ignore[arg-type]
        excerpt_limit=excerpt_limit,
        user_agent="Chime/test",
    )


async def test_requests_reuse_one_connection_and_carry_headers_and_body() -> None:
    async with _serve(lambda s, r: _ok(b"fine")) as server:
        client = _client()
        url = f"http://127.0.0.1:{server.port}/hook?x=1"
        for n in range(3):
            response = await client.request("POST", url, {"webhook-id": f"id-{n}"}, b'{"n":1}', deadline_s=5)
            assert (response.status, response.excerpt) == (200, b"fine")
        await client.close()
    assert server.connections == 1
    first = server.requests[0]
    assert first.startswith(b"POST /hook?x=1 HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{server.port}\r\n".encode() in first
    assert b"webhook-id: id-0\r\n" in first and b"User-Agent: Chime/test\r\n" in first
    assert b"Content-Length: 7\r\n" in first and first.endswith(b'{"n":1}')


async def test_a_burst_above_the_default_pool_reuses_its_connections() -> None:
    """Calls at once above the old fixed pool of 64: each finished connection is kept, so the next burst opens none."""
    calls = 150
    connections = 0
    arrived = 0
    everyone_in = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections, arrived
        connections += 1
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                arrived += 1
                if arrived % calls == 0:
                    everyone_in.set()
                # Every request of a round waits for the whole round, so the round holds `calls` connections.
                await everyone_in.wait()
                writer.write(_ok())
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
    client = HttpClient(
        GuardedResolver(allow_private=True), excerpt_limit=100, user_agent="Chime/test", max_idle_per_target=calls
    )
    try:
        for _ in range(2):
            everyone_in.clear()
            answers = await asyncio.gather(*(client.request("GET", url, {}, b"", deadline_s=10) for _ in range(calls)))
            assert {a.status for a in answers} == {200}
            assert client.idle_count() == calls
        assert connections == calls, "the second burst should have reused the first burst's connections"
    finally:
        await client.close()
        server.close()
        await server.wait_closed()


async def test_get_sends_no_body_and_no_length() -> None:
    async with _serve(lambda s, r: _ok()) as server:
        client = _client()
        await client.request("GET", f"http://127.0.0.1:{server.port}/", {}, b"", deadline_s=5)
        await client.close()
    assert b"Content-Length" not in server.requests[0]


async def test_status_retry_after_and_excerpt_limit() -> None:
    body = b"x" * 10_000
    reply = b"HTTP/1.1 503 Busy\r\nRetry-After: 7\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    async with _serve(lambda s, r: reply) as server:
        client = _client(excerpt_limit=100)
        response = await client.request("POST", f"http://127.0.0.1:{server.port}/", {}, b"", deadline_s=5)
        # The whole body was read, so the connection stays usable.
        assert client.idle_count() == 1
        await client.close()
    assert (response.status, response.retry_after, response.excerpt) == (503, "7", b"x" * 100)


async def test_chunked_and_close_delimited_responses() -> None:
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    async with _serve(lambda s, r: chunked) as server:
        client = _client()
        response = await client.request("POST", f"http://127.0.0.1:{server.port}/", {}, b"", deadline_s=5)
        assert response.excerpt == b"abcde"
        await client.close()
    until_close = b"HTTP/1.1 202 Accepted\r\nConnection: close\r\n\r\nbye"
    async with _serve(lambda s, r: until_close, keep_alive=False) as server:
        client = _client()
        response = await client.request("POST", f"http://127.0.0.1:{server.port}/", {}, b"", deadline_s=5)
        assert (response.status, response.excerpt) == (202, b"bye")
        assert client.idle_count() == 0
        await client.close()


async def test_interim_response_is_skipped() -> None:
    reply = b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + _ok(b"final")
    async with _serve(lambda s, r: reply) as server:
        client = _client()
        response = await client.request("POST", f"http://127.0.0.1:{server.port}/", {}, b"", deadline_s=5)
        await client.close()
    assert (response.status, response.excerpt) == (200, b"final")


async def test_idle_connection_closed_by_the_server_is_replaced_once() -> None:
    async with _serve(lambda s, r: _ok(), keep_alive=False) as server:
        # The server answers without "Connection: close" but closes anyway, as a server does at its idle timeout.
        client = _client()
        url = f"http://127.0.0.1:{server.port}/"
        await client.request("POST", url, {}, b"", deadline_s=5)
        await asyncio.sleep(0.05)
        response = await client.request("POST", url, {}, b"", deadline_s=5)
        await client.close()
    assert response.status == 200
    assert server.connections == 2


async def test_server_that_never_answers_times_out() -> None:
    async with _serve(lambda s, r: b"") as server:
        client = _client()
        with pytest.raises(TimeoutError):
            await client.request("POST", f"http://127.0.0.1:{server.port}/", {}, b"", deadline_s=0.3)
        assert client.idle_count() == 0
        await client.close()


async def test_server_that_hangs_up_without_answering_is_an_error() -> None:
    async with _serve(lambda s, r: None) as server:
        client = _client()
        with pytest.raises(HttpError):
            await client.request("POST", f"http://127.0.0.1:{server.port}/", {}, b"", deadline_s=5)
        await client.close()


async def test_refused_connection_is_an_error() -> None:
    async with _serve(lambda s, r: _ok()) as server:
        port = server.port
    client = _client()
    with pytest.raises(HttpError, match="cannot connect"):
        await client.request("POST", f"http://127.0.0.1:{port}/", {}, b"", deadline_s=5)
    await client.close()


async def test_unsendable_url_is_refused() -> None:
    client = _client()
    with pytest.raises(InvalidRequest):
        await client.request("POST", "ftp://example.com/", {}, b"", deadline_s=5)
    await client.close()


async def test_literal_private_target_is_refused_without_a_connection() -> None:
    async with _serve(lambda s, r: _ok()) as server:
        client = _client(allow_private=False)
        with pytest.raises(BlockedTarget):
            await client.request("POST", f"http://127.0.0.1:{server.port}/", {}, b"", deadline_s=5)
        await client.close()
    assert server.connections == 0


async def test_rebinding_answer_is_refused_at_connect_time() -> None:
    """A name that resolves to a public address for the check and to loopback for the call never connects."""
    answers = iter([["93.184.215.14"], ["127.0.0.1"]])

    async def rebinding_dns(host: str) -> list[str]:
        assert host == "rebind.example"
        return next(answers)

    async with _serve(lambda s, r: _ok()) as server:
        resolver = GuardedResolver(allow_private=False, ttl_seconds=0, lookup=rebinding_dns)
        assert await resolver.resolve("rebind.example") == ["93.184.215.14"]
        client = HttpClient(resolver, excerpt_limit=4096, user_agent="Chime/test")
        with pytest.raises(BlockedTarget, match="127.0.0.1"):
            await client.request("POST", f"http://rebind.example:{server.port}/", {}, b"", deadline_s=5)
        await client.close()
    assert server.connections == 0


async def test_resolver_filters_blocked_addresses_from_a_mixed_answer() -> None:
    async def mixed(host: str) -> list[str]:
        return ["10.0.0.5", "93.184.215.14", "::ffff:127.0.0.1", "93.184.215.14"]

    resolver = GuardedResolver(allow_private=False, lookup=mixed)
    assert await resolver.resolve("mixed.example") == ["93.184.215.14"]


async def test_reused_connection_dropped_before_answering_is_retried_on_a_fresh_one() -> None:
    # The second request arrives on a connection the server has decided to drop: it hangs up unanswered.
    async with _serve(lambda s, r: None if len(s.requests) == 2 else _ok()) as server:
        client = _client()
        url = f"http://127.0.0.1:{server.port}/"
        await client.request("POST", url, {}, b"", deadline_s=5)
        response = await client.request("POST", url, {}, b"", deadline_s=5)
        await client.close()
    assert response.status == 200
    assert (server.connections, len(server.requests)) == (2, 3)


def _self_signed(tmp_path: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@asynccontextmanager
async def _tls_server(cert: Path, key: Path) -> AsyncIterator[int]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(_ok(b"secure"))
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def _localhost(host: str) -> list[str]:
    return ["127.0.0.1"]


def _trusting(cert: Path) -> HttpClient:
    """A client that resolves every name to 127.0.0.1 and trusts only ``cert``."""
    return HttpClient(
        GuardedResolver(allow_private=True, lookup=_localhost),
        excerpt_limit=4096,
        user_agent="Chime/test",
        ssl_context=ssl.create_default_context(cafile=str(cert)),
    )


async def test_https_checks_the_certificate_against_the_host_name(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path, "localhost")
    async with _tls_server(cert, key) as port:
        client = _trusting(cert)
        response = await client.request("POST", f"https://localhost:{port}/hook", {}, b"{}", deadline_s=5)
        await client.close()
    assert (response.status, response.excerpt) == (200, b"secure")


async def test_https_refuses_a_certificate_for_another_name(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path, "other.example")
    async with _tls_server(cert, key) as port:
        client = _trusting(cert)
        with pytest.raises(HttpError, match="cannot connect"):
            await client.request("POST", f"https://localhost:{port}/hook", {}, b"{}", deadline_s=5)
        await client.close()


def _header(request: bytes, name: bytes) -> str:
    for line in request.split(b"\r\n"):
        if line.lower().startswith(name + b":"):
            return line.split(b":", 1)[1].strip().decode()
    raise AssertionError(f"no {name!r} header")


async def test_a_call_prepared_ahead_is_sent_as_signed_while_its_signature_is_recent() -> None:
    """The executor signs a held run before its time; the call sends those bytes, or signs again when they went stale
    or the tenant's keys changed meanwhile. Every request carries a signature that verifies."""
    async with _serve(lambda s, r: _ok()) as server:
        client = _client()
        nominal = datetime.now(UTC).replace(microsecond=0)
        schedule_id = uuid.uuid4()
        due = RunDueData(
            run_id=planned_run_id(schedule_id, nominal),
            schedule_id=schedule_id,
            tenant_id="acme",
            schedule_version=1,
            nominal_time=nominal,
            planned_time=nominal,
            trigger=Trigger.SCHEDULE,
            delivery=DeliverySpec(url=f"http://127.0.0.1:{server.port}/hook", body={"n": 1}),
            retry_policy=RetryPolicy(),
        )
        secret, rotated = "whsec_" + "a" * 44, "whsec_" + "b" * 44
        now = int(datetime.now(UTC).timestamp())
        recent = prepare(client, due, [secret], now + 1)
        stale = prepare(client, due, [secret], now - SIGNED_AHEAD_TOLERANCE_S - 30)
        assert recent is not None and stale is not None
        for prepared, secrets in ((recent, [secret]), (stale, [secret]), (recent, [rotated])):
            result = await call(client, due, secrets, prepared)
            assert result.ok, result.error
        await client.close()
    sent_recent, sent_stale, sent_rotated = server.requests
    assert sent_recent == recent.payload, "a recent prepared request goes out unchanged"
    assert int(_header(sent_stale, b"webhook-timestamp")) >= now, "a stale one is signed again at the call"
    for request, key in ((sent_recent, secret), (sent_stale, secret), (sent_rotated, rotated)):
        body = request.split(b"\r\n\r\n", 1)[1]
        stamp = int(_header(request, b"webhook-timestamp"))
        assert verify(str(due.run_id), stamp, body, _header(request, b"webhook-signature"), key)
