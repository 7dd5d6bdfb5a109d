"""SIGKILL the planner or the executor under load: no nominal fire time is lost, repeats keep their webhook-id."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from shared.settings import Settings
from tests.e2e.stack import RecordingSink, Stack, frozen, grid
from tests.integration.helpers import auth, schedule_body

SCHEDULES = 100
INTERVAL_S = 2


async def _create_many(
    api: httpx.AsyncClient, settings: Settings, tenant: str, sink: RecordingSink
) -> dict[str, datetime]:
    headers = auth(settings, tenant)

    async def one(i: int) -> tuple[str, datetime]:
        body = schedule_body(interval_seconds=INTERVAL_S, payload={"url": f"{sink.url}/hook", "timeout_seconds": 5})
        response = await api.post("/api/schedules", json=body, headers=headers)
        assert response.status_code == 201, response.text
        created = response.json()
        return created["id"], datetime.fromisoformat(created["created_at"])

    pairs = await asyncio.gather(*(one(i) for i in range(SCHEDULES)))
    return dict(pairs)


async def _kill_and_check(
    stack: Stack, api: httpx.AsyncClient, sink: RecordingSink, settings: Settings, tenant: str, victim: str
) -> None:
    anchors = await _create_many(api, settings, tenant, sink)
    assert await sink.wait_until(lambda: all(sink.for_schedule(s) for s in anchors), timeout=30), "not all fired"
    window_start = datetime.now(UTC)
    stack.kill(victim)
    await asyncio.sleep(1.0)  # the outage
    stack.start(victim)
    await stack.wait_healthy(victim, timeout=90)
    window_end = datetime.now(UTC) + timedelta(seconds=INTERVAL_S)
    expected = {sid: grid(window_start, window_end, INTERVAL_S, anchor) for sid, anchor in anchors.items()}

    def missing_now() -> dict[str, list[datetime]]:
        missing: dict[str, list[datetime]] = {}
        for schedule_id, nominals in expected.items():
            got = {a.nominal for a in sink.for_schedule(schedule_id)}
            lost = [t for t in nominals if t not in got]
            if lost:
                missing[schedule_id] = lost
        return missing

    # Every fire of the window, through the kill and the catch-up, arrives; the wait ends as soon as the last does.
    await sink.wait_until(lambda: not missing_now(), timeout=30)
    missing = missing_now()
    webhook_ids: dict[tuple[str, datetime], set[str]] = defaultdict(set)
    for schedule_id in anchors:
        for a in sink.for_schedule(schedule_id):
            webhook_ids[(schedule_id, a.nominal)].add(a.webhook_id)
    assert not missing, f"{sum(map(len, missing.values()))} nominal fire times lost: {list(missing.items())[:3]}"
    assert all(len(ids) == 1 for ids in webhook_ids.values()), "a repeat came with another webhook-id"
    repeats = sum(
        1
        for sid in anchors
        for a_list in [sink.for_schedule(sid)]
        for _ in range(len(a_list) - len({a.nominal for a in a_list}))
    )
    print(f"{victim} SIGKILL: {len(webhook_ids)} fires in total, {repeats} repeated deliveries")

    headers = auth(settings, tenant)
    for schedule_id in anchors:
        assert (await api.delete(f"/api/schedules/{schedule_id}", headers=headers)).status_code == 204


@pytest.mark.timeout(300)
async def test_planner_sigkill_loses_no_fire(
    stack: Stack, api: httpx.AsyncClient, sink: RecordingSink, e2e_settings: Settings, tenant: str
) -> None:
    await _kill_and_check(stack, api, sink, e2e_settings, tenant, "planner")


@pytest.mark.timeout(300)
async def test_executor_sigkill_loses_no_fire(
    stack: Stack, api: httpx.AsyncClient, sink: RecordingSink, e2e_settings: Settings, tenant: str
) -> None:
    await _kill_and_check(stack, api, sink, e2e_settings, tenant, "executor")


@pytest.mark.timeout(300)
async def test_changes_accepted_while_the_planner_rejoins_its_group_all_fire(
    stack: Stack, api: httpx.AsyncClient, sink: RecordingSink, e2e_settings: Settings, tenant: str
) -> None:
    """A planner frozen past its session timeout is dropped from its group and rejoins when it thaws. Records it
    had fetched meanwhile are set aside by the rebalance and must be read again, not committed past: every schedule
    created while it was frozen, and while it rejoins, fires."""
    with frozen(stack, "planner"):
        during = await _create_many(api, e2e_settings, tenant, sink)
        await asyncio.sleep(e2e_settings.consumer_session_timeout_ms / 1000 + 1)
    rejoining = await _create_many(api, e2e_settings, tenant, sink)
    anchors = {**during, **rejoining}

    def silent() -> list[str]:
        return [schedule_id for schedule_id in anchors if not sink.for_schedule(schedule_id)]

    await sink.wait_until(lambda: not silent(), timeout=30)
    assert not silent(), f"{len(silent())} of {len(anchors)} schedules never fired: {silent()[:3]}"

    headers = auth(e2e_settings, tenant)
    for schedule_id in anchors:
        assert (await api.delete(f"/api/schedules/{schedule_id}", headers=headers)).status_code == 204
