"""Per-schedule health as runs fail, succeed and skip; bulk pause and resume as deliveries see them."""

from __future__ import annotations

import asyncio
import uuid
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
    # Two permanent failures (each dead-lettered at once), then successes from the sink's default answer.
    url = sink.script(path, [Reply(400), Reply(400)])
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
        return stats if stats["consecutive_failures"] == 2 else {}

    failing = await until(streak_of_two)
    assert failing, await stats_of(api, settings, tenant, schedule_id)
    assert failing["last_failure_at"] is not None and failing["last_success_at"] is None
    assert schedule_id in await failing_ids(api, settings, tenant, True)

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
    labelled: list[str] = []
    for _ in range(40):
        body = schedule_body(interval_seconds=1, labels={"team": team}, payload={"url": f"{sink.url}/bulk"})
        labelled.append((await api.post("/api/schedules", json=body, headers=auth(settings, tenant))).json()["id"])
    body = schedule_body(interval_seconds=1, labels={"team": f"{team}-x"}, payload={"url": f"{sink.url}/bulk"})
    bystander = (await api.post("/api/schedules", json=body, headers=auth(settings, tenant))).json()["id"]

    def all_firing() -> bool:
        return all(len(sink.for_schedule(s)) >= 2 for s in [*labelled, bystander])

    assert await sink.wait_until(all_firing, timeout=30), "the schedules did not start firing"
    selector = {"labels": {"team": team}}
    dry = await api.post(
        "/api/schedules/bulk",
        json={"action": "pause", "selector": selector, "dry_run": True},
        headers=auth(settings, tenant),
    )
    assert dry.json() == {"matched": 40, "changed": 0}
    paused = await api.post(
        "/api/schedules/bulk", json={"action": "pause", "selector": selector}, headers=auth(settings, tenant)
    )
    assert paused.json() == {"matched": 40, "changed": 40}
    # Runs announced before the pause are cancelled; within a second nothing of the labelled ones is called.
    await asyncio.sleep(1.0)
    counts = {s: len(sink.for_schedule(s)) for s in labelled}
    bystander_before = len(sink.for_schedule(bystander))
    await asyncio.sleep(3.0)
    assert {s: len(sink.for_schedule(s)) for s in labelled} == counts
    assert len(sink.for_schedule(bystander)) >= bystander_before + 2, "the unlabelled schedule stopped too"

    resumed = await api.post(
        "/api/schedules/bulk", json={"action": "resume", "selector": selector}, headers=auth(settings, tenant)
    )
    assert resumed.json() == {"matched": 40, "changed": 40}

    def all_again() -> bool:
        return all(len(sink.for_schedule(s)) >= counts[s] + 2 for s in labelled)

    assert await sink.wait_until(all_again, timeout=30), "resumed schedules did not fire again"
    deleted = await api.post(
        "/api/schedules/bulk",
        json={"action": "delete", "selector": {"labels": {"team": team}}},
        headers=auth(settings, tenant),
    )
    assert deleted.json() == {"matched": 40, "changed": 40}
    await api.delete(f"/api/schedules/{bystander}", headers=auth(settings, tenant))
