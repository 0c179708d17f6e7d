"""A refused FastAGI peer, through a REAL Asterisk 22: the call is not lost.

When the server is full (``max_sessions``) or Asterisk's address is not on the
allow-list, the server closes the connection at once; Asterisk's ``AGI()``
returns and the dialplan takes the classic-AGI fallback (it checks
``IVR_SOURCE``), which still asks the caller and queues the call.
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
from structlog.testing import capture_logs

from cti_bridge.ami_client import AmiClient
from hotline.app import Backends, HotlineService, open_backends
from hotline.devtools import asterisk_sandbox as sandbox
from hotline.devtools import simulator
from ivr.server import FastAgiServer
from tests.support.ports import port
from tests.support.sandbox import make_sandbox, service_settings

pytestmark = [pytest.mark.asterisk, pytest.mark.asyncio(loop_scope="session")]

SERVER_ID = "hotline-bounds"
AMI_PORT, AGI_PORT, SIP_PORT = port(23038), port(23574), port(23060)
_numbers = itertools.count(1)


def unique_number() -> str:
    return f"38063{int(time.time()) % 100000:05d}{next(_numbers):02d}"


@pytest.fixture(scope="module")
def asterisk() -> Iterator[sandbox.SandboxSpec]:
    spec = make_sandbox("agibounds", SERVER_ID, ami_port=AMI_PORT, agi_port=AGI_PORT,
                        sip_port=SIP_PORT, queue_timeout=60)
    sandbox.down(spec)
    sandbox.up(spec)
    yield spec
    sandbox.down(spec)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def service(
    asterisk: sandbox.SandboxSpec, pg_pool: asyncpg.Pool, pg_url: str, redis_url: str
) -> AsyncIterator[HotlineService]:
    settings = service_settings(asterisk, database_url=pg_url, redis_url=redis_url,
                                roles=["agi", "ami"])
    backends: Backends = await open_backends(settings)
    svc = HotlineService(settings, backends)
    await svc.start()
    assert svc.cti is not None
    svc.cti.ami.on_event("VarSet", _remember_agi_status)
    yield svc
    await svc.stop()
    await backends.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def sim(asterisk: sandbox.SandboxSpec) -> AsyncIterator[AmiClient]:
    """The simulator's own AMI account: the service's may not originate."""
    client = sandbox.simulator_ami(asterisk)
    await client.start()
    yield client
    await client.close()


#: AGISTATUS of the FastAGI attempt by channel uniqueid (the dialplan keeps it
#: in HOTLINE_FASTAGI_STATUS before it runs the fallback).
FASTAGI_STATUS: dict[str, str] = {}


def _remember_agi_status(msg: Any) -> None:
    if msg.get("Variable") == "HOTLINE_FASTAGI_STATUS":
        FASTAGI_STATUS[str(msg.get("Uniqueid"))] = str(msg.get("Value"))


async def _replace_agi_server(service: HotlineService, **bounds: Any) -> FastAgiServer:
    assert service.agi_server is not None
    routes = service.agi_server.routes
    await service.agi_server.stop()
    service.agi_server = FastAgiServer(routes, "127.0.0.1", AGI_PORT, **bounds)
    await service.agi_server.start()
    return service.agi_server


async def wait_for_call(pool: asyncpg.Pool, number: str, timeout: float = 90.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = await pool.fetchrow(
            "SELECT * FROM calls WHERE caller_number = $1 AND outcome <> 'in_progress'"
            " AND ended_at IS NOT NULL",
            number,
        )
        if row is not None:
            return dict(row)
        await asyncio.sleep(0.25)
    raise AssertionError(f"no finished call record for {number} within {timeout} s")


async def test_call_over_max_sessions_takes_the_fallback(
    service: HotlineService, sim: AmiClient, pg_pool: asyncpg.Pool
) -> None:
    ami = sim
    server = await _replace_agi_server(service, max_sessions=1)
    holder, refused = unique_number(), unique_number()
    await simulator.add_operator(ami, 301, queues=("transport",), talk_seconds=1)
    try:
        with capture_logs() as logs:
            # The first caller stays in the IVR menu (presses late): the only slot is taken.
            await simulator.call_in(ami, simulator.Citizen(holder, "Перший", "2", 12.0, 20))
            async with asyncio.timeout(30):
                while server.active_sessions < 1:  # noqa: ASYNC110 - no event to wait on
                    await asyncio.sleep(0.1)
            await simulator.call_in(ami, simulator.Citizen(refused, "Другий", "2", 3.0, 20))
            second = await wait_for_call(pg_pool, refused)
            first = await wait_for_call(pg_pool, holder)
    finally:
        await simulator.remove_operator(ami, 301, queues=("transport",))
        await _replace_agi_server(service)

    assert first["ivr_source"] == "fastagi"
    assert second["ivr_source"] == "fallback"  # refused, yet asked and queued
    assert second["ivr_choice"] == "2" and second["queue"] == "transport"
    # the dialplan's fallback branch ran for the refused call only (Asterisk 22.10
    # reports AGISTATUS=SUCCESS there: the kernel completed the handshake before
    # the server could refuse; the dialplan goes by IVR_SOURCE, not AGISTATUS)
    assert second["uniqueid"] in FASTAGI_STATUS and first["uniqueid"] not in FASTAGI_STATUS
    refusals = [e for e in logs if e["event"] == "agi_peer_refused"]
    assert [e["reason"] for e in refusals] == ["busy"]


async def test_asterisk_not_on_the_allow_list_takes_the_fallback(
    service: HotlineService, sim: AmiClient, pg_pool: asyncpg.Pool
) -> None:
    ami = sim
    await _replace_agi_server(service, allowed_peers=["127.0.0.2"])  # not Asterisk's 127.0.0.1
    number = unique_number()
    await simulator.add_operator(ami, 302, queues=("housing",), talk_seconds=1)
    try:
        with capture_logs() as logs:
            await simulator.call_in(ami, simulator.Citizen(number, "Третій", "1", 3.0, 20))
            call = await wait_for_call(pg_pool, number)
    finally:
        await simulator.remove_operator(ami, 302, queues=("housing",))
        await _replace_agi_server(service)

    assert call["ivr_source"] == "fallback"
    assert call["ivr_choice"] == "1" and call["queue"] == "housing"
    assert call["uniqueid"] in FASTAGI_STATUS
    [refused] = [e for e in logs if e["event"] == "agi_peer_refused"]
    assert refused["reason"] == "not_allowed" and "127.0.0.1" in refused["peer"]
