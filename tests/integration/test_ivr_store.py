"""What the IVR reads and writes in a real PostgreSQL: remembered languages,
appeals by the calling number (both spellings, never someone else's), survey
scores on the call and so on its operator."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest_asyncio

from crm_sync.appeals import AppealsService, NewAppeal
from crm_sync.ivr_store import (
    PhoneAppealLookup,
    PostgresCallerLanguages,
    PostgresSurveySink,
    phone_spellings,
)
from hotline.core.appeals import AppealStatus, Channel
from tests.support.appeals import OPERATOR, Clock, Ids, appeals_case_store, make_service
from tests.support.appeals import unique_street as street
from tests.support.databases import MakeDatabase


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pool(make_database: MakeDatabase) -> AsyncIterator[asyncpg.Pool]:
    async with appeals_case_store(make_database, "ivr_store") as p:
        yield p


def phone() -> str:
    return f"38067{uuid.uuid4().int % 10**7:07d}"


def test_phone_spellings() -> None:
    assert phone_spellings("380671234567") == ["380671234567", "+380671234567"]
    assert phone_spellings("+380671234567") == ["+380671234567", "380671234567"]
    assert phone_spellings(" ") == []


async def test_language_is_remembered_for_new_and_known_citizens(pool: asyncpg.Pool) -> None:
    languages = PostgresCallerLanguages(pool)
    newcomer = phone()
    assert await languages.preferred_language(newcomer) is None
    await languages.remember_language(newcomer, "en")
    assert await languages.preferred_language(newcomer) == "en"
    # a citizen registered with a "+" is the same caller
    known = phone()
    citizen_id = await Ids(pool).citizen(f"+{known}")
    await languages.remember_language(known, "en")
    assert await pool.fetchval(
        "SELECT preferred_language FROM citizens WHERE id = $1", citizen_id) == "en"
    assert await pool.fetchval("SELECT count(*) FROM citizens WHERE phone = $1", known) == 0
    await languages.remember_language(known, "uk")
    assert await languages.preferred_language(known) == "uk"


async def test_appeals_are_found_by_the_callers_number_only(pool: asyncpg.Pool) -> None:
    service: AppealsService = make_service(pool, Clock(datetime.now(UTC)))
    lookup = PhoneAppealLookup(service)
    mine, theirs = phone(), phone()
    ids = Ids(pool)
    my_id = await ids.citizen(f"+{mine}")  # registered with "+", calling without
    their_id = await ids.citizen(theirs)
    registered = []
    for who in (my_id, my_id, their_id):
        appeal = (await service.register(NewAppeal(
            channel=Channel.PHONE, category="no_hot_water", district="obolonskyi",
            address=f"{street()}, 1", text="Немає гарячої води", citizen_id=who), OPERATOR)).appeal
        registered.append(appeal)
    first, second, other = registered

    open_ones = await lookup.open_appeals_of_phone(mine)
    assert [a.number for a in open_ones] == [second.number, first.number]  # newest first
    assert open_ones[0].status is AppealStatus.ROUTED
    assert open_ones[0].executor_code and open_ones[0].due_at is not None

    heard = await lookup.appeal_for_caller(first.number, mine)
    assert heard is not None and heard.number == first.number
    # someone else's appeal is not read, whatever spelling of the number
    assert await lookup.appeal_for_caller(other.number, mine) is None
    assert await lookup.appeal_for_caller(other.number, f"+{mine}") is None
    assert await lookup.appeal_for_caller("1551-2026-999999", mine) is None
    assert await lookup.open_appeals_of_phone("") == []


async def test_survey_score_lands_on_the_call_and_its_operator(pool: asyncpg.Pool) -> None:
    surveys = PostgresSurveySink(pool)
    uniqueid = f"hotline-test-{uuid.uuid4().hex[:8]}.7"
    await pool.execute(
        """INSERT INTO calls (call_key, asterisk_server, uniqueid, linkedid, channel,
                              started_at, operator_interface, outcome)
           VALUES ($1, 'pbx-1', $2, $2, 'Local/1551@hotline-inbound-0001;2', now(),
                   'Local/201@hotline-sim-operator/n', 'answered')""",
        f"pbx-1:1:{uniqueid}", uniqueid)
    assert await surveys.record_survey("pbx-1", uniqueid, 4, "Local/201@hotline-sim-operator/n")
    row = await pool.fetchrow(
        "SELECT survey_score, operator_interface FROM calls WHERE uniqueid = $1", uniqueid)
    assert (row["survey_score"], row["operator_interface"]) == (
        4, "Local/201@hotline-sim-operator/n")
    # a call we do not know is not invented
    assert not await surveys.record_survey("pbx-1", "no-such-call", 5, "")
    # the column refuses what is not a score
    try:
        await pool.execute("UPDATE calls SET survey_score = 6 WHERE uniqueid = $1", uniqueid)
    except asyncpg.CheckViolationError:
        pass
    else:
        raise AssertionError("survey_score 6 accepted")
