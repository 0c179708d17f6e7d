"""An appeal's whole life on the real PostgreSQL: statuses, history, outbox rows
written with each change (and none when a change is refused), who sees what."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from crm_sync.appeals import AppealFilter, AppealsService, Cursor, NewAppeal, NewAttachment
from hotline.core.appeals import (
    Actor,
    ActorKind,
    AppealNotFound,
    AppealStatus,
    AppealTransitionForbidden,
    Channel,
    ReopenPeriodOver,
)
from hotline.core.errors import InvalidInput
from tests.support.appeals import (
    OPERATOR,
    Clock,
    Ids,
    appeals_case_store,
    house,
    make_service,
)
from tests.support.databases import MakeDatabase

S = AppealStatus


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pool(make_database: MakeDatabase) -> AsyncIterator[asyncpg.Pool]:
    async with appeals_case_store(make_database, "appeals_life") as p:
        yield p


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def service(pool: asyncpg.Pool, clock: Clock) -> AppealsService:
    return make_service(pool, clock)


async def _written(pool: asyncpg.Pool, appeal_id: int) -> tuple[int, int, int, int]:
    """(history rows, outbox rows, routing decisions, version) of one appeal."""
    return (
        await pool.fetchval("SELECT count(*) FROM appeal_history WHERE appeal_id = $1", appeal_id),
        await pool.fetchval("SELECT count(*) FROM outbox WHERE payload->>'appeal_id' = $1",
                            str(appeal_id)),
        await pool.fetchval("SELECT count(*) FROM appeal_routings WHERE appeal_id = $1",
                            appeal_id),
        await pool.fetchval("SELECT version FROM appeals WHERE id = $1", appeal_id),
    )


async def test_the_full_life_of_an_appeal(
    pool: asyncpg.Pool, service: AppealsService, clock: Clock
) -> None:
    ids = Ids(pool)
    citizen_id = await ids.citizen(name="Олена")
    citizen = Actor(ActorKind.CITIZEN, f"citizen:{citizen_id}", citizen_id=citizen_id)
    worker = await ids.executor_actor("zhek_holosiivskyi_1")
    address = house("вул. Ломоносова")

    registered = await service.register(NewAppeal(
        channel=Channel.PHONE, category="passenger_lift_out_of_order", district="holosiivskyi",
        address=address, text="Не працює ліфт у другому під'їзді", citizen_id=citizen_id,
        attachments=(NewAttachment("https://photos.example/lift.jpg", "image/jpeg"),),
    ), OPERATOR)
    appeal = registered.appeal
    assert registered.created and registered.primary is None
    assert re.fullmatch(r"1551-2026-\d{6,}", appeal.number)
    assert appeal.status is S.ROUTED and appeal.executor_code == "zhek_holosiivskyi_1"
    # SLA of a passenger lift: 1 working day → Tuesday 3 February, end of day in Kyiv
    assert appeal.due_at is not None
    assert appeal.due_at.isoformat() == "2026-02-03T21:59:59+00:00"
    assert appeal.citizen_ids == (citizen_id,)

    a = await service.accept(appeal.id, worker, channel=Channel.EXECUTOR_PORTAL)
    assert a.status is S.ACCEPTED
    await service.start_work(appeal.id, worker, channel=Channel.EXECUTOR_PORTAL)
    asked = await service.ask_clarification(appeal.id, worker, "Який номер під'їзду?",
                                            channel=Channel.EXECUTOR_PORTAL)
    assert asked.status is S.NEEDS_CLARIFICATION and asked.status_reason == "Який номер під'їзду?"
    clock.advance(days=2)  # Wednesday: two working days waited for the answer
    answered = await service.clarify(appeal.id, citizen, "Другий", channel=Channel.IVR)
    assert answered.status is S.IN_PROGRESS
    assert answered.due_at is not None and answered.due_at.date().isoformat() == "2026-02-05"
    clock.advance(hours=3)
    done = await service.resolve(appeal.id, worker, "Ліфт відремонтовано",
                                 channel=Channel.EXECUTOR_PORTAL)
    assert done.status is S.DONE
    clock.advance(days=1)
    reopened = await service.reopen(appeal.id, citizen, "Знову зупинився", channel=Channel.WEB)
    assert reopened.status is S.REOPENED and reopened.reopen_count == 1
    assert reopened.executor_code == "zhek_holosiivskyi_1"
    assert reopened.due_at is not None and reopened.due_at > done.due_at  # type: ignore[operator]
    again = await service.resolve(appeal.id, worker, "Замінено блок керування",
                                  channel=Channel.EXECUTOR_PORTAL)
    assert again.status is S.DONE
    closed = await service.close(appeal.id, OPERATOR, channel=Channel.PHONE,
                                 reason="citizen confirmed by phone")
    assert closed.status is S.CLOSED and closed.open311_status == "closed"

    history = await service.history(appeal.id, OPERATOR)
    assert [(h.from_status, h.to_status) for h in history] == [
        (None, S.REGISTERED), (S.REGISTERED, S.ROUTED), (S.ROUTED, S.ACCEPTED),
        (S.ACCEPTED, S.IN_PROGRESS), (S.IN_PROGRESS, S.NEEDS_CLARIFICATION),
        (S.NEEDS_CLARIFICATION, S.IN_PROGRESS), (S.IN_PROGRESS, S.DONE),
        (S.DONE, S.REOPENED), (S.REOPENED, S.DONE), (S.DONE, S.CLOSED),
    ]
    assert [h.actor_kind for h in history] == [
        "operator", "system", "executor", "executor", "executor", "citizen", "executor",
        "citizen", "executor", "operator"]
    assert [h.channel for h in history][:3] == ["phone", "system", "executor_portal"]
    assert history[5].channel == "ivr" and history[5].note == "Другий"
    assert history[1].note is not None and "zhek_holosiivskyi_1" in history[1].note
    assert history[0].actor == "operator:operator1"

    outbox = await pool.fetch(
        """SELECT topic, key, payload FROM outbox WHERE payload->>'appeal_id' = $1
           ORDER BY id""", str(appeal.id))
    assert [r["topic"] for r in outbox] == ["appeal.created"] + ["appeal.status_changed"] * 9
    assert len({r["key"] for r in outbox}) == 10
    assert [r["payload"]["to_status"] for r in outbox] == [h.to_status.value for h in history]
    routed = outbox[1]["payload"]
    assert routed["number"] == appeal.number and routed["from_status"] == "registered"
    assert routed["executor"]["code"] == "zhek_holosiivskyi_1"
    assert routed["category"]["name_uk"] == "Не працює пасажирський ліфт"
    phone = await pool.fetchval("SELECT phone FROM citizens WHERE id = $1", citizen_id)
    assert routed["citizen_ids"] == [citizen_id] and phone not in str(routed)
    asked_row = outbox[4]["payload"]
    assert asked_row["to_status"] == "needs_clarification"
    assert asked_row["note"] == "Який номер під'їзду?"
    assert outbox[0]["payload"]["text"] == "Не працює ліфт у другому під'їзді"

    attachments = await service.attachments(appeal.id, citizen)
    assert [a.url for a in attachments] == ["https://photos.example/lift.jpg"]
    # what an operator's screen-pop and Open311 lists see of it
    listed = (await service.list_appeals(OPERATOR, AppealFilter(citizen_id=citizen_id))).items
    assert [a.number for a in listed] == [appeal.number]
    assert listed[0].media_url == "https://photos.example/lift.jpg"
    assert listed[0].status_reason == "citizen confirmed by phone"
    assert (listed[0].address, listed[0].district_code) == (address, "holosiivskyi")
    assert listed[0].executor_name_uk is not None and listed[0].open311_status == "closed"


async def test_an_illegal_transition_is_refused_and_nothing_is_written(
    pool: asyncpg.Pool, service: AppealsService
) -> None:
    ids = Ids(pool)
    worker = await ids.executor_actor("rda_darnytskyi")
    appeal = (await service.register(NewAppeal(
        channel=Channel.WEB, category="no_entrance_lighting", district="darnytskyi",
        address=house(), text="Темно в під'їзді"), OPERATOR)).appeal
    assert appeal.executor_code == "rda_darnytskyi"
    before = await _written(pool, appeal.id)

    with pytest.raises(AppealTransitionForbidden) as caught:
        await service.resolve(appeal.id, worker, "done", channel=Channel.EXECUTOR_PORTAL)
    assert caught.value.details == {"from": "routed", "to": "done", "actor": "executor"}
    assert caught.value.error_id == "appeal_transition_forbidden"
    with pytest.raises(AppealTransitionForbidden, match="not allowed to a operator"):
        await service.accept(appeal.id, OPERATOR, channel=Channel.PHONE)
    with pytest.raises(InvalidInput, match="reason: required"):
        await service.reject(appeal.id, worker, " ", channel=Channel.EXECUTOR_PORTAL)
    with pytest.raises(InvalidInput, match="status: routing goes through"):
        await service.change_status(appeal.id, S.ROUTED, OPERATOR, channel=Channel.PHONE)

    assert await _written(pool, appeal.id) == before
    assert (await service.get(appeal.id, OPERATOR)).status is S.ROUTED


async def test_an_executor_sees_only_their_own_organisations_appeals(
    pool: asyncpg.Pool, service: AppealsService
) -> None:
    ids = Ids(pool)
    own = await ids.executor_actor("rda_podilskyi")
    other = await ids.executor_actor("rda_pecherskyi", "intruder")
    appeal = (await service.register(NewAppeal(
        channel=Channel.PHONE, category="territory_cleaning", district="podilskyi",
        address=house(), text="Сміття у дворі"), OPERATOR)).appeal
    assert appeal.executor_code == "rda_podilskyi"
    before = await _written(pool, appeal.id)
    for ref, attempt in (
        (appeal.id, service.get(appeal.id, other)),
        (appeal.number, service.get_by_number(appeal.number, other)),
        (appeal.id, service.history(appeal.id, other)),
        (appeal.id, service.comments(appeal.id, other)),
        (appeal.id, service.accept(appeal.id, other, channel=Channel.EXECUTOR_PORTAL)),
        (appeal.id, service.decline(appeal.id, other, "not ours",
                                    channel=Channel.EXECUTOR_PORTAL)),
        (appeal.id, service.add_comment(appeal.id, other, "hi", visibility="internal",
                                        channel=Channel.EXECUTOR_PORTAL)),
    ):
        with pytest.raises(AppealNotFound) as caught:
            await attempt
        # the very answer an appeal that does not exist gets
        assert caught.value.http_status == 404
        assert caught.value.message == f"appeal {ref} not found"
    with pytest.raises(AppealNotFound) as missing:
        await service.get(10**12, other)
    assert missing.value.message == f"appeal {10**12} not found"
    assert await _written(pool, appeal.id) == before
    listed = await service.list_appeals(other, AppealFilter(executor_id=own.executor_id))
    assert appeal.id not in [a.id for a in listed.items]  # the filter cannot widen their view
    mine = await service.list_appeals(own, AppealFilter(statuses=frozenset({S.ROUTED})))
    assert appeal.id in [a.id for a in mine.items]
    assert (await service.get(appeal.id, own)).number == appeal.number

    citizen_id = await ids.citizen()
    stranger = Actor(ActorKind.CITIZEN, "someone", citizen_id=citizen_id)
    with pytest.raises(AppealNotFound):
        await service.get(appeal.id, stranger)


async def test_comments_internal_and_for_the_citizen_each_write_an_outbox_row(
    pool: asyncpg.Pool, service: AppealsService
) -> None:
    ids = Ids(pool)
    citizen_id = await ids.citizen()
    citizen = Actor(ActorKind.CITIZEN, "c", citizen_id=citizen_id)
    worker = await ids.executor_actor("rda_obolonskyi")
    appeal = (await service.register(NewAppeal(
        channel=Channel.MOBILE, category="no_cold_water", district="obolonskyi",
        address=house(), text="Немає холодної води", citizen_id=citizen_id), OPERATOR)).appeal
    await service.add_comment(appeal.id, worker, "Бригада виїхала", visibility="citizen",
                              channel=Channel.EXECUTOR_PORTAL)
    await service.add_comment(appeal.id, worker, "Труба під дорогою, потрібен дозвіл",
                              visibility="internal", channel=Channel.EXECUTOR_PORTAL)
    assert [c.body for c in await service.comments(appeal.id, citizen)] == ["Бригада виїхала"]
    assert len(await service.comments(appeal.id, OPERATOR)) == 2
    with pytest.raises(InvalidInput, match="body"):
        await service.add_comment(appeal.id, worker, "", visibility="citizen",
                                  channel=Channel.EXECUTOR_PORTAL)
    rows = await pool.fetch(
        """SELECT payload FROM outbox WHERE topic = 'appeal.comment_added'
           AND payload->>'appeal_id' = $1 ORDER BY id""", str(appeal.id))
    assert [(r["payload"]["visibility"], r["payload"]["body"]) for r in rows] == [
        ("citizen", "Бригада виїхала"), ("internal", None)]
    await service.add_attachment(appeal.id, citizen, "https://photos.example/tap.jpg",
                                 channel=Channel.MOBILE)
    with pytest.raises(InvalidInput, match="url"):
        await service.add_attachment(appeal.id, citizen, "file:///etc/passwd",
                                     channel=Channel.MOBILE)
    assert await pool.fetchval(
        """SELECT count(*) FROM outbox WHERE topic = 'appeal.attachment_added'
           AND payload->>'appeal_id' = $1""", str(appeal.id)) == 1


async def test_reopening_only_within_the_period_then_the_job_closes_it(
    pool: asyncpg.Pool, service: AppealsService, clock: Clock
) -> None:
    ids = Ids(pool)
    worker = await ids.executor_actor("rda_sviatoshynskyi")
    citizen_id = await ids.citizen()
    citizen = Actor(ActorKind.CITIZEN, "c", citizen_id=citizen_id)
    appeal = (await service.register(NewAppeal(
        channel=Channel.PHONE, category="territory_cleaning", district="sviatoshynskyi",
        address=house(), text="Листя не прибрано", citizen_id=citizen_id), OPERATOR)).appeal
    await service.accept(appeal.id, worker, channel=Channel.EXECUTOR_PORTAL)
    await service.resolve(appeal.id, worker, "Прибрано", channel=Channel.EXECUTOR_PORTAL)
    clock.advance(days=31)
    before = await _written(pool, appeal.id)
    with pytest.raises(ReopenPeriodOver) as caught:
        await service.reopen(appeal.id, citizen, "Не прибрано", channel=Channel.WEB)
    assert caught.value.error_id == "appeal_reopen_period_over"
    assert await _written(pool, appeal.id) == before
    assert await service.close_settled() >= 1
    closed = await service.get(appeal.id, OPERATOR)
    assert closed.status is S.CLOSED and "not reopened within 30 days" in (
        closed.status_reason or "")
    history = await service.history(appeal.id, OPERATOR)
    assert history[-1].actor == "system:appeals"


async def test_bad_input_is_refused_naming_the_field(service: AppealsService) -> None:
    good: dict[str, Any] = dict(channel=Channel.PHONE, category="no_hot_water", text="x",
                                address=house())
    changes: list[tuple[dict[str, Any], str]] = [
        ({"category": "no_such"}, "category"), ({"district": "atlantis"}, "district"),
        ({"text": "   "}, "text"), ({"latitude": 50.4}, "longitude"),
        ({"citizen_phone": "call me"}, "citizen_phone"), ({"citizen_id": 10**12}, "citizen_id"),
        ({"attachments": (NewAttachment("javascript:alert(1)"),)}, "attachments[0].url"),
    ]
    for change, field in changes:
        with pytest.raises(InvalidInput) as caught:
            await service.register(NewAppeal(**{**good, **change}), OPERATOR)
        assert caught.value.message.startswith(field + ":"), caught.value.message


async def test_a_retried_intake_with_the_same_key_gives_the_same_appeal(
    pool: asyncpg.Pool, service: AppealsService
) -> None:
    new = NewAppeal(channel=Channel.WEB, category="asphalt_repair", district="dniprovskyi",
                    address=house(), text="Яма на дорозі", intake_key="web-req-" + house())
    site = Actor(ActorKind.SYSTEM, "open311:web")
    first = await service.register(new, site)
    second = await service.register(new, site)
    assert first.created and not second.created
    assert first.appeal.id == second.appeal.id
    assert first.appeal.executor_code == "kyivavtodor"
    assert await pool.fetchval("SELECT count(*) FROM appeals WHERE intake_key = $1",
                               new.intake_key) == 1


async def test_overdue_and_due_soon(
    pool: asyncpg.Pool, service: AppealsService, clock: Clock
) -> None:
    ids = Ids(pool)
    worker = await ids.executor_actor("rda_shevchenkivskyi")
    lift = (await service.register(NewAppeal(
        channel=Channel.PHONE, category="freight_lift_out_of_order", district="shevchenkivskyi",
        address=house(), text="Вантажний ліфт"), OPERATOR)).appeal  # 3 working days
    waiting = (await service.register(NewAppeal(
        channel=Channel.PHONE, category="freight_lift_out_of_order", district="shevchenkivskyi",
        address=house(), text="Вантажний ліфт теж"), OPERATOR)).appeal
    await service.accept(waiting.id, worker, channel=Channel.EXECUTOR_PORTAL)
    await service.ask_clarification(waiting.id, worker, "Який поверх?",
                                    channel=Channel.EXECUTOR_PORTAL)
    assert lift.due_at is not None and lift.due_at.date().isoformat() == "2026-02-05"

    on_time = clock.now + timedelta(days=1)
    soon = (await service.due_soon(worker, now=lift.due_at - timedelta(hours=5))).items
    assert lift.id in [a.id for a in soon]
    assert lift.id not in [a.id for a in (await service.overdue(worker, now=on_time)).items]
    late = lift.due_at + timedelta(minutes=1)
    overdue = (await service.overdue(worker, now=late)).items
    assert lift.id in [a.id for a in overdue]
    assert waiting.id not in [a.id for a in overdue]  # the clock stops while the citizen is asked
    page = await service.list_appeals(worker, AppealFilter(overdue_at=late))
    assert lift.id in [a.id for a in page.items] and waiting.id not in [a.id for a in page.items]
    # pages through what is overdue, most overdue first, city-wide for a supervisor
    first = await service.overdue(OPERATOR, now=late, limit=1)
    assert first.next_cursor is not None
    second = await service.overdue(OPERATOR, now=late, limit=1, after=first.next_cursor)
    assert second.items[0].id != first.items[0].id
    assert (second.items[0].due_at, second.items[0].id) > (
        first.items[0].due_at, first.items[0].id)
    other = await ids.executor_actor("rda_holosiivskyi")
    assert lift.id not in [a.id for a in (await service.overdue(other, now=late)).items]


async def test_keyset_pages_cover_everything_once(
    pool: asyncpg.Pool, service: AppealsService, clock: Clock
) -> None:
    citizen_id = await Ids(pool).citizen()
    made = []
    for i in range(7):
        clock.advance(seconds=0.000001 if i % 2 else 0)  # ties on created_at are broken by id
        made.append((await service.register(NewAppeal(
            channel=Channel.PHONE, category="territory_cleaning", district="dniprovskyi",
            address=house(), text=f"report {i}", citizen_id=citizen_id), OPERATOR)).appeal.id)
    seen: list[int] = []
    token: str | None = None
    while True:
        page = await service.list_appeals(
            OPERATOR, AppealFilter(citizen_id=citizen_id), limit=3,
            after=Cursor.decode(token) if token else None)
        seen += [a.id for a in page.items]
        if page.next_cursor is None:
            break
        token = page.next_cursor.encode()  # what a client carries between requests
    assert seen == sorted(made, reverse=True)
    with pytest.raises(InvalidInput, match="cursor"):
        Cursor.decode("not-a-cursor")
