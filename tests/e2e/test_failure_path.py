"""Retries through the tier topics, the DLQ, and replay, on the real stack with a scriptable sink."""

from __future__ import annotations

import asyncio
import statistics
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from shared.settings import Settings
from tests.e2e.stack import RecordingSink, Reply, Stack
from tests.e2e.stack import eventually as until
from tests.integration.helpers import auth, schedule_body

FAST_RETRIES = {"max_attempts": 3, "backoff": "fixed", "initial_delay_seconds": 1, "jitter": False}


async def one_off(
    api: httpx.AsyncClient,
    settings: Settings,
    tenant: str,
    url: str,
    *,
    retry: dict[str, Any] | None = None,
    timeout: float = 5,
    in_seconds: float = 1.0,
) -> str:
    body = schedule_body(
        type="oneoff",
        interval_seconds=None,
        run_at=(datetime.now(UTC) + timedelta(seconds=in_seconds)).isoformat(),
        payload={"url": url, "timeout_seconds": timeout},
        retry_policy=retry or FAST_RETRIES,
    )
    response = await api.post("/api/schedules", json=body, headers=auth(settings, tenant))
    assert response.status_code == 201, response.text
    schedule_id: str = response.json()["id"]
    return schedule_id


async def run_of(api: httpx.AsyncClient, settings: Settings, tenant: str, run_id: str) -> dict[str, Any]:
    response = await api.get(f"/api/runs/{run_id}", headers=auth(settings, tenant))
    body: dict[str, Any] = response.json() if response.status_code == 200 else {}
    return body


async def dead_letters(api: httpx.AsyncClient, settings: Settings, tenant: str, **params: Any) -> list[dict[str, Any]]:
    response = await api.get("/api/dlq", params=params, headers=auth(settings, tenant))
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def test_two_500s_then_200_succeeds_on_attempt_three(
    stack: Stack, api: httpx.AsyncClient, sink: RecordingSink, e2e_settings: Settings, tenant: str
) -> None:
    path = f"/flaky/{uuid.uuid4()}"
    url = sink.script(path, [Reply(500), Reply(503), Reply(200)])
    schedule = await one_off(api, e2e_settings, tenant, url, retry={**FAST_RETRIES, "max_attempts": 5})
    hits = await sink.wait_for(schedule, 3, timeout=30)
    assert [h.headers["chime-attempt"] for h in hits] == ["1", "2", "3"]
    assert len({h.webhook_id for h in hits}) == 1
    gaps = [(b.received - a.received).total_seconds() for a, b in zip(hits, hits[1:], strict=False)]
    assert all(0.9 <= g <= 2.5 for g in gaps), gaps

    async def succeeded() -> dict[str, Any]:
        run = await run_of(api, e2e_settings, tenant, hits[0].webhook_id)
        return run if run.get("status") == "succeeded" and len(run["attempts"]) == 3 else {}

    run = await until(succeeded)
    assert run, "run did not end succeeded with three attempts"
    assert [a["http_status"] for a in run["attempts"]] == [500, 503, 200]


async def test_400_is_dead_lettered_after_one_attempt(
    stack: Stack, api: httpx.AsyncClient, sink: RecordingSink, e2e_settings: Settings, tenant: str
) -> None:
    schedule = await one_off(api, e2e_settings, tenant, f"{sink.url}/bad?status=400")

    async def dead() -> list[dict[str, Any]]:
        return await dead_letters(api, e2e_settings, tenant, schedule_id=schedule)

    entries = await until(dead)
    assert len(entries) == 1
    entry = entries[0]
    assert entry["last_http_status"] == 400 and len(entry["attempts"]) == 1
    assert "permanent" in entry["reason"]
    await asyncio.sleep(2)
    assert len(sink.for_schedule(schedule)) == 1


async def test_timeout_is_retryable_and_retry_after_is_honoured(
    stack: Stack, api: httpx.AsyncClient, sink: RecordingSink, e2e_settings: Settings, tenant: str
) -> None:
    slow = sink.script(f"/slow/{uuid.uuid4()}", [Reply(200, delay=3), Reply(200)])
    slow_schedule = await one_off(api, e2e_settings, tenant, slow, timeout=1)
    limited = sink.script(f"/limited/{uuid.uuid4()}", [Reply(429, headers={"Retry-After": "2"}), Reply(200)])
    retry = {"max_attempts": 3, "backoff": "fixed", "initial_delay_seconds": 0.1, "jitter": False}
    limited_schedule = await one_off(api, e2e_settings, tenant, limited, retry=retry)

    slow_hits = await sink.wait_for(slow_schedule, 2, timeout=30)
    assert [h.headers["chime-attempt"] for h in slow_hits] == ["1", "2"]
    limited_hits = await sink.wait_for(limited_schedule, 2, timeout=30)
    assert len(limited_hits) == 2
    assert (limited_hits[1].received - limited_hits[0].received).total_seconds() >= 1.95

    async def both_succeeded() -> bool:
        runs = [await run_of(api, e2e_settings, tenant, hits[0].webhook_id) for hits in (slow_hits, limited_hits)]
        return all(r.get("status") == "succeeded" for r in runs)

    assert await until(both_succeeded)
    first_attempt = (await run_of(api, e2e_settings, tenant, slow_hits[0].webhook_id))["attempts"][0]
    assert "timed out" in first_attempt["error"]


