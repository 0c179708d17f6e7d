"""The leadership dashboard on a real PostgreSQL: the seed's 2017 figures loaded as
demo data come back as the seed's tables and ratings through the roll-ups and the
rating code; today's appeals and calls are included live; the settled time is
kept by the trigger; HTTP: roles, a clear 400 for bad parameters, CSV that parses.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import asyncpg
import pytest_asyncio
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from crm_sync.call_store import PostgresCallStore
from crm_sync.db import create_pool
from crm_sync.leadership import queries
from crm_sync.leadership.config import load_leadership_config
from crm_sync.leadership.demo import load_seed
from crm_sync.leadership.history import generate_appeals
from crm_sync.leadership.periods import Period, city_today
from crm_sync.leadership.queries import Cell
from crm_sync.leadership.ratings import read_seed_rating
from crm_sync.leadership.rollups import refresh_rollups, watermarks
from crm_sync.migrate import migrate
from crm_sync.people import upsert_operator
from hotline.core.records import CallOutcome
from hotline.web.app import build_web_app
from tests.support.cli import run_hotline
from tests.support.databases import MakeDatabase
from tests.support.paths import CONFIG_DIR
from tests.support.web import PASSWORD, SESSION_KEY, User, add_user, make_call, sign_in_form

Client = TestClient[web.Request, web.Application]
CONFIG = load_leadership_config(CONFIG_DIR)
YEAR_2017 = Period(date(2017, 1, 1), date(2017, 12, 31))


def num(cell: Cell) -> int:
    assert isinstance(cell, int), cell
    return cell


@pytest_asyncio.fixture(scope="module")
async def pool(make_database: MakeDatabase) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(await make_database("dashboard"))
    await migrate(pool)
    await load_seed(pool, CONFIG_DIR, CONFIG)
    yield pool
    await pool.close()


@pytest_asyncio.fixture
async def client(pool: asyncpg.Pool, redis_client: aioredis.Redis) -> AsyncIterator[Client]:
    async with TestClient(TestServer(build_web_app(pool, redis_client, SESSION_KEY))) as c:
        yield c


async def test_district_rating_of_2017_is_the_seeds(pool: asyncpg.Pool) -> None:
    ratings = await queries.district_ratings(pool, CONFIG, 2017)
    seed = {r.admin_name_uk: r for r in read_seed_rating(CONFIG_DIR)}
    assert len(ratings) == 10
    for rating in ratings:
        row = seed[rating.name.split(" ")[0]]
        values = {v.code: v for v in rating.indicators}
        # K2 from the loaded counts through the rating code: exactly the published one
        assert values["K2"].source == "counts" and values["K2"].percent == row.indicators["K2"]
        assert values["K1"].percent is not None
        assert abs(values["K1"].percent - row.indicators["K1"]) <= Decimal("0.01")
        assert rating.rating is not None and abs(rating.rating - row.rating) <= Decimal("0.01")
        assert rating.published_rating == row.rating
    # the places are the seed's order
    assert [r.published_rating for r in ratings] == sorted(
        (r.rating for r in seed.values()), reverse=True)
    assert [r.place for r in ratings] == list(range(1, 11))


async def test_loading_again_replaces_the_demo_data(pool: asyncpg.Pool) -> None:
    before = await pool.fetchval("SELECT count(*) FROM appeals")
    await load_seed(pool, CONFIG_DIR, CONFIG)
    assert await pool.fetchval("SELECT count(*) FROM appeals") == before
    assert await pool.fetchval(
        "SELECT count(*) FROM leadership_figures WHERE year = 2017") == 10 * 6 + 21 * 4


async def test_2017_tables_are_the_seeds(pool: asyncpg.Pool) -> None:
    marks = await watermarks(pool)
    spheres = await queries.top_spheres(pool, YEAR_2017, marks, None)
    published = {}
    with (CONFIG_DIR / "seed/spheres_2017.csv").open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            published[row["sphere_en"]] = Decimal(row["share_percent"])
    assert {r[0]: r[3] for r in spheres.rows} == published
    matrix = await queries.issue_matrix(pool, YEAR_2017, marks, None)
    with (CONFIG_DIR / "seed/top_issues_by_district_2017.csv").open(encoding="utf-8") as f:
        seed_rows = list(csv.DictReader(f))
    assert matrix.columns[1:-1] == [c for c in seed_rows[0] if c not in
                                    ("issue_uk", "issue_en", "total")]
    shown = {r[0]: r[1:] for r in matrix.rows}
    for row in seed_rows:
        assert shown[row["issue_en"]] == [int(v) for k, v in row.items()
                                          if k not in ("issue_uk", "issue_en")]
    assert shown["Total"][-1] == 169_449
    channels = await queries.appeals_by_channel(pool, YEAR_2017, marks, None)
    assert sum(int(r[1] or 0) for r in channels.rows) == 250_000


async def test_housing_rating_of_2017_has_the_seeds_offices(pool: asyncpg.Pool) -> None:
    rows = await queries.housing_ratings(pool, CONFIG, 2017)
    assert len(rows) == 21
    by_name = {r.name: r for r in rows}
    office = by_name["Деснянський ЖЕД - 301"]
    assert office.complaints == {"staircase_cleaning": 61, "yard_cleaning": 12,
                                 "common_lighting": 25, "rude_behaviour": 5}
    assert office.place == 21  # the most complaints in every component
    table = await queries.housing_table(pool, CONFIG, rows, 2017)
    assert "rude_behaviour_published_place" in table.columns
    assert table.rows[-1][-1] == 146  # 301's published overall place


async def test_a_period_still_open_includes_today(pool: asyncpg.Pool) -> None:
    await refresh_rollups(pool)
    today = city_today(datetime.now(UTC))
    period = Period(today - timedelta(days=40), today)
    marks = await watermarks(pool)
    assert marks.appeals == today  # everything before today is rolled up
    before = await queries.appeals_by_channel(pool, period, marks, None)
    category = await pool.fetchval("SELECT id FROM categories WHERE code = 'no_hot_water'")
    await pool.execute(
        "INSERT INTO appeals (channel, category_id, created_at) VALUES ('facebook', $1, now())",
        category)
    after = await queries.appeals_by_channel(pool, period, marks, None)
    count = {r[0]: num(r[1]) for r in after.rows}
    assert count["facebook"] == {r[0]: num(r[1]) for r in before.rows}.get("facebook", 0) + 1
    # a call today too (the call roll-up holds the hours before the current one)
    store = PostgresCallStore(pool)
    await store.save_call(make_call(uuid.uuid4().hex[:8], datetime.now(UTC),
                                    outcome=CallOutcome.ABANDONED))
    _, days, hours = await queries.call_dynamics(pool, period, marks)
    assert days.rows[-1][0] == today.isoformat()
    assert num(days.rows[-1][3]) >= 1  # abandoned today
    assert len(hours.rows) == 24


async def test_settled_time_follows_the_status(pool: asyncpg.Pool) -> None:
    category = await pool.fetchval("SELECT id FROM categories WHERE code = 'no_cold_water'")
    appeal = await pool.fetchval(
        "INSERT INTO appeals (channel, category_id, status) VALUES ('web', $1, 'in_progress') "
        "RETURNING id", category)
    settled = datetime(2026, 1, 5, 10, tzinfo=UTC)
    await pool.execute("UPDATE appeals SET status = 'done', status_changed_at = $2 WHERE id = $1",
                       appeal, settled)
    assert await pool.fetchval("SELECT settled_at FROM appeals WHERE id = $1", appeal) == settled
    await pool.execute("UPDATE appeals SET status = 'closed' WHERE id = $1", appeal)
    assert await pool.fetchval("SELECT settled_at FROM appeals WHERE id = $1", appeal) == settled
    await pool.execute("UPDATE appeals SET status = 'reopened' WHERE id = $1", appeal)
    assert await pool.fetchval("SELECT settled_at FROM appeals WHERE id = $1", appeal) is None


async def test_generated_history_is_rolled_up_and_counted(make_database: MakeDatabase) -> None:
    pool = await create_pool(await make_database("history"))
    try:
        await migrate(pool)
        seen: list[tuple[int, int]] = []
        written = await generate_appeals(pool, years=1, per_year=3_000,
                                         progress=lambda d, t: seen.append((d, t)))
        assert written == 3_000 == await pool.fetchval("SELECT count(*) FROM appeals")
        assert seen[-1] == (3_000, 3_000) and len(seen) >= 13
        today = city_today(datetime.now(UTC))
        marks = await watermarks(pool)
        period = Period(today.replace(year=today.year - 1, day=1), today)
        channels = await queries.appeals_by_channel(pool, period, marks, None)
        assert sum(num(r[1]) for r in channels.rows) == 3_000  # roll-ups + live = every appeal
        ratings = await queries.district_ratings(pool, CONFIG, today.year)
        assert all(r.rating is not None for r in ratings)  # K1, K2 from the appeals
        housing = await queries.housing_ratings(pool, CONFIG, today.year)
        assert len(housing) == 100 and sum(r.total for r in housing) > 0
        open_overdue = await pool.fetchval(
            "SELECT count(*) FROM appeals WHERE status IN ('routed', 'accepted', 'in_progress') "
            "AND due_at < now()")
        overdue = await queries.overdue_by_executor(pool, period, None)
        assert sum(num(r[2]) for r in overdue.rows) == open_overdue
    finally:
        await pool.close()


# HTTP -----------------------------------------------------------------------

async def test_anonymous_is_sent_to_sign_in(client: Client) -> None:
    page = await client.get("/dashboard", allow_redirects=False)
    assert page.status == 302 and page.headers["Location"] == "/login"
    api = await client.get("/api/dashboard")
    assert api.status == 401


async def test_an_operator_is_refused(client: Client, pool: asyncpg.Pool) -> None:
    await sign_in_form(client, await add_user(pool, "operator"))
    assert (await client.get("/dashboard")).status == 403
    assert (await client.get("/dashboard/csv/top_spheres.csv")).status == 403
    assert (await client.get("/api/dashboard")).status == 403


async def test_an_executor_is_refused(client: Client, pool: asyncpg.Pool) -> None:
    login = f"executor_{uuid.uuid4().hex[:8]}"
    await upsert_operator(pool, login, "Виконавець", "executor", PASSWORD,
                          executor="rda_obolonskyi")
    await sign_in_form(client, User(login, PASSWORD, "Виконавець", "executor"))
    assert (await client.get("/dashboard", allow_redirects=False)).status == 403
    assert (await client.get("/dashboard/csv/district_rating.csv")).status == 403
    assert (await client.get("/api/dashboard")).status == 403


async def test_leadership_sees_the_page_and_csv_parses(client: Client, pool: asyncpg.Pool
                                                       ) -> None:
    await sign_in_form(client, await add_user(pool, "leadership", "Міський голова"))
    page = await client.get("/dashboard", params={"from": "2017-01-01", "to": "2017-12-31",
                                                  "year": "2017"})
    assert page.status == 200
    html = await page.text()
    assert "<script" not in html
    # a chart per tile with figures; 2017 has no open appeals: no overdue chart
    assert html.count('id="chart-') == 6
    assert 'id="chart-overdue_by_executor"' not in html and "no data" in html
    assert "Святошинська" in html and "88.53" in html
    response = await client.get("/dashboard/csv/district_rating.csv", params={"year": "2017"})
    assert response.status == 200 and response.content_type == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(await response.text())))
    assert len(rows) == 10
    first = rows[0]
    assert first["administration"] == "Святошинська" and first["published_rating_percent"]
    assert first["K2_percent"] == "99.16" and first["K3_percent"] == "89.32*"
    matrix = await client.get("/dashboard/csv/issues_by_district.csv",
                              params={"from": "2017-01-01", "to": "2017-12-31"})
    table = list(csv.reader(io.StringIO(await matrix.text())))
    assert table[0][0] == "issue" and table[-1][-1] == "169449"


async def test_supervisor_gets_the_json(client: Client, pool: asyncpg.Pool) -> None:
    await sign_in_form(client, await add_user(pool, "supervisor"))
    data = await (await client.get("/api/dashboard", params={
        "from": "2017-01-01", "to": "2017-12-31", "district": "obolonskyi"})).json()
    names = [t["name"] for t in data["tables"]]
    assert "issues_by_district" in names and data["district"] == "obolonskyi"
    matrix = next(t for t in data["tables"] if t["name"] == "issues_by_district")
    assert matrix["columns"] == ["issue", "Obolonskyi", "total"]
    assert matrix["rows"][-1][-1] == 23_320  # the seed's Obolonskyi total


async def test_bad_parameters_are_a_clear_400(client: Client, pool: asyncpg.Pool) -> None:
    await sign_in_form(client, await add_user(pool, "admin"))
    cases = [
        ({"from": "2026-05-01", "to": "2026-04-01"}, "before it starts"),
        ({"from": "2006-01-01", "to": "2026-01-01"}, "at most"),
        ({"district": "atlantis"}, "unknown district"),
        ({"from": "not-a-date"}, "YYYY-MM-DD"),
        ({"year": "1900"}, "year"),
    ]
    for params, words in cases:
        api = await client.get("/api/dashboard", params=params)
        assert api.status == 400, params
        body = await api.json()
        assert body["error"] == "invalid_input" and words in body["message"]
        page = await client.get("/dashboard", params=params)
        assert page.status == 400 and words in await page.text()
        download = await client.get("/dashboard/csv/top_spheres.csv", params=params)
        assert download.status == 400
    assert (await client.get("/dashboard/csv/no_such_table.csv")).status == 404


async def test_the_demo_data_command(make_database: MakeDatabase) -> None:
    url = await make_database("demo_data_cli")
    code, out, err = await run_hotline(
        "demo-data", "load-seed",
        env={"DATABASE_URL": url, "REDIS_URL": "redis://127.0.0.1:1/0"}, timeout=900)
    assert code == 0, err
    assert "seed 2017 loaded: appeals 250000" in out
    conn = await asyncpg.connect(url)
    try:
        assert await conn.fetchval(
            "SELECT count(*) FROM leadership_published WHERE key = 'rating'") == 10
        assert await conn.fetchval("SELECT count(*) FROM appeals") == 250_000
    finally:
        await conn.close()
