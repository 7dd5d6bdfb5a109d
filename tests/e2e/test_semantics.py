"""Scheduling semantics on the real stack: misfire policies after planner downtime, bounds, preview."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from shared.events import RunSkipped, decode_event
from shared.settings import Settings
from shared.topics import RUNS_RESULTS, topic_name
from tests.e2e.stack import RecordingSink, Stack, grid
from tests.integration.helpers import auth, read_all, schedule_body

INTERVAL_S = 2


async def _create(
    api: httpx.AsyncClient, settings: Settings, tenant: str, sink: RecordingSink, **kw: Any
) -> dict[str, Any]:
    body = schedule_body(payload={"url": f"{sink.url}/semantics"}, **kw)
    response = await api.post("/api/schedules", json=body, headers=auth(settings, tenant))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


@pytest.mark.timeout(240)
async def test_misfire_policies_after_planner_downtime(
    stack: Stack, api: httpx.AsyncClient, sink: RecordingSink, e2e_settings: Settings, tenant: str
) -> None:
    settings = e2e_settings
    created = {
        policy: await _create(
            api, settings, tenant, sink, interval_seconds=INTERVAL_S, misfire_policy=policy, misfire_grace_seconds=1
        )
        for policy in ("fire_once", "fire_all", "skip")
    }
    for c in created.values():
        await sink.wait_for(c["id"], 2, timeout=20)
    assert stack.terminate("planner") == 0
    await asyncio.sleep(3 * INTERVAL_S + 1)  # the outage: three fires of each schedule are missed
    stack.start("planner")
    await stack.wait_healthy("planner", timeout=90)
    end = datetime.now(UTC)

    def back_on_time() -> bool:
        # A fire planned after the restart means the catch-up (and its run.skipped report) is behind each schedule.
        return all(any(a.nominal > end for a in sink.for_schedule(c["id"])) for c in created.values())

    assert await sink.wait_until(back_on_time, timeout=30), "a schedule did not fire again after the restart"
    ids = {c["id"].encode() for c in created.values()}
    records = [r for r in await read_all(settings, topic_name(settings, RUNS_RESULTS)) if r.key in ids]
    skipped: dict[str, list[RunSkipped]] = {}
    for record in records:
        event = decode_event(record.value)
        if isinstance(event, RunSkipped):
            skipped.setdefault(str(event.data.schedule_id), []).append(event)

    for policy, c in created.items():
        arrivals = sink.for_schedule(c["id"])
        delivered = {a.nominal for a in arrivals}
        first = min(delivered)
        expected = grid(first, end, INTERVAL_S, datetime.fromisoformat(c["created_at"]))
        events = skipped.get(c["id"], [])
        if policy == "fire_all":
            assert events == [], "fire_all skipped something"
            assert set(expected) <= delivered, f"fire_all lost {sorted(set(expected) - delivered)}"
            continue
        assert len(events) == 1, f"{policy}: expected one skipped event per outage, got " + ", ".join(
            f"{e.data.count} from {e.data.first_nominal:%H:%M:%S.%f} to {e.data.last_nominal:%H:%M:%S.%f} at {e.time}"
            for e in events
        )
        data = events[0].data
        assert data.reason.value == "misfire"
        in_skip = [t for t in expected if data.first_nominal <= t <= data.last_nominal]
        assert len(in_skip) == data.count and not (set(in_skip) & delivered)
        assert set(expected) <= delivered | set(in_skip), "a nominal time was neither run nor reported skipped"
        catch_up = data.last_nominal + timedelta(seconds=INTERVAL_S)
        if policy == "fire_once":
            assert catch_up in delivered, "fire_once did not run the latest missed time"
            assert data.count >= 1
        else:
            assert data.count >= 2
    for c in created.values():
        await api.delete(f"/api/schedules/{c['id']}", headers=auth(settings, tenant))


async def test_max_runs_fires_exactly_that_often_and_completes(
    stack: Stack, api: httpx.AsyncClient, sink: RecordingSink, e2e_settings: Settings, tenant: str
) -> None:
    settings = e2e_settings
    created = await _create(api, settings, tenant, sink, interval_seconds=1, max_runs=3)
    preview = await api.get(
        f"/api/schedules/{created['id']}/preview", params={"count": 10}, headers=auth(settings, tenant)
    )
    planned = [item["utc"] for item in preview.json()["items"]]
    assert len(planned) == 3
    hits = await sink.wait_for(created["id"], 3, timeout=15)
    await asyncio.sleep(2.5)
    hits = sink.for_schedule(created["id"])
    assert len(hits) == 3
    assert sorted(a.headers["chime-scheduled-for"] for a in hits) == planned, "the preview differs from the fires"

    async def completed() -> bool:
        got = (await api.get(f"/api/schedules/{created['id']}", headers=auth(settings, tenant))).json()
        return got["status"] == "completed" and got["run_count"] == 3 and got["next_run_at"] is None

    deadline = asyncio.get_running_loop().time() + 20
    while not await completed():
        assert asyncio.get_running_loop().time() < deadline, "the schedule did not become completed"
        await asyncio.sleep(0.3)


@pytest.mark.timeout(180)
async def test_overlap_policies_against_a_slow_endpoint(
    stack: Stack, api: httpx.AsyncClient, sink: RecordingSink, e2e_settings: Settings, tenant: str
) -> None:
    settings = e2e_settings
    slow = 2.5
    created = {}
    for policy in ("allow", "skip", "buffer_one"):
        body = schedule_body(
            interval_seconds=1,
            overlap_policy=policy,
            payload={"url": f"{sink.url}/slow-{policy}?delay={slow}", "timeout_seconds": 10},
        )
        response = await api.post("/api/schedules", json=body, headers=auth(settings, tenant))
        assert response.status_code == 201, response.text
        created[policy] = response.json()["id"]

    def long_enough() -> bool:
        # Eight calls of the every-second schedule; the other two are held back by their 2.5 s calls meanwhile.
        return len(sink.for_schedule(created["allow"])) >= 9 and all(
            len(sink.for_schedule(created[p])) >= 3 for p in ("skip", "buffer_one")
        )

    assert await sink.wait_until(long_enough, timeout=30), "the overlap schedules did not fire long enough"
    for schedule_id in created.values():
        await api.post(f"/api/schedules/{schedule_id}/pause", headers=auth(settings, tenant))
    await asyncio.sleep(slow + 1)

    def gaps(schedule_id: str) -> list[float]:
        hits = sorted(sink.for_schedule(schedule_id), key=lambda a: a.received)
        return [(b.received - a.received).total_seconds() for a, b in zip(hits, hits[1:], strict=False)]

    allow, skip, buffer_one = (gaps(created[p]) for p in ("allow", "skip", "buffer_one"))
    assert len(allow) >= 7 and min(allow) < 1.5, "allow should fire every second regardless"
    for name, g in (("skip", skip), ("buffer_one", buffer_one)):
        assert g, f"{name} never fired twice"
        assert min(g) >= slow - 0.3, f"{name} started a run while the previous one was unfinished: {g}"

    ids = {schedule_id.encode() for schedule_id in created.values()}
    records = [r for r in await read_all(settings, topic_name(settings, RUNS_RESULTS)) if r.key in ids]
    overlap_skips: dict[str, int] = {}
    for record in records:
        event = decode_event(record.value)
        if isinstance(event, RunSkipped) and event.data.reason.value == "overlap":
            sid = str(event.data.schedule_id)
            overlap_skips[sid] = overlap_skips.get(sid, 0) + event.data.count
    assert overlap_skips.get(created["allow"], 0) == 0
    assert overlap_skips.get(created["skip"], 0) >= 3
    buffered_hits = sink.for_schedule(created["buffer_one"])
    late = [a for a in buffered_hits if (a.received - a.nominal).total_seconds() > 0.5]
    assert late, "buffer_one never ran a held-back fire after the previous run finished"
    assert len(buffered_hits) > len(sink.for_schedule(created["skip"])) - 1


async def test_backfill_runs_each_past_time_once_under_its_usual_run_id(
    stack: Stack, api: httpx.AsyncClient, sink: RecordingSink, e2e_settings: Settings, tenant: str
) -> None:
    import uuid as uuid_mod

    from shared.runid import planned_run_id

    settings = e2e_settings
    headers = auth(settings, tenant)
    created = await _create(api, settings, tenant, sink, type="cron", interval_seconds=None, cron_expr="* * * * *")
    now = datetime.now(UTC)
    since = now - timedelta(minutes=3, seconds=30)
    minutes = [
        t
        for t in (since.replace(second=0, microsecond=0) + timedelta(minutes=k) for k in range(5))
        if since <= t <= now
    ]
    bad = await api.post(
        f"/api/schedules/{created['id']}/backfill",
        json={"from": now.isoformat(), "to": since.isoformat()},
        headers=headers,
    )
    assert bad.status_code == 422
    response = await api.post(
        f"/api/schedules/{created['id']}/backfill",
        json={"from": since.isoformat(), "to": now.isoformat()},
        headers=headers,
    )
    assert response.status_code == 202, response.text
    assert response.json() == {"count": len(minutes)}
    hits = await sink.wait_for(created["id"], len(minutes), timeout=20)
    backfilled = [a for a in hits if a.nominal in minutes]
    assert sorted(a.nominal for a in backfilled) == minutes
    sid = uuid_mod.UUID(created["id"])
    assert {a.webhook_id for a in backfilled} == {str(planned_run_id(sid, t)) for t in minutes}

    async def recorded() -> bool:
        runs = (
            await api.get(f"/api/schedules/{created['id']}/runs", params={"trigger": "backfill"}, headers=headers)
        ).json()
        return len(runs["items"]) == len(minutes)

    deadline = asyncio.get_running_loop().time() + 20
    while not await recorded():
        assert asyncio.get_running_loop().time() < deadline, "backfilled runs were not recorded"
        await asyncio.sleep(0.3)
    again = await api.post(
        f"/api/schedules/{created['id']}/backfill",
        json={"from": since.isoformat(), "to": now.isoformat()},
        headers=headers,
    )
    assert again.json() == {"count": 0}, "a time that already ran would be delivered twice"
    await api.delete(f"/api/schedules/{created['id']}", headers=headers)
