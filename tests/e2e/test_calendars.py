"""A calendar turns fires into skips on the running stack, and a change to it reaches the planner."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from shared.events import RunSkipped, decode_event
from shared.settings import Settings
from shared.topics import RUNS_RESULTS, topic_name
from tests.e2e.stack import RecordingSink, Stack
from tests.e2e.stack import eventually as until
from tests.integration.helpers import auth, read_all, schedule_body

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


async def test_an_excluded_weekday_skips_fires_until_the_exclusion_is_removed(
    stack: Stack, api: httpx.AsyncClient, sink: RecordingSink, e2e_settings: Settings, tenant: str
) -> None:
    settings = e2e_settings
    now = datetime.now(UTC)
    # Today and tomorrow (UTC), so the test holds across midnight.
    days = sorted({WEEKDAYS[now.weekday()], WEEKDAYS[(now + timedelta(days=1)).weekday()]}, key=WEEKDAYS.index)
    calendar = await api.post(
        "/api/calendars", json={"name": "no work today", "exclude_weekdays": days}, headers=auth(settings, tenant)
    )
    assert calendar.status_code == 201, calendar.text
    cid = calendar.json()["id"]
    body = schedule_body(interval_seconds=1, calendar_ids=[cid], payload={"url": f"{sink.url}/calendar"})
    created = await api.post("/api/schedules", json=body, headers=auth(settings, tenant))
    assert created.status_code == 201, created.text
    schedule_id = created.json()["id"]

    async def skipping() -> dict[str, Any]:
        got = await api.get(f"/api/schedules/{schedule_id}", headers=auth(settings, tenant))
        stats: dict[str, Any] = got.json()["stats"]
        return stats if stats["skipped_total"] >= 3 else {}

    stats = await until(skipping)
    assert stats, "no calendar skips were recorded"
    assert stats["last_skip_reason"] == "calendar"
    assert sink.for_schedule(schedule_id) == [], "an excluded fire was delivered"
    runs = await api.get(f"/api/schedules/{schedule_id}/runs", headers=auth(settings, tenant))
    assert runs.status_code == 200
    assert runs.json()["items"] and all(r["status"] == "skipped" for r in runs.json()["items"])
    records = [r for r in await read_all(settings, topic_name(settings, RUNS_RESULTS)) if r.key == schedule_id.encode()]
    skips = [e for e in (decode_event(r.value) for r in records) if isinstance(e, RunSkipped)]
    assert skips and {s.data.reason.value for s in skips} == {"calendar"}
    assert all(s.data.run_id is not None and s.data.count == 1 for s in skips)

    lifted = await api.patch(f"/api/calendars/{cid}", json={"exclude_weekdays": []}, headers=auth(settings, tenant))
    assert lifted.status_code == 200, lifted.text
    assert await sink.wait_until(lambda: len(sink.for_schedule(schedule_id)) >= 3, timeout=20), (
        "deliveries did not resume once the exclusion was removed"
    )
    await api.delete(f"/api/schedules/{schedule_id}", headers=auth(settings, tenant))
    await asyncio.sleep(0.5)
    assert (await api.delete(f"/api/calendars/{cid}", headers=auth(settings, tenant))).status_code == 204
