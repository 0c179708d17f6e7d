"""Real SIP user agents (Debian 12's baresip) against the REAL Asterisk 22:

* an operator's softphone registers as the sandbox's ``PJSIP/<login>`` endpoint,
  the queue rings it, it answers by itself, and the call record names that
  operator with the wait and talk of Asterisk's queue_log;
* a citizen calls through the citizens' trunk with RTP, picks a menu item with
  RFC 4733 DTMF and reaches that queue; the IVR's prompts reach it as audio and
  Asterisk logs no missing sound file.

The service runs with queue_log reconciliation off: the records judged here
are what AMI alone built.
"""

from __future__ import annotations

import asyncio
import re
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
from tests.support.ports import port
from tests.support.root import needs_root
from tests.support.sandbox import make_sandbox, migrated_database, running_service, service_settings
from tests.support.sip_ua import Baresip

pytestmark = [pytest.mark.asterisk, pytest.mark.asyncio(loop_scope="session")]

SERVER_ID = "hotline-sipua"
AMI_PORT, AGI_PORT, SIP_PORT = port(30038), port(30574), port(30060)
OPERATOR = "olena"
DIGIT_DELAY = 5.0  # the greeting is not interruptible: press after it
MISSING_SOUND = ("does not exist", "Unable to open", "No such file")


@pytest.fixture(scope="module")
def asterisk() -> Iterator[sandbox.SandboxSpec]:
    needs_root("the Asterisk sandbox needs root (debootstrap, chroot)")
    if not Baresip.installed():
        pytest.fail("baresip is not installed: ./run.sh installs baresip-core")
    spec = make_sandbox("sipua", SERVER_ID, ami_port=AMI_PORT, agi_port=AGI_PORT,
                        sip_port=SIP_PORT, queue_timeout=60, operators=(OPERATOR,))
    sandbox.down(spec)
    spec.queue_log.unlink(missing_ok=True)
    (spec.log_dir / "messages.log").unlink(missing_ok=True)  # judge this run's warnings
    sandbox.up(spec)
    yield spec
    sandbox.down(spec)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def database(make_database: MakeDatabase) -> AsyncIterator[tuple[str, asyncpg.Pool]]:
    async with migrated_database(make_database, "sipua") as created:
        yield created


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def service(
    asterisk: sandbox.SandboxSpec, database: tuple[str, asyncpg.Pool], redis_url: str
) -> AsyncIterator[HotlineService]:
    state = Path(tempfile.mkdtemp(prefix="hotline-sipua-"))
    settings = service_settings(asterisk, database_url=database[0], redis_url=redis_url,
                                roles=["agi", "ami"], state_dir=str(state))
    settings.asterisk.queue_log = "off"  # judge AMI's records, not queue_log's corrections
    async with running_service(settings) as svc:
        yield svc
    shutil.rmtree(state, ignore_errors=True)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def sim(asterisk: sandbox.SandboxSpec) -> AsyncIterator[AmiClient]:
    client = sandbox.simulator_ami(asterisk)
    await client.start()
    yield client
    await client.close()


