"""What the screen-pop knows of a caller, read from the real case store: the
citizen by number (either spelling), and the announcements active now for the
citizen's district — those the IVR played before the menu — and no others."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest_asyncio

from crm_sync.desk.operators import PostgresCallerContext
from tests.support.appeals import Clock, appeals_case_store, make_service
from tests.support.databases import MakeDatabase


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pool(make_database: MakeDatabase) -> AsyncIterator[asyncpg.Pool]:
    async with appeals_case_store(make_database, "caller_context") as p:
        yield p


async def announce(pool: asyncpg.Pool, district: str, text: str, *, kind: str = "water",
                   start: timedelta = timedelta(hours=-1), hours: float = 4,
                   cancelled: bool = False) -> None:
    starts = datetime.now(UTC) + start
    await pool.execute(
        """INSERT INTO announcements (kind, text, district_ids, starts_at, ends_at,
               cancelled_at, created_by)
           VALUES ($1, $2, ARRAY[(SELECT id FROM districts WHERE code = $3)], $4, $5, $6,
                   'test')""",
        kind, text, district, starts, starts + timedelta(hours=hours),
        datetime.now(UTC) if cancelled else None)


async def test_the_pop_carries_the_notices_of_the_callers_district_only(
    pool: asyncpg.Pool
) -> None:
    number = f"38063{uuid.uuid4().int % 10**7:07d}"
    await pool.execute(
        """INSERT INTO citizens (phone, name, district_id)
           VALUES ($1, 'Марія', (SELECT id FROM districts WHERE code = 'obolonskyi'))""",
        "+" + number)
    await announce(pool, "obolonskyi", "Немає гарячої води до 18:00")
    await announce(pool, "obolonskyi", "Аварія на тепломережі", kind="emergency")
    await announce(pool, "pecherskyi", "Перекрито вулицю")  # another district
    await announce(pool, "obolonskyi", "Вчорашнє", start=timedelta(days=-2))  # over
    await announce(pool, "obolonskyi", "Завтрашнє", start=timedelta(days=1))  # not yet
    await announce(pool, "obolonskyi", "Скасоване", cancelled=True)

    context = await PostgresCallerContext(pool, make_service(pool, Clock())).caller_context(
        number)
    assert context["citizen"]["name"] == "Марія"
    assert [(n["kind"], n["text"]) for n in context["notices"]] == [
        ("emergency", "Аварія на тепломережі"), ("water", "Немає гарячої води до 18:00")]

    stranger = await PostgresCallerContext(pool, make_service(pool, Clock())).caller_context(
        "380630000000")
    assert stranger["citizen"] is None and stranger["notices"] == []
