"""AmiClient against a fake AMI server: login, actions, handlers, reconnect, watchdog, close.

Each of panoramisk's AMI defects listed in DESIGN.md has a regression test here:
the sync-handler exception, the missing per-action timeout, the unchecked Ping,
untracked tasks (close leaves nothing behind), and UTF-8 split across reads.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from structlog.testing import capture_logs

from cti_bridge.ami_client import (
    AmiActionError,
    AmiClient,
    AmiConnectError,
    AmiConnectionLost,
    AmiLoginError,
    AmiProtocolError,
    AmiTimeout,
)
from cti_bridge.ami_protocol import AmiMessage
from cti_bridge.call_tracker import CallTracker
from hotline.core.metrics import REGISTRY
from hotline.core.records import CallOutcome, CallRecord
from tests.support.fake_ami_server import FakeAmiServer, transcript_events
from tests.support.paths import AMI_FIXTURES as FIXTURES


@pytest.fixture
async def server() -> AsyncIterator[FakeAmiServer]:
    srv = FakeAmiServer()
    await srv.start()
    yield srv
    await srv.stop()


@pytest.fixture
async def clients() -> AsyncIterator[list[AmiClient]]:
    """Clients made in a test are closed even when the test fails."""
    made: list[AmiClient] = []
    yield made
    for client in made:
        await client.close()


def make(server: FakeAmiServer, clients: list[AmiClient], **kw: Any) -> AmiClient:
    options: dict[str, Any] = {"action_timeout": 1.0, "ping_interval": 0, "reconnect_delay": 0.05}
    client = AmiClient(
        "127.0.0.1", server.port, "bridge", kw.pop("secret", "s3cret"), **options | kw
    )
    clients.append(client)
    return client


async def eventually(condition: Callable[[], bool], within: float = 3.0) -> None:
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - polling the observable result is the point
            await asyncio.sleep(0.01)


def client_tasks() -> list[asyncio.Task[Any]]:
    return [
        t
        for t in asyncio.all_tasks()
        if "AmiClient." in getattr(t.get_coro(), "__qualname__", "") and not t.done()
    ]


async def test_login_action_and_action_id(server: FakeAmiServer, clients: list[AmiClient]) -> None:
    client = make(server, clients)
    await client.connect()
    assert client.connected and client.version == "11.0.0"
    reply = await client.action("QueueSummary", Queue="housing")
    assert reply.response == "Success" and reply.get("Message") == "OK"
    sent = server.actions[-1]
    assert sent.get("Action") == "QueueSummary" and sent.get("Queue") == "housing"
    assert reply.action_id == sent.action_id is not None
    challenge, login = server.actions[:2]
    assert challenge.get("Action") == "Challenge" and challenge.get("AuthType") == "MD5"
    assert login.get("Username") == "bridge" and login.get("Events") == "on"


async def test_error_response_raises_and_keeps_link(
    server: FakeAmiServer, clients: list[AmiClient]
) -> None:
    client = make(server, clients)
    await client.connect()
    with pytest.raises(AmiActionError) as info:
        await client.action("Bogus")
    assert info.value.reply.response == "Error" and "Invalid/unknown" in str(info.value)
    assert (await client.action("Ping")).get("Ping") == "Pong"


async def test_header_injection_refused_before_sending(
    server: FakeAmiServer, clients: list[AmiClient]
) -> None:
    client = make(server, clients)
    await client.connect()
    count = len(server.actions)
    with pytest.raises(ValueError):
        await client.action("Setvar", Variable="X", Value="1\r\nAction: Hangup")
    assert len(server.actions) == count


async def test_login_refused(server: FakeAmiServer, clients: list[AmiClient]) -> None:
    client = make(server, clients, secret="wrong-secret-123")
    with capture_logs() as logs, pytest.raises(AmiLoginError) as info:
        await client.connect()
    message = str(info.value)
    assert "refused the login" in message and "bridge" in message
    assert f"127.0.0.1:{server.port}" in message
    assert "wrong-secret-123" not in message and "wrong-secret-123" not in repr(client)
    assert "wrong-secret-123" not in repr(logs)
    assert b"wrong-secret-123" not in server.received
    assert not client.connected
    assert client_tasks() == []  # nothing left running after a failed connect


async def test_cannot_connect_names_host_and_port() -> None:
    srv = FakeAmiServer()
    port = await srv.start()
    await srv.stop()  # nothing listens on that port any more
    client = AmiClient("127.0.0.1", port, "bridge", "s3cret", action_timeout=1.0)
    with pytest.raises(AmiConnectError, match=f"127.0.0.1:{port}"):
        await client.connect()
    await client.close()


async def test_failing_sync_handler_drops_nothing(
    server: FakeAmiServer, clients: list[AmiClient]
) -> None:
    """panoramisk: an exception in a sync callback kills the link and the rest of the read."""
    with capture_logs() as logs:
        client = make(server, clients)
        seen: list[str] = []

        def explode(msg: AmiMessage) -> None:
            if msg.get("N") == "1":
                raise RuntimeError("handler bug")

        client.on_event("Test*", explode)
        client.on_event("*", lambda msg: seen.append(msg.get("N") or ""))
        await client.start()
        events = [{"Event": "TestEvent", "N": str(i), "Uniqueid": f"1.{i}"} for i in range(1, 4)]
        await server.emit(*events)  # one write: one read on the client side
        await eventually(lambda: seen == ["", "1", "2", "3"])  # "" is FullyBooted
    assert client.connected and server.logins == 1
    assert (await client.action("Ping")).response == "Success"
    [failure] = [e for e in logs if e["event"] == "ami_handler_failed"]
    assert failure["ami_event"] == "TestEvent" and failure["uniqueid"] == "1.1"
    assert failure["handler"].endswith("explode") and failure["exc_info"] is True


async def test_async_handlers_run_in_order(server: FakeAmiServer, clients: list[AmiClient]) -> None:
    client = make(server, clients)
    order: list[str] = []

    async def slow(msg: AmiMessage) -> None:
        await asyncio.sleep(0.02 if msg.get("N") == "0" else 0)
        order.append(f"async{msg.get('N')}")

    client.on_event("Queue*", slow)
    client.on_event("QueueCaller*", lambda msg: order.append(f"sync{msg.get('N')}"))
    await client.start()
    await server.emit(
        {"Event": "QueueCallerJoin", "N": "0"},
        {"Event": "Hangup", "N": "x"},
        {"Event": "QueueMemberStatus", "N": "1"},
        {"Event": "QueueCallerLeave", "N": "2"},
    )
    await eventually(lambda: len(order) == 5)
    assert order == ["async0", "sync0", "async1", "async2", "sync2"]


async def test_handler_may_await_an_action(server: FakeAmiServer, clients: list[AmiClient]) -> None:
    client = make(server, clients)
    replies: list[str | None] = []

    async def ask(msg: AmiMessage) -> None:
        replies.append((await client.action("Ping")).get("Ping"))

    client.on_event("TestEvent", ask)
    await client.start()
    await server.emit({"Event": "TestEvent"}, {"Event": "TestEvent"})
    await eventually(lambda: replies == ["Pong", "Pong"])


async def test_action_timeout(server: FakeAmiServer, clients: list[AmiClient]) -> None:
    client = make(server, clients, action_timeout=0.2)
    await client.connect()
    server.silent_actions.add("queuesummary")
    with pytest.raises(AmiTimeout, match="QueueSummary"):
        await client.action("QueueSummary")
    assert isinstance(AmiTimeout("x"), TimeoutError)
    assert (await client.action("Ping")).response == "Success"  # the link is fine


async def test_event_list_collection(server: FakeAmiServer, clients: list[AmiClient]) -> None:
    client = make(server, clients)
    handled: list[str | None] = []
    client.on_event("*", lambda msg: handled.append(msg.event))
    server.lists["queuestatus"] = (
        "QueueStatusComplete",
        [
            {"Event": "QueueParams", "Queue": "housing", "Calls": "0"},
            {"Event": "QueueMember", "Queue": "housing", "Name": "Operator 101"},
            {"Event": "QueueMember", "Queue": "housing", "Name": "Оператор 102"},
        ],
    )
    await client.start()
    items = await client.action_list("QueueStatus", Queue="housing")
    assert [m.event for m in items] == ["QueueParams", "QueueMember", "QueueMember"]
    assert items[2].get("Name") == "Оператор 102"
    assert server.actions[-1].get("Queue") == "housing"
    await server.emit({"Event": "Marker"})
    await eventually(lambda: "Marker" in handled)
    assert handled == ["FullyBooted", "Marker"]  # list items are the action's, not events
    with pytest.raises(AmiActionError):
        await client.action_list("Bogus")
    assert await client.action_list("CoreSettings") == []  # no EventList in the reply


async def test_reconnect_after_drop_calls_on_connected_again(
    server: FakeAmiServer, clients: list[AmiClient]
) -> None:
    client = make(server, clients)
    connected: list[int] = []

    async def on_connected() -> None:
        connected.append(server.logins)
        await client.action("Events", EventMask="on")  # re-subscribe, as the app would

    client.on_connected(on_connected)

    def broken() -> None:
        raise RuntimeError("callback bug")

    client.on_connected(broken)  # a failing callback is logged, the others still run
    await client.start()
    await eventually(lambda: connected == [1])
    server.silent_actions.add("queuesummary")
    pending = asyncio.create_task(client.action("QueueSummary"))
    await asyncio.sleep(0.05)
    await server.drop()
    with pytest.raises(AmiConnectionLost):
        await pending
    await eventually(lambda: connected == [1, 2])
    assert client.connected
    assert (await client.action("Ping")).response == "Success"


async def test_reconnect_retries_while_asterisk_is_down(clients: list[AmiClient]) -> None:
    first = FakeAmiServer()
    port = await first.start()
    client = AmiClient("127.0.0.1", port, "bridge", "s3cret", reconnect_delay=0.05, ping_interval=0)
    clients.append(client)
    await client.start()
    await first.stop()
    await eventually(lambda: not client.connected)
    with pytest.raises(AmiConnectionLost):
        await client.action("Ping")
    await asyncio.sleep(0.2)  # a few failed attempts against a closed port
    second = FakeAmiServer()
    await second.start(port)  # Asterisk is back on the same port
    try:
        await eventually(lambda: client.connected and second.logins == 1, within=5)
    finally:
        await client.close()
        await second.stop()


async def test_dead_link_detected_by_ping_watchdog(
    server: FakeAmiServer, clients: list[AmiClient]
) -> None:
    """panoramisk never checks Ping replies: a half-open link stays 'up' forever."""
    with capture_logs() as logs:
        client = make(server, clients, ping_interval=0.1, action_timeout=0.2)
        connected: list[int] = []
        client.on_connected(lambda: connected.append(server.logins))
        await client.start()
        await asyncio.sleep(0.35)
        assert server.logins == 1  # answered pings keep the link
        server.answer_ping = False
        await eventually(lambda: server.logins >= 2)
        server.answer_ping = True
        await eventually(lambda: client.connected and len(connected) >= 2)
    assert any(e["event"] == "ami_ping_timeout" for e in logs)


async def test_close_leaves_no_tasks_and_fails_pending(
    server: FakeAmiServer, clients: list[AmiClient]
) -> None:
    client = make(server, clients, ping_interval=0.05)
    client.on_event("*", lambda msg: None)
    await client.start()
    assert {t.get_name() for t in client_tasks()} >= {
        "ami-reader",
        "ami-dispatcher",
        "ami-supervisor",
        "ami-ping",
    }
    server.silent_actions.add("queuesummary")
    pending = asyncio.create_task(client.action("QueueSummary"))
    await asyncio.sleep(0.02)
    await client.close()
    with pytest.raises(AmiConnectionLost):
        await pending
    assert client_tasks() == []
    assert not client.connected
    with pytest.raises(AmiConnectionLost):
        await client.action("Ping")
    await client.close()  # idempotent


async def test_close_while_reconnecting(clients: list[AmiClient]) -> None:
    srv = FakeAmiServer()
    await srv.start()
    client = AmiClient("127.0.0.1", srv.port, "bridge", "s3cret", reconnect_delay=0.02)
    clients.append(client)
    await client.start()
    await srv.stop()
    await asyncio.sleep(0.1)  # the supervisor is now retrying
    async with asyncio.timeout(1):
        await client.close()
    assert client_tasks() == []


async def test_replayed_transcript_reaches_tracker_intact(
    server: FakeAmiServer, clients: list[AmiClient]
) -> None:
    """Written 7 bytes at a time: Cyrillic characters are split across reads."""
    client = make(server, clients)
    tracker = CallTracker("pbx1", ["hotline"])
    finals: list[CallRecord] = []
    names: set[str | None] = set()

    def feed(msg: AmiMessage) -> None:
        if msg.event == "NewCallerid":
            names.add(msg.get("CallerIDName"))
        finals.extend(r for r in tracker.handle(msg) if r.ended_at is not None)

    client.on_event("*", feed)
    await client.start()
    path = FIXTURES / "answered.txt"
    await server.replay(path, chunk=7)
    await eventually(lambda: bool(finals))
    assert names == {"Тарас Шевченко"}
    [final] = finals
    assert final.outcome is CallOutcome.ANSWERED and final.caller_name == "Тарас Шевченко"
    assert final.talk_seconds == 3 and final.operator_name == "Operator 101"
    assert transcript_events(path).count(b"\r\n\r\n") > 100


async def test_malformed_input_is_logged_not_fatal(
    server: FakeAmiServer, clients: list[AmiClient]
) -> None:
    with capture_logs() as logs:
        client = make(server, clients)
        seen: list[str | None] = []
        client.on_event("*", lambda msg: seen.append(msg.event))
        await client.start()
        await server.send(b"no colon here\r\n\r\nEvent: After\r\nbad line\r\n\r\n")
        await eventually(lambda: "After" in seen)
    assert client.connected and server.logins == 1
    assert [e["count"] for e in logs if e["event"] == "ami_malformed_lines"] == [1, 1]


async def test_login_is_an_md5_challenge_the_secret_never_on_the_wire(
    server: FakeAmiServer, clients: list[AmiClient]
) -> None:
    client = make(server, clients)
    await client.start()
    await client.action("Ping")
    await server.drop()  # an Asterisk restart: the client logs in again
    await eventually(lambda: server.logins == 2 and client.connected)
    assert server.login_methods == ["md5", "md5"]
    logins = [a for a in server.actions if a.get("Action") == "Login"]
    assert all(a.get("AuthType") == "MD5" and "Secret" not in a for a in logins)
    assert all(len(a.get("Key") or "") == 32 for a in logins)
    assert b"s3cret" not in server.received and b"Challenge" in server.received


async def test_no_plain_text_fallback_when_challenge_is_refused(
    server: FakeAmiServer, clients: list[AmiClient]
) -> None:
    server.challenge_supported = False  # whatever answers does not offer a challenge
    client = make(server, clients)
    with pytest.raises(AmiLoginError, match="MD5 challenge"):
        await client.connect()
    assert server.logins == 0 and b"s3cret" not in server.received
    assert not any(a.get("Action") == "Login" for a in server.actions)


async def test_oversized_messages_are_dropped_and_the_link_lives(
    server: FakeAmiServer, clients: list[AmiClient]
) -> None:
    refused_before = REGISTRY.get_sample_value("hotline_ami_messages_dropped_total") or 0
    with capture_logs() as logs:
        client = make(server, clients)
        seen: list[str | None] = []
        client.on_event("*", lambda msg: seen.append(msg.event))
        await client.start()
        flood = b"Event: Flood\r\n" + b"ChanVariable: X=1\r\n" * 5000 + b"\r\n"
        huge = b"Event: Huge\r\nValue: " + b"x" * (1 << 20) + b"\r\n\r\n"
        await server.send(flood + huge + b"Event: After\r\nUniqueid: 1.1\r\n\r\n", chunk=4096)
        await eventually(lambda: "After" in seen)
        # a reply over the cap fails its action at once (no wait for the timeout)
        server.replies["queuesummary"] = {"Message": "y" * 100_000}
        with pytest.raises(AmiProtocolError, match="QueueSummary"):
            await client.action("QueueSummary")
        assert (await client.action("Ping")).response == "Success"
    assert "Flood" not in seen and "Huge" not in seen
    assert client.connected and server.logins == 1 and client.dropped_messages == 3
    dropped = [e for e in logs if e["event"] == "ami_message_dropped"]
    assert [e["ami_event"] for e in dropped] == ["Flood", "Huge", None]
    assert all(e["log_level"] == "error" for e in dropped)
    assert REGISTRY.get_sample_value("hotline_ami_messages_dropped_total") == refused_before + 3


async def test_slow_handlers_shed_chatty_events_but_keep_closing_ones(
    server: FakeAmiServer, clients: list[AmiClient]
) -> None:
    def shed(essential: str) -> float:
        value = REGISTRY.get_sample_value("hotline_ami_events_dropped_total",
                                          {"essential": essential})
        return value or 0

    shed_before = shed("no"), shed("yes")
    with capture_logs() as logs:
        client = make(server, clients, max_queued_events=100)
        release = asyncio.Event()
        seen: list[AmiMessage] = []

        async def slow(msg: AmiMessage) -> None:
            await release.wait()  # the handlers are stuck (say, a slow database)
            seen.append(msg)

        client.on_event("*", slow)
        await client.start()
        events: list[dict[str, str]] = []
        for call in range(20):
            uid = f"1700000000.{call}"
            events += [{"Event": "Newexten", "Uniqueid": uid, "Application": "Wait"}] * 10
            events += [
                {"Event": "DTMFBegin", "Uniqueid": uid, "Digit": "1"},
                {"Event": "VarSet", "Uniqueid": uid, "Variable": "RTPAUDIOQOS", "Value": "x"},
                {"Event": "VarSet", "Uniqueid": uid, "Variable": "IVR_CHOICE", "Value": "1"},
                {"Event": "AgentComplete", "Uniqueid": uid, "Queue": "housing"},
                {"Event": "BridgeLeave", "Uniqueid": uid},
                {"Event": "Hangup", "Uniqueid": uid, "Cause": "16"},
            ]
        await server.emit(*events)
        # the whole burst is in: queued, or shed and counted (FullyBooted is in the handler)
        await eventually(
            lambda: len(client.backlog) + sum(client.backlog.dropped.values()) == len(events)
        )
        assert len(client.backlog) > 100  # over the cap: the essential ones still got in
        release.set()
        await eventually(lambda: sum(1 for m in seen if m.event == "Hangup") == 20)
        await eventually(lambda: len(client.backlog) == 0)
    kept = Counter(m.event for m in seen)
    assert kept["Hangup"] == kept["AgentComplete"] == kept["BridgeLeave"] == 20
    ivr = [m for m in seen if m.event == "VarSet" and m.get("Variable") == "IVR_CHOICE"]
    assert len(ivr) == 20
    dropped = client.backlog.dropped
    assert set(dropped) <= {"Newexten", "DTMFBegin", "VarSet"} and dropped["Newexten"] > 0
    assert kept["Newexten"] + dropped["Newexten"] == 200  # counted, none lost unaccounted
    shedding = [e for e in logs if e["event"] == "ami_backlog_shedding"]
    recovered = [e for e in logs if e["event"] == "ami_backlog_recovered"]
    assert len(shedding) == 1 and len(recovered) == 1
    assert recovered[0]["dropped"] == sum(dropped.values())
    assert not [e for e in logs if e["event"] == "ami_essential_event_dropped"]
    assert (shed("no"), shed("yes")) == (shed_before[0] + sum(dropped.values()), shed_before[1])
