"""End to end through a REAL Asterisk 22 (the sid chroot sandbox), our FastAGI
IVR, the AMI client and a real PostgreSQL: each call record must agree with
what Asterisk itself wrote to its queue_log for that call.

Needs root (debootstrap, chroot, mount). It never skips: with CI=true a
sandbox that cannot start fails the run.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from cti_bridge.ami_client import AmiClient
from hotline.app import HotlineService
from hotline.devtools import asterisk_sandbox as sandbox
from hotline.devtools import simulator
from ivr.menu import load_ivr_config
from ivr.server import FastAgiServer
from tests.support.paths import CONFIG_DIR
from tests.support.ports import port
from tests.support.sandbox import make_sandbox, running_service, service_settings
from tests.support.sip_uac import SipCall

pytestmark = [pytest.mark.asterisk, pytest.mark.asyncio(loop_scope="session")]

SERVER_ID = "hotline-test"
AMI_PORT, AGI_PORT, SIP_PORT, WEB_PORT = port(25038), port(24574), port(25060), port(28551)
# The greeting (silence/1 + hello) is not interruptible: press after it.
DIGIT_DELAY = 4.5
_numbers = itertools.count(1)


def unique_number() -> str:
    return f"38067{int(time.time()) % 100000:05d}{next(_numbers):02d}"


@pytest.fixture(scope="module")
def asterisk() -> Iterator[sandbox.SandboxSpec]:
    spec = make_sandbox("test", SERVER_ID, ami_port=AMI_PORT, agi_port=AGI_PORT,
                        sip_port=SIP_PORT, queue_timeout=60)
    sandbox.down(spec)
    (spec.log_dir / "messages.log").unlink(missing_ok=True)  # judge this run's warnings only
    sandbox.up(spec)
    yield spec
    sandbox.down(spec)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def service(
    asterisk: sandbox.SandboxSpec, pg_pool: asyncpg.Pool, pg_url: str, redis_url: str
) -> AsyncIterator[HotlineService]:
    settings = service_settings(asterisk, database_url=pg_url, redis_url=redis_url,
                                web_port=WEB_PORT)
    async with running_service(settings) as svc:
        yield svc


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def sim(asterisk: sandbox.SandboxSpec) -> AsyncIterator[AmiClient]:
    """The simulator's own AMI account: the service's may not originate."""
    client = sandbox.simulator_ami(asterisk)
    await client.start()
    yield client
    await client.close()


async def wait_for_call(pool: asyncpg.Pool, number: str, timeout: float = 60.0) -> dict[str, Any]:
    """The finished call record of the citizen with this number."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = await pool.fetchrow(
            "SELECT * FROM calls WHERE caller_number = $1 AND outcome <> 'in_progress'"
            " AND ended_at IS NOT NULL",
            number,
        )
        if row is not None and (row["outcome"] != "answered" or row["talk_seconds"] is not None):
            return dict(row)
        await asyncio.sleep(0.25)
    rows = await pool.fetch("SELECT * FROM calls WHERE caller_number = $1", number)
    raise AssertionError(f"no finished call record for {number} within {timeout} s: {rows}")


async def queue_log_for(
    spec: sandbox.SandboxSpec, callid: str, final_events: set[str], timeout: float = 10.0
) -> dict[str, list[str]]:
    """queue_log lines of one call, by event name, once one of ``final_events`` is there."""
    deadline = time.monotonic() + timeout
    events: dict[str, list[str]] = {}
    while time.monotonic() < deadline:
        events = {}
        for line in spec.queue_log.read_text(errors="replace").splitlines():
            parts = line.split("|")
            if len(parts) >= 5 and parts[1] == callid:
                events[parts[4]] = parts[5:]
        if final_events & events.keys() or not final_events:
            return events
        await asyncio.sleep(0.2)
    raise AssertionError(f"queue_log has no {final_events} for {callid}: {events}")


