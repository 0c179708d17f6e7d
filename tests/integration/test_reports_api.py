"""The reports over HTTP (real PostgreSQL and Redis): JSON and CSV that parse
and agree, roles, and a clear 4xx for every bad parameter."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import date

import asyncpg
import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from crm_sync.db import create_pool
from crm_sync.migrate import migrate
from hotline.web.app import build_web_app
from tests.support.databases import MakeDatabase
from tests.support.stats import write_sample_days
from tests.support.web import SESSION_KEY, add_user, sign_in_form

Client = TestClient[web.Request, web.Application]
FIRST = date(2026, 3, 2)
PERIOD = {"since": "2026-03-02", "until": "2026-03-04"}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pool(make_database: MakeDatabase) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(await make_database("reports_api"))
    await migrate(pool)
    await write_sample_days(pool, FIRST)
    yield pool
    await pool.close()


@pytest_asyncio.fixture
async def client(pool: asyncpg.Pool, redis_client: aioredis.Redis) -> AsyncIterator[Client]:
    async with TestClient(TestServer(build_web_app(pool, redis_client, SESSION_KEY))) as c:
        await sign_in_form(c, await add_user(pool, "supervisor"))
        yield c


async def test_queue_report_json_and_csv_agree(client: Client) -> None:
    response = await client.get("/api/reports/queues", params={**PERIOD, "granularity": "day"})
    assert response.status == 200
    report = await response.json()
    housing = next(q for q in report["queues"] if q["queue"] == "housing")
    # days of 6, 7 and 8 calls; i even → housing: 3 + 4 + 4
    assert housing["offered"] == 11
    assert [p["label"] for p in report["series"]["housing"]] == [
        "2026-03-02", "2026-03-03", "2026-03-04"]

    csv_response = await client.get("/api/reports/queues", params={
        **PERIOD, "granularity": "day", "format": "csv", "table": "totals"})
    assert csv_response.content_type == "text/csv"
    assert "attachment" in csv_response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(await csv_response.text())))
    by_queue = {r["Queue"]: r for r in rows}
    assert set(by_queue) == {"housing", "transport", "(all)"}
    assert by_queue["housing"]["Offered"] == "11"
    assert by_queue["housing"]["SL, %"] == str(housing["service_level"])
    series = await client.get("/api/reports/queues", params={
        **PERIOD, "format": "csv", "table": "series"})
    assert len(list(csv.DictReader(io.StringIO(await series.text())))) == 6  # 2 queues × 3 days


async def test_operator_ivr_and_staffing_reports(client: Client) -> None:
    ops = await (await client.get("/api/reports/operators", params=PERIOD)).json()
    first = next(o for o in ops["operators"] if o["operator"] == "Local/201@ops/n")
    assert first["pauses"] == {"lunch": 3 * 1800}
    assert first["calls"] > 0 and first["occupancy"] is not None
    text = await (await client.get("/api/reports/operators",
                                   params={**PERIOD, "format": "csv"})).text()
    header = next(csv.reader(io.StringIO(text)))
    assert "Paused: lunch, s" in header and "Occupancy, %" in header

    ivr = await (await client.get("/api/reports/ivr", params=PERIOD)).json()
    assert ivr["callers"] == 6 + 7 + 8
    staffing = await (await client.get("/api/reports/staffing", params={
        "since": "2026-03-04", "until": "2026-03-04", "queue": "housing"})).json()
    assert len(staffing["queues"]["housing"]) == 48


@pytest.mark.parametrize(("path", "params", "status", "field"), [
    ("queues", {"since": "2026-03-04", "until": "2026-03-02"}, 400, "until"),  # reversed
    ("queues", {"since": "2006-01-01", "until": "2026-01-01"}, 400, "since"),  # 20 years
    ("queues", {"since": "2 March"}, 400, "since"),
    ("queues", {**PERIOD, "granularity": "fortnight"}, 400, "granularity"),
    ("queues", {**PERIOD, "queue": "no_such_queue"}, 404, "queue"),
    ("queues", {**PERIOD, "format": "xlsx"}, 400, "format"),
    ("queues", {**PERIOD, "format": "csv", "table": "nope"}, 400, "table"),
    ("operators", {"since": "2025-10-01", "until": "2026-03-04"}, 400, "since"),  # > 92 days
    ("staffing", {"since": "2026-02-01", "until": "2026-03-04"}, 400, "since"),  # > a week
    ("nonsense", PERIOD, 400, "view"),
])
async def test_bad_parameters_get_a_clear_4xx(
    client: Client, path: str, params: dict[str, str], status: int, field: str
) -> None:
    response = await client.get(f"/api/reports/{path}", params=params)
    assert response.status == status, await response.text()
    body = await response.json()
    assert body["details"]["field"] == field and body["message"]


async def test_reports_are_for_supervisors_admins_and_leadership(
    pool: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    async with TestClient(TestServer(build_web_app(pool, redis_client, SESSION_KEY))) as c:
        assert (await c.get("/api/reports/queues")).status == 401
        await sign_in_form(c, await add_user(pool, "operator"))
        assert (await c.get("/api/reports/queues")).status == 403
        assert (await c.get("/reports")).status == 403
    async with TestClient(TestServer(build_web_app(pool, redis_client, SESSION_KEY))) as c:
        await sign_in_form(c, await add_user(pool, "leadership"))
        page = await c.get("/reports", params={**PERIOD, "view": "queues"})
        assert page.status == 200 and "<svg" in await page.text()

