"""The places that count move the Prometheus metrics: the FastAGI server against a
client that speaks like Asterisk, the CTI service against the fake AMI, the
retrying sink against a failing writer."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from crm_sync.call_store import RetryingWriter
from cti_bridge.ami_client import AmiClient
from cti_bridge.call_tracker import CallTracker
from cti_bridge.service import CtiService
from hotline.core import metrics
from hotline.core.records import CallRecord, OperatorStateChange
from ivr.server import AgiSession, FastAgiServer
from tests.support.fake_agi_client import GUARD, FakeAsterisk
from tests.support.fake_ami_server import FakeAmiServer

pytestmark = pytest.mark.asyncio(loop_scope="session")


def value(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


async def until(predicate: Any, what: str) -> None:
    """Poll a metric (no event to wait on); fails the test naming ``what``."""
    try:
        async with asyncio.timeout(GUARD):
            while not predicate():  # noqa: ASYNC110
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"not reached within {GUARD} s: {what}") from None


# --- FastAGI sessions -------------------------------------------------------------


@pytest_asyncio.fixture(loop_scope="session")
async def agi_server() -> AsyncIterator[tuple[FastAgiServer, asyncio.Event, asyncio.Event]]:
    entered, release = asyncio.Event(), asyncio.Event()

    async def held(session: AgiSession) -> None:
        entered.set()
        await release.wait()

    async def broken(session: AgiSession) -> None:
        raise RuntimeError("a bug in a route")

    server = FastAgiServer({"held": held, "broken": broken}, "127.0.0.1", 0, env_timeout=0.2)
    await server.start()
    yield server, entered, release
    await server.stop()


async def test_agi_sessions_started_active_and_ended(
    agi_server: tuple[FastAgiServer, asyncio.Event, asyncio.Event],
) -> None:
    server, entered, release = agi_server
    started = value("hotline_agi_sessions_total", route="held")
    active = value("hotline_agi_sessions_active")
    agi = await FakeAsterisk.connect(server.port)
    await agi.send_env("held")
    await asyncio.wait_for(entered.wait(), GUARD)
    assert value("hotline_agi_sessions_total", route="held") == started + 1
    assert value("hotline_agi_sessions_active") == active + 1
    release.set()
    await agi.wait_eof()
    await agi.close()
    await until(lambda: value("hotline_agi_sessions_active") == active, "session ended")


async def test_agi_sessions_failed_by_reason(
    agi_server: tuple[FastAgiServer, asyncio.Event, asyncio.Event],
) -> None:
    server, _entered, _release = agi_server
    before = {reason: value("hotline_agi_sessions_failed_total", reason=reason)
              for reason in metrics.AGI_FAILURE_REASONS}
    active = value("hotline_agi_sessions_active")

    for script in ("broken", "no-such-route"):
        agi = await FakeAsterisk.connect(server.port)
        await agi.send_env(script)
        await agi.wait_eof()
        await agi.close()
    silent = await FakeAsterisk.connect(server.port)
    await silent.send("agi_network: yes")  # then nothing: the environment times out
    await silent.wait_eof()
    await silent.close()

    def failed(reason: str) -> float:
        return value("hotline_agi_sessions_failed_total", reason=reason) - before[reason]

    await until(lambda: failed("environment") == 1, "env timeout counted")
    assert (failed("route_error"), failed("no_route")) == (1, 1)
    assert value("hotline_agi_sessions_active") == active  # a failed route ends too
    assert value("hotline_agi_sessions_total", route="no-such-route") == 0  # no such series


# --- the retrying sink ------------------------------------------------------------


async def test_sink_backlog_retries_and_dropped() -> None:
    sink = f"test_sink_{uuid.uuid4().hex[:6]}"
    database_up = asyncio.Event()
    written: list[str] = []

    async def write(item: str) -> None:
        if item == "poison":
            raise ValueError("rejected by the database")
        if not database_up.is_set():
            raise ConnectionRefusedError("the database is restarting")
        written.append(item)

    writer: RetryingWriter[str] = RetryingWriter(write, name=sink, initial_delay=0.01,
                                                 max_delay=0.02, max_buffer=3)
    assert metrics.REGISTRY.get_sample_value("hotline_sink_backlog", {"sink": sink}) == 0
    writer.start()
    try:
        for item in ("a", "b", "c", "d"):  # "a" is pushed out of the full buffer
            writer.submit(item)
        assert value("hotline_sink_backlog", sink=sink) == 3
        assert value("hotline_sink_dropped_total", sink=sink) == 1
        await until(lambda: value("hotline_sink_retries_total", sink=sink) >= 2, "retried")
        database_up.set()
        await until(lambda: value("hotline_sink_backlog", sink=sink) == 0, "written")
        assert written == ["b", "c", "d"]
        writer.submit("poison")
        await until(lambda: value("hotline_sink_dropped_total", sink=sink) == 2, "poison dropped")
        assert value("hotline_sink_backlog", sink=sink) == 0
    finally:
        await writer.stop()


# --- the CTI service --------------------------------------------------------------


class Memory:
    def __init__(self) -> None:
        self.calls: list[CallRecord] = []

    async def save_call(self, record: CallRecord) -> None:
        self.calls.append(record)

    async def publish(self, channel: str, message: dict[str, Any]) -> None:
        pass

    async def record_operator_state(self, change: OperatorStateChange) -> None:
        pass


@pytest_asyncio.fixture(loop_scope="session")
async def cti(redis_client: aioredis.Redis) -> AsyncIterator[tuple[FakeAmiServer, Memory]]:
    server = FakeAmiServer(username="hotline", secret="s")
    server.replies["corestatus"] = {"CoreStartupDate": "2026-11-28",
                                    "CoreStartupTime": "09:00:00"}
    server.lists["coreshowchannels"] = ("CoreShowChannelsComplete", [])
    server.lists["queuesummary"] = ("QueueSummaryComplete", [
        {"Event": "QueueSummary", "Queue": "metrics_q", "LoggedIn": "3", "Available": "1",
         "Callers": "4", "HoldTime": "12", "TalkTime": "140", "LongestHoldTime": "31"}])
    port = await server.start()
    memory = Memory()
    ami = AmiClient("127.0.0.1", port, "hotline", "s", reconnect_delay=0.05, ping_interval=0)
    # a server id of its own: the call counter counts a call key once per process
    tracker = CallTracker(f"m{uuid.uuid4().hex[:6]}", ["hotline-inbound"])
    service = CtiService(ami, tracker, memory, memory, redis_client, memory,
                         queue_poll_seconds=0.05)
    await service.start()
    yield server, memory
    await service.stop()
    await server.stop()


async def test_a_finished_call_is_counted_by_outcome_and_queue(
    cti: tuple[FakeAmiServer, Memory],
) -> None:
    server, memory = cti
    before = value("hotline_calls_total", outcome="abandoned", queue="metrics_q")
    uid = "pbx1-1.42"
    await server.emit(
        {"Event": "Newchannel", "Channel": "PJSIP/trunk-0001", "Context": "hotline-inbound",
         "Exten": "1551", "CallerIDNum": "380501234567", "Uniqueid": uid, "Linkedid": uid},
        {"Event": "QueueCallerJoin", "Queue": "metrics_q", "Position": "1", "Count": "1",
         "Uniqueid": uid, "Linkedid": uid},
        {"Event": "QueueCallerAbandon", "Queue": "metrics_q", "Position": "1",
         "OriginalPosition": "1", "HoldTime": "7", "Uniqueid": uid, "Linkedid": uid},
        {"Event": "Hangup", "Channel": "PJSIP/trunk-0001", "Cause": "16",
         "Cause-txt": "Normal Clearing", "Uniqueid": uid, "Linkedid": uid},
    )
    await until(lambda: any(c.ended_at for c in memory.calls), "call recorded")
    assert value("hotline_calls_total", outcome="abandoned", queue="metrics_q") == before + 1
    assert value("hotline_calls_total", outcome="in_progress", queue="metrics_q") == 0


async def test_callers_waiting_and_reconnects(cti: tuple[FakeAmiServer, Memory]) -> None:
    server, _memory = cti
    await until(lambda: value("hotline_queue_callers_waiting", queue="metrics_q") == 4,
                "queue summary polled")
    before = value("hotline_ami_reconnects_total")
    logins = server.logins
    await server.drop()
    await until(lambda: server.logins == logins + 1, "logged in again")
    await until(lambda: value("hotline_ami_reconnects_total") == before + 1, "reconnect counted")
