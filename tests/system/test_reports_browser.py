"""The reports page in a real headless Chromium: charts drawn (SVG with a bar or
a point per period), tables, CSV downloads that parse and match the tables, and
a clear page for a bad period."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import asyncpg
import pytest_asyncio
import redis.asyncio as aioredis
from playwright.async_api import Page, expect

from crm_sync.db import create_pool
from crm_sync.migrate import migrate
from hotline.web.app import build_web_app
from tests.support.browser import chromium, new_page, serve
from tests.support.databases import MakeDatabase
from tests.support.stats import write_sample_days
from tests.support.web import SESSION_KEY, add_user

SCREENSHOT = Path("/tmp/reports.png")
FIRST = date(2026, 3, 2)
PERIOD = "since=2026-03-02&until=2026-03-04"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pool(make_database: MakeDatabase) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(await make_database("reports_browser"))
    await migrate(pool)
    await write_sample_days(pool, FIRST)
    yield pool
    await pool.close()


@pytest_asyncio.fixture(loop_scope="session")
async def signed_in(pool: asyncpg.Pool, redis_client: aioredis.Redis
                    ) -> AsyncIterator[tuple[Page, str]]:
    supervisor = await add_user(pool, "supervisor", "Черговий супервізор")
    async with serve(build_web_app(pool, redis_client, SESSION_KEY)) as url, \
            chromium() as browser:
        problems: list[str] = []
        page = await new_page(browser, problems, viewport={"width": 1300, "height": 900})
        await page.goto(f"{url}/login")
        await page.fill("#login", supervisor.login)
        await page.fill("#password", supervisor.password)
        await page.click("button[type=submit]")
        await expect(page.locator("header")).to_contain_text("Черговий супервізор")
        yield page, url
        assert [p for p in problems if "400" not in p] == []


async def table_rows(page: Page, name: str) -> list[list[str]]:
    rows: list[list[str]] = await page.locator(f'table[data-table="{name}"] tr').evaluate_all(
        "rows => rows.map(r => [...r.cells].map(c => c.textContent))")
    return rows


async def download_csv(page: Page, name: str) -> list[list[str]]:
    link = page.locator(f'table[data-table="{name}"]').locator(
        "xpath=preceding-sibling::div[@class='tools']/a")
    async with page.expect_download() as info:
        await link.click()
    download = await info.value
    text = await asyncio.to_thread(Path(await download.path()).read_text, "utf-8")
    return list(csv.reader(io.StringIO(text)))


async def test_queue_report_charts_tables_and_csv(signed_in: tuple[Page, str]) -> None:
    page, url = signed_in
    await page.goto(f"{url}/reports?view=queues&{PERIOD}&granularity=day")
    charts = page.locator("svg.chart")
    await expect(charts).to_have_count(2)
    # a bar per day; SL points: a point per queue and day with answered calls
    await expect(charts.nth(0).locator("rect.bar")).to_have_count(3)
    assert await charts.nth(0).locator("rect.bar").evaluate_all(
        "bars => bars.map(b => b.dataset.value)") == ["6", "7", "8"]
    assert await charts.nth(0).locator("rect.bar").evaluate_all(
        "bars => bars.every(b => b.getBBox().height > 0)")
    await expect(charts.nth(1).locator("circle.point")).to_have_count(6)

    shown = await table_rows(page, "totals")
    downloaded = await download_csv(page, "totals")
    assert downloaded[0] == shown[0]
    assert [[c if c else "—" for c in row] for row in downloaded[1:]] == shown[1:]
    assert [r[0] for r in downloaded[1:]] == ["housing", "transport", "(all)"]
    series = await download_csv(page, "series")
    assert len(series) == 1 + 2 * 3

    await page.goto(f"{url}/reports?view=queues&since=2026-03-03&until=2026-03-03"
                    "&granularity=hour&queue=housing")
    await expect(page.locator("svg.chart").nth(0).locator("rect.bar")).to_have_count(24)
    await page.screenshot(path=str(SCREENSHOT), full_page=True)


async def test_operator_ivr_and_staffing_pages(signed_in: tuple[Page, str]) -> None:
    page, url = signed_in
    await page.goto(f"{url}/reports?view=operators&{PERIOD}")
    await expect(page.locator("svg.chart rect.bar")).to_have_count(2)
    rows = await download_csv(page, "operators")
    assert "Paused: lunch, s" in rows[0] and len(rows) == 3

    await page.click("nav >> text=IVR path")
    await expect(page.locator("svg.chart rect.bar")).to_have_count(4)  # greeting…route
    ivr = await download_csv(page, "ivr")
    assert ["greeting", "-", "21", "100.0"] in ivr

    await page.goto(f"{url}/reports?view=staffing&since=2026-03-04&until=2026-03-04"
                    "&queue=housing")
    lines = page.locator("svg.chart")
    await expect(lines).to_have_count(1)
    # "logged in" has a point for each of the 48 half-hours
    await expect(lines.locator('circle.point[data-series="logged in"]')).to_have_count(48)
    assert len(await download_csv(page, "staffing")) == 1 + 48


async def test_a_bad_period_is_a_clear_page(signed_in: tuple[Page, str]) -> None:
    page, url = signed_in
    response = await page.goto(f"{url}/reports?view=queues&since=2026-03-04&until=2026-03-01")
    assert response is not None and response.status == 400
    await expect(page.locator("body")).to_contain_text("until must be after since")
    response = await page.goto(f"{url}/reports?view=queues&since=2006-01-01&until=2026-01-01")
    assert response is not None and response.status == 400
    await expect(page.locator("body")).to_contain_text("longer than")
