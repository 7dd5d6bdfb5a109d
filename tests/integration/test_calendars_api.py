"""Exclusion calendars through the API against the real Postgres: CRUD, validation, tenancy, preview, and the
schedule versions a calendar change makes (read back from the real Kafka)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from shared.events import ScheduleUpserted, decode_event
from shared.settings import Settings
from shared.topics import SCHEDULES, topic_name
from tests.integration.helpers import auth, read_records, schedule_body

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def calendar_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"name": f"cal-{uuid.uuid4().hex[:6]}", "timezone": "UTC"}
    body.update(overrides)
    return body


async def create_calendar(
    client: httpx.AsyncClient, settings: Settings, tenant: str, **overrides: Any
) -> dict[str, Any]:
    response = await client.post("/api/calendars", json=calendar_body(**overrides), headers=auth(settings, tenant))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_crud_with_etags_and_tenancy(client: httpx.AsyncClient, settings: Settings, tenant: str) -> None:
    created = await create_calendar(
        client,
        settings,
        tenant,
        timezone="Europe/Paris",
        exclude_dates=["2026-12-25", "2026-12-24", "2026-12-25"],
        exclude_weekdays=["sun", "sat"],
        exclude_ranges=[{"from": "2026-12-31T18:00:00Z", "to": "2027-01-01T06:00:00Z"}],
    )
    cid = created["id"]
    assert created["version"] == 1 and created["tenant_id"] == tenant
    assert created["exclude_dates"] == ["2026-12-24", "2026-12-25"]
    assert created["exclude_weekdays"] == ["sat", "sun"]
    assert created["exclude_ranges"] == [{"from": "2026-12-31T18:00:00.000Z", "to": "2027-01-01T06:00:00.000Z"}]

    got = await client.get(f"/api/calendars/{cid}", headers=auth(settings, tenant))
    assert got.status_code == 200 and got.headers["ETag"] == '"1"'
    listed = await client.get("/api/calendars", params={"limit": 500}, headers=auth(settings, tenant))
    assert cid in {c["id"] for c in listed.json()["items"]}

    stale = await client.put(
        f"/api/calendars/{cid}", json=calendar_body(), headers={**auth(settings, tenant), "If-Match": '"7"'}
    )
    assert stale.status_code == 412
    patched = await client.patch(
        f"/api/calendars/{cid}",
        json={"exclude_weekdays": ["mon"]},
        headers={**auth(settings, tenant), "If-Match": '"1"'},
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["version"] == 2 and patched.json()["exclude_weekdays"] == ["mon"]
    assert patched.json()["exclude_dates"] == ["2026-12-24", "2026-12-25"]

    other = f"{tenant}-other"
    for method in ("get", "delete"):
        response = await getattr(client, method)(f"/api/calendars/{cid}", headers=auth(settings, other))
        assert response.status_code == 404
    elsewhere = await client.put(f"/api/calendars/{cid}", json=calendar_body(), headers=auth(settings, other))
    assert elsewhere.status_code == 404
    # Another tenant's calendar cannot be named either.
    named = await client.post("/api/schedules", json=schedule_body(calendar_ids=[cid]), headers=auth(settings, other))
    assert named.status_code == 422 and named.json()["errors"][0]["field"] == "calendar_ids"

    deleted = await client.delete(f"/api/calendars/{cid}", headers=auth(settings, tenant))
    assert deleted.status_code == 204
    assert (await client.get(f"/api/calendars/{cid}", headers=auth(settings, tenant))).status_code == 404


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"timezone": "Mars/Olympus_Mons"}, "timezone"),
        ({"exclude_dates": ["2026-02-30"]}, "exclude_dates.0"),
        ({"exclude_weekdays": ["funday"]}, "exclude_weekdays.0"),
        ({"exclude_ranges": [{"from": "2026-12-02T00:00:00Z", "to": "2026-12-01T00:00:00Z"}]}, "exclude_ranges.0"),
        ({"exclude_ranges": [{"from": "2026-12-01T00:00:00", "to": "2026-12-02T00:00:00Z"}]}, "exclude_ranges.0.from"),
        ({"name": ""}, "name"),
        ({"colour": "red"}, "colour"),
    ],
)
async def test_invalid_calendars_are_422_naming_the_field(
    client: httpx.AsyncClient, settings: Settings, tenant: str, overrides: dict[str, Any], field: str
) -> None:
    response = await client.post("/api/calendars", json=calendar_body(**overrides), headers=auth(settings, tenant))
    assert response.status_code == 422, response.text
    assert any(e["field"].startswith(field) for e in response.json()["errors"]), response.json()


async def test_schedules_name_calendars_and_a_named_calendar_cannot_be_deleted(
    client: httpx.AsyncClient, settings: Settings, tenant: str
) -> None:
    calendar = await create_calendar(client, settings, tenant)
    missing = str(uuid.uuid4())
    refused = await client.post(
        "/api/schedules", json=schedule_body(calendar_ids=[missing]), headers=auth(settings, tenant)
    )
    assert refused.status_code == 422 and missing in refused.json()["errors"][0]["message"]
    twice = await client.post(
        "/api/schedules", json=schedule_body(calendar_ids=[calendar["id"]] * 2), headers=auth(settings, tenant)
    )
    assert twice.status_code == 422
    schedule = await client.post(
        "/api/schedules", json=schedule_body(calendar_ids=[calendar["id"]]), headers=auth(settings, tenant)
    )
    assert schedule.status_code == 201 and schedule.json()["calendar_ids"] == [calendar["id"]]
    in_use = await client.delete(f"/api/calendars/{calendar['id']}", headers=auth(settings, tenant))
    assert in_use.status_code == 409
    assert in_use.headers["content-type"].startswith("application/problem+json")
    assert schedule.json()["id"] in in_use.json()["detail"]

    # A calendar change is a new version of the schedule, whose event carries the calendar as it now is.
    changed = await client.put(
        f"/api/calendars/{calendar['id']}",
        json=calendar_body(exclude_weekdays=["sun"]),
        headers=auth(settings, tenant),
    )
    assert changed.status_code == 200
    got = await client.get(f"/api/schedules/{schedule.json()['id']}", headers=auth(settings, tenant))
    assert got.json()["version"] == 2 and "calendars" not in got.json()
    records = await read_records(settings, topic_name(settings, SCHEDULES), keys=[schedule.json()["id"]], count=2)
    events = [decode_event(r.value) for r in records if r.value is not None]
    latest = [e for e in events if isinstance(e, ScheduleUpserted)][-1]
    assert latest.data.version == 2
    assert [c.exclude_weekdays for c in latest.data.calendars] == [["sun"]]

    unnamed = await client.patch(
        f"/api/schedules/{schedule.json()['id']}", json={"calendar_ids": []}, headers=auth(settings, tenant)
    )
    assert unnamed.status_code == 200
    assert (await client.delete(f"/api/calendars/{calendar['id']}", headers=auth(settings, tenant))).status_code == 204


async def test_preview_leaves_out_excluded_times_or_marks_them(
    client: httpx.AsyncClient, settings: Settings, tenant: str
) -> None:
    # Daily at 09:00 in New York across the 2026-11-01 DST change, with Sundays and 2026-11-03 excluded.
    calendar = await create_calendar(
        client, settings, tenant, timezone="America/New_York", exclude_weekdays=["sun"], exclude_dates=["2026-11-03"]
    )
    body = schedule_body(
        type="cron",
        interval_seconds=None,
        cron_expr="0 9 * * *",
        timezone="America/New_York",
        calendar_ids=[calendar["id"]],
    )
    schedule = (await client.post("/api/schedules", json=body, headers=auth(settings, tenant))).json()
    after = datetime(2026, 10, 30, 14, tzinfo=UTC).isoformat()
    plain = await client.get(
        f"/api/schedules/{schedule['id']}/preview", params={"count": 4, "after": after}, headers=auth(settings, tenant)
    )
    assert plain.status_code == 200, plain.text
    assert [i["local"][:10] for i in plain.json()["items"]] == ["2026-10-31", "2026-11-02", "2026-11-04", "2026-11-05"]
    assert all(i["skipped"] is None for i in plain.json()["items"])
    # 09:00 EDT is 13:00 UTC before the change, 14:00 UTC after it.
    assert [i["utc"][11:13] for i in plain.json()["items"]] == ["13", "14", "14", "14"]
    marked = await client.get(
        f"/api/schedules/{schedule['id']}/preview",
        params={"count": 6, "after": after, "include_skipped": "true"},
        headers=auth(settings, tenant),
    )
    items = marked.json()["items"]
    assert [(i["local"][:10], i["skipped"]) for i in items] == [
        ("2026-10-31", None),
        ("2026-11-01", "calendar"),
        ("2026-11-02", None),
        ("2026-11-03", "calendar"),
        ("2026-11-04", None),
        ("2026-11-05", None),
    ]
    assert datetime.fromisoformat(items[1]["utc"]) - datetime.fromisoformat(items[0]["utc"]) == timedelta(hours=25)
