"""Headless Chromium for the console's browser tests: Debian's /usr/bin/chromium (or CHIME_CHROMIUM) driven by
Playwright, an axe-core check, and screenshots kept as test artifacts."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

CHROMIUM = os.environ.get("CHIME_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("CHIME_TEST_ARTIFACTS", ".chime/test-artifacts")) / "console"
# The machine's network is closed: without these Chromium keeps trying to reach Google's services.
_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE = {"width": 390, "height": 844}


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"no Chromium at {CHROMIUM}: `make test` installs Debian's, or set CHIME_CHROMIUM")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


class Console:
    """One signed-in (or not yet) browser context on the console, recording what it must never see."""

    def __init__(self, context: BrowserContext, page: Page, base_url: str) -> None:
        self.context = context
        self.page = page
        self.base_url = base_url
        self.csp_violations: list[str] = []
        self.server_errors: list[str] = []
        page.on("console", self._console)
        page.on("response", self._response)

    def _console(self, message: Any) -> None:
        if "Content Security Policy" in message.text or "Refused to" in message.text:
            self.csp_violations.append(message.text)

    def _response(self, response: Any) -> None:
        if response.status >= 500:
            self.server_errors.append(f"{response.status} {response.url}")

    async def goto(self, path: str) -> None:
        await self.page.goto(self.base_url + path)

    async def sign_in(self, token: str) -> None:
        await self.page.get_by_label("API token (JWT)").fill(token)
        await self.page.get_by_role("button", name="Sign in").click()
        await self.page.wait_for_load_state()

    async def check(self, name: str) -> None:
        """A screenshot, and no serious or critical axe-core violation on the page as it is now."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        await self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        results = await Axe().run(self.page)
        serious = [
            f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
            for v in results.response["violations"]
            if v["impact"] in ("serious", "critical")
        ]
        assert not serious, f"{name}: {serious}"
        assert not self.csp_violations, f"{name}: {self.csp_violations}"
        assert not self.server_errors, f"{name}: {self.server_errors}"

    async def no_horizontal_scroll(self) -> bool:
        width: int = await self.page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        return width <= 1


@asynccontextmanager
async def console(browser: Browser, base_url: str, **context_options: Any) -> AsyncIterator[Console]:
    context = await browser.new_context(**context_options)
    try:
        page = await context.new_page()
        page.set_default_timeout(15_000)
        yield Console(context, page, base_url)
    finally:
        await context.close()


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
