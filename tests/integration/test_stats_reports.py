"""The reports' figures from a real PostgreSQL: the rollups the triggers keep
while calls are written, rewritten and corrected equal a rebuild from scratch and
the figures worked out by hand; operators' pauses, occupancy, surveys and
dispositions; the IVR path; staffing beside the actual figures.

``calls.survey_score`` (ivr-a), ``calls.disposition`` (desk-form) and the
``callback`` outcome (ivr-b) are added here when the schema lacks them: the
reports read them whether or not those migrations ran."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import pytest_asyncio

from crm_sync.call_store import PostgresCallStore, PostgresIvrJournal
from crm_sync.db import create_pool
from crm_sync.migrate import migrate
from crm_sync.stats import queries, rollup
from crm_sync.stats.metrics import parse_period
from hotline.core.records import CallOutcome, CallRecord, IvrStep, QueueAttempt
from tests.support.databases import MakeDatabase

# 09:00 Kyiv (UTC+2 in winter), a Monday.
T0 = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)
DAY = date(2026, 3, 2)
TABLES = ("stats_queue_halfhour", "stats_queue_day", "stats_operator_halfhour",
          "stats_operator_call_day", "stats_ivr_day")


@pytest_asyncio.fixture(loop_scope="session")
async def pool(make_database: MakeDatabase) -> AsyncIterator[asyncpg.Pool]:
    url = await make_database("stats")
    pool = await create_pool(url)
    await migrate(pool)
    await add_parallel_columns(pool)
    yield pool
    await pool.close()


async def add_parallel_columns(pool: asyncpg.Pool) -> None:
    """What other engineers' migrations add, when this schema has not got it yet."""
    columns = {r["column_name"] for r in await pool.fetch(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'calls'")}
    if "survey_score" not in columns:
        await pool.execute("ALTER TABLE calls ADD COLUMN survey_score smallint")
    if "disposition" not in columns:
        await pool.execute("ALTER TABLE calls ADD COLUMN disposition text")
    check = await pool.fetchval(
        "SELECT conname FROM pg_constraint WHERE conrelid = 'calls'::regclass "
        "AND contype = 'c' AND pg_get_constraintdef(oid) LIKE '%in_progress%'")
    if "'callback'" not in await pool.fetchval(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = $1", check):
        await pool.execute(f"""ALTER TABLE calls DROP CONSTRAINT {check},
            ADD CONSTRAINT {check} CHECK (outcome IN ('answered', 'abandoned', 'ivr_only',
            'timeout', 'no_agents', 'in_progress', 'callback'))""")


def call(n: int, minute: float, outcome: CallOutcome, attempts: list[QueueAttempt],
         **more: Any) -> CallRecord:
    key = f"17000.{n}"
    return CallRecord(call_key=f"pbx:1:{key}", asterisk_server="pbx", uniqueid=key,
                      linkedid=key, channel=f"Local/1551@in-{n}",
                      started_at=T0 + timedelta(minutes=minute), outcome=outcome,
                      attempts=attempts, **more)


def att(queue: str, minute: float, outcome: str, wait: int, talk: int | None = None,
        op: str | None = None) -> QueueAttempt:
    return QueueAttempt(queue=queue, entered_at=T0 + timedelta(minutes=minute, seconds=20),
                        outcome=outcome, wait_seconds=wait, talk_seconds=talk,
                        operator_interface=op, operator_name=op and op.upper())


A, B = "Local/101@ops/n", "Local/102@ops/n"
ANSWERED, ABANDONED = CallOutcome.ANSWERED, CallOutcome.ABANDONED


async def write_calls(pool: asyncpg.Pool) -> None:
    """Every call first as AMI sees it in progress, then finished: the rollups
    must count only the last version."""
    store = PostgresCallStore(pool)
    finished = [
        call(1, 0, ANSWERED, [att("housing", 0, "answered", 5, 100, A)], operator_interface=A),
        call(2, 1, ANSWERED, [att("housing", 1, "answered", 25, 200, B)], operator_interface=B),
        call(3, 2, ABANDONED, [att("housing", 2, "abandoned", 3)]),  # short
        call(4, 3, ABANDONED, [att("housing", 3, "abandoned", 40)]),
        call(5, 4, ABANDONED, [att("housing", 4, "abandoned", 12)]),
        # timed out of housing, answered in main (two queues, one call)
        call(6, 5, ANSWERED, [att("housing", 5, "timeout", 60),
                              att("main", 6, "answered", 8, 50, A)], operator_interface=A),
        call(7, 40, ANSWERED, [att("transport", 40, "answered", 15, 70, B)],
             operator_interface=B),
        call(8, 41, CallOutcome.IVR_ONLY, []),
        # ivr-b: a callback booked in the IVR, never in a queue (→ 'callback' below)
        call(9, 42, CallOutcome.IVR_ONLY, [], queue="transport"),
    ]
    for record in finished:
        final = record.outcome
        record.outcome = CallOutcome.IN_PROGRESS
        early = [QueueAttempt(queue=a.queue, entered_at=a.entered_at) for a in record.attempts]
        saved, record.attempts = record.attempts, early
        await store.save_call(record)
        record.outcome, record.attempts = final, saved
        await store.save_call(record)
    # queue_log corrects call 4's wait from 40 to 35 (the slot's longest): the
    # maximum must come down too.
    await pool.execute("UPDATE queue_attempts SET wait_seconds = 35 WHERE wait_seconds = 40")
    await pool.execute("UPDATE calls SET outcome = 'callback' WHERE uniqueid = '17000.9'")
    await pool.execute("UPDATE calls SET survey_score = 5, disposition = 'consultation' "
                       "WHERE uniqueid = '17000.1'")
    await pool.execute("UPDATE calls SET survey_score = 2, disposition = 'appeal_created' "
                       "WHERE uniqueid = '17000.6'")
    # one more call, then deleted: it must leave no trace
    await store.save_call(call(10, 3, ANSWERED, [att("housing", 3, "answered", 1, 9, A)],
                               operator_interface=A))
    await pool.execute("DELETE FROM calls WHERE uniqueid = '17000.10'")


async def rollups(pool: asyncpg.Pool) -> dict[str, list[dict[str, Any]]]:
    out = {}
    for table in TABLES:
        rows = await pool.fetch(f"SELECT * FROM {table}")
        out[table] = sorted((dict(r) for r in rows if any(
            v for k, v in r.items() if k in ("offered", "calls", "steps", "short_abandoned",
                                             "callbacks"))), key=repr)
    return out


def period(granularity: str = "day", days: int = 1, **kw: Any) -> Any:
    return parse_period(str(DAY), str(DAY + timedelta(days=days - 1)), granularity,
                        today=DAY, **kw)


async def test_queue_figures_equal_hand_count_and_rebuild(pool: asyncpg.Pool) -> None:
    await write_calls(pool)
    report = await queries.queue_report(pool, period())
    housing = next(q for q in report["queues"] if q["queue"] == "housing")
    assert housing == {
        "queue": "housing", "offered": 5, "answered": 2, "abandoned": 2, "short_abandoned": 1,
        "timed_out": 1, "callbacks": 0,
        "service_level": 50.0,  # 1 of 2 answered within 20 s
        "service_level2": 60.0,  # (1 + abandons within 20 s: 3 s, 12 s) ÷ (2 + 3)
        "asa": 15.0, "longest_wait": 60, "aht": 150.0, "abandon_rate": 40.0,
    }
    transport = next(q for q in report["queues"] if q["queue"] == "transport")
    assert (transport["offered"], transport["answered"], transport["abandoned"],
            transport["callbacks"]) == (1, 1, 0, 1)
    assert report["total"]["offered"] == 7 and report["total"]["answered"] == 4
    assert report["total"]["callbacks"] == 1

    # the 09:00 half-hour of housing: the corrected wait (35, not 40) is its longest
    by_slot = await queries.queue_report(pool, period("halfhour"), ["housing"])
    assert [p["longest_wait"] for p in by_slot["series"]["housing"] if p["offered"]] == [60]
    assert await pool.fetchval(
        "SELECT max_wait FROM stats_queue_halfhour WHERE queue = 'housing'") == 60
    await pool.execute("UPDATE queue_attempts SET wait_seconds = 50 WHERE outcome = 'timeout'")
    assert await pool.fetchval(
        "SELECT max_wait FROM stats_queue_halfhour WHERE queue = 'housing'") == 50
    day = await queries.queue_report(pool, period(), ["housing"])  # the day rollup
    assert day["queues"][0]["longest_wait"] == 50
    await pool.execute("UPDATE queue_attempts SET wait_seconds = 60 WHERE outcome = 'timeout'")

    kept = await rollups(pool)
    async with pool.acquire() as conn:
        await rollup.refresh(conn, T0 - timedelta(days=1), T0 + timedelta(days=1))
    assert await rollups(pool) == kept


async def test_thresholds_from_config_rebuild(pool: asyncpg.Pool) -> None:
    await write_calls(pool)
    assert await rollup.write_thresholds(pool, {"housing": 30, "main": 20, "transport": 20,
                                                "social": 20}, 2)
    assert not await rollup.write_thresholds(pool, {"housing": 30, "main": 20,
                                                    "transport": 20, "social": 20}, 2)
    async with pool.acquire() as conn:
        await rollup.refresh(conn, T0 - timedelta(days=1), T0 + timedelta(days=1))
    report = await queries.queue_report(pool, period(), ["housing"])
    housing = report["queues"][0]
    # short abandons now < 2 s: the 3 s one is offered; SL 30 s: both answered in
    assert (housing["offered"], housing["abandoned"], housing["service_level"]) == (6, 3, 100.0)
    assert report["thresholds"]["housing"]["service_level"] == 30


async def test_buckets_and_unknown_periods(pool: asyncpg.Pool) -> None:
    await write_calls(pool)
    by_hour = await queries.queue_report(pool, period("hour"), ["housing", "transport"])
    assert len(by_hour["series"]["housing"]) == 24
    nine = [p for p in by_hour["series"]["transport"] if p["offered"]]
    assert [p["label"] for p in nine] == ["2026-03-02 09:00"]
    month = await queries.queue_report(pool, parse_period("2026-01-01", "2026-12-31", "month",
                                                          today=DAY), ["housing"])
    assert [p["offered"] for p in month["series"]["housing"]] == [0, 0, 5] + [0] * 9


async def test_operators_pauses_occupancy_surveys(pool: asyncpg.Pool) -> None:
    await write_calls(pool)
    changes = [(A, 0, "logged_in", None), (A, 0, "available", None),
               (A, 60, "paused", "lunch"), (A, 90, "available", None),
               (A, 100, "paused", "training"), (A, 110, "available", None),
               (A, 120, "logged_out", None)]
    for queue in ("housing", "main"):  # the same change reported for each queue
        await pool.executemany(
            "INSERT INTO operator_state_changes (interface, at, state, reason, queue) "
            "VALUES ($1, $2, $3, $4, $5)",
            [(i, T0 + timedelta(minutes=m), s, r, queue) for i, m, s, r in changes])
    report = await queries.operator_report(pool, period())
    a = next(o for o in report["operators"] if o["operator"] == A)
    assert (a["calls"], a["talk"], a["aht"]) == (2, 150, 75.0)
    assert a["pauses"] == {"lunch": 1800, "training": 600}
    assert a["available"] == 80 * 60  # 60 + 10 + 10 minutes, once although in two queues
    assert a["occupancy"] == round(100 * 150 / (150 + 4800), 1)
    assert (a["surveys"], a["survey_avg"]) == (2, 3.5)
    assert a["dispositions"] == {"consultation": 1, "appeal_created": 1}
    assert report["pause_reasons"] == ["lunch", "training"]


async def test_ivr_path(pool: asyncpg.Pool) -> None:
    journal = PostgresIvrJournal(pool)
    steps: list[tuple[str, str, dict[str, Any]]] = [
             ("1", "greeting", {"pressed": ""}), ("1", "menu", {"attempt": 1}),
             ("1", "choice", {"digit": "2", "queue": "transport", "attempt": 1}),
             ("1", "route", {"queue": "transport"}),
             ("2", "greeting", {"pressed": ""}), ("2", "menu", {"attempt": 1}),
             ("2", "timeout", {"attempt": 1}), ("2", "menu", {"attempt": 2}),
             ("2", "hangup", {"during": "menu"}),
             ("3", "greeting", {"pressed": "1"}),
             ("3", "choice", {"digit": "1", "queue": "housing", "attempt": 0}),
             # ivr-b's steps: a notice heard, then gone (saved); a callback booked
             ("4", "greeting", {"pressed": ""}),
             ("4", "notice", {"ids": [1], "kinds": ["water"], "skipped": False}),
             ("4", "hangup", {"during": "menu", "after_notice": True}),
             ("5", "greeting", {"pressed": ""}),
             ("5", "notice", {"ids": [1], "kinds": ["water"], "skipped": True}),
             ("5", "choice", {"digit": "", "queue": "main", "attempt": 0,
                              "reason": "notice_skip"}),
             ("5", "hours", {"queue": "main", "open": True, "override": None}),
             ("5", "callback_offer", {"queue": "main", "reason": "wait", "accepted": True}),
             ("5", "callback_booked", {"queue": "main", "request_id": 7, "reason": "wait"}),
             ("5", "exit", {"queue": "main", "exit": "callback"})]
    for n, (uid, step, detail) in enumerate(steps):
        await journal.record_step(IvrStep("pbx", uid, T0 + timedelta(seconds=n), step, detail))
        await journal.record_step(IvrStep("pbx", uid, T0 + timedelta(seconds=n), step, detail))
    report = await queries.ivr_report(pool, period())
    nodes = {n["step"]: n for n in report["nodes"]}
    assert report["callers"] == 5
    assert nodes["menu"]["options"] == {"1": 2, "2": 1}
    assert nodes["choice"]["options"] == {"1": 1, "2": 1, "notice_skip": 1}
    assert nodes["hangup"]["options"] == {"menu": 1, "menu (after notice)": 1}
    assert nodes["timeout"]["reached"] == 1
    assert nodes["greeting"]["options"] == {"-": 4, "pressed": 1}
    assert nodes["callback_offer"]["options"] == {"accepted": 1}
    assert report["summary"] == {"notices_heard": 1, "notices_skipped": 1,
                                 "saved_by_notice": 1, "callbacks_booked": 1}
    assert [n["step"] for n in report["nodes"]][:3] == ["greeting", "notice", "menu"]


async def test_staffing_forecast_from_past_weeks(pool: asyncpg.Pool) -> None:
    store = PostgresCallStore(pool)
    n = 0
    for week in (1, 2, 3, 4):  # 4, 8, 12, 16 answered calls at 09:00 the weeks before
        for i in range(4 * week):
            n += 1
            minute = -week * 7 * 24 * 60 + i
            await store.save_call(call(100 + n, minute, ANSWERED, [
                att("housing", minute, "answered", 5, 180, A)], operator_interface=A))
    await pool.execute(
        "INSERT INTO operator_state_changes (interface, at, state, queue) VALUES "
        "($1, $2, 'available', 'housing'), ($3, $2, 'available', 'housing')",
        A, T0 - timedelta(hours=1), B)
    report = await queries.staffing_report(pool, period("halfhour"), ["housing"])
    nine = next(p for p in report["queues"]["housing"] if p["slot"] == T0.isoformat())
    assert nine["forecast_calls"] == 10.0 and nine["forecast_aht"] == 180.0
    assert nine["load"] == 1.0  # 10 calls × 180 s ÷ 1800 s
    assert nine["logged_in"] == 2
    assert nine["agents_needed"] == 3  # Erlang C: P_W(2, 1 E) = 1/3, SL(20 s) 70.2 %; 3: 96.4 %
    assert nine["expected_sl"] == 70.2
