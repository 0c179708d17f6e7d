"""The dashboard's roll-ups (migration 0017): calls per hour; appeals per Kyiv day
(and month) by channel and district, by category and district; and per creation
month, executor and category the counts the ratings divide.

Each holds what came before its watermark; the queries read the rest live, so a
refresh is about speed, never about being right today. A refresh recomputes a
margin before the old watermark too: calls finish after they start, appeals
are settled, reopened and become overdue after the day they arrived (the last
three months of the executors' counts are recomputed; older ones are taken as
final). One refresh at a time (an advisory lock); a second caller skips.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import asyncpg

from crm_sync.leadership.periods import city_midnight, city_today, month_start
from hotline.core.logs import get_logger

#: Key of the advisory lock a refresh holds ("1551" + "0017").
LOCK_KEY = 1551_0017
CALLS_MARGIN = timedelta(hours=2)
APPEALS_MARGIN = timedelta(days=2)
EXECUTOR_MARGIN = timedelta(days=92)
#: Seconds a roll-up statement may take (the first over ten years takes minutes),
#: whatever the pool's command timeout.
BULK_TIMEOUT = 3600.0
OPEN_STATUSES = ("registered", "routed", "accepted", "in_progress", "needs_clarification",
                 "reopened")

log = get_logger("crm_sync.leadership.rollups")


@dataclass(frozen=True)
class Watermarks:
    calls: datetime | None  # an hour start (UTC)
    appeals: date | None  # a Kyiv day: every roll-up of appeals holds the days before it


async def watermarks(conn: asyncpg.Pool | asyncpg.Connection) -> Watermarks:
    rows = {r["name"]: r["upto"] for r in await conn.fetch(
        "SELECT name, upto FROM leadership_watermarks")}
    appeals = rows.get("appeals")
    return Watermarks(rows.get("calls"), city_today(appeals) if appeals else None)


async def refresh_rollups(pool: asyncpg.Pool, *, now: datetime | None = None) -> bool:
    """Bring every roll-up up to now (calls: the current hour; appeals: today).
    False when another refresh holds the lock."""
    now = now or datetime.now(UTC)
    async with pool.acquire() as conn, conn.transaction():
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", LOCK_KEY):
            return False
        await conn.execute("SET LOCAL work_mem = '64MB'")
        await _refresh_calls(conn, now)
        await _refresh_appeals(conn, now)
    return True


async def _refresh_calls(conn: asyncpg.Connection, now: datetime) -> None:
    target = now.replace(minute=0, second=0, microsecond=0)
    old = await conn.fetchval("SELECT upto FROM leadership_watermarks WHERE name = 'calls'")
    if old is not None and old >= target:
        return
    low = old - CALLS_MARGIN if old is not None else await conn.fetchval(
        "SELECT date_trunc('hour', min(started_at)) FROM calls")
    if low is not None:
        await conn.execute("DELETE FROM leadership_calls_hourly WHERE hour >= $1", low)
        await conn.execute(
            """
            INSERT INTO leadership_calls_hourly (hour, offered, answered, abandoned)
            SELECT date_trunc('hour', started_at), count(*),
                   count(*) FILTER (WHERE outcome = 'answered'),
                   count(*) FILTER (WHERE outcome = 'abandoned')
              FROM calls WHERE started_at >= $1 AND started_at < $2
             GROUP BY 1
            """, low, target, timeout=BULK_TIMEOUT)
    await _set_watermark(conn, "calls", target)
    log.info("leadership_calls_rolled_up", since=str(low), upto=target.isoformat())


async def _refresh_appeals(conn: asyncpg.Connection, now: datetime) -> None:
    today = city_today(now)
    target = city_midnight(today)
    old = await conn.fetchval("SELECT upto FROM leadership_watermarks WHERE name = 'appeals'")
    if old is not None and old >= target:
        return
    if old is None:
        first = await conn.fetchval("SELECT min(created_at) FROM appeals")
        if first is None:
            await _set_watermark(conn, "appeals", target)
            return
        low_day = city_today(first)
        exec_month = month_start(low_day)
    else:
        low_day = city_today(old - APPEALS_MARGIN)
        exec_month = month_start(city_today(old - EXECUTOR_MARGIN))
    low = city_midnight(low_day)
    month_low = month_start(low_day)
    await conn.execute("DELETE FROM leadership_appeals_channel WHERE grain = 'day' AND day >= $1",
                       low_day)
    await conn.execute("DELETE FROM leadership_appeals_issue WHERE grain = 'day' AND day >= $1",
                       low_day)
    await conn.execute(
        """
        INSERT INTO leadership_appeals_channel (grain, day, channel, district_id, n)
        SELECT 'day', (created_at AT TIME ZONE 'Europe/Kyiv')::date, channel,
               coalesce(district_id, 0), count(*)
          FROM appeals WHERE created_at >= $1 AND created_at < $2
         GROUP BY 2, 3, 4
        """, low, target, timeout=BULK_TIMEOUT)
    await conn.execute(
        """
        INSERT INTO leadership_appeals_issue (grain, day, category_id, district_id, n)
        SELECT 'day', (created_at AT TIME ZONE 'Europe/Kyiv')::date, category_id,
               coalesce(district_id, 0), count(*)
          FROM appeals WHERE created_at >= $1 AND created_at < $2
         GROUP BY 2, 3, 4
        """, low, target, timeout=BULK_TIMEOUT)
    for table, key in (("leadership_appeals_channel", "channel"),
                       ("leadership_appeals_issue", "category_id")):
        await conn.execute(f"DELETE FROM {table} WHERE grain = 'month' AND day >= $1", month_low)
        await conn.execute(
            f"""
            INSERT INTO {table} (grain, day, {key}, district_id, n)
            SELECT 'month', date_trunc('month', day)::date, {key}, district_id, sum(n)
              FROM {table} WHERE grain = 'day' AND day >= $1
             GROUP BY 2, 3, 4
            """, month_low, timeout=BULK_TIMEOUT)
    await conn.execute("DELETE FROM leadership_executor_monthly WHERE month >= $1", exec_month)
    await conn.execute(
        f"""
        INSERT INTO leadership_executor_monthly (month, executor_id, category_id, received, due,
                                                 overdue, settled, reopened, rejected)
        SELECT date_trunc('month', created_at AT TIME ZONE 'Europe/Kyiv')::date,
               executor_id, category_id, {EXECUTOR_COUNTS}
          FROM appeals
         WHERE created_at >= $1 AND created_at < $2 AND executor_id IS NOT NULL
         GROUP BY 1, 2, 3
        """, city_midnight(exec_month), target, timeout=BULK_TIMEOUT)
    await _set_watermark(conn, "appeals", target)
    log.info("leadership_appeals_rolled_up", since=str(low_day), upto=str(today))


#: The ratings' counts over a set of appeals (``now()`` decides what is overdue
#: among the open ones).
EXECUTOR_COUNTS = """
       count(*),
       count(*) FILTER (WHERE due_at IS NOT NULL),
       count(*) FILTER (WHERE due_at < coalesce(settled_at,
           CASE WHEN status IN ('done', 'rejected', 'closed') THEN 'infinity'::timestamptz
                ELSE now() END)),
       count(*) FILTER (WHERE status IN ('done', 'closed')),
       count(*) FILTER (WHERE status IN ('done', 'closed') AND reopen_count > 0),
       count(*) FILTER (WHERE status = 'rejected')
"""


async def _set_watermark(conn: asyncpg.Connection, name: str, upto: datetime) -> None:
    await conn.execute(
        """INSERT INTO leadership_watermarks (name, upto) VALUES ($1, $2)
           ON CONFLICT (name) DO UPDATE SET upto = EXCLUDED.upto""", name, upto)

