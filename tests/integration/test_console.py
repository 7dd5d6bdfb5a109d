"""The console at /ui over plain HTTP against the real Postgres and Kafka: sign-in, every page, the form's 422s
beside their inputs, CSRF, headers, bulk confirmation counts, tenancy. The browser tests (tests/e2e) drive it in
Chromium."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest

from services.api.auth import mint_token
from services.api.console.headers import CONTENT_SECURITY_POLICY
from services.api.console.session import COOKIE, csrf_token
from shared.settings import Settings
from tests.integration.helpers import auth, schedule_body

PAGES = [
    "/ui/",
    "/ui/schedules",
    "/ui/schedules/new",
    "/ui/dlq",
    "/ui/calendars",
    "/ui/calendars/new",
    "/ui/notifications",
    "/ui/notifications/new",
    "/ui/flow-limits",
    "/ui/signing-keys",
]


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([0-9a-f]+)"', html)
    assert found, "the page has no CSRF field"
    return found.group(1)


async def _signed_in(client: httpx.AsyncClient, settings: Settings, tenant: str, **claims: str) -> str:
    token = mint_token(settings, tenant=tenant, **claims)  # type: ignore[arg-type]
    response = await client.post("/ui/login", data={"token": token, "next": "/ui/schedules"})
    assert response.status_code == 303, response.text
    assert response.headers["location"].startswith("/ui/schedules")
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
    return token


@pytest.fixture
async def browser(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """A client of its own per test, so cookies do not cross tests."""
    async with httpx.AsyncClient(transport=client._transport, base_url="http://chime.test") as own:  # noqa: SLF001
        yield own


async def test_sign_in_is_needed_and_a_bad_token_is_refused(browser: httpx.AsyncClient, settings: Settings) -> None:
    first = await browser.get("/ui/schedules?name=x")
    assert first.status_code == 303
    assert first.headers["location"] == "/ui/login?next=%2Fui%2Fschedules%3Fname%3Dx"
    login = await browser.get(first.headers["location"])
    assert login.status_code == 200 and 'name="token"' in login.text
    refused = await browser.post("/ui/login", data={"token": "not-a-jwt", "next": "/ui/"})
    assert refused.status_code == 401 and "not accepted" in refused.text
    assert COOKIE not in refused.headers.get("set-cookie", "")
    # After sign-in the browser returns only to paths inside the console.
    token = mint_token(settings, tenant="t-" + uuid.uuid4().hex[:6])
    away = await browser.post("/ui/login", data={"token": token, "next": "https://evil.example/"})
    assert away.headers["location"].startswith("/ui/?")
    cross = await browser.post("/ui/login", data={"token": token}, headers={"Origin": "https://evil.example"})
    assert cross.status_code == 403


async def test_an_ended_session_goes_back_to_sign_in(browser: httpx.AsyncClient, settings: Settings) -> None:
    expired = mint_token(settings, tenant="t-" + uuid.uuid4().hex[:6], ttl_seconds=-10)
    browser.cookies.set(COOKIE, expired, domain="chime.test", path="/ui")
    page = await browser.get("/ui/dlq")
    assert page.status_code == 303 and page.headers["location"].startswith("/ui/login?next=%2Fui%2Fdlq&reason=")
    # A form posted with it is not repeated after sign-in: the way back is the overview.
    posted = await browser.post("/ui/signing-keys/rotate", data={"csrf_token": csrf_token(expired)})
    assert posted.status_code == 303 and posted.headers["location"].startswith("/ui/login?next=%2Fui%2F&")
    preview = await browser.post("/ui/schedules/preview", headers={"X-Requested-With": "fetch"})
    assert preview.status_code == 401


async def test_every_page_answers_with_strict_headers(
    browser: httpx.AsyncClient, settings: Settings, tenant: str
) -> None:
    await _signed_in(browser, settings, tenant)
    for path in PAGES:
        response = await browser.get(path)
        assert response.status_code == 200, (path, response.text[:500])
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert response.headers["x-frame-options"] == "DENY"
        assert "<script>" not in response.text and " style=" not in response.text, path
        assert tenant in response.text
    static = await browser.get("/ui/static/console.css")
    assert static.status_code == 200 and static.headers["content-security-policy"] == CONTENT_SECURITY_POLICY


async def test_the_form_creates_and_shows_the_api_422_beside_its_input(
    browser: httpx.AsyncClient, settings: Settings, tenant: str
) -> None:
    token = await _signed_in(browser, settings, tenant)
    csrf = csrf_token(token)
    base = {
        "csrf_token": csrf,
        "name": "console made",
        "type": "cron",
        "cron_expr": "61 * * * *",
        "timezone": "Europe/Paris",
        "payload.url": "http://127.0.0.1:9/hook",
        "labels": "team=console\nenv=test",
    }
    bad = await browser.post("/ui/schedules/new", data=base)
    assert bad.status_code == 422
    # The message sits beside the cron input, which is marked invalid and points at it.
    assert 'id="cron_expr-error"' in bad.text
    assert re.search(r'id="f-cron_expr"[^>]*aria-describedby="[^"]*cron_expr-error"[^>]*aria-invalid="true"', bad.text)
    assert 'value="console made"' in bad.text  # what was typed is kept

    unreadable = await browser.post("/ui/schedules/new", data={**base, "cron_expr": "0 9 * * *", "payload.body": "{"})
    assert unreadable.status_code == 422 and 'id="payload-body-error"' in unreadable.text

    preview = await browser.post("/ui/schedules/preview", data={**base, "cron_expr": "0 9 * * *"})
    assert preview.status_code == 200 and preview.text.count("<li") == 10 and "+01:00" in preview.text

    created = await browser.post("/ui/schedules/new", data={**base, "cron_expr": "0 9 * * *"})
    assert created.status_code == 303, created.text
    schedule_id = created.headers["location"].split("/")[3].split("?")[0]
    api = await browser.get(f"/api/schedules/{schedule_id}", headers=auth(settings, tenant))
    assert api.json()["labels"] == {"team": "console", "env": "test"}
    assert api.json()["timezone"] == "Europe/Paris"

    page = await browser.get(f"/ui/schedules/{schedule_id}")
    assert page.status_code == 200 and page.text.count('<li><time datetime="') == 10
    edit = await browser.get(f"/ui/schedules/{schedule_id}/edit")
    assert 'value="0 9 * * *"' in edit.text
    saved = await browser.post(
        f"/ui/schedules/{schedule_id}/edit", data={**base, "cron_expr": "30 9 * * *", "version": "1"}
    )
    assert saved.status_code == 303
    stale = await browser.post(
        f"/ui/schedules/{schedule_id}/edit", data={**base, "cron_expr": "45 9 * * *", "version": "1"}
    )
    assert stale.status_code == 412 and "changed meanwhile" in stale.text
    paused = await browser.post(f"/ui/schedules/{schedule_id}/pause", data={"csrf_token": csrf})
    assert paused.status_code == 303
    assert (await browser.get(f"/api/schedules/{schedule_id}", headers=auth(settings, tenant))).json()["status"] == (
        "paused"
    )


async def test_state_changes_need_the_csrf_token(
    browser: httpx.AsyncClient, client: httpx.AsyncClient, settings: Settings, tenant: str
) -> None:
    headers = auth(settings, tenant)
    created = (await client.post("/api/schedules", json=schedule_body(), headers=headers)).json()
    await _signed_in(browser, settings, tenant)
    missing = await browser.post(f"/ui/schedules/{created['id']}/pause", data={})
    assert missing.status_code == 403
    forged = await browser.post(f"/ui/schedules/{created['id']}/pause", data={"csrf_token": "0" * 64})
    assert forged.status_code == 403
    token = browser.cookies[COOKIE]
    other_origin = await browser.post(
        f"/ui/schedules/{created['id']}/pause",
        data={"csrf_token": csrf_token(token)},
        headers={"Origin": "https://evil.example"},
    )
    assert other_origin.status_code == 403
    assert (await client.get(f"/api/schedules/{created['id']}", headers=headers)).json()["status"] == "active"


async def test_bulk_pause_by_label_confirms_the_count_first(
    browser: httpx.AsyncClient, client: httpx.AsyncClient, settings: Settings, tenant: str
) -> None:
    headers = auth(settings, tenant)
    group = uuid.uuid4().hex[:6]
    for n in range(3):
        body = schedule_body(name=f"bulk {n}", labels={"group": group})
        assert (await client.post("/api/schedules", json=body, headers=headers)).status_code == 201
    await client.post("/api/schedules", json=schedule_body(name="untouched"), headers=headers)
    token = await _signed_in(browser, settings, tenant)
    form = {"csrf_token": csrf_token(token), "scope": "selector", "label": f"group={group}", "action": "pause"}
    confirm = await browser.post("/ui/schedules/bulk", data=form)
    assert confirm.status_code == 200
    assert re.search(r"pause <strong>3</strong> schedule", confirm.text)
    listed = await client.get("/api/schedules", params={"status": "active"}, headers=headers)
    assert len(listed.json()["items"]) == 4  # nothing changed before the confirmation
    done = await browser.post("/ui/schedules/bulk", data={**form, "confirmed": "yes"})
    assert done.status_code == 303 and "changed=3" in done.headers["location"]
    paused = await client.get("/api/schedules", params={"status": "paused"}, headers=headers)
    assert sorted(s["name"] for s in paused.json()["items"]) == ["bulk 0", "bulk 1", "bulk 2"]


async def test_another_tenants_data_never_appears(
    browser: httpx.AsyncClient, client: httpx.AsyncClient, settings: Settings, tenant: str
) -> None:
    secret_name = f"secret-{uuid.uuid4().hex[:8]}"
    other = f"{tenant}-other"
    created = await client.post("/api/schedules", json=schedule_body(name=secret_name), headers=auth(settings, other))
    other_id = created.json()["id"]
    await _signed_in(browser, settings, tenant)
    listing = await browser.get("/ui/schedules")
    assert secret_name not in listing.text
    direct = await browser.get(f"/ui/schedules/{other_id}")
    assert direct.status_code == 404 and secret_name not in direct.text
    token = browser.cookies[COOKIE]
    pause = await browser.post(f"/ui/schedules/{other_id}/pause", data={"csrf_token": csrf_token(token)})
    assert pause.status_code == 404
    assert (await client.get(f"/api/schedules/{other_id}", headers=auth(settings, other))).json()["status"] == "active"


async def test_scopes_apply_to_the_console_as_to_the_api(
    browser: httpx.AsyncClient, client: httpx.AsyncClient, settings: Settings, tenant: str
) -> None:
    await client.post("/api/schedules", json=schedule_body(name="visible"), headers=auth(settings, tenant))
    token = await _signed_in(browser, settings, tenant, scope="schedules:read")
    listed = await browser.get("/ui/schedules")
    assert listed.status_code == 200 and "visible" in listed.text  # success rates need runs:read: left out
    paused = await browser.post(
        "/ui/schedules/bulk",
        data={"csrf_token": csrf_token(token), "scope": "selector", "label": "a=b", "action": "pause"},
    )
    assert paused.status_code == 403 and "schedules:write" in paused.text
    refused = await browser.get("/ui/dlq")
    assert refused.status_code == 403 and "dlq:read" in refused.text


async def test_consumer_lag_is_shown_to_operators_only(
    browser: httpx.AsyncClient, client: httpx.AsyncClient, settings: Settings, tenant: str
) -> None:
    await _signed_in(browser, settings, tenant)
    overview = await browser.get("/ui/")
    assert overview.status_code == 200 and "Lag p50 and p99" in overview.text
    assert "Consumer lag" not in overview.text
    async with httpx.AsyncClient(transport=client._transport, base_url="http://chime.test") as operator:  # noqa: SLF001
        await _signed_in(operator, settings, tenant, scope="runs:read schedules:read admin")
        shown = await operator.get("/ui/")
        assert shown.status_code == 200 and "Consumer lag" in shown.text


async def test_settings_pages_save_and_show_errors(browser: httpx.AsyncClient, settings: Settings, tenant: str) -> None:
    token = await _signed_in(browser, settings, tenant)
    csrf = csrf_token(token)
    calendar = await browser.post(
        "/ui/calendars/new",
        data={"csrf_token": csrf, "name": "holidays", "timezone": "Mars/Olympus", "exclude_dates": "2026-12-25"},
    )
    assert calendar.status_code == 422 and 'id="timezone-error"' in calendar.text
    calendar = await browser.post(
        "/ui/calendars/new",
        data={
            "csrf_token": csrf,
            "name": "holidays",
            "timezone": "UTC",
            "exclude_dates": "2026-12-25",
            "exclude_weekdays": ["sat", "sun"],
        },
    )
    assert calendar.status_code == 303
    assert "holidays" in (await browser.get("/ui/calendars")).text
    limit = await browser.post(
        "/ui/flow-limits", data={"csrf_token": csrf, "flow_key": "api.example.com", "max_concurrency": "0"}
    )
    assert limit.status_code == 422 and 'id="max_concurrency-error"' in limit.text
    limit = await browser.post(
        "/ui/flow-limits", data={"csrf_token": csrf, "flow_key": "api.example.com", "max_per_second": "2.5"}
    )
    assert limit.status_code == 303
    assert "api.example.com" in (await browser.get("/ui/flow-limits")).text
    keys = await browser.get("/ui/signing-keys")
    rows = keys.text.count("<tr><td><code>")
    assert rows >= 1 and keys.text.count("no expiry (current)") == rows
    rotated = await browser.post("/ui/signing-keys/rotate", data={"csrf_token": csrf})
    assert rotated.status_code == 303
    after = await browser.get("/ui/signing-keys")
    assert after.text.count("<tr><td><code>") == rows + 1 and "whsec_" in after.text
    # The rotated-out key shows when it stops signing: the grace period.
    assert after.text.count("no expiry (current)") == 1
