"""The operator desk over HTTP and websockets, with a real PostgreSQL and Redis, the
command link across Redis to a DeskController on the faithful fake AMI: who may
act on which phone, CSRF, Asterisk's refusals, the ami role absent, and the
screen-pop reaching only its operator's desk sockets (two tabs, after a reconnect)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import asyncpg
import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from crm_sync.appeals import NewAppeal
from crm_sync.command_bus import DeskCommandServer, RedisDeskCommands
from crm_sync.desk.operators import (
    PostgresCallerContext,
    PostgresOperatorDirectory,
    desk_operator,
    load_presence_config,
    set_skills,
)
from crm_sync.operator_states import PostgresOperatorStates
from cti_bridge.ami_client import AmiClient
from cti_bridge.ami_protocol import AmiMessage
from cti_bridge.call_tracker import CallTracker
from cti_bridge.desk import DeskController
from hotline.core.appeals import Channel
from hotline.core.desk import DeskCommand, DeskUnavailable, pop_key
from hotline.core.records import OperatorStateChange
from hotline.web.app import build_web_app
from hotline.web.desk import DeskSettings, configure
from ivr.menu import load_catalogue
from tests.support.appeals import OPERATOR, Clock, appeals_case_store, house, make_service
from tests.support.databases import MakeDatabase
from tests.support.fake_ami_server import FakeAmiServer
from tests.support.paths import CONFIG_DIR
from tests.support.web import SESSION_KEY, User, add_user, sign_in_form

pytestmark = pytest.mark.asyncio(loop_scope="session")
Client = TestClient[web.Request, web.Application]


@dataclass
class Desk:
    pool: asyncpg.Pool
    app: web.Application
    ami_server: FakeAmiServer
    commands: DeskCommandServer
    olena: User
    petro: User
    olena_interface: str

    def sent(self, action: str) -> list[AmiMessage]:
        return [m for m in self.ami_server.actions
                if (m.get("Action") or "").lower() == action.lower()]


@pytest_asyncio.fixture
async def desk(make_database: MakeDatabase, redis_client: aioredis.Redis) -> AsyncIterator[Desk]:
    async with appeals_case_store(make_database, "desk") as pool:
        catalogue = load_catalogue(CONFIG_DIR)
        config = load_presence_config(CONFIG_DIR)
        app = build_web_app(pool, redis_client, SESSION_KEY)
        configure(app, DeskSettings(config, {q.name: q.label_uk
                                             for q in catalogue.queues.values()}),
                  RedisDeskCommands(redis_client, timeout=3))
        olena = await add_user(pool, "operator", "Олена Оператор")
        petro = await add_user(pool, "operator", "Петро Оператор")
        interface = f"Local/{uuid.uuid4().int % 10**6}@hotline-sim-operator/n"
        await pool.execute("UPDATE operators SET queue_interface = $1 WHERE login = $2",
                           interface, olena.login)
        await set_skills(pool, olena.login, {"housing": 0, "main": 3}, catalogue.names)
        server = FakeAmiServer(username="hotline", secret="s")
        await server.start()
        ami = AmiClient("127.0.0.1", server.port, "hotline", "s", action_timeout=2,
                        ping_interval=0)
        tracker = CallTracker("test", ["hotline-inbound"])
        ami.on_event("*", tracker.handle)
        controller = DeskController(
            ami, tracker, redis_client, PostgresOperatorDirectory(pool),
            PostgresCallerContext(pool, make_service(pool, Clock())), config,
            queues={q.name: {"label": q.label_uk, "sphere": q.sphere}
                    for q in catalogue.queues.values()})
        commands = DeskCommandServer(redis_client, controller.execute)
        commands.start()
        await ami.start()
        await asyncio.wait_for(commands.subscribed.wait(), 10)
        try:
            yield Desk(pool, app, server, commands, olena, petro, interface)
        finally:
            await commands.stop()
            await controller.stop()
            await ami.close()
            await server.stop()
            await redis_client.delete(pop_key(olena.login), pop_key(petro.login))


@pytest_asyncio.fixture
async def client(desk: Desk) -> AsyncIterator[Client]:
    async with TestClient(TestServer(desk.app)) as test_client:
        yield test_client


async def signed_in(client: Client, user: User) -> tuple[Client, str]:
    """Another browser (cookie jar of its own) on the same server."""
    other: Client = TestClient(client.server)  # type: ignore[assignment]
    await other.start_server()  # already started: only the session is new
    return other, await sign_in_form(other, user)


async def post(client: Client, path: str, token: str | None, body: dict[str, str],
               ) -> tuple[int, dict[str, Any]]:
    headers = {"X-CSRF-Token": token} if token is not None else {}
    response = await client.post(path, json=body, headers=headers)
    return response.status, await response.json()


async def test_signed_out_and_cross_site_requests_are_refused(desk: Desk, client: Client) -> None:
    status, body = await post(client, "/api/desk/presence", None, {"action": "ready"})
    assert (status, body["error"]) == (403, "csrf_failed")  # no session, so no token either
    state = await client.get("/api/desk/state")
    assert (state.status, (await state.json())["error"]) == (401, "not_signed_in")
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect("/ws/desk")
    assert refused.value.status == 401
    page = await client.get("/desk", allow_redirects=False)
    assert page.status == 302 and page.headers["Location"] == "/login"
    token = await sign_in_form(client, desk.olena)
    status, body = await post(client, "/api/desk/presence", None, {"action": "ready"})
    assert (status, body["error"]) == (403, "csrf_failed")
    status, body = await post(client, "/api/desk/presence", "0" * 64, {"action": "ready"})
    assert (status, body["error"]) == (403, "csrf_failed")
    assert desk.sent("QueuePause") == []
    status, _ = await post(client, "/api/desk/presence", token, {"action": "ready"})
    assert status == 200 and len(desk.sent("QueuePause")) == 1


async def test_an_operator_acts_only_on_their_own_phone(desk: Desk, client: Client) -> None:
    token = await sign_in_form(client, desk.olena)
    status, body = await post(client, "/api/desk/presence", token,
                              {"action": "pause", "reason": "lunch", "operator": desk.petro.login})
    assert (status, body["error"]) == (403, "forbidden")
    status, body = await post(client, "/api/desk/call", token,
                              {"action": "hangup", "operator": desk.petro.login})
    assert status == 403
    state = await client.get(f"/api/desk/state?operator={desk.petro.login}")
    assert state.status == 403
    assert desk.sent("QueuePause") == [] and desk.sent("Hangup") == []

    status, body = await post(client, "/api/desk/presence", token,
                              {"action": "pause", "reason": "lunch"})
    assert status == 200, body
    [pause] = desk.sent("QueuePause")
    assert (pause.get("Interface"), pause.get("Reason")) == (desk.olena_interface, "lunch")
    status, body = await post(client, "/api/desk/presence", token,
                              {"action": "pause", "reason": "sleeping"})
    assert (status, body["error"]) == (400, "invalid_input")


async def test_a_supervisor_may_act_on_anyones_phone(desk: Desk, client: Client) -> None:
    supervisor = await add_user(desk.pool, "supervisor")
    token = await sign_in_form(client, supervisor)
    status, body = await post(client, "/api/desk/presence", token,
                              {"action": "pause", "reason": "training",
                               "operator": desk.petro.login})
    assert status == 200, body
    [pause] = desk.sent("QueuePause")
    assert pause.get("Interface") == f"PJSIP/{desk.petro.login}"  # a SIP phone by default
    other, other_token = await signed_in(client, await add_user(desk.pool, "executor"))
    try:
        status, _ = await post(other, "/api/desk/presence", other_token, {"action": "ready"})
        assert status == 403
        assert (await other.get("/desk", allow_redirects=False)).status == 403
    finally:
        await other.session.close()


async def test_login_uses_the_skills_and_shows_asterisks_refusal(
    desk: Desk, client: Client
) -> None:
    token = await sign_in_form(client, desk.olena)
    status, body = await post(client, "/api/desk/presence", token, {"action": "login"})
    assert status == 200, body
    assert [(m.get("Queue"), m.get("Penalty"), m.get("Interface"))
            for m in desk.sent("QueueAdd")] == [("housing", "0", desk.olena_interface),
                                               ("main", "3", desk.olena_interface)]
    desk.ami_server.errors["queuepause"] = "Interface not found"
    status, body = await post(client, "/api/desk/presence", token,
                              {"action": "pause", "reason": "lunch"})
    assert (status, body["error"]) == (409, "asterisk_refused")
    assert body["message"] == "Asterisk refused QueuePause: Interface not found"
    desk.ami_server.lists["queuestatus"] = ("QueueStatusComplete", [
        {"Event": "QueueMember", "Queue": "housing", "Location": desk.olena_interface,
         "StateInterface": desk.olena_interface, "Paused": "1", "PausedReason": "lunch",
         "Status": "1", "InCall": "0", "CallsTaken": "2", "Penalty": "0"},
        {"Event": "QueueMember", "Queue": "main", "Location": "PJSIP/someone-else",
         "Paused": "0", "Status": "1"}])
    state = await (await client.get("/api/desk/state")).json()
    assert state["members"] == [{"queue": "housing", "interface": desk.olena_interface,
                                 "paused": True, "reason": "lunch", "status": "available",
                                 "in_call": False, "calls_taken": 2, "penalty": 0}]
    assert {"lunch", "after_call_work"} <= {r["code"] for r in state["pause_reasons"]}
    assert state["operator"]["skills"] == [{"queue": "housing", "penalty": 0},
                                           {"queue": "main", "penalty": 3}]


async def test_without_the_ami_role_the_desk_says_so(desk: Desk, client: Client) -> None:
    await desk.commands.stop()
    token = await sign_in_form(client, desk.olena)
    status, body = await post(client, "/api/desk/presence", token, {"action": "ready"})
    assert (status, body["error"]) == (503, "desk_commands_unavailable")
    assert "ami role" in body["message"]
    state = await (await client.get("/api/desk/state")).json()
    assert state["members"] is None and "ami role" in state["telephony"]


async def test_a_late_command_is_not_executed(desk: Desk, redis_client: aioredis.Redis) -> None:
    operator = await desk_operator(desk.pool, desk.olena.login)
    assert operator is not None
    stale = DeskCommand("ready", operator.login, operator.interface, id="late", deadline=1.0)
    await redis_client.publish("hotline:desk:commands", stale.to_json())
    fresh = await RedisDeskCommands(redis_client, timeout=3).send(
        DeskCommand("ready", operator.login, operator.interface))
    assert fresh.ok
    assert len(desk.sent("QueuePause")) == 1  # only the fresh one
    await desk.commands.stop()
    with pytest.raises(DeskUnavailable, match="not running"):
        await RedisDeskCommands(redis_client, timeout=3).send(
            DeskCommand("ready", operator.login, operator.interface))


async def desk_socket(client: Client) -> aiohttp.ClientWebSocketResponse:
    return await client.ws_connect("/ws/desk", headers={"Origin": str(client.make_url(""))
                                                        .rstrip("/")})


async def next_json(ws: aiohttp.ClientWebSocketResponse, timeout: float = 10) -> dict[str, Any]:
    message = await ws.receive(timeout=timeout)
    assert message.type == aiohttp.WSMsgType.TEXT, message
    data: dict[str, Any] = json.loads(message.data)
    return data


async def test_the_pop_reaches_only_its_operator(desk: Desk, client: Client) -> None:
    number = f"+38050{uuid.uuid4().int % 10**7:07d}"
    appeal = (await make_service(desk.pool, Clock()).register(NewAppeal(
        channel=Channel.PHONE, category="no_cold_water", district="obolonskyi",
        address=house(), text="Немає холодної води", citizen_phone=number,
        citizen_name="Тарас Шевченко"), OPERATOR)).appeal
    await sign_in_form(client, desk.olena)
    tab1, tab2 = await desk_socket(client), await desk_socket(client)
    petro_client, _ = await signed_in(client, desk.petro)
    supervisor_client, _ = await signed_in(client, await add_user(desk.pool, "supervisor"))
    try:
        petro_ws = await desk_socket(petro_client)
        wallboard = await supervisor_client.ws_connect(
            "/ws/live", headers={"Origin": str(supervisor_client.make_url("")).rstrip("/")})
        await desk.ami_server.emit({
            "Event": "AgentCalled", "Queue": "housing", "Interface": desk.olena_interface,
            "MemberName": "Олена", "Channel": "Local/1551@hotline-inbound-00a;2",
            "Uniqueid": "1764500000.77", "CallerIDNum": number[1:],  # as the carrier sent it
            "CallerIDName": "Тарас Шевченко", "Language": "uk"})
        pops = [await next_json(tab1), await next_json(tab2)]
        for pop in pops:
            assert (pop["type"], pop["state"], pop["caller_number"]) == (
                "pop", "ringing", number[1:])
            assert pop["citizen"]["phone"] == number
            [shown] = pop["appeals"]
            assert (shown["number"], shown["status"], shown["open"]) == (
                appeal.number, str(appeal.status), True)
            assert shown["executor"] == appeal.executor_name_uk
        # a page that (re)connects is told the current pop first
        tab3 = await desk_socket(client)
        assert (await next_json(tab3))["uniqueid"] == "1764500000.77"
        await tab3.close()
        # nobody else hears a thing of it: the other operator, the wallboard
        with pytest.raises(asyncio.TimeoutError):
            await petro_ws.receive(timeout=1)
        while True:
            try:
                message = await wallboard.receive(timeout=1)
            except TimeoutError:
                break
            assert number[4:] not in str(message.data) and "Шевченко" not in str(message.data)
        state = await (await petro_client.get("/api/desk/state")).json()
        assert state["pop"] is None
    finally:
        await petro_client.session.close()
        await supervisor_client.session.close()


async def test_pause_reasons_reach_operator_state_changes(desk: Desk) -> None:
    """The statistics read pause time by reason per operator: a SIP operator's
    member (PJSIP/<login>, no queue_interface) is theirs too."""
    store = PostgresOperatorStates(desk.pool)
    await store.record_operator_state(OperatorStateChange(
        f"PJSIP/{desk.petro.login}", "housing", datetime.now(UTC), "paused", "lunch"))
    row = await desk.pool.fetchrow(
        "SELECT o.login, s.reason FROM operator_state_changes s JOIN operators o "
        "ON o.id = s.operator_id WHERE s.interface = $1", f"PJSIP/{desk.petro.login}")
    assert row is not None and (row["login"], row["reason"]) == (desk.petro.login, "lunch")


async def test_the_directory_finds_an_operator_added_after_it_was_read(desk: Desk) -> None:
    directory = PostgresOperatorDirectory(desk.pool, ttl=3600, miss_ttl=0)
    assert await directory.login_of_interface(desk.olena_interface) == desk.olena.login
    assert await directory.login_of_interface(f"PJSIP/{desk.petro.login}") == desk.petro.login
    late = await add_user(desk.pool, "operator")
    assert await directory.login_of_interface(f"PJSIP/{late.login}") == late.login
    assert await directory.login_of_interface("Local/1@nowhere/n") is None


async def test_only_the_in_call_panel_may_be_framed_and_only_by_us(
    desk: Desk, client: Client
) -> None:
    await sign_in_form(client, desk.olena)
    page = await client.get("/desk")
    assert page.status == 200
    assert "frame-src 'self'" in page.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert '<iframe id="call-panel"' in await page.text()
    panel = await client.get("/desk/call/1764500000.77")  # desk-form's route (404 before it)
    assert "frame-ancestors 'self'" in panel.headers["Content-Security-Policy"]
    assert panel.headers["X-Frame-Options"] == "SAMEORIGIN"
    for path in ("/api/desk/state", "/login", "/deskcall/x"):
        other = await client.get(path)
        assert "frame-ancestors 'none'" in other.headers["Content-Security-Policy"], path
        assert other.headers["X-Frame-Options"] == "DENY", path
