"""Notices, callbacks and the hours override in the real PostgreSQL (issue 9):
the district a notice reaches, two dialers claiming at once (one callback per
request, in order of arrival), the outcome 'callback' stored, the audit."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest_asyncio

from crm_sync.call_store import PostgresCallStore
from crm_sync.callflow import (
    Announcements,
    PostgresCallbacks,
    PostgresHoursOverrides,
    PostgresNotices,
    notices_saved,
)
from hotline.core.records import CallbackRequest, CallOutcome
from tests.support.appeals import appeals_case_store
from tests.support.databases import MakeDatabase
from tests.support.web import make_call

_ids = itertools.count(1)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pool(make_database: MakeDatabase) -> AsyncIterator[asyncpg.Pool]:
    async with appeals_case_store(make_database, "callflow") as p:
        yield p


async def district(pool: asyncpg.Pool, code: str) -> int:
    value: int = await pool.fetchval("SELECT id FROM districts WHERE code = $1", code)
    return value


async def citizen(pool: asyncpg.Pool, phone: str, district_code: str | None) -> None:
    district_id = await district(pool, district_code) if district_code else None
    await pool.execute("INSERT INTO citizens (phone, district_id) VALUES ($1, $2)",
                       phone, district_id)


async def test_a_notice_reaches_callers_of_its_districts_in_its_period_only(
    pool: asyncpg.Pool,
) -> None:
    now = datetime.now(UTC)
    await citizen(pool, "380441110001", "obolonskyi")
    await citizen(pool, "380441110002", "pecherskyi")
    await citizen(pool, "380441110003", None)
    store = Announcements(pool)
    water = await store.create(kind="water", text="Немає води", by="sup",
                               district_ids=[await district(pool, "obolonskyi")],
                               starts_at=now - timedelta(hours=1), ends_at=now + timedelta(hours=1))
    await store.create(kind="road", text="Ремонт мосту", by="sup",
                       district_ids=[await district(pool, "obolonskyi")],
                       starts_at=now + timedelta(hours=1), ends_at=now + timedelta(hours=2))
    notices = PostgresNotices(pool)
    [found] = await notices.notices_for("380441110001", now)
    assert (found.id, found.kind, found.sound) == (water, "water", f"hotline/notices/{water}")
    assert await notices.notices_for("380441110002", now) == []  # another district
    assert await notices.notices_for("380441110003", now) == []  # no district known
    assert await notices.notices_for("380449999999", now) == []  # not a known citizen
    assert [n.kind for n in await notices.notices_for(
        "380441110001", now + timedelta(hours=1, minutes=5))] == ["road"]
    await store.cancel(water, "sup")
    assert await notices.notices_for("380441110001", now) == []


async def test_calls_the_notice_saved_are_counted_from_the_journal(pool: asyncpg.Pool) -> None:
    at = datetime(2026, 1, 5, 10, tzinfo=UTC)
    rows = [("a", "notice", {}), ("a", "hangup", {"during": "menu", "after_notice": True}),
            ("b", "notice", {}), ("b", "route", {}), ("c", "hangup", {"during": "menu"})]
    for i, (uid, step, detail) in enumerate(rows):
        await pool.execute(
            "INSERT INTO ivr_steps (asterisk_server, uniqueid, at, step, detail)"
            " VALUES ('pbx', $1, $2, $3, $4)", uid, at + timedelta(seconds=i), step, detail)
    assert await notices_saved(pool, at, at + timedelta(minutes=1)) == 1


def request(queue: str, arrived_at: datetime, max_attempts: int = 2) -> CallbackRequest:
    n = next(_ids)
    return CallbackRequest("pbx-it", f"1700000000.{n}", queue, f"3804400{n:05d}", "wait",
                           arrived_at, max_attempts)


async def test_two_dialers_claiming_at_once_place_each_request_once_in_order(
    pool: asyncpg.Pool,
) -> None:
    queue = f"q{next(_ids)}"
    store = PostgresCallbacks(pool)
    t0 = datetime(2026, 11, 30, 9, tzinfo=UTC)
    ids = [await store.book_callback(request(queue, t0 + timedelta(seconds=s)))
           for s in (30, 10, 20, 0, 40, 50)]
    # booking the same call again is the same request
    again = request(queue, t0)
    assert await store.book_callback(again) == await store.book_callback(again)
    await pool.execute("DELETE FROM callback_requests WHERE uniqueid = $1", again.uniqueid)

    placed: list[tuple[str, int]] = []

    async def dialer(name: str) -> None:
        # Two operators free: never more than two callbacks being dialled at once.
        for _ in range(12):
            claims = await asyncio.gather(*(store.claim(queue, 2, name, 60) for _ in range(3)))
            for job in claims:
                if job is not None:
                    placed.append((name, job.request_id))
                    dialling = await pool.fetchval(
                        "SELECT count(*) FROM callback_requests WHERE queue = $1"
                        " AND status = 'dialing'", queue)
                    assert dialling <= 2
                    await store.finish(job, True, "answered", 60)

    await asyncio.gather(dialer("a"), dialer("b"))
    assert sorted(rid for _, rid in placed) == sorted(ids)  # each exactly once
    attempts = await pool.fetch(
        "SELECT request_id, count(*) AS n FROM callback_attempts WHERE request_id = ANY($1)"
        " GROUP BY request_id", ids)
    assert {r["request_id"]: r["n"] for r in attempts} == dict.fromkeys(ids, 1)
    statuses = await pool.fetch("SELECT DISTINCT status FROM callback_requests WHERE queue = $1",
                                queue)
    assert [r["status"] for r in statuses] == ["done"]


async def test_claims_follow_arrival_and_respect_free_operators(pool: asyncpg.Pool) -> None:
    queue = f"q{next(_ids)}"
    store = PostgresCallbacks(pool)
    t0 = datetime(2026, 11, 30, 9, tzinfo=UTC)
    late = await store.book_callback(request(queue, t0 + timedelta(minutes=5)))
    early = await store.book_callback(request(queue, t0))
    assert await store.claim(queue, 0, "a", 60) is None  # nobody free
    first = await store.claim(queue, 1, "a", 60)
    assert first is not None and first.request_id == early and first.attempt == 1
    assert await store.claim(queue, 1, "b", 60) is None  # the free operator is promised
    # unanswered: retried later as attempt 2, up to max_attempts, then failed
    assert await store.finish(first, False, "no answer", 0) == "pending"
    second = await store.claim(queue, 1, "b", 60)
    assert second is not None and (second.request_id, second.attempt) == (early, 2)
    assert await store.finish(second, False, "busy", 0) == "failed"
    third = await store.claim(queue, 1, "a", 60)
    assert third is not None and third.request_id == late


async def test_a_dead_dialers_claim_is_taken_again_with_the_same_attempt(
    pool: asyncpg.Pool,
) -> None:
    queue = f"q{next(_ids)}"
    store = PostgresCallbacks(pool)
    rid = await store.book_callback(request(queue, datetime(2026, 11, 30, tzinfo=UTC)))
    job = await store.claim(queue, 1, "dead", 0.01)
    assert job is not None
    await asyncio.sleep(0.05)  # its lease runs out
    taken = await store.claim(queue, 1, "alive", 60)
    assert taken is not None and (taken.request_id, taken.attempt) == (rid, job.attempt)
    # the same attempt: its Originate has the same ChannelId, which Asterisk refuses
    # while the first call of that attempt still exists
    assert await store.finish(taken, True, "answered", 0) == "done"


async def test_the_callback_outcome_is_stored(pool: asyncpg.Pool) -> None:
    record = make_call("cb", datetime(2026, 11, 30, 9, tzinfo=UTC),
                       outcome=CallOutcome.CALLBACK, queue="housing")
    await PostgresCallStore(pool).save_call(record)
    assert await pool.fetchval("SELECT outcome FROM calls WHERE call_key = $1",
                               record.call_key) == "callback"


async def test_hours_override_is_audited(pool: asyncpg.Pool) -> None:
    store = PostgresHoursOverrides(pool)
    await store.set_override("*", "closed", "evacuation drill", "admin1")
    await store.set_override("housing", "open", "heating emergency", "admin2")
    current = await store.hours_overrides()
    assert {k: v.mode for k, v in current.items()} == {"*": "closed", "housing": "open"}
    await store.set_override("*", None, "drill over", "admin1")
    assert set(await store.hours_overrides()) == {"housing"}
    audit = await store.audit()
    assert [(a["scope"], a["mode"], a["set_by"]) for a in audit[:3]] == [
        ("*", None, "admin1"), ("housing", "open", "admin2"), ("*", "closed", "admin1")]
