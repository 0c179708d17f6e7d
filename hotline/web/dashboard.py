"""The leadership dashboard (the mayor's view): call dynamics, appeals by channel,
top-10 spheres, the top-10 issues × district matrix, overdue appeals by
executor, the district administrations' and the housing offices' ratings.

One page rendered on the server: charts are SVG (:mod:`hotline.web.charts`), no
script at all, so it reads the same on a wall screen and a phone. Every table
is also a CSV download and the whole lot is JSON (``/api/dashboard``).
Parameters: ``from``/``to`` (Kyiv days, default this year to today),
``district`` (a code), ``year`` (the ratings'); a bad one is a 400.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from html import escape
from typing import Any
from urllib.parse import urlencode

import asyncpg
from aiohttp import web

from crm_sync.leadership import queries
from crm_sync.leadership.config import CHECKOUT_CONFIG_DIR, LeadershipConfig, load_leadership_config
from crm_sync.leadership.periods import Period, city_today, parse_period, parse_year
from crm_sync.leadership.queries import Table
from crm_sync.leadership.rollups import Watermarks, watermarks
from hotline.core.errors import NotFound
from hotline.core.logs import get_logger
from hotline.core.people import WATCHERS
from hotline.web import charts
from hotline.web.common import POOL, Route, html_response, json_response, principal, template
from hotline.web.guard import csrf_token

#: The configuration when the composition root did not set one (tests, tools).
LEADERSHIP_CONFIG = web.AppKey("leadership_config", LeadershipConfig)
#: Who sees the dashboard: leadership, and the supervisors and admins who run the centre.
DASHBOARD_ROLES = WATCHERS

log = get_logger("hotline.web.dashboard")


@cache
def _shipped_config() -> LeadershipConfig:
    return load_leadership_config(CHECKOUT_CONFIG_DIR)


def leadership_config(app: web.Application) -> LeadershipConfig:
    return app.get(LEADERSHIP_CONFIG) or _shipped_config()


class Query:
    """The page's parameters, checked."""

    def __init__(self, request: web.Request, config: LeadershipConfig) -> None:
        today = city_today(datetime.now(UTC))
        q = request.query
        self.period: Period = parse_period(q.get("from"), q.get("to"), today=today,
                                           max_days=config.max_period_days)
        self.year = parse_year(q.get("year"), today=today)
        self.district_code = q.get("district") or ""
        self.district: int | None = None

    async def resolve(self, pool: asyncpg.Pool) -> None:
        self.district = await queries.district_id(pool, self.district_code)

    def params(self) -> dict[str, str]:
        out = {"from": self.period.first.isoformat(), "to": self.period.last.isoformat(),
               "year": str(self.year)}
        if self.district_code:
            out["district"] = self.district_code
        return out


Tile = Callable[[asyncpg.Pool, LeadershipConfig, Query, Watermarks], Awaitable[list[Table]]]


async def _calls(pool: asyncpg.Pool, _: LeadershipConfig, q: Query, m: Watermarks
                 ) -> list[Table]:
    return list(await queries.call_dynamics(pool, q.period, m))


async def _channels(pool: asyncpg.Pool, _: LeadershipConfig, q: Query, m: Watermarks
                    ) -> list[Table]:
    return [await queries.appeals_by_channel(pool, q.period, m, q.district)]


async def _spheres(pool: asyncpg.Pool, _: LeadershipConfig, q: Query, m: Watermarks
                   ) -> list[Table]:
    return [await queries.top_spheres(pool, q.period, m, q.district)]


async def _matrix(pool: asyncpg.Pool, _: LeadershipConfig, q: Query, m: Watermarks
                  ) -> list[Table]:
    return [await queries.issue_matrix(pool, q.period, m, q.district)]


async def _overdue(pool: asyncpg.Pool, _: LeadershipConfig, q: Query, m: Watermarks
                   ) -> list[Table]:
    return [await queries.overdue_by_executor(pool, q.period, q.district)]


async def _districts(pool: asyncpg.Pool, c: LeadershipConfig, q: Query, m: Watermarks
                     ) -> list[Table]:
    ratings = await queries.district_ratings(pool, c, q.year)
    return [queries.district_table(c, ratings, q.year)]


async def _housing(pool: asyncpg.Pool, c: LeadershipConfig, q: Query, m: Watermarks
                   ) -> list[Table]:
    rows = await queries.housing_ratings(pool, c, q.year)
    return [await queries.housing_table(pool, c, rows, q.year)]


