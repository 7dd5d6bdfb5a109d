"""The API the console is built on, open to any client: a definition's preview before it is saved, the run
figures of ``GET /api/stats``, and the bulk replay's dry run, against the real Postgres."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, insert, select, update

from services.api.db.stats_repo import lag_percentile
from shared.db.engine import create_engine
from shared.db.tables import dlq_entries, run_attempts, runs
from shared.settings import Settings
from shared.timefmt import utcnow
from tests.integration.helpers import auth, schedule_body


async def test_a_definition_is_previewed_without_being_saved(
    client: httpx.AsyncClient, settings: Settings, tenant: str
) -> None:
    headers = auth(settings, tenant)
    body = schedule_body(type="cron", interval_seconds=None, cron_expr="0 9 * * *", timezone="Europe/Paris")
    preview = await client.post("/api/schedules/preview", params={"count": 3}, json=body, headers=headers)
    assert preview.status_code == 200, preview.text
    items = preview.json()["items"]
    assert len(items) == 3 and all(i["local"].endswith(("+01:00", "+02:00")) for i in items)
    assert all("T09:00:00.000" in i["local"] for i in items)
    assert (await client.get("/api/schedules", headers=headers)).json()["items"] == []

    bad = await client.post("/api/schedules/preview", json={**body, "cron_expr": "61 * * * *"}, headers=headers)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "cron_expr"
    # A calendar's excluded days are marked, as for a saved schedule.
    calendar = await client.post(
        "/api/calendars", json={"name": "weekends", "exclude_weekdays": ["sat", "sun"]}, headers=headers
    )
    weekly = {**body, "cron_expr": "0 9 * * *", "timezone": "UTC", "calendar_ids": [calendar.json()["id"]]}
    marked = await client.post(
        "/api/schedules/preview", params={"count": 7, "include_skipped": "true"}, json=weekly, headers=headers
    )
    assert [i["skipped"] for i in marked.json()["items"]].count("calendar") == 2
    reader = auth(settings, tenant, scope="runs:read")
    assert (await client.post("/api/schedules/preview", json=body, headers=reader)).status_code == 403


async def _history(settings: Settings, tenant: str, schedule_id: uuid.UUID) -> None:
    """Four runs a minute ago, called 10, 20, 30 and 50 ms late: three succeeded (one of them written as running
    first, as the recorder does when the call's outcome comes later), one dead-lettered; and one dead letter."""
    engine = create_engine(settings)
    nominal = (utcnow() - timedelta(minutes=1)).replace(second=0, microsecond=0)
    try:
        async with engine.begin() as conn:
            for lag_ms, status in ((10, "succeeded"), (20, "running"), (30, "succeeded"), (50, "dead_lettered")):
                run_id = uuid.uuid4()
                await conn.execute(
                    insert(runs).values(
                        id=run_id,
                        schedule_id=schedule_id,
                        tenant_id=tenant,
                        scheduled_for=nominal,
                        planned_for=nominal,
                        status=status,
                        trigger="schedule",
                    )
                )
                started = nominal + timedelta(milliseconds=lag_ms)
                await conn.execute(insert(run_attempts).values(run_id=run_id, attempt=1, started_at=started))
                if status == "running":
                    await conn.execute(update(runs).where(runs.c.id == run_id).values(status="succeeded"))
            await conn.execute(
                insert(dlq_entries).values(
                    id=uuid.uuid4(),
                    run_id=uuid.uuid4(),
                    tenant_id=tenant,
                    schedule_id=schedule_id,
                    scheduled_for=nominal,
                    trigger="schedule",
                    reason="HTTP 400",
                    last_http_status=400,
                    attempt_count=1,
                    attempts=[],
                    run={},
                    status="dead",
                    dead_at=nominal,
                )
            )
    finally:
        await engine.dispose()


async def test_stats_count_the_tenants_runs_by_minute_and_by_schedule(
    client: httpx.AsyncClient, settings: Settings, tenant: str
) -> None:
    schedule_id = uuid.uuid4()
    await _history(settings, tenant, schedule_id)
    await _history(settings, f"{tenant}-other", schedule_id)
    headers = auth(settings, tenant, scope="runs:read")
    params = {"schedule_id": str(schedule_id), "consumer_lag": "true"}
    # Consumer lag is the installation's, not the tenant's: asking for it takes the admin scope.
    refused = await client.get("/api/stats", params=params, headers=headers)
    assert refused.status_code == 403 and "admin" in refused.json()["detail"], refused.text
    stats = await client.get("/api/stats", params=params, headers=auth(settings, tenant, scope="runs:read admin"))
    assert stats.status_code == 200, stats.text
    body = stats.json()
    [minute] = body["series"]
    assert (minute["succeeded"], minute["failed"]) == (3, 1)
    # Lags are kept in 5%-wide buckets: a percentile is the middle of its bucket, within 2.5% of the exact figure.
    assert minute["lag_p50_ms"] == pytest.approx(20, rel=0.025)
    assert minute["lag_p99_ms"] == pytest.approx(50, rel=0.025)
    assert body["schedules"] == [{"schedule_id": str(schedule_id), "succeeded": 3, "failed": 1}]
    assert body["dead_letters"] == 1
    assert isinstance(body["consumer_lag"], dict)
    assert all(group.startswith(settings.topic_prefix) for group in body["consumer_lag"])
    empty = await client.get("/api/stats", params={"window_minutes": 1}, headers=auth(settings, f"{tenant}-none"))
    assert empty.json()["series"] == [] and empty.json()["dead_letters"] == 0
    assert empty.json()["consumer_lag"] is None
    assert (await client.get("/api/stats", headers=auth(settings, tenant, scope="dlq:read"))).status_code == 403


async def test_a_bulk_replay_dry_run_counts_and_changes_nothing(
    client: httpx.AsyncClient, settings: Settings, tenant: str
) -> None:
    schedule_id = uuid.uuid4()
    await _history(settings, tenant, schedule_id)
    headers = auth(settings, tenant)
    dry = await client.post("/api/dlq/replay", json={"http_status": 400, "dry_run": True}, headers=headers)
    assert dry.status_code == 202 and dry.json() == {"count": 1}
    assert (
        await client.post("/api/dlq/replay", json={"http_status": 500, "dry_run": True}, headers=headers)
    ).json() == {"count": 0}
    engine = create_engine(settings)
    try:
        async with engine.connect() as conn:
            statuses = (
                await conn.execute(select(dlq_entries.c.status).where(dlq_entries.c.tenant_id == tenant))
            ).scalars()
            assert list(statuses) == ["dead"]
    finally:
        await engine.dispose()


async def test_the_databases_lag_buckets_are_the_ones_the_api_reads(settings: Settings) -> None:
    """``chime_lag_bucket`` (migration 0013) puts a lag where ``lag_percentile`` looks for it."""
    lags = [0.2, 0.5, 0.51, 1.0, 7.3, 42.0, 999.0, 61_000.0, 3_600_000.0]
    engine = create_engine(settings)
    try:
        async with engine.connect() as conn:
            for ms in lags:
                bucket = (await conn.execute(select(func.chime_lag_bucket(ms)))).scalar_one()
                read = lag_percentile({bucket: 1}, 0.5)
                assert read is not None
                assert read == (0.0 if ms <= 0.5 else pytest.approx(ms, rel=0.025)), (ms, bucket)
    finally:
        await engine.dispose()