async def test_answered_call_matches_queue_log(
    service: HotlineService, sim: AmiClient, asterisk: sandbox.SandboxSpec, pg_pool: asyncpg.Pool
) -> None:
    ami = sim
    await simulator.add_operator(ami, 201, queues=("housing",), talk_seconds=3)
    number = unique_number()
    try:
        await simulator.call_in(
            ami, simulator.Citizen(number, "Тарас Шевченко", "1", DIGIT_DELAY, 60)
        )
        call = await wait_for_call(pg_pool, number)
    finally:
        await simulator.remove_operator(ami, 201, queues=("housing",))

    assert call["outcome"] == "answered"
    assert call["caller_name"] == "Тарас Шевченко"
    assert call["ivr_choice"] == "1"
    assert call["ivr_source"] == "fastagi"
    assert call["queue"] == "housing"
    assert call["operator_name"] == "Operator 201"
    assert call["call_key"].startswith(f"{SERVER_ID}:")
    assert call["uniqueid"].startswith(f"{SERVER_ID}-")

    log = await queue_log_for(asterisk, call["uniqueid"], {"COMPLETEAGENT", "COMPLETECALLER"})
    assert "ENTERQUEUE" in log and "CONNECT" in log
    assert abs(int(log["CONNECT"][0]) - call["wait_seconds"]) <= 1
    complete = log.get("COMPLETEAGENT") or log["COMPLETECALLER"]
    assert abs(int(complete[1]) - call["talk_seconds"]) <= 1
    assert 2 <= call["talk_seconds"] <= 5  # the operator talks 3 s

    attempts = await pg_pool.fetch(
        "SELECT qa.* FROM queue_attempts qa JOIN calls c ON c.id = qa.call_id "
        "WHERE c.call_key = $1 ORDER BY seq",
        call["call_key"],
    )
    assert [a["queue"] for a in attempts] == ["housing"]
    assert attempts[0]["outcome"] == "answered"

    steps = await pg_pool.fetch(
        "SELECT step FROM ivr_steps WHERE uniqueid = $1 ORDER BY at, id", call["uniqueid"]
    )
    assert [s["step"] for s in steps][:2] == ["language.start", "greeting"]
    assert "choice" in [s["step"] for s in steps]

    # the operator's shift as app_queue reported it: logged in, rang, talked, left
    interface = simulator.operator_interface(201)
    deadline = time.monotonic() + 10
    shift: list[str] = []
    while time.monotonic() < deadline and (not shift or shift[-1] != "logged_out"):
        rows = await pg_pool.fetch(
            "SELECT state FROM operator_state_changes WHERE interface = $1 AND queue = 'housing'"
            " ORDER BY id",
            interface,
        )
        shift = [r["state"] for r in rows]
        await asyncio.sleep(0.2)
    assert shift[0] == "logged_in" and shift[-1] == "logged_out", shift
    assert "in_call" in shift


async def test_caller_abandons_in_queue(
    service: HotlineService, sim: AmiClient, asterisk: sandbox.SandboxSpec, pg_pool: asyncpg.Pool
) -> None:
    number = unique_number()
    # nobody is logged in to "social": the citizen waits about 4 s and gives up
    await simulator.call_in(
        sim, simulator.Citizen(number, "Леся Українка", "3", DIGIT_DELAY, 4)
    )
    call = await wait_for_call(pg_pool, number)

    assert call["outcome"] == "abandoned"
    assert call["queue"] == "social"
    assert call["operator_name"] is None
    log = await queue_log_for(asterisk, call["uniqueid"], {"ABANDON"})
    assert "CONNECT" not in log
    assert abs(int(log["ABANDON"][2]) - call["wait_seconds"]) <= 1
    assert call["wait_seconds"] >= 2


async def test_caller_hangs_up_in_ivr(
    service: HotlineService, sim: AmiClient, asterisk: sandbox.SandboxSpec, pg_pool: asyncpg.Pool
) -> None:
    number = unique_number()
    await simulator.call_in(
        sim, simulator.Citizen(number, "Іван Франко", "", 1.0, 0.5)
    )
    call = await wait_for_call(pg_pool, number)

    assert call["outcome"] == "ivr_only"
    assert call["queue"] is None
    assert call["wait_seconds"] is None
    assert call["hangup_cause"] is not None
    # Asterisk agrees: this call never entered a queue
    log = await queue_log_for(asterisk, call["uniqueid"], set())
    assert log == {}
    steps = await pg_pool.fetch(
        "SELECT step FROM ivr_steps WHERE uniqueid = $1", call["uniqueid"]
    )
    assert "route" not in [s["step"] for s in steps]


async def test_fastagi_down_fallback_still_queues(
    service: HotlineService, sim: AmiClient, asterisk: sandbox.SandboxSpec, pg_pool: asyncpg.Pool
) -> None:
    """The classic-AGI fallback (pyst2 in the chroot) runs as Asterisk's own user."""
    assert service.agi_server is not None
    ami = sim
    routes = service.agi_server.routes
    await service.agi_server.stop()  # our FastAGI server is down: connection refused
    await simulator.add_operator(ami, 202, queues=("transport",), talk_seconds=2)
    number = unique_number()
    try:
        await simulator.call_in(ami, simulator.Citizen(number, "Ольга Коваленко", "2", 3.0, 60))
        call = await wait_for_call(pg_pool, number)
    finally:
        await simulator.remove_operator(ami, 202, queues=("transport",))
        service.agi_server = FastAgiServer(routes, "127.0.0.1", AGI_PORT)
        await service.agi_server.start()

    assert call["ivr_source"] == "fallback"
    assert call["ivr_choice"] == "2"
    assert call["queue"] == "transport"
    assert call["outcome"] == "answered"
    log = await queue_log_for(asterisk, call["uniqueid"], {"COMPLETEAGENT", "COMPLETECALLER"})
    assert abs(int(log["CONNECT"][0]) - call["wait_seconds"]) <= 1
    complete = log.get("COMPLETEAGENT") or log["COMPLETECALLER"]
    assert abs(int(complete[1]) - call["talk_seconds"]) <= 1