async def test_exhausted_runs_are_replayed_once_and_in_bulk(
    stack: Stack, api: httpx.AsyncClient, sink: RecordingSink, e2e_settings: Settings, tenant: str
) -> None:
    settings = e2e_settings
    headers = auth(settings, tenant)
    path = f"/down/{uuid.uuid4()}"
    url = sink.script(path, [Reply(500)] * 3 + [Reply(200, delay=2)])
    schedule = await one_off(api, settings, tenant, url)

    async def dead() -> list[dict[str, Any]]:
        return await dead_letters(api, settings, tenant, schedule_id=schedule)

    entries = await until(dead)
    assert entries and len(entries[0]["attempts"]) == 3 and "exhausted" in entries[0]["reason"]
    entry = entries[0]
    run = await run_of(api, settings, tenant, entry["run_id"])
    assert await until(lambda: _status_is(api, settings, tenant, entry["run_id"], "dead_lettered"))

    first = await api.post(f"/api/dlq/{entry['id']}/replay", headers=headers)
    assert first.status_code == 202 and first.json()["status"] == "replaying"
    second = await api.post(f"/api/dlq/{entry['id']}/replay", headers=headers)
    assert second.status_code == 409
    hits = await sink.wait_for(schedule, 4, timeout=30)
    await asyncio.sleep(3)
    hits = sink.for_schedule(schedule)
    assert len(hits) == 4, "a replay was delivered more than once"
    assert {h.webhook_id for h in hits} == {entry["run_id"]}
    assert hits[-1].headers["chime-attempt"] == "4"
    assert await until(lambda: _status_is(api, settings, tenant, entry["run_id"], "succeeded"))
    run = await run_of(api, settings, tenant, entry["run_id"])
    assert run["trigger"] == "replay" and len(run["attempts"]) == 4

    async def resolved() -> bool:
        got = await api.get(f"/api/dlq/{entry['id']}", headers=headers)
        return got.json()["status"] == "resolved"

    assert await until(resolved)

    # Bulk: three dead runs of another schedule, replayed by filter against a now-healthy endpoint.
    bulk_path = f"/bulk/{uuid.uuid4()}"
    bulk_url = sink.script(bulk_path, [Reply(502)] * 9)
    retry = {**FAST_RETRIES, "max_attempts": 1}
    bulk_schedules = [await one_off(api, settings, tenant, bulk_url, retry=retry) for _ in range(3)]

    async def all_dead() -> bool:
        return all([await dead_letters(api, settings, tenant, schedule_id=s) for s in bulk_schedules])

    assert await until(all_dead)
    sink.scripts[bulk_path] = []
    replayed = await api.post("/api/dlq/replay", json={"http_status": 502}, headers=headers)
    assert replayed.status_code == 202 and replayed.json() == {"count": 3}
    for s in bulk_schedules:
        assert len(await sink.wait_for(s, 2, timeout=30)) == 2
    again = await api.post("/api/dlq/replay", json={"http_status": 502}, headers=headers)
    assert again.json() == {"count": 0}
    other = await api.get("/api/dlq", headers=auth(settings, f"{tenant}-other"))
    assert other.json()["items"] == []
    assert (await api.get(f"/api/dlq/{entry['id']}", headers=auth(settings, f"{tenant}-other"))).status_code == 404


async def _status_is(api: httpx.AsyncClient, settings: Settings, tenant: str, run_id: str, status: str) -> bool:
    return (await run_of(api, settings, tenant, run_id)).get("status") == status


@pytest.mark.timeout(240)
async def test_executor_sigkill_with_runs_waiting_in_retry_tiers_loses_none(
    stack: Stack, api: httpx.AsyncClient, sink: RecordingSink, e2e_settings: Settings, tenant: str
) -> None:
    settings = e2e_settings
    retry = {"max_attempts": 3, "backoff": "fixed", "initial_delay_seconds": 4, "jitter": False}
    schedules = []
    for i in range(100):
        # Attempts repeat after the kill (same webhook-id, allowed): the failing script outlasts them.
        replies = [Reply(500), Reply(200)] if i % 2 == 0 else [Reply(500)] * 12
        url = sink.script(f"/tiers/{uuid.uuid4()}", replies)
        schedules.append(await one_off(api, settings, tenant, url, retry=retry, in_seconds=2))
    await until(lambda: _all_hit(sink, schedules), timeout=30)
    stack.kill("executor")  # every run is now waiting ~4 s in chime.runs.retry.5s
    await asyncio.sleep(1)
    stack.start("executor")
    await stack.wait_healthy("executor", timeout=60)

    async def all_ended() -> bool:
        for schedule in schedules:
            hits = sink.for_schedule(schedule)
            if not hits or not await _ended(api, settings, tenant, hits[0].webhook_id):
                return False
        return True

    assert await until(all_ended, timeout=90), "some runs neither succeeded nor reached the DLQ"

    async def dead_schedules() -> set[str] | None:
        # The DLQ service reads in bulk (up to 0.5 s behind the run history): wait for it to hold them all.
        dead = {e["schedule_id"] for e in await dead_letters(api, settings, tenant, limit=500)}
        return dead if len(dead) >= len(schedules[1::2]) else None

    assert await until(dead_schedules, timeout=10) == set(schedules[1::2])


