"""The half-hour rollups (migration 0016): triggers keep them exact as calls are
written; this module rebuilds a range of them from the calls (after a bulk load,
or after the thresholds changed) and writes the thresholds from config.

The rebuild is plain SQL with the same definitions as the trigger function
``stats_attempt_figures``; tests/integration/test_stats_rollup.py holds the two
to each other."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, time, timedelta

import asyncpg

from crm_sync.stats.metrics import CITY_TZ
from hotline.core.logs import get_logger

log = get_logger("crm_sync.stats.rollup")

#: The rollup's granule; the city's offset from UTC is whole hours, so the city's
#: half-hours, hours and days are unions of these slots.
SLOT = timedelta(minutes=30)

_REFRESH_QUEUE = """
WITH f AS (
    SELECT a.queue, stats_slot(a.entered_at) AS slot, coalesce(a.outcome, '') AS outcome,
           coalesce(a.wait_seconds, 0) AS w, coalesce(a.talk_seconds, 0) AS talk,
           coalesce(a.wrap_seconds, 0) AS wrap,
           coalesce(t.service_level, d.service_level) AS sl,
           coalesce(t.short_abandon, d.short_abandon) AS short
      FROM queue_attempts a
      JOIN calls c ON c.id = a.call_id
      CROSS JOIN (SELECT * FROM stats_thresholds WHERE queue = '*') d
      LEFT JOIN stats_thresholds t ON t.queue = a.queue
     WHERE a.entered_at >= $1 AND a.entered_at < $2 AND c.outcome <> 'in_progress'
), g AS (
    SELECT *, (outcome = 'abandoned') AS ab, (outcome = 'abandoned' AND w < short) AS sh
      FROM f
)
INSERT INTO stats_queue_halfhour
SELECT queue, slot,
       count(*) FILTER (WHERE NOT sh),
       count(*) FILTER (WHERE outcome = 'answered'),
       count(*) FILTER (WHERE ab AND NOT sh),
       count(*) FILTER (WHERE sh),
       count(*) FILTER (WHERE outcome = 'timeout'),
       0,
       count(*) FILTER (WHERE outcome = 'answered' AND w <= sl),
       count(*) FILTER (WHERE ab AND w <= sl),
       coalesce(sum(w) FILTER (WHERE outcome = 'answered'), 0),
       coalesce(max(w) FILTER (WHERE NOT sh), 0),
       coalesce(sum(talk) FILTER (WHERE outcome = 'answered'), 0),
       coalesce(sum(wrap) FILTER (WHERE outcome = 'answered'), 0)
  FROM g GROUP BY queue, slot
"""

# Callbacks are booked in the IVR: calls without a queue attempt.
_REFRESH_CALLBACKS = """
INSERT INTO stats_queue_halfhour AS s (queue, slot, callbacks)
SELECT queue, stats_slot(started_at), count(*) FROM calls
 WHERE started_at >= $1 AND started_at < $2 AND outcome = 'callback'
   AND queue IS NOT NULL
 GROUP BY 1, 2
ON CONFLICT (slot, queue) DO UPDATE SET callbacks = s.callbacks + EXCLUDED.callbacks
"""

_REFRESH_DAY = """
INSERT INTO stats_queue_day (queue, day, offered, answered, abandoned, short_abandoned,
    timed_out, callbacks, answered_within, abandoned_within, wait_answered, max_wait, talk, wrap)
SELECT queue, stats_city_day(slot), sum(offered), sum(answered), sum(abandoned),
       sum(short_abandoned), sum(timed_out), sum(callbacks), sum(answered_within),
       sum(abandoned_within), sum(wait_answered), max(max_wait), sum(talk), sum(wrap)
  FROM stats_queue_halfhour WHERE slot >= $1 AND slot < $2 GROUP BY 1, 2
"""

_REFRESH_OPERATOR = """
INSERT INTO stats_operator_halfhour
SELECT a.operator_interface, a.queue, stats_slot(a.entered_at),
       coalesce(max(a.operator_name), ''), count(*),
       coalesce(sum(a.talk_seconds), 0), coalesce(sum(a.wrap_seconds), 0)
  FROM queue_attempts a JOIN calls c ON c.id = a.call_id
 WHERE a.entered_at >= $1 AND a.entered_at < $2 AND c.outcome <> 'in_progress'
   AND a.outcome = 'answered' AND a.operator_interface IS NOT NULL
 GROUP BY 1, 2, 3
