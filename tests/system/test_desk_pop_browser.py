"""The desk's pop card in a real headless Chromium: the pop kept for an operator
(what the ami role publishes) is shown when their page opens, with the
announcements of the citizen's district — emergencies marked — and without the
list when there are none."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest_asyncio
import redis.asyncio as aioredis
from playwright.async_api import Browser, expect

from hotline.core.desk import pop_key
from tests.support.appeals import appeals_case_store
from tests.support.browser import chromium, new_page, serve, sign_in_page
from tests.support.databases import MakeDatabase
from tests.support.desk import desk_app
from tests.support.web import add_user


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pool(make_database: MakeDatabase) -> AsyncIterator[asyncpg.Pool]:
    async with appeals_case_store(make_database, "desk_pop_browser") as p:
        yield p


@pytest_asyncio.fixture
async def base_url(pool: asyncpg.Pool, redis_client: aioredis.Redis) -> AsyncIterator[str]:
    async with serve(desk_app(pool, redis_client)) as url:
        yield url


@pytest_asyncio.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


def pop(notices: list[dict[str, Any]]) -> str:
    return json.dumps({
        "type": "pop", "state": "ringing", "version": time.time_ns(),
        "uniqueid": f"{time.time():.0f}.{uuid.uuid4().int % 1000}", "queue": "housing",
        "queue_label": "Житлово-комунальні", "queue_path": ["housing"],
        "caller_number": "380631234567", "caller_name": "Марія", "language": "uk",
        "ivr_choice": "1", "ivr_source": "fastagi", "waited_seconds": 12,
        "citizen": {"name": "Марія", "phone": "+380631234567", "district_name": "Оболонський"},
        "appeals": [], "recent_calls": [], "notices": notices}, ensure_ascii=False)


async def test_the_pop_shows_the_district_notices(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, base_url: str, browser: Browser
) -> None:
    operator = await add_user(pool, "operator", "Оператор Ганна")
    await redis_client.set(pop_key(operator.login), pop([
        {"id": 7, "kind": "emergency", "text": "Аварія на тепломережі",
         "ends_at": "2026-12-01T16:00:00+00:00"},
        {"id": 8, "kind": "water", "text": "Немає гарячої води до 18:00",
         "ends_at": "2026-12-01T16:00:00+00:00"}]), ex=60)
    problems: list[str] = []
    page = await new_page(browser, problems)
    await sign_in_page(page, base_url, operator.login, operator.password)
    await expect(page.locator("#pop-number")).to_have_text("380631234567")
    notices = page.locator("#pop-notices li")
    await expect(notices).to_have_count(2)
    await expect(notices.nth(0)).to_contain_text("Аварія на тепломережі")
    await expect(notices.nth(0)).to_have_class("emergency")
    await expect(notices.nth(1)).to_contain_text("Немає гарячої води")

    # the next caller's district has none: no list at all
    await redis_client.set(pop_key(operator.login), pop([]), ex=60)
    await page.reload()
    await expect(page.locator("#pop-number")).to_have_text("380631234567")
    await expect(page.locator("#pop-notices")).to_be_hidden()
    assert [p for p in problems if "/desk/call/" not in p] == []
