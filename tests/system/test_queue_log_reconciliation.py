"""Through a REAL Asterisk 22: after reconciliation every call record agrees
EXACTLY with Asterisk's own queue_log — outcome, wait and, for every answered
call, talk time (AMI alone loses AgentComplete under load: issue 6, item 13).

Simulated citizens (Cyrillic names, mixed digits and patience) and operators
(Local channels talking 3–8 s) in a burst; the load test is bench/bench_load.py.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from crm_sync.taxonomy import load_taxonomy
from hotline.app import HotlineService
from hotline.devtools import asterisk_sandbox as sandbox
from hotline.devtools import simulator
from ivr.menu import load_catalogue
from tests.support.databases import MakeDatabase
from tests.support.paths import CONFIG_DIR
from tests.support.ports import port
from tests.support.sandbox import make_sandbox, migrated_database, running_service, service_settings

pytestmark = [pytest.mark.asterisk, pytest.mark.asyncio(loop_scope="session")]

SERVER_ID = "hotline-recon"
AMI_PORT, AGI_PORT, SIP_PORT = port(22038), port(22574), port(22060)
CALLS, OPERATORS, RATE = 40, 12, 8.0  # calls, simulated operators, calls per second
DIGIT_DELAY = 4.5  # the greeting is not interruptible
OUTCOME = {"COMPLETECALLER": "answered", "COMPLETEAGENT": "answered", "ABANDON": "abandoned",
           "EXITWITHTIMEOUT": "timeout", "EXITEMPTY": "no_agents"}


@pytest.fixture(scope="module")
def asterisk() -> Iterator[sandbox.SandboxSpec]:
    spec = make_sandbox("recon", SERVER_ID, ami_port=AMI_PORT, agi_port=AGI_PORT,
                        sip_port=SIP_PORT, queue_timeout=60)
    sandbox.down(spec)
    spec.queue_log.unlink(missing_ok=True)  # judge this run's lines only
    sandbox.up(spec)
    yield spec
    sandbox.down(spec)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def database(make_database: MakeDatabase) -> AsyncIterator[tuple[str, asyncpg.Pool]]:
    async with migrated_database(make_database, "recon") as created:
        yield created


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def service(
    asterisk: sandbox.SandboxSpec, database: tuple[str, asyncpg.Pool], redis_url: str
) -> AsyncIterator[HotlineService]:
    state = Path(tempfile.mkdtemp(prefix="hotline-recon-"))
    settings = service_settings(asterisk, database_url=database[0], redis_url=redis_url,
                                roles=["agi", "ami"], state_dir=str(state))
    async with running_service(settings) as svc:
        yield svc
    shutil.rmtree(state, ignore_errors=True)


def queue_log_calls(spec: sandbox.SandboxSpec) -> dict[str, dict[str, list[str]]]:
    """callid → event → data, read independently of the code under test."""
    calls: dict[str, dict[str, list[str]]] = {}
    for line in spec.queue_log.read_text(errors="replace").splitlines():
        parts = line.split("|")
        if len(parts) >= 5 and parts[1].startswith(f"{SERVER_ID}-"):
            calls.setdefault(parts[1], {})[parts[4]] = parts[5:]
    return calls


def differences(log: dict[str, dict[str, list[str]]],
                rows: dict[str, dict[str, Any]]) -> list[str]:
    problems = []
    for callid, events in log.items():
        row = rows.get(callid)
        final = next((e for e in OUTCOME if e in events), None)
        if final is None:
            problems.append(f"{callid}: no closing line yet {sorted(events)}")
            continue
        if row is None:
            problems.append(f"{callid}: no record")
            continue
        wait = int(events["CONNECT"][0] if "CONNECT" in events else events[final][2])
        want = {"outcome": OUTCOME[final], "wait_seconds": wait,
                "talk_seconds": int(events[final][1]) if "CONNECT" in events else None}
        got = {k: row[k] for k in want}
        if got != want or row["reconciled_at"] is None:
            problems.append(f"{callid}: {got} != queue_log {want} "
                            f"(talk_source {row['talk_source']})")
    return problems


async def test_every_record_equals_queue_log_after_reconciliation(
    service: HotlineService, asterisk: sandbox.SandboxSpec, database: tuple[str, asyncpg.Pool]
) -> None:
    pool = database[1]
    ami = sandbox.simulator_ami(asterisk)  # the service's own account may not originate
    await ami.start()
    queues = load_catalogue(CONFIG_DIR)
    choices = simulator.menu_choices(queues, load_taxonomy(CONFIG_DIR).spheres)
    for n in range(OPERATORS):
        await simulator.add_operator(ami, 301 + n, queues.names)  # 3–8 s of talk each time
    rng = random.Random(1551)
    try:
        for _ in range(CALLS):
            citizen = simulator.random_citizen(rng, choices)
            patience = rng.choice((6.0, 15.0, 30.0))  # some give up while waiting
            await simulator.call_in(ami, simulator.Citizen(
                citizen.number, citizen.name, citizen.digits or "0", DIGIT_DELAY, patience))
            await asyncio.sleep(1 / RATE)
        problems: list[str] = ["not checked yet"]
        async with asyncio.timeout(150):
            while problems:
                await asyncio.sleep(1)
                rows = {r["uniqueid"]: dict(r) for r in await pool.fetch("SELECT * FROM calls")}
                log = queue_log_calls(asterisk)
                problems = differences(log, rows) if len(log) == CALLS else ["calls missing"]
    except TimeoutError:
        raise AssertionError("records differ from queue_log:\n" + "\n".join(problems)) from None
    finally:
        for n in range(OPERATORS):
            await simulator.remove_operator(ami, 301 + n, queues.names)
        await ami.close()

    answered = [r for r in rows.values() if r["outcome"] == "answered"]
    assert len(answered) >= CALLS // 3, "the burst should mostly be answered"
    assert all(r["talk_source"] in {"agent_complete", "derived", "queue_log"} for r in answered)
    assert {r["caller_name"] for r in rows.values()} & set(
        f"{a} {b}" for a in simulator.FIRST_NAMES for b in simulator.LAST_NAMES)
