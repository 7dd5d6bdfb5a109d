"""Readiness checks ask the dependency itself: Kafka must answer a metadata request, not merely accept a TCP
connection."""

from __future__ import annotations

import asyncio

from shared.health import KafkaProbe, timed
from shared.settings import load_settings


async def test_kafka_probe_gets_metadata_from_the_broker(stack_env: dict[str, str]) -> None:
    probe = KafkaProbe(load_settings(_env_file=None, kafka_bootstrap=stack_env["CHIME_KAFKA_BOOTSTRAP"]))
    try:
        result = await timed(probe.check)
        assert result.status == "ok", result.detail
        assert result.detail.startswith("metadata from 1 broker(s)")
        again = await timed(probe.check)  # the client is kept between checks
        assert again.status == "ok"
    finally:
        await probe.close()


async def test_a_port_that_accepts_connections_is_not_a_broker() -> None:
    async def accept_and_say_nothing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1 << 16)
        writer.close()

    server = await asyncio.start_server(accept_and_say_nothing, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    probe = KafkaProbe(
        load_settings(_env_file=None, kafka_bootstrap=f"127.0.0.1:{port}", kafka_request_timeout_ms=1000)
    )
    try:
        result = await timed(probe.check)
        assert result.status == "down"
        assert result.latency_ms > 0
    finally:
        await probe.close()
        server.close()
        await server.wait_closed()
