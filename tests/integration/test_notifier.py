"""The notifier against the real Postgres and a real receiver on loopback: signed delivery, backoff after a
failure, and the drop (counted) once a notification is a day old."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.api.db.keys_repo import SigningKeyRepository
from services.api.migrate import migrate
from services.api.notifier import Notifier, NotifierMetrics, notification_client
from shared.db.engine import create_engine
from shared.db.tables import notification_endpoints, notifications
from shared.runid import new_entity_id
from shared.settings import Settings
from shared.timefmt import utcnow
from shared.webhook_signing import verify
from tests.e2e.stack import free_port
from tests.integration.helpers import create_database, drop_database


@pytest.fixture
async def own_settings(settings: Settings) -> AsyncIterator[Settings]:
    """A database of its own: the session's API (when running) delivers notifications in the shared one."""
    url = await create_database(settings.database_url)
    own = settings.model_copy(update={"database_url": url})
    await migrate(own)
    yield own
    await drop_database(url)


@pytest.fixture
async def engine(own_settings: Settings) -> AsyncIterator[AsyncEngine]:
    built = create_engine(own_settings)
    yield built
    await built.dispose()


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, list[web.Request], list[bytes]]]:
    """Answers 200 on /ok and 503 on /down, and keeps what it got."""
    seen: list[web.Request] = []
    bodies: list[bytes] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(request)
        bodies.append(await request.read())
        return web.Response(status=200 if request.path == "/ok" else 503)

    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}", seen, bodies
    await runner.cleanup()


async def _endpoint(engine: AsyncEngine, tenant: str, url: str) -> uuid.UUID:
    endpoint_id = new_entity_id()
    now = utcnow()
    async with engine.begin() as conn:
        await conn.execute(
            insert(notification_endpoints).values(
                id=endpoint_id,
                tenant_id=tenant,
                url=url,
                events=["schedule.failing"],
                version=1,
                created_at=now,
                updated_at=now,
            )
        )
    return endpoint_id


async def _notification(engine: AsyncEngine, tenant: str, endpoint_id: uuid.UUID, age: timedelta) -> uuid.UUID:
    notification_id = uuid.uuid4()
    schedule_id = uuid.uuid4()
    data = {
        "schedule_id": str(schedule_id),
        "tenant_id": tenant,
        "name": "nightly",
        "consecutive_failures": 3,
        "alert_after_failures": 3,
        "last_failure_at": "2026-11-28T09:00:00Z",
    }
    async with engine.begin() as conn:
        await conn.execute(
            insert(notifications).values(
                id=notification_id,
                tenant_id=tenant,
                endpoint_id=endpoint_id,
                event_type="schedule.failing",
                subject=str(schedule_id),
                data=data,
                created_at=utcnow() - age,
                next_attempt_at=utcnow(),
            )
        )
    return notification_id


def _notifier(settings: Settings, engine: AsyncEngine) -> tuple[Notifier, NotifierMetrics]:
    registry = CollectorRegistry()
    metrics = NotifierMetrics(
        Counter("sent", "sent", ["outcome"], registry=registry), Counter("dropped", "dropped", registry=registry)
    )
    keys = SigningKeyRepository(engine, settings, lambda: None)
    return Notifier(engine, keys, notification_client(allow_private=True), metrics), metrics


async def test_delivered_signed_then_failures_back_off_and_old_ones_are_dropped(
    own_settings: Settings,
    engine: AsyncEngine,
    receiver: tuple[str, list[web.Request], list[bytes]],
    tenant: str,
) -> None:
    settings = own_settings
    base, seen, bodies = receiver
    notifier, metrics = _notifier(settings, engine)
    ok = await _notification(engine, tenant, await _endpoint(engine, tenant, f"{base}/ok"), timedelta(0))
    down = await _endpoint(engine, tenant, f"{base}/down")
    young = await _notification(engine, tenant, down, timedelta(hours=1))
    old = await _notification(engine, tenant, down, timedelta(hours=25))

    assert await notifier.deliver_once() >= 3
    assert await notifier.deliver_once() == 0  # nothing due again straight away
    await notifier._client.close()

    first = next(i for i, r in enumerate(seen) if r.path == "/ok")
    request, body = seen[first], bodies[first]
    assert request.headers["webhook-id"] == str(ok)
    assert request.headers["content-type"] == "application/cloudevents+json"
    secret = (await SigningKeyRepository(engine, settings, lambda: None).active(tenant))[0].secret
    timestamp = int(request.headers["webhook-timestamp"])
    assert verify(str(ok), timestamp, body, request.headers["webhook-signature"], secret)
    assert b'"type":"dev.chime.schedule.failing.v1"' in body and b'"last_failure_at":"2026-11-28T09:00:00' in body

    async with engine.connect() as conn:
        rows = {r.id: r for r in (await conn.execute(select(notifications))).all() if r.tenant_id == tenant}
    assert rows[ok].delivered_at is not None and rows[ok].attempts == 1
    assert rows[young].delivered_at is None and rows[young].attempts == 1
    assert rows[young].last_error == "HTTP 503"
    assert rows[young].next_attempt_at > utcnow() + timedelta(seconds=3)
    assert old not in rows
    assert metrics.dropped._value.get() == 1
    assert metrics.failed._value.get() == 2 and metrics.delivered._value.get() == 1