#: Tiles in page order; the tables each makes, by name (the CSV's).
TILES: list[tuple[Tile, tuple[str, ...]]] = [
    (_calls, ("calls_by_month", "calls_by_day", "calls_by_hour")),
    (_channels, ("appeals_by_channel",)),
    (_spheres, ("top_spheres",)),
    (_matrix, ("issues_by_district",)),
    (_overdue, ("overdue_by_executor",)),
    (_districts, ("district_rating",)),
    (_housing, ("housing_rating",)),
]
TABLE_NAMES = tuple(name for _, names in TILES for name in names)


async def _tables(request: web.Request, only: str | None = None) -> tuple[Query, list[Table]]:
    config = leadership_config(request.app)
    query = Query(request, config)
    pool = request.app[POOL]
    await query.resolve(pool)
    marks = await watermarks(pool)
    tiles = [tile for tile, names in TILES if only is None or only in names]
    results = await asyncio.gather(*(tile(pool, config, query, marks) for tile in tiles))
    tables = [t for result in results for t in result if only is None or t.name == only]
    return query, tables


# Rendering ------------------------------------------------------------------

def _cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, int):
        return f"{value:,}".replace(",", "\u202f")
    return str(value)


def _number(value: Any) -> float:
    if isinstance(value, int | float | Decimal):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.rstrip("*"))
        except ValueError:
            return 0.0
    return 0.0


#: Tables whose tile spans the page (for the table: its chart keeps a readable size).
WIDE = ("calls_by_month", "issues_by_district", "district_rating", "housing_rating")


