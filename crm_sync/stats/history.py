"""Years of a Kyiv-sized hotline's calls, generated inside PostgreSQL (the
scale test of the reports: ~5,500 calls a day for ten years ≈ 20 million).

A month per transaction: calls and their queue attempts by ``INSERT … SELECT``
with the rollup triggers off in that session (``hotline.stats_bulk``), the
month's rollups rebuilt (:func:`crm_sync.stats.rollup.refresh`), operators'
shifts and pauses in ``operator_state_changes``. IVR steps are not written one
by one (they would be ~70 million rows): the month's IVR rollup is synthesised
from its calls. Generated calls have keys ``history:…`` and can be told apart.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, time, timedelta

import asyncpg

from crm_sync.stats.metrics import CITY_TZ
from crm_sync.stats.rollup import refresh
from hotline.core.logs import get_logger

log = get_logger("crm_sync.stats.history")

#: A progress report: (months done, months in all, calls written so far).
Progress = Callable[[int, int, int], Awaitable[None] | None]
#: Calls a day on an average day (20 M over ten years).
CALLS_PER_DAY = 5480
OPERATOR_POOL, ON_SHIFT = 120, 60
SERVER = "history"

_CALLS = """
WITH slots AS (
    SELECT s AS slot,
           extract(hour FROM s AT TIME ZONE 'Europe/Kyiv')::int AS hour,
           extract(isodow FROM s AT TIME ZONE 'Europe/Kyiv')::int AS dow,
           (stats_city_day(s) - date '2000-01-01') AS day_no
      FROM generate_series($1::timestamptz, $2::timestamptz - interval '30 minutes',
                           interval '30 minutes') AS s
), volume AS (
    SELECT slot, day_no, hour,
           round($3::float8 / 48
                 * (ARRAY[0.15,0.1,0.08,0.08,0.1,0.2,0.5,1.0,1.6,1.9,2.0,1.9,1.7,1.7,1.8,
                          1.7,1.6,1.5,1.3,1.1,0.9,0.6,0.4,0.25])[hour + 1] / 1.0
                 * (CASE WHEN dow >= 6 THEN 0.6 ELSE 1.16 END)
                 * (0.8 + 0.4 * random()))::int AS n
      FROM slots
), raw AS (
    SELECT v.slot + random() * interval '30 minutes' AS started_at, v.slot, v.day_no, i,
           random() AS r_outcome, random() AS r_queue, random() AS r_wait, random() AS r_talk,
           random() AS r_op, random() AS r_misc
      FROM volume v, generate_series(1, v.n) AS i
), shaped AS (
    SELECT *,
           CASE WHEN r_queue < 0.45 THEN 'housing' WHEN r_queue < 0.65 THEN 'transport'
                WHEN r_queue < 0.8 THEN 'social' ELSE 'main' END AS queue,
           CASE WHEN r_outcome < 0.07 THEN 'ivr_only'
                WHEN r_outcome < 0.15 THEN 'abandoned'
                WHEN r_outcome < 0.165 THEN 'timeout'
                WHEN r_outcome < 0.175 AND $5 THEN 'callback'
                ELSE 'answered' END AS outcome,
           (-ln(1 - r_wait) * 22)::int AS wait,
           (45 + -ln(1 - r_talk) * 170)::int AS talk
      FROM raw
), called AS (
    INSERT INTO calls (call_key, asterisk_server, uniqueid, linkedid, channel, caller_number,
                       started_at, answered_at, ended_at, ivr_choice, ivr_source, queue,
                       wait_seconds, talk_seconds, operator_interface, operator_name, outcome)
    SELECT 'history:' || extract(epoch FROM slot)::bigint || ':' || i, $4,
           extract(epoch FROM slot)::bigint || '.' || i,
           extract(epoch FROM slot)::bigint || '.' || i,
           'Local/1551@hotline-inbound-' || i,
           '+38044' || lpad((r_misc * 9999999)::int::text, 7, '0'),
           started_at,
           CASE WHEN outcome = 'answered'
                THEN started_at + make_interval(secs => 20 + wait) END,
           started_at + make_interval(secs => 20 + wait
                                      + CASE WHEN outcome = 'answered' THEN talk ELSE 0 END),
           CASE WHEN outcome = 'ivr_only' THEN NULL
                ELSE (CASE queue WHEN 'housing' THEN '1' WHEN 'transport' THEN '2'
                                 WHEN 'social' THEN '3' ELSE '0' END) END,
           'fastagi',
           CASE WHEN outcome = 'ivr_only' THEN NULL ELSE queue END,
           CASE WHEN outcome IN ('ivr_only', 'callback') THEN NULL
                WHEN outcome = 'timeout' THEN 300 ELSE wait END,
           CASE WHEN outcome = 'answered' THEN talk END,
           CASE WHEN outcome = 'answered' THEN 'Local/' || (1001 + ((day_no
                + (r_op * $6)::int) % $7)) || '@hotline-operators/n' END,
           CASE WHEN outcome = 'answered' THEN 'Operator ' || (1001 + ((day_no
                + (r_op * $6)::int) % $7)) END,
           outcome
      FROM shaped
    RETURNING id, queue, started_at, outcome, wait_seconds, talk_seconds,
              operator_interface, operator_name
)
INSERT INTO queue_attempts (call_id, seq, queue, entered_at, answered_at, left_at, position,
                            wait_seconds, talk_seconds, outcome, operator_interface,
                            operator_name, completed_by, wrap_seconds)
