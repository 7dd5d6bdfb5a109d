"""The schedules API against the real Postgres, with its events read back from the real Kafka."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from services.api.db.flow_limits_repo import FlowLimitRepository
from services.api.db.keys_repo import SigningKeyRepository
from services.api.db.schedules_repo import ScheduleRepository
from shared.db.engine import create_engine
from shared.events import ScheduleDeleted, ScheduleUpserted, decode_event
from shared.events.flow import flow_record_key
from shared.events.schedule import ScheduleState, plan_spec
from shared.schedule import preview
from shared.settings import Settings
from shared.timefmt import format_utc
from shared.topics import FLOW_LIMITS, SCHEDULES, SIGNING_KEYS, topic_name
from tests.integration.helpers import auth, read_records, schedule_body


async def create(client: httpx.AsyncClient, settings: Settings, tenant: str, **overrides: Any) -> dict[str, Any]:
    response = await client.post("/api/schedules", json=schedule_body(**overrides), headers=auth(settings, tenant))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_create_returns_the_schedule_with_location_and_etag(
    client: httpx.AsyncClient, settings: Settings, tenant: str
) -> None:
    response = await client.post(
        "/api/schedules",
        json=schedule_body(name="Daily Task", labels={"team": "billing"}, interval_seconds=30),
        headers=auth(settings, tenant),
    )
    assert response.status_code == 201
    body = response.json()
    assert response.headers["Location"] == f"/api/schedules/{body['id']}"
    assert response.headers["ETag"] == '"1"'
    assert body["tenant_id"] == tenant
    assert body["status"] == "active"
    assert body["version"] == 1
    assert body["run_count"] == 0
    assert body["last_run_at"] is None
    created = datetime.fromisoformat(body["created_at"])
    assert body["created_at"].endswith("Z") and len(body["created_at"]) == len("2026-01-01T00:00:00.000Z")
    assert datetime.fromisoformat(body["next_run_at"]) == created + timedelta(seconds=30)

    fetched = await client.get(f"/api/schedules/{body['id']}", headers=auth(settings, tenant))
    assert fetched.status_code == 200
    assert fetched.json()["next_run_at"] == body["next_run_at"]


INVALID_BODIES: list[tuple[str, dict[str, Any], str]] = [
    ("unknown field", {"colour": "blue"}, "colour"),
    ("bad cron", {"type": "cron", "interval_seconds": None, "cron_expr": "61 * * * *"}, "cron_expr"),
    ("cron never fires", {"type": "cron", "interval_seconds": None, "cron_expr": "0 0 30 2 *"}, "cron_expr"),
    ("six-field cron", {"type": "cron", "interval_seconds": None, "cron_expr": "0 0 0 * * *"}, "cron_expr"),
    ("unknown zone", {"timezone": "Mars/Olympus_Mons"}, "timezone"),
    ("auto-pause after no failure", {"auto_pause_after_failures": 0}, "auto_pause_after_failures"),
    ("interval below 1 s", {"interval_seconds": 0}, "interval_seconds"),
    ("interval on a cron", {"type": "cron", "cron_expr": "* * * * *"}, "interval_seconds"),
    ("one-off in the past", {"type": "oneoff", "interval_seconds": None, "run_at": "2020-01-01T00:00:00Z"}, "run_at"),
    ("naive time", {"start_at": "2030-01-01T00:00:00"}, "start_at"),
    ("end before start", {"start_at": "2030-01-02T00:00:00Z", "end_at": "2030-01-01T00:00:00Z"}, "end_at"),
    ("ftp url", {"payload": {"url": "ftp://example.com/x"}}, "payload.url"),
    ("credentials in url", {"payload": {"url": "https://user:pw@example.com/x"}}, "payload.url"),
    ("huge body", {"payload": {"url": "https://example.com/x", "body": {"x": "a" * 70_000}}}, "payload.body"),
    (
        "too many headers",
        {"payload": {"url": "https://example.com/x", "headers": {f"X-H{i}": "v" for i in range(51)}}},
        "payload.headers",
    ),
    (
        "header value over 8 KiB",
        {"payload": {"url": "https://example.com/x", "headers": {"X-Big": "v" * 9000}}},
        "payload.headers",
    ),
    (
        "headers over 16 KiB in all",
        {"payload": {"url": "https://example.com/x", "headers": {f"X-H{i}": "v" * 7000 for i in range(3)}}},
        "payload.headers",
    ),
    (
        "header name over 256 characters",
        {"payload": {"url": "https://example.com/x", "headers": {"X-" + "n" * 300: "v"}}},
        "payload.headers",
    ),
    (
        "hop-by-hop header",
        {"payload": {"url": "https://example.com/x", "headers": {"Transfer-Encoding": "chunked"}}},
        "payload.headers",
    ),
    (
        "timeout too short",
        {"payload": {"url": "https://example.com/x", "timeout_seconds": 0}},
        "payload.timeout_seconds",
    ),
    (
        "timeout too long",
        {"payload": {"url": "https://example.com/x", "timeout_seconds": 301}},
        "payload.timeout_seconds",
    ),
    (
        "max delay below initial delay",
        {"retry_policy": {"initial_delay_seconds": 10, "max_delay_seconds": 1}},
        "retry_policy",
    ),
    ("zero attempts", {"retry_policy": {"max_attempts": 0}}, "retry_policy.max_attempts"),
    ("bad misfire policy", {"misfire_policy": "sometimes"}, "misfire_policy"),
]


@pytest.mark.parametrize(("case", "overrides", "field"), INVALID_BODIES, ids=[c[0] for c in INVALID_BODIES])
async def test_invalid_schedules_get_a_problem_naming_the_field(
    client: httpx.AsyncClient, settings: Settings, tenant: str, case: str, overrides: dict[str, Any], field: str
) -> None:
    response = await client.post("/api/schedules", json=schedule_body(**overrides), headers=auth(settings, tenant))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 422
    assert problem["type"].endswith("/validation-failed")
    assert field in [e["field"] for e in problem["errors"]], problem


async def test_malformed_json_is_a_problem_not_a_500(
    client: httpx.AsyncClient, settings: Settings, tenant: str
) -> None:
    response = await client.post(
        "/api/schedules",
        content=b"{not json",
        headers={**auth(settings, tenant), "content-type": "application/json"},
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


async def test_list_filters_and_paginates(client: httpx.AsyncClient, settings: Settings, tenant: str) -> None:
    ids = []
    for i in range(5):
        labels = {"team": "billing" if i % 2 == 0 else "search"}
        ids.append((await create(client, settings, tenant, name=f"report-{i}", labels=labels))["id"])
    await create(client, settings, tenant, name="other", type="cron", interval_seconds=None, cron_expr="*/5 * * * *")
    headers = auth(settings, tenant)

    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"name": "report-", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/api/schedules", params=params, headers=headers)).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids

    billing = (await client.get("/api/schedules", params={"label": "team=billing"}, headers=headers)).json()
    assert [i["id"] for i in billing["items"]] == [ids[0], ids[2], ids[4]]
    crons = (await client.get("/api/schedules", params={"type": "cron"}, headers=headers)).json()
    assert [i["name"] for i in crons["items"]] == ["other"]
    too_many = await client.get("/api/schedules", params={"limit": 501}, headers=headers)
    assert too_many.status_code == 422
    bad_cursor = await client.get("/api/schedules", params={"cursor": "@@@"}, headers=headers)
    assert bad_cursor.status_code == 422


async def test_updates_honour_if_match_and_bump_the_version(
    client: httpx.AsyncClient, settings: Settings, tenant: str
) -> None:
    headers = auth(settings, tenant)
    created = await create(client, settings, tenant)
    url = f"/api/schedules/{created['id']}"

    stale = await client.put(url, json=schedule_body(name="renamed"), headers={**headers, "If-Match": '"7"'})
    assert stale.status_code == 412
    assert stale.headers["content-type"] == "application/problem+json"

    put = await client.put(url, json=schedule_body(name="renamed"), headers={**headers, "If-Match": '"1"'})
    assert put.status_code == 200
    assert put.json()["name"] == "renamed"
    assert put.headers["ETag"] == '"2"'

    patch = await client.patch(url, json={"interval_seconds": 5, "labels": {"tier": "gold"}}, headers=headers)
    assert patch.status_code == 200
    patched = patch.json()
    assert (patched["version"], patched["interval_seconds"], patched["name"]) == (3, 5, "renamed")
    assert patched["labels"] == {"tier": "gold"}

    bad_patch = await client.patch(url, json={"interval_seconds": -1}, headers=headers)
    assert bad_patch.status_code == 422
    assert [e["field"] for e in bad_patch.json()["errors"]] == ["interval_seconds"]


async def test_pause_resume_and_delete(client: httpx.AsyncClient, settings: Settings, tenant: str) -> None:
    headers = auth(settings, tenant)
    created = await create(client, settings, tenant)
    url = f"/api/schedules/{created['id']}"

    paused = await client.post(f"{url}/pause", headers=headers)
    assert (paused.status_code, paused.json()["status"], paused.json()["next_run_at"]) == (200, "paused", None)
    again = await client.post(f"{url}/pause", headers=headers)
    assert again.status_code == 409
    resumed = await client.post(f"{url}/resume", headers=headers)
    assert (resumed.json()["status"], resumed.json()["version"]) == ("active", 3)

    deleted = await client.delete(url, headers=headers)
    assert deleted.status_code == 204
    assert (await client.get(url, headers=headers)).status_code == 404
    assert (await client.delete(url, headers=headers)).status_code == 404
    listed = (await client.get("/api/schedules", params={"status": "deleted"}, headers=headers)).json()
    assert [i["id"] for i in listed["items"]] == [created["id"]]
    assert listed["items"][0]["version"] == 4
    active = (await client.get("/api/schedules", headers=headers)).json()
    assert active["items"] == []


async def test_every_change_reaches_the_topic_in_version_order(
    client: httpx.AsyncClient, settings: Settings, tenant: str
) -> None:
    headers = auth(settings, tenant)
    created = await create(client, settings, tenant)
    url = f"/api/schedules/{created['id']}"
    await client.patch(url, json={"name": "v2"}, headers=headers)
    await client.post(f"{url}/pause", headers=headers)
    await client.post(f"{url}/resume", headers=headers)
    await client.delete(url, headers=headers)

    records = await read_records(settings, topic_name(settings, SCHEDULES), keys=[created["id"]], count=5)
    events = [decode_event(r.value) for r in records]
    assert [e.data.version for e in events] == [1, 2, 3, 4, 5]
    assert all(r.key == created["id"].encode() for r in records)
    assert all(dict(r.headers)["tenant"] == tenant.encode() for r in records)
    assert all(dict(r.headers)["content-type"] == b"application/cloudevents+json" for r in records)
    upserts = [e for e in events if isinstance(e, ScheduleUpserted)]
    assert [e.data.status.value for e in upserts] == ["active", "active", "paused", "active"]
    assert upserts[1].data.name == "v2"
    assert isinstance(events[-1], ScheduleDeleted)
    for event in events:
        assert event.specversion == "1.0"
        assert event.subject == created["id"]
        assert event.tenant == tenant


async def test_preview_matches_the_schedule_math_across_dst(
    client: httpx.AsyncClient, settings: Settings, tenant: str
) -> None:
    headers = auth(settings, tenant)
    created = await create(
        client, settings, tenant, type="cron", interval_seconds=None, cron_expr="30 2 * * *", timezone="Europe/Berlin"
    )
    after = "2027-03-26T00:00:00Z"
    response = await client.get(
        f"/api/schedules/{created['id']}/preview", params={"count": 4, "after": after}, headers=headers
    )
    assert response.status_code == 200
    items = response.json()["items"]
    # 28 March 2027 is the spring-forward day in Berlin: 02:30 does not exist, so it runs right after the jump.
    assert [i["local"] for i in items] == [
        "2027-03-26T02:30:00.000+01:00",
        "2027-03-27T02:30:00.000+01:00",
        "2027-03-28T03:00:00.000+02:00",
        "2027-03-29T02:30:00.000+02:00",
    ]
    state = ScheduleState.model_validate({k: v for k, v in created.items() if k in ScheduleState.model_fields})
    expected = preview(plan_spec(state, state.id, state.created_at), datetime(2027, 3, 26, tzinfo=UTC), 4)
    assert [i["utc"] for i in items] == [format_utc(f.nominal) for f in expected]
    assert (
        await client.get(f"/api/schedules/{created['id']}/preview", params={"count": 1001}, headers=headers)
    ).status_code == 422


async def test_idempotency_key_returns_the_first_result(
    client: httpx.AsyncClient, settings: Settings, tenant: str
) -> None:
    headers = {**auth(settings, tenant), "Idempotency-Key": str(uuid.uuid4())}
    body = schedule_body(name="once")
    first = await client.post("/api/schedules", json=body, headers=headers)
    second = await client.post("/api/schedules", json=body, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] == second.json()["id"]
    listed = (await client.get("/api/schedules", headers=auth(settings, tenant))).json()
    assert len(listed["items"]) == 1
    other = await client.post("/api/schedules", json=schedule_body(name="different"), headers=headers)
    assert other.status_code == 422
    assert other.json()["type"].endswith("/idempotency-key-reused")


async def test_runs_are_empty_until_something_fires(client: httpx.AsyncClient, settings: Settings, tenant: str) -> None:
    headers = auth(settings, tenant)
    created = await create(client, settings, tenant)
    runs = await client.get(f"/api/schedules/{created['id']}/runs", headers=headers)
    assert runs.status_code == 200
    assert runs.json() == {"items": [], "next_cursor": None}
    missing = await client.get(f"/api/runs/{uuid.uuid4()}", headers=headers)
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"


async def test_signing_keys_are_created_on_first_use_and_rotate(
    client: httpx.AsyncClient, settings: Settings, tenant: str
) -> None:
    headers = auth(settings, tenant)
    first = (await client.get("/api/signing-keys", headers=headers)).json()["items"]
    assert len(first) == 1 and first[0]["secret"].startswith("whsec_")
    assert (await client.get("/api/signing-keys", headers=headers)).json()["items"] == first
    rotated = (await client.post("/api/signing-keys/rotate", headers=headers)).json()["items"]
    assert len(rotated) == 2
    assert rotated[1]["id"] == first[0]["id"] and rotated[1]["expires_at"] is not None
    assert rotated[0]["expires_at"] is None
    other = (await client.get("/api/signing-keys", headers=auth(settings, f"{tenant}-other"))).json()["items"]
    assert {k["id"] for k in other}.isdisjoint({k["id"] for k in rotated})


async def test_operations_endpoints(client: httpx.AsyncClient, settings: Settings, tenant: str) -> None:
    await create(client, settings, tenant)
    assert (await client.get("/health")).json() == {"status": "ok", "checks": {}}
    detailed = await client.get("/health/detailed")
    assert detailed.status_code == 200, detailed.text
    checks = detailed.json()["checks"]
    assert {name: c["status"] for name, c in checks.items()} == {"database": "ok", "kafka": "ok", "outbox": "ok"}
    metrics = (await client.get("/metrics")).text
    assert 'chime_schedules{status="active"}' in metrics
    assert "chime_outbox_backlog" in metrics
    # Requests are counted by route template (never by schedule id) and by the status actually sent.
    assert 'chime_http_requests_total{method="POST",route="/api/schedules",status="201"}' in metrics
    spec = (await client.get("/openapi.json")).json()
    assert "/api/schedules/{schedule_id}/preview" in spec["paths"]


async def test_resync_queues_every_live_schedule_of_the_tenant_again(
    client: httpx.AsyncClient, settings: Settings, tenant: str
) -> None:
    """``chime resync`` after a broker lost its data: the current version of each schedule not deleted, from
    Postgres, through the outbox to ``chime.schedules``; deleted ones and other tenants' schedules stay out."""
    headers = auth(settings, tenant)
    ids = []
    for _ in range(3):
        created = await client.post("/api/schedules", json=schedule_body(), headers=headers)
        assert created.status_code == 201, created.text
        ids.append(created.json()["id"])
    active, paused, deleted = ids
    assert (await client.post(f"/api/schedules/{paused}/pause", headers=headers)).status_code == 200
    assert (await client.delete(f"/api/schedules/{deleted}", headers=headers)).status_code == 204
    other = await client.post("/api/schedules", json=schedule_body(), headers=auth(settings, f"{tenant}-other"))
    assert other.status_code == 201

    flow = f"resync-{uuid.uuid4().hex[:8]}"
    assert (
        await client.put(f"/api/flow-limits/{flow}", json={"max_concurrency": 3}, headers=headers)
    ).status_code == 201

    engine = create_engine(settings)
    try:
        assert await SigningKeyRepository(engine, settings, lambda: None).resync(tenant) == 1
        assert await FlowLimitRepository(engine, settings.default_flow_concurrency, lambda: None).resync(tenant) == 1
        queued = await ScheduleRepository(engine, settings, on_commit=lambda: None).resync(tenant)
    finally:
        await engine.dispose()
    assert queued == 2

    # Before: active 1 record, paused 2 (create, pause), deleted 2 (create, delete); the resync adds one each for
    # active and paused. A create wakes the relay at once rather than at its next poll.
    await client.post("/api/schedules", json=schedule_body(), headers=headers)
    records = await read_records(settings, topic_name(settings, SCHEDULES), keys=ids, count=7)
    by_key: dict[str, list[Any]] = {}
    for record in records:
        by_key.setdefault((record.key or b"").decode(), []).append(decode_event(record.value or b""))
    assert [len(by_key[k]) for k in ids] == [2, 3, 2]
    again = {k: by_key[k][-1] for k in (active, paused)}
    assert all(isinstance(event, ScheduleUpserted) for event in again.values())
    assert (again[active].data.version, again[active].data.status.value) == (1, "active")
    assert (again[paused].data.version, again[paused].data.status.value) == (2, "paused")
    assert isinstance(by_key[deleted][-1], ScheduleDeleted)
    # The tenant's signing keys and its flow limit, each once more at the version it has.
    keys = await read_records(settings, topic_name(settings, SIGNING_KEYS), keys=[tenant], count=2)
    assert [decode_event(r.value or b"").data.version for r in keys] == [1, 1]
    limit_key = flow_record_key(tenant, flow).decode()
    limits = await read_records(settings, topic_name(settings, FLOW_LIMITS), keys=[limit_key], count=2)
    assert [decode_event(r.value or b"").data.max_concurrency for r in limits] == [3, 3]
