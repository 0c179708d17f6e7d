"""The CTI service against a faithful fake AMI: what reaches the case store and
the live feed when the AMI link drops and when Asterisk restarts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from cti_bridge.ami_client import AmiClient
from cti_bridge.call_tracker import GONE, CallTracker
from cti_bridge.service import CtiService, boot_epoch_from_core_status
from hotline.core.live import LIVE_CHANNEL, QUEUES_KEY
from hotline.core.records import CallRecord, OperatorStateChange
from tests.support.fake_ami_server import FakeAmiServer

pytestmark = pytest.mark.asyncio(loop_scope="session")


class Memory:
    """In-memory ports: call sink, live bus, operator states."""

    def __init__(self) -> None:
        self.calls: list[CallRecord] = []
        self.published: list[tuple[str, dict[str, Any]]] = []
        self.operator_states: list[OperatorStateChange] = []
        self.changed = asyncio.Event()

    async def save_call(self, record: CallRecord) -> None:
        self.calls.append(record)
        self.changed.set()

    async def publish(self, channel: str, message: dict[str, Any]) -> None:
        self.published.append((channel, message))
        self.changed.set()

    async def record_operator_state(self, change: OperatorStateChange) -> None:
        self.operator_states.append(change)
        self.changed.set()

    async def until(self, predicate: Any, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()


def core_status(date: str, clock: str) -> dict[str, str]:
    return {"CoreStartupDate": date, "CoreStartupTime": clock, "CoreCurrentCalls": "1"}


@pytest_asyncio.fixture
async def rig(redis_client: aioredis.Redis) -> AsyncIterator[tuple[FakeAmiServer, CtiService,
                                                                  Memory]]:
    server = FakeAmiServer(username="hotline", secret="s")
    server.replies["corestatus"] = core_status("2026-11-28", "09:00:00")
    server.lists["coreshowchannels"] = ("CoreShowChannelsComplete", [])
    server.lists["queuestatus"] = ("QueueStatusComplete", [])
    server.lists["status"] = ("StatusComplete", [])
    server.lists["queuesummary"] = ("QueueSummaryComplete", [
        {"Event": "QueueSummary", "Queue": "housing", "LoggedIn": "3", "Available": "1",
         "Callers": "2", "HoldTime": "12", "TalkTime": "140", "LongestHoldTime": "31"}])
    port = await server.start()
    memory = Memory()
    ami = AmiClient("127.0.0.1", port, "hotline", "s", reconnect_delay=0.05, ping_interval=0)
    service = CtiService(ami, CallTracker("pbx1", ["hotline-inbound"]), memory, memory,
                         redis_client, memory, queue_poll_seconds=0.1)
    await service.start()
    yield server, service, memory
    await service.stop()
    await server.stop()


def caller(uid: str) -> list[dict[str, str]]:
    return [
        {"Event": "Newchannel", "Channel": "PJSIP/trunk-0001", "Context": "hotline-inbound",
         "Exten": "1551", "CallerIDNum": "380501234567", "CallerIDName": "Тарас",
         "Uniqueid": uid, "Linkedid": uid},
        {"Event": "QueueCallerJoin", "Queue": "housing", "Position": "1", "Count": "1",
         "Uniqueid": uid, "Linkedid": uid},
    ]


async def test_boot_epoch_from_core_status() -> None:
    from cti_bridge.ami_protocol import AmiMessage

    reply = AmiMessage.of(*core_status("2026-11-28", "09:00:00").items())
    first = boot_epoch_from_core_status(reply)
    later = AmiMessage.of(*core_status("2026-11-28", "09:00:05").items())
    assert boot_epoch_from_core_status(later) - first == 5
    with pytest.raises(ValueError, match="CoreStartupDate"):
        boot_epoch_from_core_status(AmiMessage.of(Response="Success"))


async def test_calls_that_ended_while_the_link_was_down_are_finished(
    rig: tuple[FakeAmiServer, CtiService, Memory],
) -> None:
    server, _service, memory = rig
    await server.emit(*caller("pbx1-1.1"))
    await memory.until(lambda: any(c.queue == "housing" for c in memory.calls))
    boot = memory.calls[-1].call_key.split(":")[1]
    await server.drop()  # the link drops; the caller hangs up meanwhile (Asterisk stays up)
    await memory.until(lambda: any(c.hangup_cause_text == GONE for c in memory.calls))
    final = memory.calls[-1]
    assert final.outcome == "abandoned" and final.queue == "housing"
    assert final.call_key == f"pbx1:{boot}:pbx1-1.1"  # same Asterisk: same key
    summaries = [m for ch, m in memory.published if ch == LIVE_CHANNEL and m["type"] == "call"]
    assert summaries[-1]["caller_number"] == "38050*****67"  # never the full number on the bus


async def test_asterisk_restart_finishes_orphans_under_the_old_key(
    rig: tuple[FakeAmiServer, CtiService, Memory],
) -> None:
    server, _service, memory = rig
    await server.emit(*caller("pbx1-1.7"))
    await memory.until(lambda: any(c.uniqueid == "pbx1-1.7" for c in memory.calls))
    old_key = memory.calls[-1].call_key
    server.replies["corestatus"] = core_status("2026-11-28", "09:30:00")  # it restarted
    await server.drop()
    await memory.until(lambda: any(c.call_key == old_key and c.ended_at for c in memory.calls))
    await server.emit(*caller("pbx1-1.7"))  # the sequence starts again after a restart
    await memory.until(lambda: len({c.call_key for c in memory.calls}) == 2)
    assert {c.call_key.split(":")[1] for c in memory.calls} == {
        old_key.split(":")[1], str(int(old_key.split(":")[1]) + 1800)}


async def test_queue_summary_reaches_redis_for_the_wallboard(
    rig: tuple[FakeAmiServer, CtiService, Memory], redis_client: aioredis.Redis
) -> None:
    _server, _service, memory = rig
    await memory.until(lambda: any(m == {"type": "queues"} for _, m in memory.published))
    raw = await redis_client.get(QUEUES_KEY)
    assert raw is not None
    summary = json.loads(raw)
    assert summary["queues"] == [{"queue": "housing", "logged_in": 3, "available": 1,
                                  "callers": 2, "hold_time": 12, "talk_time": 140,
                                  "longest_hold": 31}]


async def test_operator_state_changes_are_recorded(
    rig: tuple[FakeAmiServer, CtiService, Memory],
) -> None:
    server, _service, memory = rig
    member = {"Queue": "housing", "Interface": "PJSIP/op7", "MemberName": "Оператор 7",
              "Paused": "0", "Status": "1"}
    await server.emit({"Event": "QueueMemberAdded", **member},
                      {"Event": "QueueMemberPause", **member, "Paused": "1",
                       "PausedReason": "обід"})
    await memory.until(lambda: len(memory.operator_states) == 2)
    assert [(c.state, c.reason) for c in memory.operator_states] == [
        ("logged_in", None), ("paused", "обід")]


# -- the resync after a reconnect (issue 8): what was missed while the link was down ---


def channel_up(uid: str, channel: str = "PJSIP/trunk-0001") -> dict[str, str]:
    return {"Event": "CoreShowChannel", "Channel": channel, "ChannelState": "6",
            "ChannelStateDesc": "Up", "CallerIDNum": "380501234567", "CallerIDName": "Тарас",
            "Language": "uk", "Context": "hotline-inbound", "Exten": "1551",
            "Uniqueid": uid, "Linkedid": uid, "Application": "Queue",
            "ApplicationData": "housing,r,,,60", "Duration": "00:00:41", "BridgeId": "b-1"}


def status_of(uid: str, bridge: str, **variables: str) -> list[tuple[str, str]]:
    """A Status item as Asterisk 22 writes it: one ``Variable: NAME=value`` line each."""
    return [("Event", "Status"), ("Channel", "PJSIP/trunk-0001"), ("Uniqueid", uid),
            ("BridgeID", bridge), ("Application", "Queue"), ("Data", "housing,r,,,60"),
            *[("Variable", f"{k}={v}") for k, v in variables.items()]]


async def eventually(predicate: Any, timeout: float = 10.0) -> None:
    """For what the server sees (the memory's own ``until`` wakes on its changes only)."""
    async with asyncio.timeout(timeout):
        while True:
            if predicate():
                return
            await asyncio.sleep(0.01)


async def reconnect(server: FakeAmiServer, logins: int) -> None:
    await server.drop()
    await eventually(lambda: server.logins > logins)


async def test_resync_connect_during_queue_wait(
    rig: tuple[FakeAmiServer, CtiService, Memory],
) -> None:
    """The link drops while the caller is still in the IVR; on reconnect the caller
    waits in a queue: the record says which, and for how long already."""
    server, _service, memory = rig
    await server.emit(caller("pbx1-1.20")[0])
    await eventually(lambda: any(  # the service has read the first Newchannel
        m.get("Action") == "QueueSummary" for m in server.actions))
    server.lists["coreshowchannels"] = ("CoreShowChannelsComplete", [channel_up("pbx1-1.20")])
    server.lists["queuestatus"] = ("QueueStatusComplete", [
        {"Event": "QueueParams", "Queue": "housing"},
        {"Event": "QueueEntry", "Queue": "housing", "Position": "1",
         "Channel": "PJSIP/trunk-0001", "Uniqueid": "pbx1-1.20", "Wait": "14"}])
    server.lists["status"] = ("StatusComplete", [
        status_of("pbx1-1.20", "", IVR_CHOICE="1", IVR_SOURCE="fastagi")])
    await reconnect(server, 1)
    await memory.until(lambda: any(c.queue == "housing" for c in memory.calls))
    live = memory.calls[-1]
    assert (live.outcome, live.ivr_choice, live.ivr_source) == ("in_progress", "1", "fastagi")
    assert live.attempts[0].queue == "housing" and live.attempts[0].position == 1


async def test_resync_connect_during_talk(
    rig: tuple[FakeAmiServer, CtiService, Memory],
) -> None:
    """AgentConnect was lost in the gap: the operator and the wait come from the
    caller's channel variables; the later AgentComplete brings the talk time."""
    server, _service, memory = rig
    await server.emit(*caller("pbx1-1.30"))
    await memory.until(lambda: any(c.queue == "housing" for c in memory.calls))
    server.lists["coreshowchannels"] = ("CoreShowChannelsComplete", [channel_up("pbx1-1.30")])
    server.lists["status"] = ("StatusComplete", [status_of(
        "pbx1-1.30", "b-1", MEMBERINTERFACE="PJSIP/op7", MEMBERNAME="Оператор 7",
        QEHOLDTIME="9", QUEUENAME="housing", IVR_CHOICE="1")])
    await reconnect(server, 1)
    await memory.until(lambda: any(
        a.operator_interface == "PJSIP/op7" for c in memory.calls for a in c.attempts))
    live = memory.calls[-1]
    assert live.outcome == "in_progress" and live.attempts[0].wait_seconds == 9
    assert live.attempts[0].operator_name == "Оператор 7"
    # after the reconnect the call ends as usual; the Hangup may come first
    await server.emit(
        {"Event": "Hangup", "Uniqueid": "pbx1-1.30", "Linkedid": "pbx1-1.30", "Cause": "16"},
        {"Event": "AgentComplete", "Queue": "housing", "Interface": "PJSIP/op7",
         "MemberName": "Оператор 7", "HoldTime": "9", "TalkTime": "47", "Reason": "agent"})
    await memory.until(lambda: memory.calls[-1].talk_seconds == 47)
    final = memory.calls[-1]
    assert (final.outcome, final.operator_interface, final.wait_seconds) == (
        "answered", "PJSIP/op7", 9)
    summaries = [m for ch, m in memory.published if ch == LIVE_CHANNEL and m["type"] == "call"]
    assert "380501234567" not in json.dumps(summaries, ensure_ascii=False, default=str)


async def test_resync_after_the_call_ended(
    rig: tuple[FakeAmiServer, CtiService, Memory],
) -> None:
    """Connected before the gap, gone after it: finished with what was known (its
    operator and wait), the talk time left to queue_log; not made up. A call that
    began during the gap and is still up is taken on under its own key."""
    server, _service, memory = rig
    await server.emit(*caller("pbx1-1.40"), {
        "Event": "AgentConnect", "Queue": "housing", "Uniqueid": "pbx1-1.40",
        "Linkedid": "pbx1-1.40", "Interface": "PJSIP/op3", "MemberName": "Оператор 3",
        "HoldTime": "4", "RingTime": "2", "DestUniqueid": "pbx1-1.41"})
    await memory.until(lambda: any(c.operator_interface == "PJSIP/op3" or any(
        a.operator_interface == "PJSIP/op3" for a in c.attempts) for c in memory.calls))
    server.lists["coreshowchannels"] = ("CoreShowChannelsComplete", [
        channel_up("pbx1-1.50", "PJSIP/trunk-0050"),
        {**channel_up("pbx1-1.51", "PJSIP/op3-0051"), "Context": "hotline-operators"}])
    await reconnect(server, 1)
    await memory.until(lambda: {c.uniqueid for c in memory.calls} >= {"pbx1-1.40", "pbx1-1.50"})
    final = next(c for c in reversed(memory.calls) if c.uniqueid == "pbx1-1.40")
    assert final.hangup_cause_text == GONE
    assert (final.outcome, final.operator_interface, final.wait_seconds) == (
        "answered", "PJSIP/op3", 4)
    assert final.talk_seconds is None
    adopted = next(c for c in memory.calls if c.uniqueid == "pbx1-1.50")
    assert adopted.call_key == final.call_key.replace("pbx1-1.40", "pbx1-1.50")
    assert adopted.outcome == "in_progress" and adopted.caller_name == "Тарас"
    assert "pbx1-1.51" not in {c.uniqueid for c in memory.calls}  # an operator's leg
