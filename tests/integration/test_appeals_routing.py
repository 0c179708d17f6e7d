"""Routing to executors on the real PostgreSQL: rules from config/routing.toml,
"not ours" to the next rule and the fallback, re-routing on a new category or
address, every decision kept with its reason, admins' edits kept across loads."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
import pytest_asyncio

from crm_sync.appeals import AppealsService, NewAppeal, RoutingAdmin, load_routing_config
from crm_sync.appeals.config import RoutingConfig, load_appeals_config
from hotline.core.appeals import AppealNotFound, AppealStatus, Channel, NoExecutorLeft
from hotline.core.errors import Forbidden
from tests.support.appeals import (
    ADMIN,
    OPERATOR,
    Clock,
    Ids,
    appeals_case_store,
    house,
    make_service,
)
from tests.support.databases import MakeDatabase
from tests.support.paths import CONFIG_DIR

S = AppealStatus


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pool(make_database: MakeDatabase) -> AsyncIterator[asyncpg.Pool]:
    async with appeals_case_store(make_database, "appeals_routing") as p:
        yield p


@pytest.fixture
def service(pool: asyncpg.Pool) -> AppealsService:
    return make_service(pool, Clock())


async def _counts(pool: asyncpg.Pool, appeal_id: int) -> tuple[int, ...]:
    return tuple([
        await pool.fetchval("SELECT count(*) FROM appeal_history WHERE appeal_id = $1", appeal_id),
        await pool.fetchval("SELECT count(*) FROM outbox WHERE payload->>'appeal_id' = $1",
                            str(appeal_id)),
        await pool.fetchval("SELECT count(*) FROM appeal_routings WHERE appeal_id = $1",
                            appeal_id),
        await pool.fetchval("""SELECT count(*) FROM appeal_routings WHERE appeal_id = $1
                               AND declined_at IS NOT NULL""", appeal_id),
        await pool.fetchval("SELECT version FROM appeals WHERE id = $1", appeal_id),
    ])


async def test_not_ours_goes_to_the_next_rule_then_the_dispatcher_then_a_person(
    pool: asyncpg.Pool, service: AppealsService
) -> None:
    ids = Ids(pool)
    zhek = await ids.executor_actor("zhek_holosiivskyi_1")
    rda = await ids.executor_actor("rda_holosiivskyi")
    dispatcher = await ids.executor_actor("dispatcher_1551")
    appeal = (await service.register(NewAppeal(
        channel=Channel.PHONE, category="no_entrance_lighting", district="holosiivskyi",
        address=house("вул. Васильківська"), text="Темно на сходах"), OPERATOR)).appeal
    assert appeal.executor_code == "zhek_holosiivskyi_1"

    await service.accept(appeal.id, zhek, channel=Channel.EXECUTOR_PORTAL)
    moved = await service.decline(appeal.id, zhek, "Будинок на балансі іншої ЖЕД",
                                  channel=Channel.EXECUTOR_PORTAL)
    assert moved.status is S.ROUTED and moved.executor_code == "rda_holosiivskyi"
    with pytest.raises(AppealNotFound):  # the decliner no longer sees it
        await service.get(appeal.id, zhek)
    moved = await service.decline(appeal.id, rda, "Не наша компетенція",
                                  channel=Channel.EXECUTOR_PORTAL)
    assert moved.executor_code == "dispatcher_1551"

    before = await _counts(pool, appeal.id)
    with pytest.raises(NoExecutorLeft) as caught:
        await service.decline(appeal.id, dispatcher, "no", channel=Channel.EXECUTOR_PORTAL)
    assert caught.value.error_id == "appeal_no_executor_left"
    assert await _counts(pool, appeal.id) == before  # not even the decline was kept
    assert (await service.get(appeal.id, OPERATOR)).executor_code == "dispatcher_1551"

    with pytest.raises(Forbidden):
        await service.assign(appeal.id, "rda_holosiivskyi", dispatcher, "mine")
    assigned = await service.assign(appeal.id, "zhek_holosiivskyi_1", OPERATOR,
                                    "checked the register: it is theirs")
    assert assigned.executor_code == "zhek_holosiivskyi_1" and assigned.status is S.ROUTED

    routings = await service.routings(appeal.id, OPERATOR)
    assert [(r.trigger, r.executor_code) for r in routings] == [
        ("created", "zhek_holosiivskyi_1"), ("declined", "rda_holosiivskyi"),
        ("declined", "dispatcher_1551"), ("manual", "zhek_holosiivskyi_1")]
    assert routings[0].declined_reason == "Будинок на балансі іншої ЖЕД"
    assert routings[0].declined_by == f"executor:{zhek.name}"
    assert "Housing office 1 of Holosiivskyi" in routings[0].reason
    assert "skipped zhek_holosiivskyi_1" in routings[1].reason
    assert "fallback executor dispatcher_1551" in routings[2].reason
    history = await service.history(appeal.id, OPERATOR)
    assert [(h.from_status, h.to_status) for h in history][2:] == [
        (S.ROUTED, S.ACCEPTED), (S.ACCEPTED, S.ROUTED), (S.ROUTED, S.ROUTED),
        (S.ROUTED, S.ROUTED)]
    assert history[3].note is not None and history[3].note.startswith(
        "declined by zhek_holosiivskyi_1: Будинок на балансі іншої ЖЕД")
    outbox = await pool.fetch(
        """SELECT payload FROM outbox WHERE payload->>'appeal_id' = $1
           AND topic = 'appeal.status_changed' ORDER BY id""", str(appeal.id))
    assert [r["payload"]["executor"]["code"] for r in outbox] == [
        "zhek_holosiivskyi_1", "zhek_holosiivskyi_1", "rda_holosiivskyi", "dispatcher_1551",
        "zhek_holosiivskyi_1"]


async def test_a_new_category_or_address_reroutes_and_forgets_old_declines(
    pool: asyncpg.Pool, service: AppealsService
) -> None:
    ids = Ids(pool)
    teplo = await ids.executor_actor("kyivteploenergo")
    appeal = (await service.register(NewAppeal(
        channel=Channel.PHONE, category="no_hot_water", district="obolonskyi",
        address=house(), text="Не працює ліфт"), OPERATOR)).appeal
    assert appeal.executor_code == "kyivteploenergo"
    await service.accept(appeal.id, teplo, channel=Channel.EXECUTOR_PORTAL)

    fixed = await service.update_details(
        appeal.id, OPERATOR, channel=Channel.PHONE, reason="operator chose the wrong issue",
        category="passenger_lift_out_of_order")
    assert fixed.category_code == "passenger_lift_out_of_order"
    assert fixed.executor_code == "rda_obolonskyi" and fixed.status is S.ROUTED
    assert fixed.due_at is not None and fixed.due_at.date().isoformat() == "2026-02-03"

    rda = await ids.executor_actor("rda_obolonskyi")
    moved = await service.decline(appeal.id, rda, "Ліфти в нас обслуговує ЖЕД",
                                  channel=Channel.EXECUTOR_PORTAL)
    assert moved.executor_code == "dispatcher_1551"
    # the citizen gives the exact address: a housing office's street
    rerouted = await service.update_details(
        appeal.id, OPERATOR, channel=Channel.PHONE, reason="address clarified",
        address=house("вул. Героїв Дніпра"))
    assert rerouted.executor_code == "zhek_obolonskyi_3"
    history = await service.history(appeal.id, OPERATOR)
    events = [(h.event, h.from_status, h.to_status) for h in history]
    assert ("updated", S.ACCEPTED, S.ACCEPTED) in events
    assert events[-2:] == [("updated", S.ROUTED, S.ROUTED), ("status", S.ROUTED, S.ROUTED)]
    assert history[-1].note is not None and history[-1].note.startswith("address changed; ")
    assert history[-2].details["changed"]["address"][1].startswith("вул. Героїв Дніпра")
    routings = await service.routings(appeal.id, OPERATOR)
    assert [r.trigger for r in routings] == [
        "created", "category_changed", "declined", "address_changed"]
    # another correction that keeps the executor does not disturb them
    same = await service.update_details(
        appeal.id, OPERATOR, channel=Channel.PHONE, reason="house number typo",
        address=house("вул. Героїв Дніпра"))
    assert same.executor_code == "zhek_obolonskyi_3" and same.status is S.ROUTED
    assert (await service.routings(appeal.id, OPERATOR))[-1].reason.startswith(
        "executor unchanged")


async def test_an_area_rule_and_a_dry_run(pool: asyncpg.Pool, service: AppealsService) -> None:
    appeal = (await service.register(NewAppeal(
        channel=Channel.MOBILE, category="territory_cleaning", district="pecherskyi",
        address="", latitude=50.4350, longitude=30.5560, text="Сміття"), OPERATOR)).appeal
    assert appeal.executor_code == "zhek_pecherskyi_2"
    admin = RoutingAdmin(pool)
    far = await admin.explain(category="territory_cleaning", district="pecherskyi",
                              point=(50.4200, 30.5300))
    assert far.rule is not None and far.rule.executor_code == "rda_pecherskyi"
    nowhere = await admin.explain(category="territory_cleaning")
    assert nowhere.rule is not None and nowhere.rule.executor_code == "dispatcher_1551"


async def test_admin_edits_survive_a_reload_and_dropped_rules_are_switched_off(
    make_database: MakeDatabase,
) -> None:
    async with appeals_case_store(make_database, "appeals_rules") as pool:
        config = load_appeals_config(CONFIG_DIR)
        admin = RoutingAdmin(pool)
        with pytest.raises(Forbidden):
            await admin.save_rule(OPERATOR, executor="kyivavtodor", category="asphalt_repair",
                                  district=None, priority=1)
        rule_id = await admin.save_rule(ADMIN, executor="kyivavtodor", category="asphalt_repair",
                                        district=None, priority=10, name="roads first")
        await admin.set_fallback(ADMIN, "rda_pecherskyi")
        # the file (which has the roads rule at priority 90) drops the heat utility's
        # rule and is loaded again
        assert any(r.executor == "kyivavtodor" and r.priority == 90
                   for r in config.routing.rules)
        routing = RoutingConfig(
            config.routing.executors,
            tuple(r for r in config.routing.rules if r.executor != "kyivteploenergo"),
            config.routing.fallback_executor)
        first = await load_routing_config(pool, routing, config.settings)
        assert first == await load_routing_config(pool, routing, config.settings)
        rules = {r.id: r for r in await admin.list_rules(include_inactive=True)}
        assert rules[rule_id].priority == 10 and rules[rule_id].source == "admin"
        assert rules[rule_id].updated_by == "admin:admin1"
        teplo = [r for r in rules.values() if r.executor_code == "kyivteploenergo"]
        assert teplo and not any(r.active for r in teplo)
        fallback = [r for r in rules.values() if r.fallback and r.active]
        assert [r.executor_code for r in fallback] == ["rda_pecherskyi"]
        hot_water = await admin.explain(category="no_hot_water", district="darnytskyi")
        assert hot_water.rule is not None and hot_water.rule.executor_code == "rda_darnytskyi"
        await admin.deactivate_rule(ADMIN, rule_id)
        assert rule_id not in {r.id for r in await admin.list_rules()}
        sla = await pool.fetchval(
            "SELECT sla_working_days FROM categories WHERE code = 'passenger_lift_out_of_order'")
        assert sla == config.settings.sla["passenger_lift_out_of_order"]
