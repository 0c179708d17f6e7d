"""The desk's AMI side against the faithful fake AMI (and a real Redis): the
actions each desk command sends, Asterisk's refusals passed on in its words, and
the screen-pop published on the ringing operator's own channel only."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from cti_bridge.ami_client import AmiClient
from cti_bridge.ami_protocol import AmiMessage
from cti_bridge.call_tracker import CallTracker
from cti_bridge.desk import DeskController
from hotline.core.desk import (
    CALLBACK,
    HANGUP,
    LOGIN,
    PAUSE,
    READY,
    TRANSFER_QUEUE,
    AsteriskRefused,
    DeskCommand,
    DeskConfig,
    PauseReason,
    Skill,
    operator_channel,
    pop_key,
)
from hotline.core.errors import InvalidInput
from tests.support.fake_ami_server import FakeAmiServer

pytestmark = pytest.mark.asyncio(loop_scope="session")
OLENA, PETRO = "Local/501@hotline-sim-operator/n", "PJSIP/petro"


class Directory:
    def __init__(self, logins: dict[str, str]) -> None:
        self.logins = logins

    async def login_of_interface(self, interface: str) -> str | None:
        return self.logins.get(interface)


class Context:
    def __init__(self) -> None:
        self.asked: list[str] = []

    async def caller_context(self, number: str) -> dict[str, Any]:
        self.asked.append(number)
        return {"citizen": {"id": 7, "name": "Тарас Шевченко", "phone": number},
                "appeals": [{"number": "1551-0001", "status": "routed", "open": True,
                             "executor": "ЖЕК-1"}], "recent_calls": []}


@dataclass
class Rig:
    server: FakeAmiServer
    ami: AmiClient
    desk: DeskController
    redis: aioredis.Redis
    context: Context
    heard: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def sent(self, action: str) -> list[AmiMessage]:
        return [m for m in self.server.actions if (m.get("Action") or "").lower() == action.lower()]

    async def until(self, predicate: Any, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self.changed.clear()
                # Redis messages wake it; AMI-only effects are polled
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.changed.wait(), 0.05)


def command(action: str, interface: str = OLENA, login: str = "olena", **more: Any) -> DeskCommand:
    return DeskCommand(action=action, login=login, interface=interface, member_name="Олена",
                       **more)


CONFIG = DeskConfig((PauseReason("lunch", "Обід"), PauseReason("after_call_work", "ACW")),
                    wrapup_seconds=0, wrapup_reason="after_call_work", command_timeout=5)


@contextlib.asynccontextmanager
async def make_rig(redis_client: aioredis.Redis, config: DeskConfig) -> AsyncIterator[Rig]:
    server = FakeAmiServer(username="hotline", secret="s")
    await server.start()
    ami = AmiClient("127.0.0.1", server.port, "hotline", "s", action_timeout=2, ping_interval=0)
    tracker = CallTracker("test", ["hotline-inbound"])
    ami.on_event("*", tracker.handle)
    context = Context()
    desk = DeskController(ami, tracker, redis_client, Directory({OLENA: "olena", PETRO: "petro"}),
                          context, config, queues={"housing": {"label": "ЖКГ", "sphere": "housing"},
                                                   "main": {"label": "Інше", "sphere": None}})
    rig = Rig(server, ami, desk, redis_client, context)
    pubsub = redis_client.pubsub()
    await pubsub.subscribe(operator_channel("olena"), operator_channel("petro"))

    async def listen() -> None:
        async for message in pubsub.listen():
            if message["type"] == "message":
                channel = message["channel"].decode()
                rig.heard.setdefault(channel.rsplit(":", 1)[1], []).append(
                    json.loads(message["data"]))
                rig.changed.set()

    listener = asyncio.create_task(listen())
    await ami.start()
    try:
        yield rig
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await desk.stop()
        await ami.close()
        await server.stop()
        await redis_client.delete(pop_key("olena"), pop_key("petro"))


@pytest_asyncio.fixture
async def rig(redis_client: aioredis.Redis) -> AsyncIterator[Rig]:
    async with make_rig(redis_client, CONFIG) as r:
        yield r


async def test_login_adds_the_member_to_each_skill_queue(rig: Rig) -> None:
    rig.server.errors["queueadd"] = "Unable to add interface: Already there"
    reply = await rig.desk.execute(command(LOGIN, skills=(Skill("housing", 0), Skill("main", 4))))
    assert reply.ok, reply
    adds = rig.sent("QueueAdd")
    assert [(m.get("Queue"), m.get("Penalty")) for m in adds] == [("housing", "0"), ("main", "4")]
    assert {m.get("Interface") for m in adds} == {OLENA}
    assert {m.get("StateInterface") for m in adds} == {OLENA}
    assert {m.get("MemberName") for m in adds} == {"Олена"}
    rig.server.errors["queueadd"] = "Unable to add interface to queue: No such queue"
    refused = await rig.desk.execute(command(LOGIN, skills=(Skill("housing", 0),)))
    assert not refused.ok and refused.error == AsteriskRefused.error_id
    assert "No such queue" in refused.message
    nothing = await rig.desk.execute(command(LOGIN))
    assert not nothing.ok and "skills" in nothing.message


async def test_pause_carries_the_reason_and_a_refusal_carries_asterisks(rig: Rig) -> None:
    assert (await rig.desk.execute(command(PAUSE, reason="lunch"))).ok
    [pause] = rig.sent("QueuePause")
    assert (pause.get("Interface"), pause.get("Paused"), pause.get("Reason")) == (
        OLENA, "true", "lunch")
    assert pause.get("Queue") is None  # every queue the member is in
    rig.server.errors["queuepause"] = "Interface not found"
    refused = await rig.desk.execute(command(READY))
    assert not refused.ok and refused.message == "Asterisk refused QueuePause: Interface not found"
    with pytest.raises(InvalidInput):
        await rig.desk.execute(command(PAUSE, reason="nap"))
    assert len(rig.sent("QueuePause")) == 2


async def emit_call(rig: Rig, uniqueid: str, interface: str, number: str) -> None:
    await rig.server.emit({
        "Event": "AgentCalled", "Queue": "housing", "Interface": interface,
        "MemberName": "Олена", "Channel": "Local/1551@hotline-inbound-0001;2",
        "Uniqueid": uniqueid, "CallerIDNum": number, "CallerIDName": "Тарас Шевченко",
        "Language": "uk", "DestChannel": "Local/501@hotline-sim-operator-0002;1",
        "Timestamp": "1764500000.000000"})


async def test_screen_pop_reaches_only_the_ringing_operator(
    rig: Rig, redis_client: aioredis.Redis
) -> None:
    await emit_call(rig, "1764500000.11", OLENA, "+380501112233")
    await rig.until(lambda: rig.heard.get("olena"))
    [pop] = rig.heard["olena"]
    assert (pop["type"], pop["state"], pop["caller_number"], pop["queue"]) == (
        "pop", "ringing", "+380501112233", "housing")
    assert pop["caller_name"] == "Тарас Шевченко" and pop["queue_label"] == "ЖКГ"
    assert pop["citizen"]["name"] == "Тарас Шевченко"
    assert pop["appeals"][0]["number"] == "1551-0001"
    assert rig.context.asked == ["+380501112233"]
    stored = json.loads(await redis_client.get(pop_key("olena")) or "{}")
    assert stored["uniqueid"] == "1764500000.11"
    assert "petro" not in rig.heard and await redis_client.get(pop_key("petro")) is None

    # Asterisk's order when a member answers: the caller leaves the queue, then AgentConnect
    await rig.server.emit({"Event": "QueueCallerLeave", "Queue": "housing", "Count": "0",
                           "Position": "1", "Uniqueid": "1764500000.11"})
    await rig.server.emit({"Event": "AgentConnect", "Queue": "housing", "Interface": OLENA,
                           "Uniqueid": "1764500000.11", "HoldTime": "3", "RingTime": "1",
                           "Channel": "Local/1551@hotline-inbound-0001;2",
                           "DestChannel": "Local/501@hotline-sim-operator-0002;1"})
    await rig.until(lambda: len(rig.heard["olena"]) == 2)
    assert rig.heard["olena"][1]["state"] == "in_call"
    assert (await rig.desk.execute(command(HANGUP))).ok
    [hangup] = rig.sent("Hangup")
    assert hangup.get("Channel") == "Local/501@hotline-sim-operator-0002;1"  # the operator's leg

    # the caller's channel already gone: Asterisk leaves Uniqueid empty
    await rig.server.emit({"Event": "AgentComplete", "Queue": "housing", "Interface": OLENA,
                           "Uniqueid": "", "Reason": "caller"})
    await rig.until(lambda: len(rig.heard["olena"]) == 3)
    assert rig.heard["olena"][2]["state"] == "ended"
    with pytest.raises(AsteriskRefused):
        await rig.desk.execute(command(HANGUP))  # no call up any more
    assert "petro" not in rig.heard


async def test_a_ring_not_answered_withdraws_the_pop(
    rig: Rig, redis_client: aioredis.Redis
) -> None:
    await emit_call(rig, "1764500000.12", OLENA, "0501112233")
    await rig.until(lambda: rig.heard.get("olena"))
    await rig.server.emit({"Event": "AgentRingNoAnswer", "Queue": "housing", "Interface": OLENA,
                           "Uniqueid": "1764500000.12", "RingTime": "15000"})
    await rig.until(lambda: len(rig.heard["olena"]) == 2)
    assert rig.heard["olena"][1] == {**rig.heard["olena"][1], "type": "pop_end",
                                     "uniqueid": "1764500000.12"}
    assert await redis_client.get(pop_key("olena")) is None


async def test_ringall_withdraws_the_pop_of_those_who_did_not_answer(rig: Rig) -> None:
    await emit_call(rig, "1764500000.17", OLENA, "0501112233")
    await emit_call(rig, "1764500000.17", PETRO, "0501112233")
    await rig.until(lambda: rig.heard.get("olena") and rig.heard.get("petro"))
    await rig.server.emit({"Event": "QueueCallerLeave", "Queue": "housing",
                           "Uniqueid": "1764500000.17"})
    await rig.server.emit({"Event": "AgentConnect", "Queue": "housing", "Interface": PETRO,
                           "Uniqueid": "1764500000.17", "Channel": "PJSIP/trunk-0001"})
    await rig.until(lambda: len(rig.heard["olena"]) == 2 and len(rig.heard["petro"]) == 2)
    assert rig.heard["olena"][1]["type"] == "pop_end"
    assert rig.heard["petro"][1]["state"] == "in_call"
    # then transferred on to olena: petro's card ends, olena's pops
    await emit_call(rig, "1764500000.17", OLENA, "0501112233")
    await rig.server.emit({"Event": "AgentConnect", "Queue": "main", "Interface": OLENA,
                           "Uniqueid": "1764500000.17", "Channel": "PJSIP/trunk-0001"})
    await rig.until(lambda: len(rig.heard["petro"]) == 3 and len(rig.heard["olena"]) == 4)
    assert (rig.heard["petro"][2]["state"], rig.heard["petro"][2]["end_reason"]) == (
        "ended", "transferred")
    assert rig.heard["olena"][3]["state"] == "in_call"
    # the whole call ends: petro's owed AgentComplete changes nothing, olena's card ends
    for member in (PETRO, OLENA):
        await rig.server.emit({"Event": "AgentComplete", "Queue": "main", "Interface": member,
                               "Uniqueid": "", "Reason": "caller"})
    await rig.until(lambda: len(rig.heard["olena"]) == 5)
    assert rig.heard["olena"][4]["state"] == "ended" and len(rig.heard["petro"]) == 3


async def test_an_unknown_member_pops_nothing(rig: Rig) -> None:
    await emit_call(rig, "1764500000.13", "Local/999@hotline-sim-operator/n", "0501112233")
    await rig.server.emit({"Event": "QueueMemberPause", "Queue": "housing", "Interface": PETRO,
                           "Paused": "1", "PausedReason": "lunch", "Status": "1"})
    await rig.until(lambda: rig.heard.get("petro"))
    assert rig.heard["petro"][0]["type"] == "presence"
    assert rig.heard["petro"][0]["member"]["reason"] == "lunch"
    assert "olena" not in rig.heard and rig.context.asked == []


async def test_call_control_actions(rig: Rig) -> None:
    await rig.server.emit({"Event": "AgentConnect", "Queue": "housing", "Interface": OLENA,
                           "Uniqueid": "1764500000.14", "Channel": "PJSIP/trunk-0001",
                           "DestChannel": "Local/501@hotline-sim-operator-0002;1"})
    await rig.until(lambda: OLENA in rig.desk._calls)
    assert (await rig.desk.execute(command(TRANSFER_QUEUE, queue="main"))).ok
    [setvar] = rig.sent("Setvar")
    assert (setvar.get("Channel"), setvar.get("Variable"), setvar.get("Value")) == (
        "PJSIP/trunk-0001", "HOTLINE_QUEUE", "main")
    [redirect] = rig.sent("Redirect")
    assert (redirect.get("Channel"), redirect.get("Context"), redirect.get("Exten"),
            redirect.get("Priority")) == ("PJSIP/trunk-0001", "hotline-inbound", "1551", "queue")
    with pytest.raises(AsteriskRefused):  # transferred: the call is no longer on this phone
        await rig.desk.execute(command(TRANSFER_QUEUE, queue="main"))
    with pytest.raises(InvalidInput):
        await rig.desk.execute(command(TRANSFER_QUEUE, queue="nowhere"))

    reply = await rig.desk.execute(command(CALLBACK, number="+380501112233"))
    assert reply.ok
    [originate] = rig.sent("Originate")
    assert (originate.get("Channel"), originate.get("Context"), originate.get("Exten"),
            originate.get("Async")) == (OLENA, "hotline-desk-callback", "+380501112233", "true")
    await rig.server.emit({"Event": "OriginateResponse", "Response": "Failure", "Reason": "5",
                           "Uniqueid": reply.data["channel_id"]})
    await rig.until(lambda: rig.heard.get("olena"))
    assert rig.heard["olena"][0] == {**rig.heard["olena"][0], "type": "result", "ok": False,
                                     "message": "call back failed: busy"}
    with pytest.raises(InvalidInput):
        await rig.desk.execute(command(CALLBACK, number="1;Dial(PJSIP/x)"))


async def test_wrap_up_pauses_then_readies(redis_client: aioredis.Redis) -> None:
    config = DeskConfig(CONFIG.pause_reasons, 1, "after_call_work", 5)
    async with make_rig(redis_client, config) as rig:
        await rig.server.emit({"Event": "AgentComplete", "Queue": "housing", "Interface": OLENA,
                               "Uniqueid": "1764500000.15", "Reason": "caller"})
        await rig.until(lambda: len(rig.sent("QueuePause")) == 2)
        first, second = rig.sent("QueuePause")
        assert (first.get("Paused"), first.get("Reason")) == ("true", "after_call_work")
        assert second.get("Paused") == "false"
        # a member without an account is left alone
        await rig.server.emit({"Event": "AgentComplete", "Queue": "housing",
                               "Interface": "Local/999@x/n", "Uniqueid": "1764500000.16"})
        await rig.server.emit({"Event": "QueueMemberPause", "Queue": "housing",
                               "Interface": PETRO, "Paused": "1", "PausedReason": "x"})
        await rig.until(lambda: rig.heard.get("petro"))
        assert len(rig.sent("QueuePause")) == 2
