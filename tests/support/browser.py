"""Real headless Chromium for the page tests, and a web app on a real TCP port.

Chromium is Debian's (``/usr/bin/chromium``, installed by ``run.sh``); playwright
only drives it — no browser is downloaded. Without Chromium a test fails, it
does not skip.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web
from playwright.async_api import Browser, Page, async_playwright, expect

CHROMIUM = Path("/usr/bin/chromium")
# The machine's network is closed: no background connections, no QUIC.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]
TIMEOUT_MS = 15_000


@contextlib.asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    """The app on a free port of 127.0.0.1; yields its base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    present = await asyncio.to_thread(CHROMIUM.exists)
    assert present, f"{CHROMIUM} is missing: apt-get install -y chromium"
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            await browser.close()


async def new_page(browser: Browser, problems: list[str] | None = None, **context: Any) -> Page:
    """A page in a new context; console errors and page errors (a CSP violation is
    one: "Refused to execute inline script …") are appended to ``problems``."""
    ctx = await browser.new_context(locale="uk-UA", **context)
    page = await ctx.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)
    if problems is not None:
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        page.on("console", lambda msg: problems.append(f"console: {msg.text}")
                if msg.type == "error" else None)
    return page


async def sign_in_page(page: Page, base_url: str, login: str, password: str) -> None:
    """Through the real sign-in form, as a person would."""
    await page.goto(f"{base_url}/login")
    await page.fill("#login", login)
    await page.fill("#password", password)
    await page.click("button[type=submit]")
