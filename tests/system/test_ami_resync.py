"""Through a REAL Asterisk 22: the service's AMI link is cut while a citizen's
call goes from the IVR into a queue and is answered, and restored while the
operator still talks. Every event of that stretch (QueueCallerJoin,
AgentConnect…) is lost; the resync on reconnect must rebuild the call so that
its record names the operator and has the wait and talk of Asterisk's queue_log.

queue_log reconciliation is off here: the record judged is what AMI built.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from cti_bridge.ami_client import AmiClient
from hotline.app import HotlineService
from hotline.devtools import asterisk_sandbox as sandbox
from hotline.devtools import simulator
from tests.support.databases import MakeDatabase
from tests.support.link_cutter import LinkCutter
from tests.support.ports import port
from tests.support.root import needs_root
from tests.support.sandbox import make_sandbox, migrated_database, running_service, service_settings

pytestmark = [pytest.mark.asterisk, pytest.mark.asyncio(loop_scope="session")]

SERVER_ID = "hotline-resync"
AMI_PORT, AGI_PORT, SIP_PORT = port(31038), port(31574), port(31060)
OPERATOR, TALK = 551, 14  # the simulated operator talks this long
DIGIT_DELAY = 4.5


@pytest.fixture(scope="module")
def asterisk() -> Iterator[sandbox.SandboxSpec]:
    needs_root("the Asterisk sandbox needs root (debootstrap, chroot)")
    spec = make_sandbox("resync", SERVER_ID, ami_port=AMI_PORT, agi_port=AGI_PORT,
                        sip_port=SIP_PORT, queue_timeout=60)
    sandbox.down(spec)
    spec.queue_log.unlink(missing_ok=True)
    sandbox.up(spec)
    yield spec
    sandbox.down(spec)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def cutter(asterisk: sandbox.SandboxSpec) -> AsyncIterator[LinkCutter]:
    link = LinkCutter(asterisk.ami_port)
    await link.start()
    yield link
    await link.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def database(make_database: MakeDatabase) -> AsyncIterator[tuple[str, asyncpg.Pool]]:
    async with migrated_database(make_database, "resync") as created:
        yield created


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def service(
    asterisk: sandbox.SandboxSpec, cutter: LinkCutter, database: tuple[str, asyncpg.Pool],
    redis_url: str,
) -> AsyncIterator[HotlineService]:
    state = Path(tempfile.mkdtemp(prefix="hotline-resync-"))
    settings = service_settings(asterisk, database_url=database[0], redis_url=redis_url,
                                roles=["agi", "ami"], state_dir=str(state))
    settings.ami.port = cutter.port  # the service reaches AMI through the cutter
    settings.asterisk.queue_log = "off"
    async with running_service(settings) as svc:
        yield svc
    shutil.rmtree(state, ignore_errors=True)


async def until(what: str, check: Any, timeout: float = 40.0) -> Any:
    """Poll the async ``check`` until it returns something true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def queue_log_of(spec: sandbox.SandboxSpec, callid: str) -> dict[str, list[str]]:
    events: dict[str, list[str]] = {}
    for line in spec.queue_log.read_text(errors="replace").splitlines():
        parts = line.split("|")
        if len(parts) >= 5 and parts[1] == callid:
            events[parts[4]] = [parts[3], *parts[5:]]
    return events


