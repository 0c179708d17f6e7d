"""``/readyz`` and ``/metrics`` of the REAL service in front of the REAL Asterisk 22
(the sid chroot sandbox): a call through Asterisk moves the counters, and with
Asterisk stopped the AMI link is named not ready until it is back.

Needs root (debootstrap, chroot, mount), like ``test_real_asterisk.py``; its own
sandbox instance and ports (``HOTLINE_TEST_SLOT`` shifts them).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator, Iterator

import aiohttp
import asyncpg
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

from hotline.app import HotlineService
from hotline.devtools import asterisk_sandbox as sandbox
from hotline.devtools import simulator
from tests.support.ports import port
from tests.support.sandbox import make_sandbox, running_service, service_settings

pytestmark = [pytest.mark.asterisk, pytest.mark.asyncio(loop_scope="session")]

SERVER_ID = "hotline-ops"
AMI_PORT, AGI_PORT, SIP_PORT, WEB_PORT = port(27038), port(27574), port(27060), port(27551)
DIGIT_DELAY = 4.5  # the greeting is not interruptible: press after it
OPERATOR = 271
_numbers = itertools.count(1)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def unique_number() -> str:
    return f"38063{int(time.time()) % 100000:05d}{next(_numbers):02d}"


@pytest.fixture(scope="module")
def asterisk() -> Iterator[sandbox.SandboxSpec]:
    spec = make_sandbox("ops", SERVER_ID, ami_port=AMI_PORT, agi_port=AGI_PORT,
                        sip_port=SIP_PORT, queue_timeout=60)
    sandbox.down(spec)
    sandbox.up(spec)
    yield spec
    sandbox.down(spec)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def service(
    asterisk: sandbox.SandboxSpec, pg_url: str, redis_url: str
) -> AsyncIterator[HotlineService]:
    settings = service_settings(asterisk, database_url=pg_url, redis_url=redis_url,
                                web_port=WEB_PORT)
    async with running_service(settings) as svc:
        yield svc


async def get(svc: HotlineService, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(svc.web_url + path) as response:
        return response.status, await response.text()


async def scrape(svc: HotlineService) -> Samples:
    """/metrics over HTTP, as Prometheus on this host reads it."""
    status, text = await get(svc, "metrics")
    assert status == 200, text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def sample(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def readyz_until(svc: HotlineService, status: int, timeout: float = 60.0) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    got, text = 0, ""
    while time.monotonic() < deadline:
        got, text = await get(svc, "readyz")
        if got == status:
            body: dict[str, dict[str, str]] = json.loads(text)
            return body["parts"]
        await asyncio.sleep(0.2)
    raise AssertionError(f"/readyz did not answer {status} within {timeout} s: {got} {text}")


async def wait_for_call(pool: asyncpg.Pool, number: str, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = await pool.fetchrow(
            "SELECT outcome, talk_seconds FROM calls WHERE caller_number = $1"
            " AND outcome <> 'in_progress' AND ended_at IS NOT NULL", number)
        if row is not None and (row["outcome"] != "answered" or row["talk_seconds"] is not None):
            return str(row["outcome"])
        await asyncio.sleep(0.25)
    raise AssertionError(f"no finished call record for {number} within {timeout} s")


async def test_ready_with_every_part_of_every_role(service: HotlineService) -> None:
    parts = await readyz_until(service, 200)
    assert parts == {"database": "ready", "redis": "ready",
                     "ami_link": "ready", "fastagi_listener": "ready"}
    samples = await scrape(service)
    assert sample(samples, "hotline_ami_link_up") == 1


async def test_a_call_through_asterisk_moves_the_counters(
    service: HotlineService, asterisk: sandbox.SandboxSpec, pg_pool: asyncpg.Pool
) -> None:
    before = await scrape(service)
    ami = sandbox.simulator_ami(asterisk)  # the service's account may not originate
    await ami.connect()
    await simulator.add_operator(ami, OPERATOR, queues=("housing",), talk_seconds=2)
    number = unique_number()
    try:
        await simulator.call_in(
            ami, simulator.Citizen(number, "Марія Заньковецька", "1", DIGIT_DELAY, 60))
        assert await wait_for_call(pg_pool, number) == "answered"
    finally:
        await simulator.remove_operator(ami, OPERATOR, queues=("housing",))
        await ami.close()
    after = await scrape(service)

    def moved(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert moved("hotline_calls_total", outcome="answered", queue="housing") == 1
    assert moved("hotline_agi_sessions_total", route="ivr") == 1
    assert moved("hotline_agi_sessions_failed_total", reason="route_error") == 0
    assert sample(after, "hotline_agi_sessions_active") == 0
    # the queue summary from Asterisk is exported per queue (nobody waits now)
    assert ("hotline_queue_callers_waiting", (("queue", "housing"),)) in after


async def test_asterisk_stopped_names_the_ami_link_until_it_is_back(
    service: HotlineService, asterisk: sandbox.SandboxSpec
) -> None:
    await readyz_until(service, 200)
    reconnects = sample(await scrape(service), "hotline_ami_reconnects_total")
    await asyncio.to_thread(sandbox.down, asterisk)
    try:
        parts = await readyz_until(service, 503)
        assert parts == {"database": "ready", "redis": "ready",
                         "ami_link": "not_ready", "fastagi_listener": "ready"}
        assert sample(await scrape(service), "hotline_ami_link_up") == 0
    finally:
        await asyncio.to_thread(sandbox.up, asterisk)
    parts = await readyz_until(service, 200)
    assert parts["ami_link"] == "ready"
    samples = await scrape(service)
    assert sample(samples, "hotline_ami_link_up") == 1
    assert sample(samples, "hotline_ami_reconnects_total") == reconnects + 1
