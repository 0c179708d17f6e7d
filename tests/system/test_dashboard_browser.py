"""The leadership dashboard in a real headless Chromium (``tests/support/browser.py``)
with the seed's 2017 demo data: the charts render with one bar or point per
figure, the CSV downloads parse, no CSP violation, and the page fits a phone."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest_asyncio
import redis.asyncio as aioredis
from playwright.async_api import Browser, Page, expect

from crm_sync.call_store import PostgresCallStore
from crm_sync.db import create_pool
from crm_sync.leadership.config import load_leadership_config
from crm_sync.leadership.demo import load_seed
from crm_sync.migrate import migrate
from hotline.core.records import CallOutcome
from hotline.web.app import build_web_app
from tests.support.browser import chromium, new_page, serve
from tests.support.databases import MakeDatabase
from tests.support.paths import CONFIG_DIR
from tests.support.web import SESSION_KEY, User, add_user, make_call

SCREENSHOTS = Path("/tmp")
QUERY = "from=2017-01-01&to=2017-12-31&year=2017"
#: A call every 7 hours through 2017: every month, day chart day and hour has some.
CALL_STEP = timedelta(hours=7)


@pytest_asyncio.fixture(scope="module")
async def pool(make_database: MakeDatabase) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(await make_database("dashboard_browser"))
    await migrate(pool)
    store = PostgresCallStore(pool)
    at = datetime(2017, 1, 1, tzinfo=UTC)
    tag = uuid.uuid4().hex[:8]
    i = 0
    while at.year == 2017:
        outcome = CallOutcome.ABANDONED if i % 5 == 0 else CallOutcome.ANSWERED
        await store.save_call(make_call(tag, at, outcome=outcome))
        at += CALL_STEP
        i += 1
    # the calls are there before the first roll-up, which load_seed makes
    await load_seed(pool, CONFIG_DIR, load_leadership_config(CONFIG_DIR))
    yield pool
    await pool.close()


@pytest_asyncio.fixture
async def base_url(pool: asyncpg.Pool, redis_client: aioredis.Redis) -> AsyncIterator[str]:
    async with serve(build_web_app(pool, redis_client, SESSION_KEY)) as url:
        yield url


@pytest_asyncio.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as b:
        yield b


async def sign_in(page: Page, base_url: str, user: User) -> None:
    await page.goto(f"{base_url}/dashboard")
    await expect(page).to_have_url(f"{base_url}/login")  # anonymous: to the sign-in form
    await page.fill("#login", user.login)
    await page.fill("#password", user.password)
    await page.click("button[type=submit]")
    await page.wait_for_url(lambda url: "/login" not in url)


async def marks(page: Page, chart: str, kind: str) -> int:
    return await page.locator(f"svg#chart-{chart} .{kind}").count()


async def test_dashboard_charts_and_csv_on_a_desktop(
    base_url: str, browser: Browser, pool: asyncpg.Pool
) -> None:
    user = await add_user(pool, "leadership", "Міський голова")
    problems: list[str] = []
    page = await new_page(browser, problems, viewport={"width": 1600, "height": 1000},
                          accept_downloads=True)
    await sign_in(page, base_url, user)
    await page.goto(f"{base_url}/dashboard?{QUERY}")
    await expect(page.locator("header")).to_contain_text("Міський голова")
    assert await marks(page, "calls_by_month", "bar") == 12
    assert await marks(page, "calls_by_day", "point") == 62
    assert await marks(page, "calls_by_hour", "bar") == 24
    assert await marks(page, "appeals_by_channel", "bar") == 5
    assert await marks(page, "top_spheres", "bar") == 10
    assert await marks(page, "district_rating", "bar") == 10
    # drawn, not just present: the charts have a size and their bars a height
    for chart in ("calls_by_month", "top_spheres", "district_rating"):
        box = await page.locator(f"svg#chart-{chart}").bounding_box()
        assert box is not None and box["width"] > 300 and box["height"] > 50
    heights = await page.locator("svg#chart-calls_by_month rect.bar").evaluate_all(
        "bars => bars.map(b => b.getBBox().height)")
    assert all(h > 0 for h in heights)
    first_sphere = page.locator("svg#chart-top_spheres rect.bar").first
    await expect(first_sphere.locator("title")).to_have_text("Housing and utilities: 83.4 %")
    await expect(page.locator("#table-issues_by_district tbody tr").last).to_contain_text(
        "169\u202f449")
    await expect(page.locator("#table-district_rating tbody tr").first).to_contain_text(
        "Святошинська")
    # the matrix's cells are coloured by the stylesheet (no inline style)
    hottest = page.locator("#table-issues_by_district td.h9")
    assert await hottest.count() >= 1
    colour = await hottest.first.evaluate("td => getComputedStyle(td).backgroundColor")
    assert colour == "rgb(191, 219, 254)"

    async with page.expect_download() as info:
        await page.click("#tile-top_spheres a.csv")
    download = await info.value
    text = await asyncio.to_thread(Path(await download.path()).read_text, "utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert download.suggested_filename == "top_spheres.csv"
    assert [r["sphere"] for r in rows][:2] == ["Housing and utilities",
                                               "Transport and infrastructure"]
    assert rows[0]["share_percent"] == "83.4"

    async with page.expect_download() as info:
        await page.click("#tile-housing_rating a.csv")
    housing_path = Path(await (await info.value).path())
    housing = list(csv.DictReader(io.StringIO(
        await asyncio.to_thread(housing_path.read_text, "utf-8"))))
    assert len(housing) == 21 and housing[0]["place"] == "1"

    await page.screenshot(path=str(SCREENSHOTS / "dashboard-desktop.png"), full_page=True)
    # the period form keeps the page's parameters and reloads it with new ones
    await page.select_option("select[name=district]", "obolonskyi")
    await page.click("nav button")
    await expect(page).to_have_url(f"{base_url}/dashboard?from=2017-01-01&to=2017-12-31"
                                   "&district=obolonskyi&year=2017")
    await expect(page.locator("#table-issues_by_district thead th")).to_have_count(3)
    assert problems == []


async def test_dashboard_fits_a_phone(base_url: str, browser: Browser, pool: asyncpg.Pool
                                      ) -> None:
    user = await add_user(pool, "supervisor")
    problems: list[str] = []
    page = await new_page(browser, problems, viewport={"width": 390, "height": 844},
                          is_mobile=True, has_touch=True, device_scale_factor=2)
    await sign_in(page, base_url, user)
    await page.goto(f"{base_url}/dashboard?{QUERY}")
    assert await marks(page, "calls_by_month", "bar") == 12
    overflow = await page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, "the page scrolls sideways on a phone"
    for chart in ("calls_by_month", "top_spheres"):
        box = await page.locator(f"svg#chart-{chart}").bounding_box()
        assert box is not None and 200 < box["width"] <= 390
    # tiles stack in one column
    tiles = page.locator("section.tile")
    first, second = await tiles.nth(0).bounding_box(), await tiles.nth(1).bounding_box()
    assert first is not None and second is not None and second["y"] > first["y"]
    assert abs(first["x"] - second["x"]) < 1
    await page.screenshot(path=str(SCREENSHOTS / "dashboard-phone.png"), full_page=True)
    assert problems == []


async def test_operator_is_refused_in_the_browser(base_url: str, browser: Browser,
                                                  pool: asyncpg.Pool) -> None:
    user = await add_user(pool, "operator")
    page = await new_page(browser)
    await sign_in(page, base_url, user)
    response = await page.goto(f"{base_url}/dashboard")
    assert response is not None and response.status == 403
