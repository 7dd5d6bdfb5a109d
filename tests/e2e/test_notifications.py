"""Notifications: a schedule that keeps failing tells its owner (schedule.failing, then schedule.auto_paused), and
tells them again when it recovers; each notification is a CloudEvent signed with the tenant's keys, verified here
with the standardwebhooks library as a receiver would."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime
from typing import Any

import httpx
from standardwebhooks.webhooks import Webhook

from shared.settings import Settings
from tests.e2e.stack import Arrival, RecordingSink, Stack
from tests.e2e.test_auto_pause import ONE_ATTEMPT, schedule_of
from tests.integration.helpers import auth, schedule_body

_ALL = ["run.dead_lettered", "run.skipped", "schedule.failing", "schedule.recovered", "schedule.auto_paused"]


def _verified(arrival: Arrival, secret: str) -> dict[str, Any]:
    assert arrival.headers["content-type"] == "application/cloudevents+json"
    event: dict[str, Any] = Webhook(secret).verify(arrival.body, arrival.headers)
    assert event["id"] == arrival.headers["webhook-id"] and event["specversion"] == "1.0"
    return event


async def test_failing_auto_paused_and_recovered_reach_the_owner_signed(
    stack: Stack, api: httpx.AsyncClient, sink: RecordingSink, e2e_settings: Settings, tenant: str
) -> None:
    settings = e2e_settings
    headers = auth(settings, tenant)
    path = f"/notify/{uuid.uuid4()}"
    endpoint = await api.post(
        "/api/notification-endpoints",
        json={"url": f"{sink.url}{path}", "events": _ALL, "description": "on call"},
        headers=headers,
    )
    assert endpoint.status_code == 201, endpoint.text
    secret = (await api.get("/api/signing-keys", headers=headers)).json()["items"][0]["secret"]

    target = f"{sink.url}/failing/{uuid.uuid4()}"
    body = schedule_body(
        interval_seconds=1,
        payload={"url": f"{target}?status=500"},
        retry_policy=ONE_ATTEMPT,
        alert_after_failures=2,
        auto_pause_after_failures=3,
    )
    created = await api.post("/api/schedules", json=body, headers=headers)
    assert created.status_code == 201, created.text
    schedule_id = created.json()["id"]
    assert created.json()["alert_after_failures"] == 2

    def notices(kind: str) -> list[dict[str, Any]]:
        found = []
        for arrival in [a for a in sink.arrivals if a.path == path]:
            event = _verified(arrival, secret)
            if event["type"] == f"dev.chime.{kind}.v1" and event["subject"] == schedule_id:
                found.append(event)
        return found

    assert await sink.wait_until(lambda: bool(notices("schedule.auto_paused")), timeout=45), [
        json.loads(a.body)["type"] for a in sink.arrivals if a.path == path
    ]
    failing = notices("schedule.failing")
    assert len(failing) == 1, failing
    assert failing[0]["data"]["consecutive_failures"] >= 2 and failing[0]["data"]["alert_after_failures"] == 2
    assert failing[0]["tenant"] == tenant and failing[0]["data"]["name"] == body["name"]
    paused = notices("schedule.auto_paused")[0]["data"]
    assert paused["paused_reason"].startswith("auto: ") and paused["consecutive_failures"] >= 3
    dead = notices("run.dead_lettered")
    assert len(dead) >= 3 and all(d["data"]["status"] == "dead_lettered" for d in dead)
    assert (await schedule_of(api, settings, tenant, schedule_id))["status"] == "paused"

    # Mended and resumed: the first success says the schedule recovered, once.
    patched = await api.patch(f"/api/schedules/{schedule_id}", json={"payload": {"url": target}}, headers=headers)
    assert patched.status_code == 200, patched.text
    resumed = await api.post(f"/api/schedules/{schedule_id}/resume", headers=headers)
    assert resumed.status_code == 200, resumed.text
    assert await sink.wait_until(lambda: bool(notices("schedule.recovered")), timeout=30)
    recovered = notices("schedule.recovered")[0]["data"]
    assert recovered["failures_before"] >= 3 and recovered["recovered_at"] is not None

    # Further successes say nothing more (the notifier looks every second).
    resumed_at = datetime.fromisoformat(resumed.json()["updated_at"])
    assert await sink.wait_until(
        lambda: sum(1 for a in sink.for_schedule(schedule_id) if a.received > resumed_at) >= 5, timeout=30
    )
    await asyncio.sleep(1.5)
    assert len(notices("schedule.recovered")) == 1
    assert (await api.delete(f"/api/schedules/{schedule_id}", headers=headers)).status_code == 204
    gone = await api.delete(f"/api/notification-endpoints/{endpoint.json()['id']}", headers=headers)
    assert gone.status_code == 204


async def test_a_failing_endpoint_never_holds_up_runs(
    stack: Stack, api: httpx.AsyncClient, sink: RecordingSink, e2e_settings: Settings, tenant: str
) -> None:
    settings = e2e_settings
    headers = auth(settings, tenant)
    broken_path = f"/broken-endpoint/{uuid.uuid4()}"
    broken = await api.post(
        "/api/notification-endpoints",
        json={"url": f"{sink.url}{broken_path}?status=503&delay=2", "events": ["run.dead_lettered"]},
        headers=headers,
    )
    assert broken.status_code == 201, broken.text
    body = schedule_body(
        interval_seconds=1, payload={"url": f"{sink.url}/dead/{uuid.uuid4()}?status=400"}, retry_policy=ONE_ATTEMPT
    )
    created = await api.post("/api/schedules", json=body, headers=headers)
    schedule_id = created.json()["id"]
    calls = await sink.wait_for(schedule_id, 5, timeout=30)
    assert len(calls) >= 5
    lateness = [(a.received - a.nominal).total_seconds() for a in calls]
    assert max(lateness) < 1.0, lateness
    tried = [a for a in sink.arrivals if a.path == broken_path]
    assert tried, "the endpoint was never tried"
    metrics = (await api.get("/metrics")).text
    failed = [
        line for line in metrics.splitlines() if line.startswith('chime_notifications_sent_total{outcome="failed"}')
    ]
    assert failed and float(failed[0].split()[1]) >= 1, failed
    await api.delete(f"/api/schedules/{schedule_id}", headers=headers)
    await api.delete(f"/api/notification-endpoints/{broken.json()['id']}", headers=headers)
