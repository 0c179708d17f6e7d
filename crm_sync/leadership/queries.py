"""The dashboard's tiles: each one query over the roll-ups before their watermark
and the source table after it (:mod:`crm_sync.leadership.rollups`), so a
period still open includes today. Every tile returns a :class:`Table`: what
the page shows, charts and offers as CSV."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg

from crm_sync.leadership.config import MEASURES, LeadershipConfig
from crm_sync.leadership.periods import (
    Period,
    city_midnight,
    split_period,
)
from crm_sync.leadership.ratings import (
    DistrictRating,
    HousingRow,
    district_rating,
    housing_rating,
    place_districts,
)
from crm_sync.leadership.rollups import EXECUTOR_COUNTS, Watermarks, watermarks
from hotline.core.errors import InvalidInput

Cell = str | int | float | Decimal | None
#: The day chart shows at most the last this many days of the period.
DAY_CHART_DAYS = 62
_EPOCH = date(1970, 1, 1)


@dataclass
class Table:
    name: str  # a slug: the CSV's file name, the element ids
    title: str
    columns: list[str]
    rows: list[list[Cell]] = field(default_factory=list)
    note: str = ""


async def district_id(pool: asyncpg.Pool, code: str | None) -> int | None:
    """The district of the ``district`` parameter; an unknown one is a 400."""
    if not code:
        return None
    found: int | None = await pool.fetchval("SELECT id FROM districts WHERE code = $1", code)
    if found is None:
        raise InvalidInput(f"unknown district {code[:40]!r}", details={"field": "district"})
    return found


# Calls ----------------------------------------------------------------------

_CALLS = """
WITH h AS (
    SELECT hour, offered, answered, abandoned FROM leadership_calls_hourly
     WHERE hour >= $1 AND hour < $2
    UNION ALL
    SELECT date_trunc('hour', started_at), count(*),
           count(*) FILTER (WHERE outcome = 'answered'),
           count(*) FILTER (WHERE outcome = 'abandoned')
      FROM calls WHERE started_at >= $3 AND started_at < $4
     GROUP BY 1
), k AS (
    SELECT hour AT TIME ZONE 'Europe/Kyiv' AS local, hour, offered, answered, abandoned FROM h
)
SELECT date_trunc('month', local)::date AS month,
       CASE WHEN hour >= $5 THEN local::date END AS day,
       extract(hour FROM local)::int AS hod,
       sum(offered)::bigint AS offered, sum(answered)::bigint AS answered,
       sum(abandoned)::bigint AS abandoned
  FROM k
 GROUP BY GROUPING SETS ((1), (2), (3))