async def _all_hit(sink: RecordingSink, schedules: list[str]) -> bool:
    return all(sink.for_schedule(s) for s in schedules)


async def _ended(api: httpx.AsyncClient, settings: Settings, tenant: str, run_id: str) -> bool:
    return (await run_of(api, settings, tenant, run_id)).get("status") in ("succeeded", "dead_lettered")


@pytest.mark.timeout(180)
async def test_one_tenants_hanging_endpoint_does_not_starve_another(
    stack: Stack, api: httpx.AsyncClient, sink: RecordingSink, e2e_settings: Settings, tenant: str
) -> None:
    settings = e2e_settings
    noisy, quiet = f"{tenant}-noisy", f"{tenant}-quiet"
    hang = f"{sink.url}/hang?delay=30"
    no_retry = {"max_attempts": 1}
    noisy_schedule = await one_off(api, settings, noisy, hang, retry=no_retry, timeout=8, in_seconds=3600)
    # Enough calls to fill the executor (CHIME_EXECUTOR_CONCURRENCY=200) if one tenant could take every slot.
    await asyncio.gather(
        *(api.post(f"/api/schedules/{noisy_schedule}/run-now", headers=auth(settings, noisy)) for _ in range(250))
    )
    await asyncio.sleep(2)
    body = schedule_body(interval_seconds=1, payload={"url": f"{sink.url}/quiet"})
    created = await api.post("/api/schedules", json=body, headers=auth(settings, quiet))
    quiet_schedule = created.json()["id"]
    hits = await sink.wait_for(quiet_schedule, 5, timeout=20)
    assert len(hits) >= 5, "the quiet tenant was starved"
    lags = [(h.received - h.nominal).total_seconds() * 1000 for h in hits]
    print(
        f"quiet tenant lag while the noisy one hangs: median {statistics.median(lags):.1f} ms, max {max(lags):.1f} ms"
    )
    # Without a per-tenant share the quiet tenant would wait for the noisy calls to time out (8 s).
    assert max(lags) < 1000, lags
    await api.delete(f"/api/schedules/{quiet_schedule}", headers=auth(settings, quiet))


async def test_chime_replay_republishes_a_topic_range_and_dead_runs(
    stack: Stack, api: httpx.AsyncClient, sink: RecordingSink, e2e_settings: Settings, tenant: str
) -> None:
    from services.replay import TopicRange, replay_dlq, replay_topic

    settings = e2e_settings
    since = datetime.now(UTC) - timedelta(seconds=1)
    schedule = await one_off(api, settings, tenant, f"{sink.url}/replayed", in_seconds=0.5)
    first = await sink.wait_for(schedule, 1, timeout=15)
    count = await replay_topic(
        settings, TopicRange(topic=f"{settings.topic_prefix}runs.due", since=since, schedule_id=schedule)
    )
    assert count == 1
    both = await sink.wait_for(schedule, 2, timeout=15)
    assert [a.webhook_id for a in both] == [first[0].webhook_id] * 2

    dead_schedule = await one_off(api, settings, tenant, f"{sink.url}/gone?status=410")
    assert await until(lambda: dead_letters(api, settings, tenant, schedule_id=dead_schedule))
    assert (
        await replay_dlq(settings, tenant=tenant, schedule_id=uuid.UUID(dead_schedule), http_status=None, limit=10) == 1
    )
    again = await sink.wait_for(dead_schedule, 2, timeout=15)
    assert len({a.webhook_id for a in again}) == 1 and again[-1].headers["chime-attempt"] == "2"


async def test_redirects_are_not_followed_and_go_to_the_dlq(
    stack: Stack, api: httpx.AsyncClient, sink: RecordingSink, e2e_settings: Settings, tenant: str
) -> None:
    target = f"{sink.url}/moved-here"
    url = sink.script(f"/moved/{uuid.uuid4()}", [Reply(302, headers={"Location": target})])
    schedule = await one_off(api, e2e_settings, tenant, url)

    async def dead() -> list[dict[str, Any]]:
        return await dead_letters(api, e2e_settings, tenant, schedule_id=schedule)

    entries = await until(dead)
    assert entries and entries[0]["last_http_status"] == 302 and len(entries[0]["attempts"]) == 1
    assert [a.path for a in sink.for_schedule(schedule)] == [url.removeprefix(sink.url)]