async def finished_call(pool: asyncpg.Pool, where: str, *args: Any,
                        timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = await pool.fetchrow(
            f"SELECT * FROM calls WHERE {where} AND outcome <> 'in_progress'"
            " AND ended_at IS NOT NULL ORDER BY started_at DESC LIMIT 1", *args)
        if row is not None and (row["outcome"] != "answered" or row["talk_seconds"] is not None):
            return dict(row)
        await asyncio.sleep(0.25)
    raise AssertionError(f"no finished call record where {where} {args} within {timeout} s")


async def queue_log_of(spec: sandbox.SandboxSpec, callid: str, final: set[str],
                       timeout: float = 10.0) -> dict[str, list[str]]:
    """callid's queue_log lines by event (agent name included), read on our own."""
    deadline = time.monotonic() + timeout
    events: dict[str, list[str]] = {}
    while time.monotonic() < deadline:
        events = {}
        for line in spec.queue_log.read_text(errors="replace").splitlines():
            parts = line.split("|")
            if len(parts) >= 5 and parts[1] == callid:
                events[parts[4]] = [parts[3], *parts[5:]]
        if final & events.keys():
            return events
        await asyncio.sleep(0.2)
    raise AssertionError(f"queue_log has no {final} for {callid}: {events}")


async def test_operator_softphone_registers_rings_and_answers(
    service: HotlineService, sim: AmiClient, asterisk: sandbox.SandboxSpec,
    database: tuple[str, asyncpg.Pool],
) -> None:
    pool = database[1]
    password = sandbox.operator_sip_password(asterisk, OPERATOR)
    account = (f"<sip:{OPERATOR}@127.0.0.1:{asterisk.sip_port}>;auth_pass={password};"
               "answermode=auto;regint=60;audio_codecs=PCMA,PCMU")
    async with Baresip(account, name="operator") as phone:
        await phone.wait_registered()
        assert phone.uid() != 0  # a softphone needs no privilege: never root
        interface = f"PJSIP/{OPERATOR}"
        await sim.action("QueueAdd", Queue="housing", Interface=interface,
                         StateInterface=interface, MemberName="Олена Пчілка")
        number = f"38044{int(time.time()) % 10_000_000:07d}"
        try:
            await simulator.call_in(sim, simulator.Citizen(
                number, "Іван Франко", "1", DIGIT_DELAY, 9.0))
            established = await phone.wait_event("CALL_ESTABLISHED", timeout=40)
            assert established.get("direction") == "incoming"  # rung, answered by itself
            await phone.wait_event("CALL_CLOSED", timeout=30)  # the citizen hung up
            call = await finished_call(pool, "caller_number = $1", number)
        finally:
            await sim.action("QueueRemove", Queue="housing", Interface=interface)

    assert (call["outcome"], call["queue"], call["ivr_choice"]) == ("answered", "housing", "1")
    assert call["operator_interface"] == interface
    assert call["operator_name"] == "Олена Пчілка"
    log = await queue_log_of(asterisk, call["uniqueid"], {"COMPLETECALLER", "COMPLETEAGENT"})
    complete = log.get("COMPLETECALLER") or log["COMPLETEAGENT"]
    assert log["CONNECT"][0] == "Олена Пчілка"  # log_membername_as_agent
    assert call["wait_seconds"] == int(log["CONNECT"][1])
    assert call["talk_seconds"] == int(complete[2])


async def test_wrong_operator_password_does_not_register(asterisk: sandbox.SandboxSpec) -> None:
    account = (f"<sip:{OPERATOR}@127.0.0.1:{asterisk.sip_port}>;auth_pass=not-the-password;"
               "regint=60")
    async with Baresip(account, name="intruder") as phone:
        async with asyncio.timeout(20):  # Asterisk answers the retried REGISTER with 401
            while True:
                if "401 Unauthorized" in phone.log():
                    break
                await asyncio.sleep(0.2)
        assert not await phone.registered()


async def test_citizen_over_real_sip_with_rtp_and_rfc4733_dtmf(
    service: HotlineService, asterisk: sandbox.SandboxSpec, database: tuple[str, asyncpg.Pool],
) -> None:
    pool = database[1]
    messages = asterisk.log_dir / "messages.log"
    log_start = messages.stat().st_size if messages.exists() else 0
    name = f"Леся Українка {int(time.time()) % 100000}"
    account = (f'"{name}" <sip:citizens-trunk@127.0.0.1:{asterisk.sip_port}>;'
               f"auth_pass={asterisk.sip_password};regint=0;audio_codecs=PCMA,PCMU")
    async with Baresip(account, name="citizen", sip_trace=True) as citizen:
        await citizen.dial(f"sip:1551@127.0.0.1:{asterisk.sip_port}")
        await citizen.wait_event("CALL_ESTABLISHED", timeout=20)
        await asyncio.sleep(DIGIT_DELAY)
        await citizen.send_dtmf("2")  # transport
        async with asyncio.timeout(30):  # the IVR took the digit: the caller is queued
            while True:
                row = await pool.fetchrow("SELECT queue FROM calls WHERE caller_name = $1", name)
                if row is not None and row["queue"] is not None:
                    break
                await asyncio.sleep(0.25)
        await asyncio.sleep(1.0)  # a moment of the queue's music on hold, then leave
        await citizen.hang_up()
        await citizen.wait_event("CALL_CLOSED", timeout=10)
        heard = citizen.heard_seconds()
        trace = citizen.full_log()
    call = await finished_call(pool, "caller_name = $1", name)
    # DTMF as RFC 4733 telephone-events in the RTP stream: negotiated in Asterisk's
    # SDP answer, and no SIP INFO carried a digit
    assert re.search(r"a=rtpmap:\d+ telephone-event/8000", trace)
    assert "INFO sip:" not in trace

    assert call["channel"].startswith("PJSIP/citizens-trunk-")
    assert (call["ivr_choice"], call["ivr_source"], call["queue"]) == ("2", "fastagi", "transport")
    assert call["outcome"] == "abandoned"
    log = await queue_log_of(asterisk, call["uniqueid"], {"ABANDON"})
    assert log["ENTERQUEUE"] and "transport" in {
        line.split("|")[2] for line in asterisk.queue_log.read_text().splitlines()
        if f"|{call['uniqueid']}|" in line}
    assert heard > 1.0, "the IVR's prompts should reach the caller as audio over RTP"
    new_log = messages.read_text(errors="replace")[log_start:] if messages.exists() else ""
    missing = [line for line in new_log.splitlines() if any(m in line for m in MISSING_SOUND)]
    assert missing == [], missing