"""


def _live_bounds(start: datetime, end: datetime, mark: datetime | None
                 ) -> tuple[datetime, datetime, datetime, datetime]:
    """(rolled from, rolled to, live from, live to)."""
    if mark is None:
        return start, start, start, end
    rolled_to = max(start, min(end, mark))
    return start, rolled_to, rolled_to, end


async def call_dynamics(pool: asyncpg.Pool, period: Period, marks: Watermarks
                        ) -> tuple[Table, Table, Table]:
    """Calls per month, per day (the last days of the period), per hour of the day."""
    start, end = period.start_ts(), period.end_ts()
    day_from = max(period.first, period.last - timedelta(days=DAY_CHART_DAYS - 1))
    rows = await pool.fetch(_CALLS, *_live_bounds(start, end, marks.calls),
                            city_midnight(day_from))
    months: dict[date, list[int]] = {}
    days: dict[date, list[int]] = {}
    hours = {h: [0, 0, 0] for h in range(24)}
    for r in rows:
        figures = [int(r["offered"]), int(r["answered"]), int(r["abandoned"])]
        if r["month"] is not None:
            months[r["month"]] = figures
        elif r["day"] is not None:
            days[r["day"]] = figures
        elif r["hod"] is not None:
            hours[r["hod"]] = figures
    columns = ["offered", "answered", "abandoned"]
    month_table = Table("calls_by_month", "Calls per month", ["month", *columns])
    month = period.first.replace(day=1)
    while month <= period.last:
        month_table.rows.append([month.strftime("%Y-%m"), *months.get(month, [0, 0, 0])])
        month = date(month.year + month.month // 12, month.month % 12 + 1, 1)
    day_table = Table("calls_by_day", f"Calls per day (the last {DAY_CHART_DAYS} days at most)",
                      ["day", *columns])
    day = day_from
    while day <= period.last:
        day_table.rows.append([day.isoformat(), *days.get(day, [0, 0, 0])])
        day += timedelta(days=1)
    hour_table = Table("calls_by_hour", "Calls per hour of the day (Kyiv)", ["hour", *columns],
                       [[f"{h:02d}", *hours[h]] for h in range(24)])
    return month_table, day_table, hour_table


# Appeals --------------------------------------------------------------------

def _rolled(table: str, key: str, period: Period, marks: Watermarks,
            district: int | None) -> tuple[str, list[Any]]:
    """SQL of (key, district_id, n) for the period: month roll-ups, day roll-ups,
    and the appeals after the watermark."""
    split = split_period(period, marks.appeals)
    ranges = list(split.day_ranges) + [(_EPOCH, _EPOCH)] * (2 - len(split.day_ranges))
    live_from = city_midnight(split.live_from or _EPOCH)
    live_to = city_midnight(split.live_to or _EPOCH)
    sql = f"""
        SELECT {key} AS key, district_id, n FROM {table}
         WHERE ((grain = 'month' AND day >= $1 AND day < $2)
             OR (grain = 'day' AND ((day >= $3 AND day < $4) OR (day >= $5 AND day < $6))))
           AND ($9::int IS NULL OR district_id = $9)
        UNION ALL
        SELECT {key}, coalesce(district_id, 0), count(*) FROM appeals
         WHERE created_at >= $7 AND created_at < $8
           AND ($9::int IS NULL OR district_id = $9)
         GROUP BY 1, 2
    """
    return sql, [split.months_from, split.months_to, *ranges[0], *ranges[1], live_from,
                 live_to, district]


async def appeals_by_channel(pool: asyncpg.Pool, period: Period, marks: Watermarks,
                             district: int | None) -> Table:
    sql, args = _rolled("leadership_appeals_channel", "channel", period, marks, district)
    rows = await pool.fetch(
        f"SELECT key, sum(n)::bigint AS n FROM ({sql}) x GROUP BY key ORDER BY 2 DESC, 1",
        *args)
    total = sum(int(r["n"]) for r in rows)
    return Table("appeals_by_channel", "Appeals by channel",
                 ["channel", "appeals", "share_percent"],
                 [[r["key"], int(r["n"]), _share(int(r["n"]), total)] for r in rows])


def _share(part: int, total: int) -> Decimal | None:
    if not total:
        return None
    return (Decimal(100 * part) / total).quantize(Decimal("0.1"))


async def top_spheres(pool: asyncpg.Pool, period: Period, marks: Watermarks,
                      district: int | None) -> Table:
    sql, args = _rolled("leadership_appeals_issue", "category_id", period, marks, district)
    rows = await pool.fetch(
        f"""SELECT s.name_en, s.name_uk, sum(x.n)::bigint AS n
              FROM ({sql}) x JOIN categories c ON c.id = x.key JOIN spheres s ON s.id = c.sphere_id
             GROUP BY s.id ORDER BY 3 DESC, 1""", *args)
    total = sum(int(r["n"]) for r in rows)
    return Table("top_spheres", "Top 10 spheres by share",
                 ["sphere", "sphere_uk", "appeals", "share_percent"],
                 [[r["name_en"], r["name_uk"], int(r["n"]), _share(int(r["n"]), total)]
                  for r in rows[:10]])


async def issue_matrix(pool: asyncpg.Pool, period: Period, marks: Watermarks,
                       district: int | None) -> Table:
    sql, args = _rolled("leadership_appeals_issue", "category_id", period, marks, district)
    rows = await pool.fetch(f"SELECT key, district_id, sum(n)::bigint AS n FROM ({sql}) x "
                            "GROUP BY 1, 2", *args)
    districts = await pool.fetch("SELECT id, code, name_en FROM districts ORDER BY name_uk")
    if district is not None:
        districts = [d for d in districts if d["id"] == district]
    # a sphere's catch-all ("<sphere>_other", crm_sync.leadership.demo) is not an issue
    names = {r["id"]: (r["name_en"], r["name_uk"]) for r in await pool.fetch(
        "SELECT id, name_en, name_uk FROM categories WHERE code NOT LIKE '%\\_other'")}
    cells: dict[int, dict[int, int]] = {}
    for r in rows:
        if r["key"] in names:
            cells.setdefault(r["key"], {})[r["district_id"]] = int(r["n"])
    top = sorted(cells, key=lambda c: (-sum(cells[c].values()), names[c][0]))[:10]
    table = Table("issues_by_district", "Top 10 issues by district",
                  ["issue", *[d["name_en"] for d in districts], "total"])
    for c in top:
        counts = [cells[c].get(d["id"], 0) for d in districts]
        table.rows.append([names[c][0], *counts, sum(cells[c].values())])
    if top:
        table.rows.append(["Total", *[sum(cells[c].get(d["id"], 0) for c in top)
                                      for d in districts],
                           sum(sum(cells[c].values()) for c in top)])
    return table


async def overdue_by_executor(pool: asyncpg.Pool, period: Period, district: int | None,
                              now: datetime | None = None) -> Table:
    """Appeals of the period on an executor's clock now and past their due time (the
    statuses spelled as migration 0004's partial index on due_at has them, so that
    the few open appeals are found through it)."""
    rows = await pool.fetch(
        """SELECT coalesce(e.name_uk, e.name, '(nobody)') AS executor, e.kind,
                  count(*) AS overdue, min(a.due_at) AS oldest_due
             FROM appeals a LEFT JOIN executors e ON e.id = a.executor_id
            WHERE a.status IN ('registered', 'routed', 'accepted', 'in_progress', 'reopened')
              AND a.due_at < $1 AND a.created_at >= $2 AND a.created_at < $3
              AND ($4::int IS NULL OR a.district_id = $4)
            GROUP BY 1, 2 ORDER BY 3 DESC, 1 LIMIT 50""",
        now or datetime.now(UTC), period.start_ts(), period.end_ts(), district)
    return Table("overdue_by_executor", "Overdue appeals by executor (now)",
                 ["executor", "kind", "overdue", "oldest_due"],
                 [[r["executor"], r["kind"], int(r["overdue"]),
                   r["oldest_due"].astimezone(UTC).date().isoformat()] for r in rows])


# Ratings --------------------------------------------------------------------

async def _executor_counts(pool: asyncpg.Pool, year: int, kind: str) -> list[asyncpg.Record]:
    """Per executor of ``kind`` and category: the measures over the year's appeals.
    The month roll-up's current month grows with each refresh, so the watermark is
    read in the same snapshot as the rows."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read",
                                                        readonly=True):
        marks = await watermarks(conn)
        return await _executor_rows(conn, year, marks, kind)


