"""``hotline generate-history`` and ``hotline stats-refresh`` as a person runs
them; a call finishing now is in today's report at once (the triggers)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg

from crm_sync.call_store import PostgresCallStore
from crm_sync.db import create_pool
from crm_sync.stats import queries
from crm_sync.stats.metrics import CITY_TZ, parse_period
from hotline.core.records import CallOutcome, CallRecord, QueueAttempt
from tests.support.cli import assert_one_error_line, run_hotline
from tests.support.databases import MakeDatabase


async def test_generate_history_then_refresh_and_today(make_database: MakeDatabase) -> None:
    url = await make_database("history_cli")
    env = {"DATABASE_URL": url}
    code, out, err = await run_hotline("generate-history", "--years", "0.1",
                                       "--calls-per-day", "300", "--appeals-per-year", "2000",
                                       env=env, timeout=300)
    assert code == 0, err
    assert "generated" in out and "months" in err and "[" in err  # the progress bar
    assert "appeals" in err  # and the dashboard's appeals, with theirs
    pool: asyncpg.Pool = await create_pool(url)
    try:
        appeals = await pool.fetchval("SELECT count(*) FROM appeals")
        assert f"generated {appeals:,} appeals" in out and appeals > 1000
        calls = await pool.fetchval("SELECT count(*) FROM calls")
        assert calls > 30 * 300 * 0.5
        today = datetime.now(CITY_TZ).date()
        period = parse_period(str(today - timedelta(days=60)), str(today), "month",
                              today=today)
        before = await queries.queue_report(pool, period)
        assert before["total"]["offered"] > 0
        assert before["thresholds"]["housing"]["short_abandon"] == 5

        # twice into one database: refused, nothing written
        code, _, err = await run_hotline("generate-history", "--years", "0.1", env=env)
        assert code == 2
        assert_one_error_line(err, "already has generated history")
        assert await pool.fetchval("SELECT count(*) FROM calls") == calls

        # another short-abandon threshold: the rollups are rebuilt with it
        code, out, err = await run_hotline(
            "stats-refresh", env={**env, "HOTLINE_STATS_SHORT_ABANDON_SECONDS": "0"},
            timeout=300)
        assert code == 0, err
        after = await queries.queue_report(pool, period)
        assert after["total"]["short_abandoned"] == 0 < before["total"]["short_abandoned"]
        assert after["total"]["offered"] == (before["total"]["offered"]
                                             + before["total"]["short_abandoned"])

        # a call that finishes now counts in today's report straight away
        now = datetime.now(UTC)
        today_period = parse_period(None, None, "day", today=today)
        first = await queries.queue_report(pool, today_period, ["social"])
        await PostgresCallStore(pool).save_call(CallRecord(
            call_key="now:1", asterisk_server="now", uniqueid="1.1", linkedid="1.1",
            channel="Local/x", started_at=now, outcome=CallOutcome.ANSWERED,
            attempts=[QueueAttempt("social", now, outcome="answered", wait_seconds=3,
                                   talk_seconds=30)]))
        second = await queries.queue_report(pool, today_period, ["social"])
        assert second["total"]["answered"] == first["total"]["answered"] + 1
    finally:
        await pool.close()