"""

_REFRESH_CALL_DAY = """
INSERT INTO stats_operator_call_day
SELECT c.operator_interface, stats_city_day(c.started_at),
       coalesce(to_jsonb(c) ->> 'disposition', ''), count(*),
       count(*) FILTER (WHERE to_jsonb(c) ->> 'survey_score' IS NOT NULL),
       coalesce(sum((to_jsonb(c) ->> 'survey_score')::integer), 0)
  FROM calls c
 WHERE c.started_at >= $1 AND c.started_at < $2 AND c.outcome <> 'in_progress'
   AND c.operator_interface IS NOT NULL
 GROUP BY 1, 2, 3
"""

_REFRESH_IVR = """
INSERT INTO stats_ivr_day
SELECT stats_city_day(at), step, stats_ivr_option(step, detail), count(*)
  FROM ivr_steps WHERE at >= $1 AND at < $2 GROUP BY 1, 2, 3
"""


def align(at: datetime, *, up: bool = False) -> datetime:
    """``at`` down (or up) to a slot boundary."""
    epoch = at.astimezone(UTC).timestamp()
    slots = int(epoch // SLOT.total_seconds())
    if up and epoch % SLOT.total_seconds():
        slots += 1
    return datetime.fromtimestamp(slots * SLOT.total_seconds(), UTC)


async def refresh(conn: asyncpg.Connection, since: datetime, until: datetime) -> None:
    """Rebuild every rollup for [since, until), widened to whole city days (the
    per-day tables) — in the caller's transaction if it has one."""
    day_since, day_until = city_midnight(since), city_midnight(until)
    if day_until < until:
        day_until = city_midnight(until + timedelta(days=1))
    since, until = day_since.astimezone(UTC), day_until.astimezone(UTC)
    async with conn.transaction():
        await conn.execute("DELETE FROM stats_queue_halfhour WHERE slot >= $1 AND slot < $2",
                           since, until)
        await conn.execute("DELETE FROM stats_operator_halfhour WHERE slot >= $1 AND slot < $2",
                           since, until)
        await conn.execute("DELETE FROM stats_queue_day WHERE day >= $1 AND day < $2",
                           day_since.date(), day_until.date())
        await conn.execute("DELETE FROM stats_operator_call_day WHERE day >= $1 AND day < $2",
                           day_since.date(), day_until.date())
        await conn.execute("DELETE FROM stats_ivr_day WHERE day >= $1 AND day < $2",
                           day_since.date(), day_until.date())
        for sql in (_REFRESH_QUEUE, _REFRESH_CALLBACKS, _REFRESH_DAY, _REFRESH_OPERATOR,
                    _REFRESH_CALL_DAY, _REFRESH_IVR):
            await conn.execute(sql, since, until)


def city_midnight(at: datetime) -> datetime:
    return datetime.combine(at.astimezone(CITY_TZ).date(), time(), CITY_TZ)


async def refresh_all(pool: asyncpg.Pool) -> tuple[datetime, datetime] | None:
    """Rebuild the rollups over everything stored, a month per transaction."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT min(started_at) AS lo, max(started_at) AS hi FROM calls")
        if row is None or row["lo"] is None:
            return None
        lo, hi = align(row["lo"]), align(row["hi"], up=True) + SLOT
        cursor = lo
        while cursor < hi:
            step = min(cursor + timedelta(days=31), hi)
            await refresh(conn, cursor, step)
            cursor = step
        log.info("stats_rollup_refreshed", since=lo.isoformat(), until=hi.isoformat())
        return lo, hi


async def write_thresholds(
    pool: asyncpg.Pool, service_levels: Mapping[str, int], short_abandon: int
) -> bool:
    """Store the thresholds from config, a row per queue (the reports know the
    queues by them); True when they changed (rebuild the rollups then)."""
    async with pool.acquire() as conn, conn.transaction():
        before = {r["queue"]: (r["service_level"], r["short_abandon"])
                  for r in await conn.fetch("SELECT * FROM stats_thresholds")}
        # '*' is for queues the config does not name (yet): the commonest threshold.
        levels = list(service_levels.values())
        default = max(set(levels), key=levels.count) if levels else 20
        wanted = {"*": (default, short_abandon)}
        wanted.update({q: (sl, short_abandon) for q, sl in service_levels.items()})
        if wanted == before:
            return False
        await conn.execute("DELETE FROM stats_thresholds")
        await conn.executemany("INSERT INTO stats_thresholds VALUES ($1, $2, $3)",
                               [(q, sl, sh) for q, (sl, sh) in wanted.items()])
        log.info("stats_thresholds_changed", thresholds={q: list(v) for q, v in wanted.items()})
        return True