async def test_cut_ami_link_during_a_call_leaves_operator_wait_and_talk(
    service: HotlineService, cutter: LinkCutter, asterisk: sandbox.SandboxSpec,
    database: tuple[str, asyncpg.Pool],
) -> None:
    pool = database[1]
    assert service.cti is not None
    ami = service.cti.ami
    sim: AmiClient = sandbox.simulator_ami(asterisk)  # straight to Asterisk, never cut
    await sim.start()
    await simulator.add_operator(sim, OPERATOR, ("social",), talk_seconds=TALK)
    number = f"38067{int(time.time()) % 10_000_000:07d}"
    try:
        await until("the service's AMI link", lambda: asyncio.sleep(0, ami.connected))
        generation = ami.generation
        await simulator.call_in(sim, simulator.Citizen(
            number, "Марко Вовчок", "3", DIGIT_DELAY, 60.0))
        await asyncio.sleep(1.0)  # the service has seen the call's Newchannel
        await cutter.cut()  # IVR, queue and answer happen while the link is down

        async def connected_in_queue_log() -> str | None:
            calls = [line.split("|")[1] for line in
                     asterisk.queue_log.read_text(errors="replace").splitlines()
                     if "|CONNECT|" in line and "|social|" in line]
            return calls[-1] if calls else None

        callid = await until("the operator to answer", connected_in_queue_log, timeout=30)
        assert not ami.connected
        cutter.restore()  # the operator is still talking
        await until("the AMI reconnect", lambda: asyncio.sleep(
            0, ami.connected and ami.generation > generation))

        async def live_record() -> dict[str, Any] | None:
            row = await pool.fetchrow("SELECT * FROM calls WHERE uniqueid = $1", callid)
            return dict(row) if row and row["outcome"] == "in_progress" else None

        # before the call ends, its record already says who answered (the resync)
        live = await until("the resynced live record", live_record, timeout=20)
        attempts = await pool.fetch(
            "SELECT * FROM queue_attempts WHERE call_id = $1 ORDER BY seq", live["id"])
        log = queue_log_of(asterisk, callid)
        assert [(a["queue"], a["outcome"]) for a in attempts] == [("social", "answered")]
        assert attempts[0]["operator_interface"] == simulator.operator_interface(OPERATOR)
        assert attempts[0]["operator_name"] == f"Operator {OPERATOR}" == log["CONNECT"][0]
        assert attempts[0]["wait_seconds"] == int(log["CONNECT"][1])
        assert live["ivr_choice"] == "3" and live["caller_number"] == number

        async def final_record() -> dict[str, Any] | None:
            row = await pool.fetchrow("SELECT * FROM calls WHERE uniqueid = $1", callid)
            done = row is not None and row["outcome"] != "in_progress"
            return dict(row) if done and row["talk_seconds"] is not None else None

        call = await until("the finished record", final_record, timeout=TALK + 30)
    finally:
        await simulator.remove_operator(sim, OPERATOR, ("social",))
        await sim.close()

    log = queue_log_of(asterisk, callid)
    complete = log.get("COMPLETEAGENT") or log["COMPLETECALLER"]
    assert call["outcome"] == "answered" and call["queue"] == "social"
    assert call["operator_interface"] == simulator.operator_interface(OPERATOR)
    assert call["operator_name"] == log["CONNECT"][0]
    assert call["wait_seconds"] == int(log["CONNECT"][1])
    assert call["talk_seconds"] == int(complete[2])
    assert call["reconciled_at"] is None  # AMI's own record, not queue_log's correction


async def test_queue_timeout_is_recorded_as_timeout_not_abandoned(
    service: HotlineService, asterisk: sandbox.SandboxSpec, database: tuple[str, asyncpg.Pool],
) -> None:
    """app_queue raises QueueCallerAbandon for a timeout too; the record must say
    timeout from the start, as queue_log's EXITWITHTIMEOUT does (no reconciliation here)."""
    pool = database[1]
    sim = sandbox.simulator_ami(asterisk)
    await sim.start()
    await sim.action("Setvar", Variable="HOTLINE_QUEUE_TIMEOUT", Value="3")
    number = f"38063{int(time.time()) % 10_000_000:07d}"
    try:  # nobody in social nor in main: 3 s in each, then the dialplan hangs up
        await simulator.call_in(sim, simulator.Citizen(number, "Пантелеймон Куліш", "3",
                                                       DIGIT_DELAY, 60.0))

        async def final_record() -> dict[str, Any] | None:
            row = await pool.fetchrow("SELECT * FROM calls WHERE caller_number = $1"
                                      " AND outcome <> 'in_progress'", number)
            return dict(row) if row else None

        call = await until("the finished record", final_record, timeout=40)
    finally:
        await sim.action("Setvar", Variable="HOTLINE_QUEUE_TIMEOUT",
                         Value=str(asterisk.queue_timeout))
        await sim.close()
    attempts = await pool.fetch(
        "SELECT * FROM queue_attempts WHERE call_id = $1 ORDER BY seq", call["id"])
    log = [line.split("|") for line in asterisk.queue_log.read_text().splitlines()
           if f"|{call['uniqueid']}|" in line]
    assert [(p[2], p[4]) for p in log if p[4] == "EXITWITHTIMEOUT"] == [
        ("social", "EXITWITHTIMEOUT"), ("main", "EXITWITHTIMEOUT")]
    assert [(a["queue"], a["outcome"]) for a in attempts] == [
        ("social", "timeout"), ("main", "timeout")]
    assert (call["outcome"], call["queue"], call["reconciled_at"]) == ("timeout", "main", None)
    assert call["wait_seconds"] == int(log[-1][7])  # EXITWITHTIMEOUT pos|origpos|waittime
