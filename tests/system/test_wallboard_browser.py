"""The wallboard in a real headless Chromium (``tests/support/browser.py``), served on
a real TCP port."""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest_asyncio
import redis.asyncio as aioredis
from playwright.async_api import Page, expect

from crm_sync.call_store import PostgresCallStore
from crm_sync.people import deactivate_person
from hotline.core.live import LIVE_CHANNEL, QUEUES_KEY
from hotline.core.privacy import mask_phone
from hotline.core.records import CallOutcome
from hotline.web.app import build_web_app
from hotline.web.wallboard import start_of_today
from tests.support.browser import chromium, new_page, serve
from tests.support.web import SESSION_KEY, add_user, make_call, unique_queue

SCREENSHOT = Path("/tmp/wallboard.png")


@pytest_asyncio.fixture
async def base_url(pg_pool: asyncpg.Pool, redis_client: aioredis.Redis) -> AsyncIterator[str]:
    async with serve(build_web_app(pg_pool, redis_client, SESSION_KEY)) as url:
        yield url


@pytest_asyncio.fixture
async def page() -> AsyncIterator[Page]:
    async with chromium() as browser:
        yield await new_page(browser, viewport={"width": 1400, "height": 900})


async def shown_call_keys(page: Page) -> list[str]:
    """The calls in the recent-calls table, top to bottom (the DB is shared by the session)."""
    keys: list[str] = await page.locator("#calls tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.callKey || '')"
    )
    return keys


def random_mobile() -> str:
    return "+38067" + "".join(random.choices("0123456789", k=7))