SELECT id, 0, queue, started_at + interval '20 seconds',
       CASE WHEN outcome = 'answered'
            THEN started_at + make_interval(secs => 20 + wait_seconds) END,
       started_at + make_interval(secs => 20 + wait_seconds + coalesce(talk_seconds, 0)),
       1, wait_seconds, talk_seconds,
       outcome,
       operator_interface, operator_name,
       CASE WHEN outcome = 'answered' THEN 'caller' END,
       CASE WHEN outcome = 'answered' THEN 10 + (id % 21)::int END
  FROM called WHERE queue IS NOT NULL AND outcome <> 'callback'  -- booked in the IVR
"""

# One shift a day for each operator on duty: in at 08:00, a 30-minute pause
# (lunch or training) at 13:00, out at 20:00.
_SHIFTS = """
INSERT INTO operator_state_changes (interface, at, state, reason)
SELECT 'Local/' || (1001 + ((d - date '2000-01-01') + k) % $4) || '@hotline-operators/n',
       (d + e.t) AT TIME ZONE 'Europe/Kyiv', e.state, e.reason
  FROM generate_series($1::date, $2::date - 1, interval '1 day') AS g(dd),
       LATERAL (SELECT dd::date AS d) AS x,
       generate_series(0, $3 - 1) AS k,
       (VALUES (time '08:00', 'logged_in', NULL::text), (time '08:00:01', 'available', NULL),
               (time '13:00', 'paused', 'lunch'), (time '13:30', 'available', NULL),
               (time '16:00', 'paused', 'training'), (time '16:10', 'available', NULL),
               (time '20:00', 'logged_out', NULL)) AS e(t, state, reason)
 WHERE (k + (d - date '2000-01-01')) % 7 <> 0 OR e.reason IS NULL
"""

_IVR = """
INSERT INTO stats_ivr_day (day, step, option, steps)
SELECT day, step, option, sum(n)::int FROM (
    SELECT stats_city_day(started_at) AS day, 'greeting' AS step, '' AS option, 1 AS n
      FROM calls WHERE started_at >= $1 AND started_at < $2 AND asterisk_server = $3
    UNION ALL
    SELECT stats_city_day(started_at), 'menu', '1', 1
      FROM calls WHERE started_at >= $1 AND started_at < $2 AND asterisk_server = $3
    UNION ALL
    SELECT stats_city_day(started_at), 'choice', ivr_choice, 1
      FROM calls WHERE started_at >= $1 AND started_at < $2 AND asterisk_server = $3
       AND ivr_choice IS NOT NULL
    UNION ALL
    SELECT stats_city_day(started_at), 'route', queue, 1
      FROM calls WHERE started_at >= $1 AND started_at < $2 AND asterisk_server = $3
       AND queue IS NOT NULL
    UNION ALL
    SELECT stats_city_day(started_at), 'hangup', 'menu', 1
      FROM calls WHERE started_at >= $1 AND started_at < $2 AND asterisk_server = $3
       AND outcome = 'ivr_only'
) s GROUP BY 1, 2, 3
ON CONFLICT (day, step, option) DO UPDATE SET steps = stats_ivr_day.steps + EXCLUDED.steps
"""


def months(since: date, until: date) -> list[tuple[date, date]]:
    """[since, until) cut at the first of each month."""
    out = []
    cursor = since
    while cursor < until:
        nxt = (cursor.replace(day=28) + timedelta(days=4)).replace(day=1)
        out.append((cursor, min(nxt, until)))
        cursor = nxt
    return out


async def _callbacks_allowed(conn: asyncpg.Connection) -> bool:
    """``callback`` is an outcome once ivr-b's migration extended the CHECK."""
    defs = await conn.fetch(
        "SELECT pg_get_constraintdef(oid) AS d FROM pg_constraint "
        "WHERE conrelid = 'calls'::regclass AND contype = 'c'")
    return any("'callback'" in r["d"] for r in defs)


async def generate_calls(
    pool: asyncpg.Pool, *, years: float, progress: Progress | None = None,
    calls_per_day: int = CALLS_PER_DAY, until: date | None = None,
) -> int:
    """``years`` of history ending before ``until`` (default: today, the city's);
    returns the number of calls written."""
    end = until or datetime.now(CITY_TZ).date()
    start = end - timedelta(days=round(years * 365.25))
    chunks = months(start, end)
    written = 0
    async with pool.acquire() as conn:
        callbacks = await _callbacks_allowed(conn)
        for done, (lo, hi) in enumerate(chunks, start=1):
            since = datetime.combine(lo, time(), CITY_TZ).astimezone(UTC)
            until_at = datetime.combine(hi, time(), CITY_TZ).astimezone(UTC)
            async with conn.transaction():
                await conn.execute("SET LOCAL hotline.stats_bulk = 'on'")
                before = await conn.fetchval("SELECT count(*) FROM calls WHERE started_at >= $1 "
                                             "AND started_at < $2", since, until_at)
                await conn.execute(_CALLS, since, until_at, float(calls_per_day), SERVER,
                                   callbacks, ON_SHIFT - 1, OPERATOR_POOL)
                after = await conn.fetchval("SELECT count(*) FROM calls WHERE started_at >= $1 "
                                            "AND started_at < $2", since, until_at)
                await conn.execute(_SHIFTS, lo, hi, ON_SHIFT, OPERATOR_POOL)
                await refresh(conn, since, until_at)
                await conn.execute(_IVR, since, until_at, SERVER)
            written += after - before
            log.info("stats_history_month", month=lo.isoformat(), calls=after - before)
            if progress is not None:
                result = progress(done, len(chunks), written)
                if result is not None:
                    await result
    return written