async def _executor_rows(conn: asyncpg.Connection, year: int, marks: Watermarks, kind: str
                         ) -> list[asyncpg.Record]:
    first, end = date(year, 1, 1), date(year + 1, 1, 1)
    live_from = city_midnight(max(first, marks.appeals) if marks.appeals else first)
    sums = ", ".join(f"sum({m})::bigint AS {m}" for m in MEASURES)
    return list(await conn.fetch(
        f"""
        WITH x AS (
            SELECT executor_id, category_id, {", ".join(MEASURES)}
              FROM leadership_executor_monthly WHERE month >= $1 AND month < $2
            UNION ALL
            SELECT executor_id, category_id, {EXECUTOR_COUNTS}
              FROM appeals
             WHERE created_at >= $3 AND created_at < $4 AND executor_id IS NOT NULL
             GROUP BY 1, 2
        )
        SELECT e.id, coalesce(e.name_uk, e.name) AS name, x.category_id, {sums}
          FROM executors e LEFT JOIN x ON x.executor_id = e.id
         WHERE e.kind = $5 AND e.active
         GROUP BY 1, 2, 3
        """, first, end, live_from, city_midnight(end), kind))


async def _imported(pool: asyncpg.Pool, year: int
                    ) -> tuple[dict[int, dict[str, int]], dict[int, dict[str, Decimal]]]:
    figures: dict[int, dict[str, int]] = {}
    for r in await pool.fetch("SELECT executor_id, measure, value FROM leadership_figures "
                              "WHERE year = $1", year):
        figures.setdefault(r["executor_id"], {})[r["measure"]] = int(r["value"])
    published: dict[int, dict[str, Decimal]] = {}
    for r in await pool.fetch("SELECT executor_id, key, value FROM leadership_published "
                              "WHERE year = $1", year):
        published.setdefault(r["executor_id"], {})[r["key"]] = r["value"]
    return figures, published