async def test_wait_runs_out_and_the_catalogues_overflow_queue_answers(
    service: HotlineService, sim: AmiClient, asterisk: sandbox.SandboxSpec, pg_pool: asyncpg.Pool
) -> None:
    """queues.toml: social overflows to main; the dialplan follows the generated chain."""
    ami = sim
    overflow = load_ivr_config(CONFIG_DIR).queues.queues["social"].overflow
    assert overflow == "main"
    # nobody in "social"; the wait there is cut to 3 s for this call
    await ami.action("Setvar", Variable="HOTLINE_QUEUE_TIMEOUT", Value="3")
    await simulator.add_operator(ami, 203, queues=(overflow,), talk_seconds=2)
    number = unique_number()
    try:
        await simulator.call_in(ami, simulator.Citizen(number, "Богдан Ткаченко", "3",
                                                       DIGIT_DELAY, 60))
        call = await wait_for_call(pg_pool, number)
    finally:
        await simulator.remove_operator(ami, 203, queues=(overflow,))
        await ami.action("Setvar", Variable="HOTLINE_QUEUE_TIMEOUT",
                         Value=str(asterisk.queue_timeout))

    assert (call["ivr_choice"], call["outcome"], call["queue"]) == ("3", "answered", "main")
    attempts = await pg_pool.fetch(
        "SELECT qa.* FROM queue_attempts qa JOIN calls c ON c.id = qa.call_id "
        "WHERE c.call_key = $1 ORDER BY seq",
        call["call_key"],
    )
    # (the first stay's outcome is the tracker's business: left alone here)
    assert [a["queue"] for a in attempts] == ["social", "main"]
    assert attempts[-1]["outcome"] == "answered"
    log = await queue_log_for(asterisk, call["uniqueid"], {"COMPLETEAGENT", "COMPLETECALLER"})
    assert "EXITWITHTIMEOUT" in log and "CONNECT" in log


async def test_sip_call_through_the_citizens_trunk(
    service: HotlineService, asterisk: sandbox.SandboxSpec, pg_pool: asyncpg.Pool
) -> None:
    """A real SIP INVITE to PJSIP (digest auth, caller id from P-Asserted-Identity)."""
    number = unique_number()
    async with SipCall(asterisk.sip_port, "citizens-trunk", asterisk.sip_password,
                       number, "Оксана Ткаченко") as call:
        await call.place()
        await asyncio.sleep(1.5)  # hangs up during the greeting
        assert await call.hang_up() == 200
    assert 401 in call.seen  # the trunk had to authenticate
    record = await wait_for_call(pg_pool, number)
    assert record["channel"].startswith("PJSIP/citizens-trunk-")
    assert record["caller_name"] == "Оксана Ткаченко"
    assert record["outcome"] == "ivr_only"

    async with SipCall(asterisk.sip_port, "citizens-trunk", "a-wrong-password",
                       unique_number(), "Зловмисник") as intruder:
        with pytest.raises(PermissionError):
            await intruder.place()


async def test_asterisk_restart_keeps_call_keys_unique(
    service: HotlineService, sim: AmiClient, asterisk: sandbox.SandboxSpec, pg_pool: asyncpg.Pool
) -> None:
    """Uniqueid sequences restart with Asterisk; the call key must not repeat, and
    the AMI client must come back by itself."""
    assert service.cti is not None
    ami = service.cti.ami

    async def ivr_only_call() -> dict[str, Any]:
        number = unique_number()
        await simulator.call_in(sim, simulator.Citizen(number, "Петро Бондаренко", "", 1.0, 0.5))
        return await wait_for_call(pg_pool, number)

    before = await ivr_only_call()
    await asyncio.to_thread(sandbox.down, asterisk)
    await asyncio.sleep(1.1)  # Asterisk's start time has a resolution of one second
    await asyncio.to_thread(sandbox.up, asterisk)
    async with asyncio.timeout(30):  # the AMI clients must come back by themselves
        while True:
            if ami.connected and sim.connected:
                break
            await asyncio.sleep(0.2)
    await asyncio.sleep(0.5)  # let on_connected read the new start time
    after = await ivr_only_call()

    boot_before, boot_after = before["call_key"].split(":")[1], after["call_key"].split(":")[1]
    assert int(boot_after) > int(boot_before)
    assert after["call_key"] != before["call_key"]
    assert after["outcome"] == "ivr_only"


async def test_every_prompt_was_found_by_asterisk(asterisk: sandbox.SandboxSpec) -> None:
    """Runs last: after the calls above, Asterisk has not missed a single sound file."""
    config = load_ivr_config(CONFIG_DIR)
    sounds = asterisk.root / "usr" / "share" / "asterisk" / "sounds" / "uk"
    ours = [p for p in (*config.greeting, config.menu_prompt, config.invalid_prompt)
            if p.startswith("hotline/")]
    assert ours, "the IVR speaks the hotline's own Ukrainian prompts"
    for prompt in ours:
        assert (sounds / f"{prompt}.wav").stat().st_size > 8000, prompt  # > 0.5 s of speech
    log = (asterisk.log_dir / "messages.log").read_text(errors="replace")
    missing = [line for line in log.splitlines() if "does not exist" in line]
    assert missing == []
