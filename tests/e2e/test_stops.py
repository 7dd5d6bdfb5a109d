"""A pause or delete the API has answered stops the runs already handed to executors, without the planner."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from shared.settings import Settings
from tests.e2e.stack import RecordingSink, Stack, frozen
from tests.e2e.stack import eventually as until
from tests.integration.helpers import auth, schedule_body

# Generous against a loaded test machine: on a quiet one, a bulk pause of 1,000 schedules stops calls within
# about 150 ms of the answer (`make bench`-style measurement in docs/decisions.md).
_SLACK = timedelta(milliseconds=500)


async def firing_every_second(api: httpx.AsyncClient, sink: RecordingSink, headers: dict[str, str]) -> str:
    body = schedule_body(interval_seconds=1, payload={"url": f"{sink.url}/stops/{uuid.uuid4()}"})
    created = await api.post("/api/schedules", json=body, headers=headers)
    assert created.status_code == 201, created.text
    schedule_id: str = created.json()["id"]
    assert len(await sink.wait_for(schedule_id, 2, timeout=30)) >= 2, "the schedule did not start firing"
    return schedule_id


async def runs_after(
    api: httpx.AsyncClient, settings: Settings, tenant: str, schedule_id: str, after: datetime
) -> list[dict[str, Any]]:
    response = await api.get(
        f"/api/schedules/{schedule_id}/runs", params={"limit": 100}, headers=auth(settings, tenant)
    )
    assert response.status_code == 200, response.text
    return [r for r in response.json()["items"] if datetime.fromisoformat(r["scheduled_for"]) > after]


async def test_a_pause_stops_announced_runs_while_the_planner_is_frozen(
    stack: Stack, api: httpx.AsyncClient, sink: RecordingSink, e2e_settings: Settings, tenant: str
) -> None:
    settings = e2e_settings
    headers = auth(settings, tenant)
    schedule_id = await firing_every_second(api, sink, headers)

    with frozen(stack, "planner"):
        # The planner has already handed the executor the runs of the next two seconds (its look-ahead) and
        # cannot cancel them now: only the API's word reaches the executor.
        paused = await api.post(f"/api/schedules/{schedule_id}/pause", headers=headers)
        assert paused.status_code == 200, paused.text
        cutoff = datetime.now(UTC) + _SLACK

        async def withdrawn() -> list[dict[str, Any]]:
            runs = await runs_after(api, settings, tenant, schedule_id, cutoff)
            return runs if runs and all(r["status"] == "skipped" for r in runs) else []

        announced = await until(withdrawn, timeout=15)
        assert announced, await runs_after(api, settings, tenant, schedule_id, cutoff)

    late = [a for a in sink.for_schedule(schedule_id) if a.nominal > cutoff]
    assert late == [], f"{len(late)} calls for times after the pause: {[a.nominal for a in late]}"
    assert {r["trigger"] for r in announced} == {"schedule"}

    # Once the planner applies the pause it stays paused, and a resume brings the calls back.
    resumed = await api.post(f"/api/schedules/{schedule_id}/resume", headers=headers)
    assert resumed.status_code == 200, resumed.text
    resumed_at = datetime.now(UTC)

    def firing_again() -> bool:
        return any(a.nominal > resumed_at for a in sink.for_schedule(schedule_id))

    assert await sink.wait_until(firing_again, timeout=30), "the resumed schedule did not fire again"
    assert (await api.delete(f"/api/schedules/{schedule_id}", headers=headers)).status_code == 204


async def test_a_delete_stops_announced_runs_while_the_planner_is_frozen(
    stack: Stack, api: httpx.AsyncClient, sink: RecordingSink, e2e_settings: Settings, tenant: str
) -> None:
    settings = e2e_settings
    headers = auth(settings, tenant)
    schedule_id = await firing_every_second(api, sink, headers)

    with frozen(stack, "planner"):
        deleted = await api.delete(f"/api/schedules/{schedule_id}", headers=headers)
        assert deleted.status_code == 204, deleted.text
        cutoff = datetime.now(UTC) + _SLACK

        def quiet_past_lookahead() -> bool:
            # Every run the planner announced before it froze was due within its look-ahead.
            return datetime.now(UTC) > cutoff + timedelta(milliseconds=settings.planner_lookahead_ms + 500)

        assert await sink.wait_until(quiet_past_lookahead, timeout=15)
    late = [a for a in sink.for_schedule(schedule_id) if a.nominal > cutoff]
    assert late == [], f"{len(late)} calls for times after the delete: {[a.nominal for a in late]}"