def _chart(table: Table) -> str:
    rows = table.rows
    if not rows:
        return ""
    if table.name == "calls_by_month":
        return charts.bar_chart(table.name, table.title, [str(r[0]) for r in rows],
                                [_number(r[1]) for r in rows],
                                label_every=max(1, -(-len(rows) // 6)))
    if table.name == "calls_by_day":
        return charts.line_chart(table.name, table.title, [str(r[0]) for r in rows],
                                 [_number(r[1]) for r in rows],
                                 label_every=max(1, len(rows) // 8))
    if table.name == "calls_by_hour":
        return charts.bar_chart(table.name, table.title, [str(r[0]) for r in rows],
                                [_number(r[1]) for r in rows], label_every=3)
    if table.name == "appeals_by_channel":
        return charts.hbar_chart(table.name, table.title, [str(r[0]) for r in rows],
                                 [_number(r[1]) for r in rows])
    if table.name == "top_spheres":
        return charts.hbar_chart(table.name, table.title, [str(r[0]) for r in rows],
                                 [_number(r[3]) for r in rows], suffix=" %")
    if table.name == "overdue_by_executor":
        top = rows[:15]
        return charts.hbar_chart(table.name, table.title, [str(r[0]) for r in top],
                                 [_number(r[2]) for r in top])
    if table.name == "district_rating":
        rating = table.columns.index("rating_percent")
        return charts.hbar_chart(table.name, table.title, [str(r[1]) for r in rows],
                                 [_number(r[rating]) for r in rows], suffix=" %")
    return ""


def _heat_class(value: Any, peak: float) -> str:
    if not isinstance(value, int) or peak <= 0:
        return ""
    return f' class="h{min(9, int(10 * value / peak))}"'


def _html_table(table: Table) -> str:
    head = "".join(f"<th>{escape(c.replace('_', ' '))}</th>" for c in table.columns)
    heat = table.name == "issues_by_district"
    peak = max((v for r in table.rows[:-1] for v in r[1:-1] if isinstance(v, int)), default=0)
    body = []
    for i, row in enumerate(table.rows):
        inner = heat and i < len(table.rows) - 1  # the total row is not heat
        cells = "".join(
            f"<td{_heat_class(v, peak) if inner and 0 < j < len(row) - 1 else ''}>"
            f"{escape(_cell(v))}</td>" for j, v in enumerate(row))
        body.append(f"<tr>{cells}</tr>")
    if not body:
        body.append(f'<tr><td colspan="{len(table.columns)}" class="empty">no data</td></tr>')
    return (f'<div class="scroll"><table id="table-{escape(table.name)}"><thead><tr>{head}'
            f"</tr></thead><tbody>{''.join(body)}</tbody></table></div>")


def _section(table: Table, query: Query) -> str:
    csv_url = f"/dashboard/csv/{table.name}.csv?{urlencode(query.params())}"
    chart = _chart(table)
    wide = " wide" if table.name in WIDE else ""
    note = f'<p class="note">{escape(table.note)}</p>' if table.note else ""
    if chart:
        table_html = f"<details><summary>Table</summary>{_html_table(table)}</details>"
    else:
        table_html = _html_table(table)
    return (f'<section class="tile{wide}" id="tile-{escape(table.name)}"><h2>{escape(table.title)}'
            f'</h2>{chart}{table_html}{note}<a class="csv" download href="{escape(csv_url)}">'
            "CSV</a></section>")


async def _district_options(pool: asyncpg.Pool, selected: str) -> str:
    rows = await pool.fetch("SELECT code, name_en FROM districts ORDER BY name_uk")
    options = ['<option value="">All districts</option>']
    for r in rows:
        mark = " selected" if r["code"] == selected else ""
        options.append(f'<option value="{escape(r["code"])}"{mark}>{escape(r["name_en"])}'
                       "</option>")
    return "".join(options)


async def dashboard_page(request: web.Request) -> web.Response:
    query, tables = await _tables(request)
    pool = request.app[POOL]
    controls = (
        '<form method="get" action="/dashboard" class="controls">'
        f'<label>From <input type="date" name="from" value="{query.period.first}"></label>'
        f'<label>To <input type="date" name="to" value="{query.period.last}"></label>'
        f'<label>District <select name="district">'
        f"{await _district_options(pool, query.district_code)}</select></label>"
        f'<label>Ratings year <input type="number" name="year" value="{query.year}" '
        'min="2000" max="2100"></label><button>Show</button></form>')
    page = template("dashboard.html")
    values = {
        "name": escape(principal(request).display_name),
        "csrf": escape(csrf_token(request)),
        "controls": controls,
        "tiles": "".join(_section(t, query) for t in tables),
    }
    for key, value in values.items():
        page = page.replace("{{" + key + "}}", value)
    return html_response(page, headers={"Cache-Control": "no-store"})


def _csv_value(value: Any) -> str:
    return "" if value is None else str(value)


async def dashboard_csv(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in TABLE_NAMES:
        raise NotFound(f"no table {name[:40]!r}", details={"tables": list(TABLE_NAMES)})
    _, tables = await _tables(request, only=name)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(tables[0].columns)
    for row in tables[0].rows:
        writer.writerow([_csv_value(v) for v in row])
    return web.Response(
        text=out.getvalue(), content_type="text/csv", charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"',
                 "Cache-Control": "no-store"})


async def dashboard_api(request: web.Request) -> web.Response:
    query, tables = await _tables(request)
    return json_response({
        "period": {"from": query.period.first.isoformat(), "to": query.period.last.isoformat()},
        "year": query.year, "district": query.district_code or None,
        "tables": [{"name": t.name, "title": t.title, "columns": t.columns, "rows": t.rows,
                    "note": t.note} for t in tables],
    })


_PARAMS = [
    {"name": "from", "in": "query", "schema": {"type": "string", "format": "date"}},
    {"name": "to", "in": "query", "schema": {"type": "string", "format": "date"}},
    {"name": "district", "in": "query", "schema": {"type": "string"}},
    {"name": "year", "in": "query", "schema": {"type": "integer"}},
]

_SESSION: list[dict[str, list[str]]] = [{"session": []}]
_ERRORS = {"400": {"description": "a bad parameter (dates reversed, an unknown district, a "
                                  "period over the maximum)"},
           "401": {"description": "not signed in (API) / redirect to /login (pages)"},
           "403": {"description": "not allowed for this role"}}

#: This module's part of the OpenAPI document (:mod:`hotline.web.openapi`).
OPENAPI_PATHS: dict[str, Any] = {
    "/dashboard": {"get": {
        "summary": "the leadership dashboard (SVG charts, tables)", "security": _SESSION,
        "parameters": _PARAMS,
        "responses": {"200": {"description": "page", "content": {"text/html": {}}}, **_ERRORS}}},
    "/dashboard/csv/{name}.csv": {"get": {
        "summary": "one of the dashboard's tables as CSV", "security": _SESSION,
        "parameters": [{"name": "name", "in": "path", "required": True,
                        "schema": {"type": "string", "enum": list(TABLE_NAMES)}}, *_PARAMS],
        "responses": {"200": {"description": "CSV, a header row first",
                              "content": {"text/csv": {}}},
                      "404": {"description": "no such table"}, **_ERRORS}}},
    "/api/dashboard": {"get": {
        "summary": "the leadership dashboard's tables (calls, appeals, ratings) for a period",
        "security": _SESSION, "parameters": _PARAMS,
        "responses": {"200": {"description": "the tables", "content": {"application/json": {}}},
                      **_ERRORS}}},
}

ROUTES = [
    Route("GET", "/dashboard", dashboard_page, DASHBOARD_ROLES),
    Route("GET", "/dashboard/csv/{name}.csv", dashboard_csv, DASHBOARD_ROLES),
    Route("GET", "/api/dashboard", dashboard_api, DASHBOARD_ROLES),
]
