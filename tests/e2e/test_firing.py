"""From schedule to signed webhook, on the real stack with a real HTTP sink."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from shared.settings import Settings
from shared.webhook_signing import verify
from tests.e2e.stack import RecordingSink, Stack, eventually
from tests.integration.helpers import auth, schedule_body


async def create(api: httpx.AsyncClient, settings: Settings, tenant: str, sink: RecordingSink, **kw: Any) -> str:
    body = schedule_body(payload={"url": f"{sink.url}/hook", "body": {"tenant": tenant}}, **kw)
    response = await api.post("/api/schedules", json=body, headers=auth(settings, tenant))
    assert response.status_code == 201, response.text
    schedule_id: str = response.json()["id"]
    return schedule_id


async def runs_of(api: httpx.AsyncClient, settings: Settings, tenant: str, schedule_id: str) -> list[dict[str, Any]]:
    response = await api.get(
        f"/api/schedules/{schedule_id}/runs", params={"limit": 500}, headers=auth(settings, tenant)
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def test_interval_oneoff_and_cron_each_arrive_signed(
    stack: Stack, api: httpx.AsyncClient, sink: RecordingSink, e2e_settings: Settings, tenant: str
) -> None:
    settings = e2e_settings
    run_at_time = (datetime.now(UTC) + timedelta(seconds=3)).replace(microsecond=0)
    run_at = run_at_time.isoformat()
    interval = await create(api, settings, tenant, sink, interval_seconds=2)
    oneoff = await create(api, settings, tenant, sink, type="oneoff", interval_seconds=None, run_at=run_at)
    cron = await create(api, settings, tenant, sink, type="cron", interval_seconds=None, cron_expr="* * * * *")

    interval_hits = await sink.wait_for(interval, 4, timeout=20)
    assert len(interval_hits) >= 4
    nominals = sorted({a.nominal for a in interval_hits})
    assert all(b - a == timedelta(seconds=2) for a, b in zip(nominals, nominals[1:], strict=False)), nominals

    oneoff_hits = await sink.wait_for(oneoff, 1, timeout=15)
    assert oneoff_hits, "the one-off did not fire within 15 s"
    # Exactly its run_at, under one webhook-id however many times it arrived.
    assert {a.nominal for a in oneoff_hits} == {run_at_time}
    assert len({a.webhook_id for a in oneoff_hits}) == 1
    cron_hits = await sink.wait_for(cron, 1, timeout=75)
    assert cron_hits, "cron * * * * * did not fire within 75 s"
    assert cron_hits[0].nominal.second == 0 and cron_hits[0].nominal.microsecond == 0

    keys = (await api.get("/api/signing-keys", headers=auth(settings, tenant))).json()["items"]
    secret = keys[0]["secret"]
    for arrival in interval_hits + oneoff_hits + cron_hits:
        h = arrival.headers
        assert h["webhook-id"] == h["idempotency-key"]
        assert h["user-agent"].startswith("Chime/")
        assert h["chime-attempt"] == "1"
        assert h["content-type"] == "application/json"
        assert verify(h["webhook-id"], int(h["webhook-timestamp"]), arrival.body, h["webhook-signature"], secret)
        assert arrival.method == "POST" and arrival.path == "/hook"

    async def recorded() -> list[dict[str, Any]]:
        runs = await runs_of(api, settings, tenant, interval)
        return runs if {a.webhook_id for a in interval_hits} <= {r["id"] for r in runs} else []

    runs = await eventually(recorded, timeout=20.0)
    assert runs, "webhook ids did not show up as run ids in the run history"
    by_id = {r["id"]: r for r in runs}
    for arrival in interval_hits:
        run = by_id[arrival.webhook_id]
        assert run["trigger"] == "schedule"
        assert datetime.fromisoformat(run["scheduled_for"]) == arrival.nominal

    async def succeeded() -> bool:
        run = (await api.get(f"/api/runs/{interval_hits[0].webhook_id}", headers=auth(settings, tenant))).json()
        return run["status"] == "succeeded" and run["attempts"] and run["attempts"][0]["http_status"] == 200

    assert await eventually(succeeded, timeout=20.0)

    async def completed() -> bool:
        got = (await api.get(f"/api/schedules/{oneoff}", headers=auth(settings, tenant))).json()
        return got["status"] == "completed" and got["run_count"] == 1

    assert await eventually(completed, timeout=20.0), "the one-off did not become completed"
    schedule = (await api.get(f"/api/schedules/{interval}", headers=auth(settings, tenant))).json()
    assert schedule["run_count"] >= 4 and schedule["last_run_at"] is not None


async def test_pause_resume_update_and_delete_take_effect(
    stack: Stack, api: httpx.AsyncClient, sink: RecordingSink, e2e_settings: Settings, tenant: str
) -> None:
    settings = e2e_settings
    headers = auth(settings, tenant)
    schedule = await create(api, settings, tenant, sink, interval_seconds=1)
    await sink.wait_for(schedule, 2, timeout=15)

    assert (await api.post(f"/api/schedules/{schedule}/pause", headers=headers)).status_code == 200
    paused_at = datetime.now(UTC)
    # Three fires' worth of watching: a paused schedule delivers nothing planned more than 1 s after the pause.
    await asyncio.sleep(3)
    after_pause = [a.nominal for a in sink.for_schedule(schedule) if a.nominal > paused_at + timedelta(seconds=1)]
    assert after_pause == [], "fires continued while paused"
    paused_count = len(sink.for_schedule(schedule))

    resumed_at = datetime.now(UTC)
    assert (await api.post(f"/api/schedules/{schedule}/resume", headers=headers)).status_code == 200
    after_resume = await sink.wait_for(schedule, paused_count + 2, timeout=15)
    assert len(after_resume) >= paused_count + 2
    assert all(a.nominal >= resumed_at - timedelta(seconds=1) for a in after_resume[paused_count:])

    patched = await api.patch(f"/api/schedules/{schedule}", json={"interval_seconds": 3}, headers=headers)
    assert patched.status_code == 200
    patched_at = datetime.now(UTC)

    def since_patch() -> list[datetime]:
        # Fires planned under the old interval may land up to 1 s after the change; later ones follow the new one.
        return sorted({a.nominal for a in sink.for_schedule(schedule) if a.nominal > patched_at + timedelta(seconds=1)})

    assert await sink.wait_until(lambda: len(since_patch()) >= 3, timeout=20), "the new interval did not fire"
    nominals = since_patch()
    assert all(b - a == timedelta(seconds=3) for a, b in zip(nominals, nominals[1:], strict=False)), nominals

    assert (await api.delete(f"/api/schedules/{schedule}", headers=headers)).status_code == 204
    deleted_at = datetime.now(UTC)
    await asyncio.sleep(4)
    after_delete = [a.nominal for a in sink.for_schedule(schedule) if a.nominal > deleted_at + timedelta(seconds=1)]
    assert after_delete == [], "fires continued after delete"


async def test_run_now_delivers_at_once_and_runs_are_tenant_isolated(
    stack: Stack, api: httpx.AsyncClient, sink: RecordingSink, e2e_settings: Settings, tenant: str
) -> None:
    settings = e2e_settings
    headers = auth(settings, tenant)
    schedule = await create(api, settings, tenant, sink, interval_seconds=3600)
    requested = datetime.now(UTC)
    response = await api.post(f"/api/schedules/{schedule}/run-now", headers=headers)
    assert response.status_code == 202
    run = response.json()
    assert run["status"] == "queued" and run["trigger"] == "run_now"
    hits = await sink.wait_for(schedule, 1, timeout=10)
    assert [a.webhook_id for a in hits] == [run["id"]]
    assert hits[0].received - requested < timedelta(seconds=2)

    intruder = auth(settings, f"{tenant}-b")
    assert (await api.get(f"/api/schedules/{schedule}/runs", headers=intruder)).status_code == 404
    assert (await api.get(f"/api/runs/{run['id']}", headers=intruder)).status_code == 404
    assert (await api.post(f"/api/schedules/{schedule}/run-now", headers=intruder)).status_code == 404