async def district_ratings(pool: asyncpg.Pool, config: LeadershipConfig, year: int
                           ) -> list[DistrictRating]:
    """The district administrations, best first: from imported figures for a year
    that has them (the seed's 2017), else from the year's appeals."""
    figures, published = await _imported(pool, year)
    counted: dict[int, tuple[str, dict[str, int]]] = {}
    for r in await _executor_counts(pool, year, "district_admin"):
        counts = counted.setdefault(r["id"], (r["name"], dict.fromkeys(MEASURES, 0)))[1]
        for m in MEASURES:
            counts[m] += int(r[m] or 0)
    ratings = [
        district_rating(executor, name, config.indicators, figures.get(executor, counts),
                        published.get(executor, {}))
        for executor, (name, counts) in counted.items()
    ]
    return place_districts(ratings)


def district_table(config: LeadershipConfig, ratings: Sequence[DistrictRating], year: int
                   ) -> Table:
    codes = [i.code for i in config.indicators]
    measures = sorted({m for i in config.indicators for m in (i.numerator, i.denominator) if m},
                      key=MEASURES.index)
    table = Table("district_rating", f"District administrations' rating, {year}",
                  ["place", "administration", *measures, *[f"{c}_percent" for c in codes],
                   "rating_percent", "published_rating_percent"],
                  note="The rating is the product of the indicators. An indicator marked * is "
                       "the published value (its counts are not in the data).")
    for r in ratings:
        marks = {v.code: v for v in r.indicators}
        table.rows.append([
            r.place, r.name.split(" ")[0],
            *[r.counts.get(m) for m in measures],
            *[f"{marks[c].percent}*" if marks[c].source == "published" else marks[c].percent
              for c in codes],
            r.rating, r.published_rating,
        ])
    return table


async def housing_ratings(pool: asyncpg.Pool, config: LeadershipConfig, year: int
                          ) -> list[HousingRow]:
    figures, _ = await _imported(pool, year)
    component_of = {cat: comp.code for comp in config.components for cat in comp.categories}
    category_code = {r["id"]: r["code"] for r in await pool.fetch(
        "SELECT id, code FROM categories")}
    offices: dict[int, tuple[str, dict[str, int]]] = {}
    for r in await _executor_counts(pool, year, "housing_office"):
        counts = offices.setdefault(r["id"], (r["name"], {}))[1]
        component = component_of.get(category_code.get(r["category_id"], ""))
        if component:
            counts[component] = counts.get(component, 0) + int(r["received"] or 0)
    if any(f for e, f in figures.items() if e in offices):
        # a year of imported figures: only the offices it names, with its counts
        offices = {
            e: (name, {c.code: figures[e].get(f"complaints:{c.code}", 0)
                       for c in config.components})
            for e, (name, _) in offices.items() if e in figures
        }
    return housing_rating([(e, n, c) for e, (n, c) in offices.items()],
                          [c.code for c in config.components])


async def housing_table(pool: asyncpg.Pool, config: LeadershipConfig,
                        rows: Sequence[HousingRow], year: int) -> Table:
    _, published = await _imported(pool, year)
    codes = [c.code for c in config.components]
    has_published = any(published.get(r.executor_id) for r in rows)
    columns = ["place", "office"]
    for c in codes:
        columns += [f"{c}_complaints", f"{c}_place"]
        if has_published:
            columns.append(f"{c}_published_place")
    columns.append("complaints")
    if has_published:
        columns.append("published_overall_place")
    table = Table("housing_rating", f"Housing offices' rating, {year}", columns,
                  note="Places: fewer complaints, a better place; equal counts share it; the "
                       "overall place by the sum of the component places.")
    if has_published:
        table.note += (" Published places rank among all the city's offices, most of them "
                       "normalised by what the seed does not give.")
    for r in rows:
        pub = published.get(r.executor_id, {})
        line: list[Cell] = [r.place, r.name]
        for c in codes:
            line += [r.complaints[c], r.places[c]]
            if has_published:
                value = pub.get(f"place:{c}")
                line.append(int(value) if value is not None else None)
        line.append(r.total)
        if has_published:
            value = pub.get("place:overall")
            line.append(int(value) if value is not None else None)
        table.rows.append(line)
    return table
