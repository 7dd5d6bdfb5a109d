"""The console in a real browser (headless Chromium) against the whole stack: sign in, create a schedule with the
form and watch its runs arrive, pause it, bulk-pause by label, replay a dead letter, and never see another
tenant's data. Every page passes axe-core (no serious violation) and is saved as a screenshot."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, expect

from services.api.auth import mint_token
from shared.settings import Settings
from tests.e2e.console_browser import PHONE, chromium, console
from tests.e2e.stack import RecordingSink, Reply, Stack
from tests.e2e.stack import eventually as until
from tests.integration.helpers import auth, schedule_body

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as running:
        yield running


async def _status(api: httpx.AsyncClient, settings: Settings, tenant: str, schedule_id: str) -> str:
    response = await api.get(f"/api/schedules/{schedule_id}", headers=auth(settings, tenant))
    status: str = response.json()["status"]
    return status


async def test_a_tenant_works_through_the_console(
    browser: Browser, stack: Stack, api: httpx.AsyncClient, sink: RecordingSink, e2e_settings: Settings, tenant: str
) -> None:
    token = mint_token(e2e_settings, tenant=tenant)
    async with console(browser, stack.api_url) as ui:
        page = ui.page
        await ui.goto("/ui/schedules")
        await expect(page).to_have_url(re.compile(r"/ui/login\?next="))
        await ui.check("login")
        # The first Tab reaches the skip link: the page can be used from the keyboard.
        await page.keyboard.press("Tab")
        assert await page.evaluate("document.activeElement.textContent") == "Skip to content"
        await ui.sign_in(token)
        await expect(page).to_have_url(re.compile(r"/ui/schedules"))
        await expect(page.get_by_test_id("tenant")).to_have_text(tenant)

        # Create with the form; the live preview follows the timing inputs.
        group = uuid.uuid4().hex[:6]
        await page.get_by_role("link", name="New schedule").click()
        await page.get_by_label("Name").fill("console heartbeat")
        await page.get_by_label("Type").select_option("cron")
        await page.get_by_label("Cron expression").fill("0 9 * * mon")
        await page.get_by_label("Time zone").fill("America/New_York")
        await expect(page.get_by_test_id("preview").locator("li")).to_have_count(10)
        await expect(page.get_by_test_id("preview").locator("li").first).to_contain_text("T09:00:00.000-0")
        await page.get_by_label("Cron expression").fill("61 * * * *")
        await expect(page.locator("#preview")).to_contain_text("cron_expr")
        await page.get_by_label("Type").select_option("interval")
        await expect(page.get_by_label("Cron expression")).to_be_hidden()
        await page.get_by_label("Interval (seconds)").fill("1")
        await page.get_by_label("URL").fill(f"{sink.url}/console/{group}")
        await page.get_by_label("Labels").fill(f"team=console\ngroup={group}")
        await ui.check("schedule-form")
        await page.get_by_role("button", name="Create schedule").click()
        await expect(page.get_by_role("status")).to_have_text("Created.")
        schedule_id = page.url.split("/ui/schedules/")[1].split("?")[0]

        # Its runs arrive at the sink and in the page.
        await sink.wait_for(schedule_id, 2, timeout=20)

        async def runs_shown() -> bool:
            await page.reload()
            return await page.get_by_test_id("runs").get_by_text("succeeded").count() >= 2

        assert await until(runs_shown, timeout=20)
        await ui.check("schedule")
        await page.get_by_test_id("runs").locator("tr", has_text="succeeded").first.get_by_role("link").click()
        await expect(page.get_by_role("heading", name="Attempt 1")).to_be_visible()
        await ui.check("run")
        await page.go_back()

        await page.get_by_role("button", name="Pause").click()
        await expect(page.get_by_role("status")).to_have_text("Paused.")
        assert await _status(api, e2e_settings, tenant, schedule_id) == "paused"

        # Bulk pause by label, after a confirmation that shows the count.
        bulk = []
        for n in range(3):
            body = schedule_body(name=f"bulk {n}", labels={"bulk": group}, payload={"url": f"{sink.url}/bulk/{group}"})
            created = await api.post("/api/schedules", json=body, headers=auth(e2e_settings, tenant))
            bulk.append(created.json()["id"])
        await page.get_by_role("link", name="Schedules").click()
        await page.get_by_text("Pause, resume or delete by label selector").click()
        await page.get_by_label("Labels", exact=True).last.fill(f"bulk={group}")
        await page.get_by_role("button", name="Continue").click()
        await expect(page.get_by_test_id("matched")).to_contain_text("3")
        await ui.check("confirm-bulk")
        await page.get_by_role("button", name="Pause 3 schedule(s)").click()
        await expect(page.get_by_test_id("changed")).to_have_text("3 schedule(s) changed.")
        assert [await _status(api, e2e_settings, tenant, s) for s in bulk] == ["paused"] * 3
        await ui.check("schedules")

        # A dead letter (a 400 is permanent), replayed from its page; the receiver then answers 200.
        path = f"/dead/{group}"
        dead_url = sink.script(path, [Reply(400)])
        body = schedule_body(
            type="oneoff",
            interval_seconds=None,
            run_at=(datetime.now(UTC) + timedelta(seconds=1)).isoformat(),
            payload={"url": dead_url},
        )
        dead_schedule = (await api.post("/api/schedules", json=body, headers=auth(e2e_settings, tenant))).json()["id"]

        async def dead_entry() -> Any:
            listed = await api.get(
                "/api/dlq", params={"schedule_id": dead_schedule}, headers=auth(e2e_settings, tenant)
            )
            return listed.json()["items"]

        assert await until(dead_entry, timeout=30)
        await page.get_by_role("link", name="Dead letters").click()
        await ui.check("dlq")
        await page.get_by_test_id("dlq").get_by_role("link", name=re.compile("inspect")).first.click()
        await ui.check("dlq-entry")
        await page.get_by_role("button", name="Replay").click()
        await expect(page.get_by_role("status")).to_have_text("Replay requested.")
        await sink.wait_for(dead_schedule, 2, timeout=30)

        async def resolved() -> bool:
            await page.reload()
            return await page.get_by_test_id("dlq-status").inner_text() == "resolved"

        assert await until(resolved, timeout=30)

        # The remaining pages, each checked and kept.
        for name, path in [
            ("overview", "/ui/"),
            ("calendars", "/ui/calendars"),
            ("calendar-form", "/ui/calendars/new"),
            ("notifications", "/ui/notifications"),
            ("notification-form", "/ui/notifications/new"),
            ("flow-limits", "/ui/flow-limits"),
            ("signing-keys", "/ui/signing-keys"),
            ("runs", f"/ui/schedules/{schedule_id}/runs"),
        ]:
            await ui.goto(path)
            await ui.check(name)
        await ui.goto("/ui/")
        assert int(await page.get_by_test_id("succeeded").inner_text()) >= 2

        await page.get_by_role("button", name="Sign out").click()
        await ui.goto("/ui/schedules")
        await expect(page).to_have_url(re.compile(r"/ui/login"))


async def test_on_a_phone_sized_screen_nothing_spills_sideways(
    browser: Browser, stack: Stack, api: httpx.AsyncClient, e2e_settings: Settings, tenant: str
) -> None:
    for n in range(3):
        body = schedule_body(name=f"a rather long schedule name number {n}", labels={"team": "mobile"})
        await api.post("/api/schedules", json=body, headers=auth(e2e_settings, tenant))
    async with console(browser, stack.api_url, viewport=PHONE, is_mobile=True) as ui:
        await ui.goto("/ui/login")
        await ui.sign_in(mint_token(e2e_settings, tenant=tenant))
        for name, path in [
            ("phone-overview", "/ui/"),
            ("phone-schedules", "/ui/schedules"),
            ("phone-form", "/ui/schedules/new"),
        ]:
            await ui.goto(path)
            assert await ui.no_horizontal_scroll(), name
            await ui.check(name)


async def test_another_tenants_data_never_appears(
    browser: Browser, stack: Stack, api: httpx.AsyncClient, e2e_settings: Settings, tenant: str
) -> None:
    other = f"{tenant}-other"
    hidden = f"hidden-{uuid.uuid4().hex[:8]}"
    created = await api.post("/api/schedules", json=schedule_body(name=hidden), headers=auth(e2e_settings, other))
    other_id = created.json()["id"]
    async with console(browser, stack.api_url) as ui:
        await ui.goto("/ui/login")
        await ui.sign_in(mint_token(e2e_settings, tenant=tenant))
        for path in ("/ui/", "/ui/schedules", f"/ui/schedules?name={hidden}", "/ui/dlq"):
            await ui.goto(path)
            shown = " ".join(await ui.page.locator("table, .figures").all_inner_texts())
            assert hidden not in shown and other_id not in await ui.page.content(), path
        await ui.goto(f"/ui/schedules?name={hidden}")
        await expect(ui.page.get_by_text("No schedules match.")).to_be_visible()
        response = await ui.page.goto(f"{stack.api_url}/ui/schedules/{other_id}")
        assert response is not None and response.status == 404
        assert hidden not in await ui.page.content()
        await ui.check("not-found")
