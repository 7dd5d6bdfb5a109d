"""Per-schedule health as runs fail, succeed and skip; bulk pause and resume as deliveries see them."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from shared.settings import Settings
from tests.e2e.stack import RecordingSink, Reply, Stack
from tests.e2e.stack import eventually as until
from tests.integration.helpers import auth, schedule_body

ONE_ATTEMPT = {"max_attempts": 1, "backoff": "fixed", "initial_delay_seconds": 1, "jitter": False}


async def stats_of(api: httpx.AsyncClient, settings: Settings, tenant: str, schedule_id: str) -> dict[str, Any]:
    response = await api.get(f"/api/schedules/{schedule_id}", headers=auth(settings, tenant))
    assert response.status_code == 200, response.text
    stats: dict[str, Any] = response.json()["stats"]
    return stats


async def failing_ids(api: httpx.AsyncClient, settings: Settings, tenant: str, failing: bool) -> set[str]:
    response = await api.get(
        "/api/schedules", params={"failing": str(failing).lower(), "limit": 500}, headers=auth(settings, tenant)
    )
    assert response.status_code == 200, response.text
    return {s["id"] for s in response.json()["items"]}


async def test_stats_follow_failures_successes_and_skips(
    stack: Stack, api: httpx.AsyncClient, sink: RecordingSink, e2e_settings: Settings, tenant: str
) -> None:
    settings = e2e_settings
    path = f"/health/{uuid.uuid4()}"
    # Permanent failures (each dead-lettered at once) until the streak has been seen, then successes from the
    # sink's default answer.
    url = sink.script(path, [Reply(400)] * 120)
    body = schedule_body(interval_seconds=1, payload={"url": url}, retry_policy=ONE_ATTEMPT)
    created = await api.post("/api/schedules", json=body, headers=auth(settings, tenant))
    assert created.status_code == 201, created.text
    schedule_id = created.json()["id"]
    assert created.json()["stats"] == {
        "consecutive_failures": 0,
        "last_success_at": None,
        "last_failure_at": None,
        "skipped_total": 0,
        "last_skipped_at": None,
        "last_skip_reason": None,
    }

    async def streak_of_two() -> dict[str, Any]:
        stats = await stats_of(api, settings, tenant, schedule_id)
        return stats if stats["consecutive_failures"] >= 2 else {}

    failing = await until(streak_of_two)
    assert failing, await stats_of(api, settings, tenant, schedule_id)
    assert failing["last_failure_at"] is not None and failing["last_success_at"] is None
    assert schedule_id in await failing_ids(api, settings, tenant, True)
    sink.scripts[path].clear()

    async def recovered() -> dict[str, Any]:
        stats = await stats_of(api, settings, tenant, schedule_id)
        return stats if stats["last_success_at"] is not None else {}

    healthy = await until(recovered)
    assert healthy["consecutive_failures"] == 0
    assert healthy["last_success_at"] > healthy["last_failure_at"]
    assert schedule_id in await failing_ids(api, settings, tenant, False)
    assert schedule_id not in await failing_ids(api, settings, tenant, True)
    await api.post(f"/api/schedules/{schedule_id}/pause", headers=auth(settings, tenant))

    # Overlap skips: an every-second schedule whose calls take 2.5 s, with overlap "skip".
    slow_target = {"url": f"{sink.url}/slow-stats?delay=2.5", "timeout_seconds": 10}
    slow = schedule_body(interval_seconds=1, overlap_policy="skip", payload=slow_target)
    skipping = (await api.post("/api/schedules", json=slow, headers=auth(settings, tenant))).json()["id"]

    async def skipped() -> dict[str, Any]:
        stats = await stats_of(api, settings, tenant, skipping)
        return stats if stats["skipped_total"] >= 2 else {}

    skips = await until(skipped)
    await api.post(f"/api/schedules/{skipping}/pause", headers=auth(settings, tenant))
    assert skips, await stats_of(api, settings, tenant, skipping)
    assert skips["last_skip_reason"] == "overlap" and skips["last_skipped_at"] is not None


async def test_bulk_pause_by_label_stops_only_the_labelled_and_resume_restores_them(
    stack: Stack, api: httpx.AsyncClient, sink: RecordingSink, e2e_settings: Settings, tenant: str
) -> None:
    settings = e2e_settings
    team = f"bulk-{uuid.uuid4().hex[:6]}"
    count, every = 1_000, 5
    headers = {**auth(settings, tenant), "Content-Type": "application/json"}
    slots = asyncio.Semaphore(16)

    async def create(labels: dict[str, str]) -> str:
        body = schedule_body(interval_seconds=every, labels=labels, payload={"url": f"{sink.url}/bulk"})
        async with slots:
            response = await api.post("/api/schedules", json=body, headers=headers)
        assert response.status_code == 201, response.text
        schedule_id: str = response.json()["id"]
        return schedule_id

    labelled = list(await asyncio.gather(*(create({"team": team}) for _ in range(count))))
    bystander = await create({"team": f"{team}-x"})
    wanted = {*labelled, bystander}

    def all_firing() -> bool:
        return wanted <= {a.schedule_id for a in sink.arrivals}

    assert await sink.wait_until(all_firing, timeout=60), "the schedules did not start firing"
    selector = {"labels": {"team": team}}
    dry = await api.post(
        "/api/schedules/bulk", json={"action": "pause", "selector": selector, "dry_run": True}, headers=headers
    )
    assert dry.json() == {"matched": count, "changed": 0}
    paused = await api.post("/api/schedules/bulk", json={"action": "pause", "selector": selector}, headers=headers)
    paused_at = datetime.now(UTC)
    assert paused.json() == {"matched": count, "changed": count}
    await asyncio.sleep(2 * every)
    # Runs announced before the pause are withdrawn by the executors as soon as the API's word reaches them
    # (schedule.stopped, ahead of the planner applying a thousand changes): on a quiet machine nothing labelled is
    # called for a time more than about 150 ms after the answer; the test allows for a loaded one.
    cutoff = paused_at + timedelta(milliseconds=500)
    late = [a for a in sink.arrivals if a.schedule_id in labelled and a.nominal > cutoff]
    spread = sorted((a.nominal - paused_at).total_seconds() for a in late)
    assert late == [], f"{len(late)} labelled calls for times after the pause, at +{spread} s"
    assert any(a.nominal > cutoff for a in sink.for_schedule(bystander)), "the unlabelled schedule stopped too"

    resumed = await api.post("/api/schedules/bulk", json={"action": "resume", "selector": selector}, headers=headers)
    resumed_at = datetime.now(UTC)
    assert resumed.json() == {"matched": count, "changed": count}

    def all_again() -> bool:
        return set(labelled) <= {a.schedule_id for a in sink.arrivals if a.nominal > resumed_at}

    assert await sink.wait_until(all_again, timeout=30), "resumed schedules did not fire again"
    deleted = await api.post(
        "/api/schedules/bulk", json={"action": "delete", "selector": {"labels": {"team": team}}}, headers=headers
    )
    assert deleted.json() == {"matched": count, "changed": count}
    await api.delete(f"/api/schedules/{bystander}", headers=headers)