async def test_wallboard_shows_calls_and_updates_live(
    base_url: str, page: Page, pg_pool: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    supervisor = await add_user(pg_pool, "supervisor", "Черговий супервізор")
    queue = unique_queue("wb")
    tag = uuid.uuid4().hex[:8]
    # all of it "today" in Kyiv, even when the test runs just after midnight
    t0 = max(datetime.now(UTC) - timedelta(seconds=40), start_of_today())
    store = PostgresCallStore(pg_pool)
    calls = [
        make_call(tag, t0, queue=queue, caller_number=random_mobile(),
                  caller_name="Петро Іваненко", wait_seconds=8, talk_seconds=140),
        make_call(tag, t0 + timedelta(seconds=20), queue=queue, caller_number=random_mobile(),
                  caller_name="Ґанна Їжак", outcome=CallOutcome.ABANDONED, wait_seconds=64,
                  talk_seconds=None, operator_name=None),
        make_call(tag, t0 + timedelta(seconds=30), queue=None, caller_number=random_mobile(),
                  caller_name="Олена Ґудзь", outcome=CallOutcome.IVR_ONLY, wait_seconds=None,
                  talk_seconds=None, operator_name=None, ivr_choice="3"),
    ]
    for call in calls:
        await store.save_call(call)
    saved_queues = await redis_client.get(QUEUES_KEY)
    await redis_client.set(QUEUES_KEY, json.dumps({
        "queues": [{"queue": queue, "callers": 2, "longest_hold": 37, "available": 1,
                    "logged_in": 3}],
        "at": t0.isoformat(),
    }))
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("console", lambda msg: problems.append(f"console: {msg.text} {msg.location['url']}")
            if msg.type == "error" else None)
    # Only the live feed may refresh the tables: the 30 s fallback poll is switched off.
    await page.add_init_script("window.setInterval = () => 0;")
    try:
        # signed out: the wallboard sends the browser to the sign-in form
        await page.goto(f"{base_url}/wallboard")
        await expect(page).to_have_url(f"{base_url}/login")

        await page.fill("#login", supervisor.login)
        await page.fill("#password", "not the password")
        await page.click("button[type=submit]")
        await expect(page.locator(".error")).to_have_text("Wrong login or password.")
        assert [p for p in problems if "401" not in p] == []  # Chromium logs the 401 page
        problems.clear()

        await page.fill("#login", supervisor.login)
        await page.fill("#password", supervisor.password)
        await page.click("button[type=submit]")
        await expect(page).to_have_url(f"{base_url}/wallboard")
        await expect(page.locator("header")).to_contain_text("Черговий супервізор")
        await expect(page.locator("#live")).to_have_text("live")

        for call in calls:
            row = page.locator(f'#calls tr[data-call-key="{call.call_key}"]')
            await expect(row).to_contain_text(mask_phone(call.caller_number))
            await expect(row).to_contain_text(call.caller_name)
            await expect(row).not_to_contain_text(call.caller_number)
        ours = [k for k in await shown_call_keys(page) if k.startswith(f"webtest:{tag}:")]
        assert ours == [c.call_key for c in reversed(calls)], "newest first"
        body = await page.content()
        for call in calls:
            assert call.caller_number not in body, "a full phone number reached the browser"
        abandoned = page.locator(f'#calls tr[data-call-key="{calls[1].call_key}"] td.abandoned')
        await expect(abandoned).to_have_text("abandoned")

        today = page.locator(f'#today tr[data-queue="{queue}"]')
        await expect(today.locator("td")).to_have_text(
            [queue, "2", "1", "1", "0", "100%", "50%", "8", "140"]
        )
        await expect(page.locator(f'#queues .card[data-queue="{queue}"]')).to_contain_text(
            "1/3 operators available"
        )

        # a call finishes later: a new row in the case store, then the live notice
        late = make_call(tag, t0 + timedelta(seconds=40), queue=queue,
                         caller_number=random_mobile(), caller_name="Новий Дзвінок",
                         wait_seconds=3, talk_seconds=20)
        await store.save_call(late)
        receivers = await redis_client.publish(
            LIVE_CHANNEL, json.dumps({"type": "call", "call_key": late.call_key})
        )
        assert receivers >= 1, "the wallboard's socket is not subscribed"
        late_row = page.locator(f'#calls tr[data-call-key="{late.call_key}"]')
        await expect(late_row).to_contain_text("Новий Дзвінок")
        await expect(late_row).to_contain_text(mask_phone(late.caller_number))
        ours = [k for k in await shown_call_keys(page) if k.startswith(f"webtest:{tag}:")]
        assert ours == [late.call_key] + [c.call_key for c in reversed(calls)]
        await expect(today.locator("td").nth(1)).to_have_text("3")
        await expect(page).to_have_url(f"{base_url}/wallboard")  # no reload, no navigation

        await page.screenshot(path=str(SCREENSHOT), full_page=True)
        background = await page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(15, 23, 42)", "the wallboard is meant to be dark"

        # signing out ends the session for the page too
        await page.click("header button")
        await expect(page).to_have_url(f"{base_url}/login")
        await page.goto(f"{base_url}/wallboard")
        await expect(page).to_have_url(f"{base_url}/login")
        assert problems == []
    finally:
        if saved_queues is None:
            await redis_client.delete(QUEUES_KEY)
        else:
            await redis_client.set(QUEUES_KEY, saved_queues)


async def test_wallboard_leaves_when_its_user_is_deactivated(
    base_url: str, page: Page, pg_pool: asyncpg.Pool
) -> None:
    """The open page's websocket is closed with "signed out": the page goes to the
    sign-in form by itself, without a reload or a click."""
    supervisor = await add_user(pg_pool, "supervisor")
    csp: list[str] = []
    page.on("response", lambda r: csp.append(r.headers.get("content-security-policy", ""))
            if r.url.endswith("/wallboard") else None)
    await page.goto(f"{base_url}/login")
    await page.fill("#login", supervisor.login)
    await page.fill("#password", supervisor.password)
    await page.click("button[type=submit]")
    await expect(page.locator("#live")).to_have_text("live")
    assert csp and "script-src 'self'" in csp[0] and "frame-ancestors 'none'" in csp[0]
    await deactivate_person(pg_pool, supervisor.login)
    await expect(page).to_have_url(f"{base_url}/login")
    await page.fill("#login", supervisor.login)
    await page.fill("#password", supervisor.password)
    await page.click("button[type=submit]")
    await expect(page.locator(".error")).to_have_text("Wrong login or password.")
