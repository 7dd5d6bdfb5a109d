"""Auto-pause: a schedule whose runs keep failing is paused by Chime, says why, and resumes on request."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx

from shared.settings import Settings
from tests.e2e.stack import RecordingSink, Stack
from tests.e2e.stack import eventually as until
from tests.integration.helpers import auth, schedule_body

ONE_ATTEMPT = {"max_attempts": 1, "backoff": "fixed", "initial_delay_seconds": 1, "jitter": False}


async def schedule_of(api: httpx.AsyncClient, settings: Settings, tenant: str, schedule_id: str) -> dict[str, Any]:
    response = await api.get(f"/api/schedules/{schedule_id}", headers=auth(settings, tenant))
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


async def test_a_failing_schedule_is_paused_after_its_threshold_and_again_after_a_resume(
    stack: Stack, api: httpx.AsyncClient, sink: RecordingSink, e2e_settings: Settings, tenant: str
) -> None:
    settings = e2e_settings
    headers = auth(settings, tenant)
    url = f"{sink.url}/auto-pause/{uuid.uuid4()}?status=400"  # a permanent failure: each run dead-lettered at once
    body = schedule_body(
        interval_seconds=1, payload={"url": url}, retry_policy=ONE_ATTEMPT, auto_pause_after_failures=3
    )
    created = await api.post("/api/schedules", json=body, headers=headers)
    assert created.status_code == 201, created.text
    schedule_id = created.json()["id"]
    assert created.json()["auto_pause_after_failures"] == 3 and created.json()["paused_reason"] is None

    async def auto_paused() -> dict[str, Any]:
        found = await schedule_of(api, settings, tenant, schedule_id)
        return found if found["status"] == "paused" else {}

    paused = await until(auto_paused, timeout=30)
    assert paused, await schedule_of(api, settings, tenant, schedule_id)
    # The pause lands a moment after the third failure is recorded (the recorder's batch, then the API's next look,
    # within a second): a run or two more may have been called by then.
    first = int(paused["paused_reason"].split()[1])
    assert paused["paused_reason"] == f"auto: {first} consecutive failures", paused
    assert 3 <= first <= 6, paused
    paused_at = datetime.fromisoformat(paused["updated_at"])
    # Announced runs are withdrawn with the pause: nothing is called for a time after it.
    runs = await api.get(f"/api/schedules/{schedule_id}/runs", params={"limit": 100}, headers=headers)
    later = [r for r in runs.json()["items"] if datetime.fromisoformat(r["scheduled_for"]) > paused_at]
    assert all(r["status"] in ("queued", "skipped") for r in later), later

    # A run called just before the pause may end after it. Its failure, recorded after a resume, would count toward
    # the next pause (the streak is rebased at the resume), so let every call so far be recorded first: each call
    # is one failure here.
    async def all_recorded() -> bool:
        found = await schedule_of(api, settings, tenant, schedule_id)
        return bool(found["stats"]["consecutive_failures"] == len(sink.for_schedule(schedule_id)))

    assert await until(all_recorded, timeout=15), await schedule_of(api, settings, tenant, schedule_id)
    resumed = await api.post(f"/api/schedules/{schedule_id}/resume", headers=headers)
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["status"] == "active" and resumed.json()["paused_reason"] is None

    resumed_at = datetime.fromisoformat(resumed.json()["updated_at"])
    # Still failing: paused again after three more failures, not at the next one.
    again = await until(auto_paused, timeout=30)
    assert again, await schedule_of(api, settings, tenant, schedule_id)
    counted = int(again["paused_reason"].split()[1])
    assert 3 <= counted <= 6 and again["paused_reason"] == f"auto: {counted} consecutive failures", again
    assert again["stats"]["consecutive_failures"] >= first + counted, again["stats"]
    calls = sink.for_schedule(schedule_id)
    assert counted <= len([a for a in calls if a.received > resumed_at]) <= counted + 3
    between = [a.nominal for a in calls if paused_at + timedelta(milliseconds=500) < a.nominal < resumed_at]
    assert between == [], "calls for times while the schedule was paused"

    metrics = (await api.get("/metrics")).text
    counted_paused = [line for line in metrics.splitlines() if line.startswith("chime_schedules_auto_paused_total ")]
    assert counted_paused and float(counted_paused[0].split()[1]) >= 2, counted_paused

    # A manual pause says nothing of a reason; a schedule without a threshold is never auto-paused.
    await api.post(f"/api/schedules/{schedule_id}/resume", headers=headers)
    manual = await api.post(f"/api/schedules/{schedule_id}/pause", headers=headers)
    assert manual.json()["paused_reason"] is None
    assert (await api.delete(f"/api/schedules/{schedule_id}", headers=headers)).status_code == 204
