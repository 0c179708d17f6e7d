"""One problem reported twice is one appeal: the second report is linked to the
first, its citizen joins the first, both stay visible; never silently doubled."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
import pytest_asyncio

from crm_sync.appeals import AppealFilter, AppealsService, NewAppeal
from hotline.core.appeals import Actor, ActorKind, AppealLookup, AppealStatus, Channel
from tests.support.appeals import OPERATOR, Clock, Ids, appeals_case_store, make_service
from tests.support.appeals import unique_street as street
from tests.support.databases import MakeDatabase


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pool(make_database: MakeDatabase) -> AsyncIterator[asyncpg.Pool]:
    async with appeals_case_store(make_database, "appeals_dup") as p:
        yield p


@pytest.fixture
def service(pool: asyncpg.Pool) -> AppealsService:
    return make_service(pool, Clock())


def report(address: str, citizen_id: int | None, *, category: str = "no_hot_water",
           lat: float | None = None, lon: float | None = None,
           channel: Channel = Channel.PHONE) -> NewAppeal:
    return NewAppeal(channel=channel, category=category, district="obolonskyi", address=address,
                     text="Немає гарячої води", citizen_id=citizen_id, latitude=lat,
                     longitude=lon)


async def test_two_citizens_reporting_one_problem_share_one_appeal(
    pool: asyncpg.Pool, service: AppealsService
) -> None:
    ids = Ids(pool)
    where = street()
    first_phone, second_phone = "+380501110001", "+380671110002"
    first_id = await ids.citizen(first_phone)
    second_id = await ids.citizen(second_phone)
    first = (await service.register(report(f"{where}, 7, кв. 12", first_id), OPERATOR)).appeal
    again = await service.register(
        report(f"м. Київ, {where}, буд. 7, кв. 40", second_id, channel=Channel.MOBILE),
        Actor(ActorKind.SYSTEM, "open311:mobile"))

    # the second report exists, with its own number, closed as a duplicate of the first
    second = again.appeal
    assert again.created and again.primary is not None and again.primary.id == first.id
    assert second.id != first.id and second.number != first.number
    assert second.status is AppealStatus.CLOSED and second.duplicate_of == first.id
    assert second.duplicate_of_number == first.number
    assert second.executor_id is None
    # the first one goes on, with both citizens
    primary = await service.get(first.id, OPERATOR)
    assert primary.status is AppealStatus.ROUTED
    assert primary.citizen_ids == (first_id, second_id)
    # both are visible: to staff, and to the second citizen (theirs and the one they joined)
    second_citizen = Actor(ActorKind.CITIZEN, "c2", citizen_id=second_id)
    assert (await service.get(second.id, second_citizen)).duplicate_of == first.id
    assert (await service.get(first.id, second_citizen)).id == first.id
    mine = await service.list_appeals(second_citizen)
    assert {a.id for a in mine.items} == {first.id, second.id}
    # what the IVR hears when the second citizen calls (through its port)
    lookup: AppealLookup = service
    by_phone = await lookup.open_appeals_of_phone(second_phone)
    assert [a.number for a in by_phone] == [first.number]
    heard = await lookup.appeal_for_caller(second.number, second_phone)
    assert heard is not None and heard.number == first.number
    assert await lookup.appeal_for_caller(first.number, "+380991234567") is None
    # the executor got one appeal, not two
    executor = await ids.executor_actor("kyivteploenergo")
    listed = await service.list_appeals(executor, AppealFilter(numbers=(first.number,
                                                                        second.number)))
    assert [a.number for a in listed.items] == [first.number]
    # the history and the outbox say so, on both appeals
    history = await service.history(first.id, OPERATOR)
    assert history[-1].event == "citizen_attached" and second.number in (history[-1].note or "")
    topics = await pool.fetch(
        """SELECT payload->>'number' AS number, topic, payload->>'event' AS event FROM outbox
           WHERE payload->>'appeal_id' IN ($1, $2) ORDER BY id""",
        str(first.id), str(second.id))
    assert [(r["number"], r["topic"], r["event"]) for r in topics][-3:] == [
        (second.number, "appeal.created", "created"),
        (second.number, "appeal.status_changed", "duplicate_linked"),
        (first.number, "appeal.citizen_attached", "citizen_attached"),
    ]
    attached = await pool.fetchval(
        """SELECT payload FROM outbox WHERE topic = 'appeal.citizen_attached'
           AND payload->>'appeal_id' = $1""", str(first.id))
    assert attached["citizen_ids"] == [first_id, second_id]


async def test_reports_arriving_at_once_make_one_primary(
    pool: asyncpg.Pool, service: AppealsService
) -> None:
    ids = Ids(pool)
    where = f"{street()}, 3"
    citizens = [await ids.citizen() for _ in range(8)]
    results = await asyncio.gather(*(
        service.register(report(where, c), OPERATOR) for c in citizens))
    primaries = [r.appeal for r in results if r.appeal.duplicate_of is None]
    assert len(primaries) == 1
    primary = await service.get(primaries[0].id, OPERATOR)
    assert sorted(primary.citizen_ids) == sorted(citizens)
    assert all(r.appeal.duplicate_of == primary.id for r in results
               if r.appeal.id != primary.id)
    address_norm = await pool.fetchval("SELECT address_norm FROM appeals WHERE id = $1",
                                       primary.id)
    assert await pool.fetchval(
        "SELECT count(*) FROM appeals WHERE address_norm = $1 AND duplicate_of IS NULL",
        address_norm) == 1


async def test_near_coordinates_are_the_same_place_far_ones_are_not(
    pool: asyncpg.Pool, service: AppealsService
) -> None:
    ids = Ids(pool)
    first = (await service.register(report(f"{street()}, 1", await ids.citizen(),
                                           category="asphalt_repair", lat=50.51234,
                                           lon=30.49876), OPERATOR)).appeal
    near = await service.register(report("біля зупинки", await ids.citizen(),
                                         category="asphalt_repair", lat=50.51250,
                                         lon=30.49890), OPERATOR)  # ~20 m away
    far = await service.register(report("біля школи", await ids.citizen(),
                                        category="asphalt_repair", lat=50.51434,
                                        lon=30.49876), OPERATOR)  # ~220 m away
    assert near.primary is not None and near.primary.id == first.id
    assert far.primary is None and far.appeal.status is AppealStatus.ROUTED


async def test_other_problems_and_finished_appeals_are_not_duplicates(
    pool: asyncpg.Pool, service: AppealsService
) -> None:
    ids = Ids(pool)
    where = f"{street()}, 9"
    water = (await service.register(report(where, await ids.citizen()), OPERATOR)).appeal
    lift = await service.register(report(where, await ids.citizen(),
                                         category="passenger_lift_out_of_order"), OPERATOR)
    assert lift.primary is None  # same building, another problem
    worker = await ids.executor_actor("kyivteploenergo")
    await service.accept(water.id, worker, channel=Channel.EXECUTOR_PORTAL)
    await service.resolve(water.id, worker, "Відновлено", channel=Channel.EXECUTOR_PORTAL)
    later = await service.register(report(where, await ids.citizen()), OPERATOR)
    assert later.primary is None and later.appeal.status is AppealStatus.ROUTED


async def test_the_same_citizen_reporting_twice_is_linked_and_not_attached_twice(
    pool: asyncpg.Pool, service: AppealsService
) -> None:
    ids = Ids(pool)
    citizen_id = await ids.citizen()
    where = f"{street()}, 11"
    first = (await service.register(report(where, citizen_id), OPERATOR)).appeal
    again = await service.register(report(where, citizen_id), OPERATOR)
    assert again.primary is not None and again.primary.citizen_ids == (citizen_id,)
    history = await service.history(first.id, OPERATOR)
    assert history[-1].details["citizen_joined"] is False
    assert first.status is AppealStatus.ROUTED
