"""Kafka clients built from settings, with the security options applied once."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from shared.producer_topics import track_produced_topics
from shared.settings import Settings


def client_options(settings: Settings) -> dict[str, Any]:
    opts: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": settings.kafka_security_protocol,
        "request_timeout_ms": settings.kafka_request_timeout_ms,
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        opts["ssl_context"] = ssl.create_default_context(cafile=settings.kafka_ssl_cafile)
    if settings.kafka_security_protocol.startswith("SASL"):
        opts["sasl_mechanism"] = settings.kafka_sasl_mechanism or "PLAIN"
        opts["sasl_plain_username"] = settings.kafka_sasl_username
        if settings.kafka_sasl_password is not None:
            opts["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    return opts


def build_producer(settings: Settings, **overrides: Any) -> AIOKafkaProducer:
    """An idempotent producer: retries never reorder or duplicate within a partition."""
    opts = client_options(settings)
    opts.update(enable_idempotence=True, acks="all", linger_ms=0)
    opts.update(overrides)
    return track_produced_topics(AIOKafkaProducer(**opts))


# How long the broker may hold a fetch that finds no new records. aiokafka keeps one fetch in flight per broker,
# so records for a partition left out of that fetch wait up to this long; it bounds Kafka's share of the lag.
# The executor and the planner wait longer while their fetches come back empty (``shared/fetch_pacing.py``).
FETCH_MAX_WAIT_MS = 50
# A fetch returns as soon as it has this much. Above one byte, a busy topic is read in batches instead of a
# fetch per handful of records, which is most of a consumer's CPU at hundreds of records per second.
FETCH_MIN_BYTES = 16 * 1024
# For consumers whose records may wait half a second (run history, dead letters): fewer, fuller fetches.
BULK_FETCH: dict[str, Any] = {"fetch_max_wait_ms": 500, "fetch_min_bytes": 256 * 1024}
# How often those consumers commit while busy (``ConsumerRuntime``): what a crash leaves uncommitted is at most this
# much of their records, handled again harmlessly.
BULK_COMMIT_EVERY_S = 1.0
# For the executor: runs arrive seconds ahead of their time (look-ahead), so a fetch may ask for a fuller batch.
# It waits no longer than the others: a cancel rides the same fetch, and a pause or delete has 1 s to take effect
# end to end (a 200 ms wait was a fifth of that; the extra fetches cost well under 1% of a core at 1,000 runs/s).
AHEAD_FETCH: dict[str, Any] = {"fetch_max_wait_ms": FETCH_MAX_WAIT_MS, "fetch_min_bytes": 256 * 1024}
# Linger for producers whose records are not on the webhook's clock (outcomes, retries, announced runs): one
# produce request per 20 ms instead of one per handful of records. Requests, not records, cost the CPU.
BATCH_LINGER_MS = 20
# The executor's rounds for run outcomes (results, retries, dead letters): read by the run history, by result
# subscribers and by the DLQ, none of which is timed to the tenth of a second. At 1,000 calls/s, rounds of 100 ms
# instead of 20 ms saved about 3% of a core across the executor and the broker. What another component waits on
# (a run routed to its flow's owner, a finish report to the planner, a forwarded cancel) keeps the 20 ms rounds.
OUTCOME_ROUND_MS = 100


def build_consumer(settings: Settings, *topics: str, **overrides: Any) -> AIOKafkaConsumer:
    opts = client_options(settings)
    opts.update(enable_auto_commit=False, fetch_max_wait_ms=FETCH_MAX_WAIT_MS, fetch_min_bytes=FETCH_MIN_BYTES)
    opts.update(overrides)
    return AIOKafkaConsumer(*topics, **opts)


def group_id(settings: Settings, group: str) -> str:
    """A service's consumer group: its name under the installation's topic prefix (``chime.executor``)."""
    return f"{settings.topic_prefix}{group}"


def build_group_consumer(
    settings: Settings, group: str, instance: str, *topics: str, **overrides: Any
) -> AIOKafkaConsumer:
    """A member of the service's consumer group, with static membership and Chime's failover timeouts."""
    opts: dict[str, Any] = {
        "group_id": group_id(settings, group),
        "group_instance_id": instance,
        "session_timeout_ms": settings.consumer_session_timeout_ms,
        "heartbeat_interval_ms": settings.consumer_heartbeat_interval_ms,
        "auto_offset_reset": "earliest",
    }
    opts.update(overrides)
    return build_consumer(settings, *topics, **opts)


@asynccontextmanager
async def admin_client(settings: Settings) -> AsyncIterator[AIOKafkaAdminClient]:
    opts = client_options(settings)
    opts.pop("request_timeout_ms")
    admin = AIOKafkaAdminClient(request_timeout_ms=settings.kafka_request_timeout_ms, **opts)
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()
