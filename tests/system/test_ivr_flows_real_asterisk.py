"""The IVR's language, appeal status and survey flows through a REAL Asterisk 22
(the sid chroot sandbox), our FastAGI server and a real PostgreSQL: simulated
citizens press digits (DTMF over Local channels); the assertions are on the
rows written (citizens, calls), on the IVR journal, which records the prompts
said, and on Asterisk's own log (no sound it could not find).

Needs root. Calls run side by side to keep the module short.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from crm_sync.appeals import NewAppeal, load_appeals_config, load_routing_config
from crm_sync.db import create_pool
from crm_sync.migrate import migrate
from crm_sync.taxonomy import load_taxonomy, seed_taxonomy
from cti_bridge.ami_client import AmiClient
from hotline.app import HotlineService
from hotline.core.appeals import Appeal, Channel
from hotline.devtools import asterisk_sandbox as sandbox
from hotline.devtools import simulator
from tests.support.appeals import OPERATOR, Clock, Ids, make_service
from tests.support.appeals import unique_street as street
from tests.support.databases import MakeDatabase
from tests.support.paths import CONFIG_DIR
from tests.support.ports import port
from tests.support.sandbox import make_sandbox, running_service, service_settings

pytestmark = [pytest.mark.asterisk, pytest.mark.asyncio(loop_scope="session")]

SERVER_ID = "hotline-ivrflows"
AMI_PORT, AGI_PORT, SIP_PORT = port(32038), port(32574), port(32060)
# The greeting (silence/1 + hotline/greeting) takes about 5 s; the switch (9) and
# status (8) digits work during it, so pressing at 2.5 s lands in it.
IN_GREETING = 2.5
_numbers = itertools.count(1)


def unique_number() -> str:
    return f"38063{int(time.time()) % 100000:05d}{next(_numbers):02d}"


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped configuration, with every answered caller surveyed."""
    folder = tmp_path_factory.mktemp("config")
    shutil.copytree(CONFIG_DIR, folder, dirs_exist_ok=True)
    ivr = folder / "ivr.toml"
    text, count = re.subn(r"(?m)^share = [0-9.]+", "share = 1.0", ivr.read_text())
    assert count == 1
    ivr.write_text(text)
    return folder


@pytest.fixture(scope="module")
def asterisk() -> Iterator[sandbox.SandboxSpec]:
    spec = make_sandbox("ivrflows", SERVER_ID, ami_port=AMI_PORT, agi_port=AGI_PORT,
                        sip_port=SIP_PORT, queue_timeout=60)
    sandbox.down(spec)
    (spec.log_dir / "messages.log").unlink(missing_ok=True)  # judge this run's warnings only
    sandbox.up(spec)
    yield spec
    sandbox.down(spec)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def db(make_database: MakeDatabase) -> AsyncIterator[tuple[str, asyncpg.Pool]]:
    """A case store of its own: schema, taxonomy, routing (appeals get executors)."""
    url = await make_database("ivr_flows")
    pool = await create_pool(url, max_size=10)
    try:
        await migrate(pool)
        await seed_taxonomy(pool, load_taxonomy(CONFIG_DIR))
        appeals_config = load_appeals_config(CONFIG_DIR)
        await load_routing_config(pool, appeals_config.routing, appeals_config.settings)
        yield url, pool
    finally:
        await pool.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def service(
    asterisk: sandbox.SandboxSpec, db: tuple[str, asyncpg.Pool], redis_url: str, config_dir: Path,
) -> AsyncIterator[HotlineService]:
    settings = service_settings(asterisk, database_url=db[0], redis_url=redis_url,
                                roles=["agi", "ami"])
    settings.service.config_dir = str(config_dir)
    async with running_service(settings) as svc:
        yield svc


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def sim(asterisk: sandbox.SandboxSpec) -> AsyncIterator[AmiClient]:
    client = sandbox.simulator_ami(asterisk)
    await client.start()
    yield client
    await client.close()


async def wait_for_call(pool: asyncpg.Pool, number: str, before: tuple[str, ...] = (),
                        timeout: float = 90.0) -> dict[str, Any]:
    """The finished call record of this number, not one of the calls ``before``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = await pool.fetchrow(
            "SELECT * FROM calls WHERE caller_number = $1 AND outcome <> 'in_progress'"
            " AND ended_at IS NOT NULL AND NOT uniqueid = ANY($2::text[])"
            " ORDER BY started_at DESC LIMIT 1", number, list(before))
        if row is not None:
            return dict(row)
        await asyncio.sleep(0.25)
    raise AssertionError(f"no finished call record for {number} within {timeout} s")


async def journal(pool: asyncpg.Pool, uniqueid: str) -> list[tuple[str, dict[str, Any]]]:
    rows = await pool.fetch(
        "SELECT step, detail FROM ivr_steps WHERE uniqueid = $1 ORDER BY at, id", uniqueid)
    return [(r["step"], r["detail"]) for r in rows]


def only(steps: list[tuple[str, dict[str, Any]]], name: str) -> dict[str, Any]:
    found = [d for s, d in steps if s == name]
    assert len(found) == 1, (name, steps)
    return found[0]


async def call(sim: AmiClient, pool: asyncpg.Pool, number: str, digits: str,
               hangup_after: float, delay: float = IN_GREETING,
               before: tuple[str, ...] = ()) -> dict[str, Any]:
    await simulator.call_in(sim, simulator.Citizen(number, "Леся Українка", digits, delay,
                                                   hangup_after))
    return await wait_for_call(pool, number, before)


async def appeal_of(pool: asyncpg.Pool, phone: str) -> Appeal:
    service = make_service(pool, Clock(datetime.now(UTC)))
    citizen = await Ids(pool).citizen(phone)
    return (await service.register(NewAppeal(
        channel=Channel.PHONE, category="no_hot_water", district="obolonskyi",
        address=f"{street()}, 3", text="Немає гарячої води", citizen_id=citizen),
        OPERATOR)).appeal


def serial(appeal: Appeal) -> str:
    """What a caller keys for ``1551-2026-000042``: ``42``."""
    return str(int(appeal.number.rsplit("-", 1)[1]))


async def test_language_is_remembered_across_two_calls(
    service: HotlineService, sim: AmiClient, db: tuple[str, asyncpg.Pool],
) -> None:
    pool = db[1]
    number = unique_number()
    first = await call(sim, pool, number, "9", hangup_after=4)
    steps = await journal(pool, first["uniqueid"])
    assert only(steps, "language.start") == {"language": "uk", "source": "default"}
    assert only(steps, "language.choice") == {"language": "en", "from": "uk",
                                              "remembered": True}
    assert await pool.fetchval(
        "SELECT preferred_language FROM citizens WHERE phone = $1", number) == "en"
    assert steps[-1][0] == "hangup"  # mid-menu: the journal says where the caller left

    second = await call(sim, pool, number, "", hangup_after=9, delay=1,
                        before=(first["uniqueid"],))
    steps = await journal(pool, second["uniqueid"])
    # English first this time; Ukrainian is what is offered
    assert only(steps, "language.start") == {"language": "en", "source": "remembered"}
    assert only(steps, "language.offer")["offered"] == "uk"
    assert "language.choice" not in [s for s, _ in steps]


async def test_status_read_to_its_citizen_and_refused_to_another(
    service: HotlineService, sim: AmiClient, db: tuple[str, asyncpg.Pool],
) -> None:
    pool = db[1]
    owner, stranger, announced = unique_number(), unique_number(), unique_number()
    appeal = await appeal_of(pool, f"+{owner}")  # registered with "+": the trunk sends none
    await appeal_of(pool, announced)
    keyed = f"8WW{serial(appeal)}#"  # 8 in the greeting, the number during the prompt

    own, refused, heard = await asyncio.gather(
        call(sim, pool, owner, keyed, hangup_after=12),
        call(sim, pool, stranger, keyed, hangup_after=8),
        call(sim, pool, announced, "", hangup_after=30, delay=1),
    )

    steps = await journal(pool, own["uniqueid"])
    read = only(steps, "status.read")
    assert read["appeal"] == appeal.number and read["status"] == appeal.status.value
    assert read["prompts"][:3] == ["hotline/status/appeal_about", "hotline/category/no_hot_water",
                                   f"hotline/status/is_{appeal.status.value}"]
    assert "hotline/status/due" in read["prompts"]  # and the due date, composed
    assert only(steps, "status.exit") == {"reason": "read"}

    steps = await journal(pool, refused["uniqueid"])
    assert only(steps, "status.enter")["digits_count"] == len(serial(appeal))
    assert "status.read" not in [s for s, _ in steps]
    assert only(steps, "status.exit") == {"reason": "not_found"}
    assert appeal.number not in repr(steps)

    steps = await journal(pool, heard["uniqueid"])
    told = only(steps, "status.open")
    assert told["count"] == 1
    assert told["prompts"][:3] == ["hotline/status/you_have", "hotline/num/1n",  # одне
                                   "hotline/status/open_one"]


async def test_survey_score_is_stored_on_the_call_and_its_operator(
    service: HotlineService, sim: AmiClient, db: tuple[str, asyncpg.Pool],
) -> None:
    pool = db[1]
    interface = await simulator.add_operator(sim, 431, queues=("housing",), talk_seconds=2)
    number = unique_number()
    try:
        # 1 for housing in the greeting; 4 once the operator has hung up (the
        # survey prompt plays for ~5 s and then waits 6 s).
        answered = await call(sim, pool, number, "1WWWWWWW4", hangup_after=25)
    finally:
        await simulator.remove_operator(sim, 431, queues=("housing",))
    assert answered["outcome"] == "answered" and answered["queue"] == "housing"
    deadline = time.monotonic() + 10
    row = None
    while time.monotonic() < deadline:
        row = await pool.fetchrow(
            "SELECT survey_score, operator_interface FROM calls WHERE id = $1", answered["id"])
        if row is not None and row["survey_score"] is not None:
            break
        await asyncio.sleep(0.25)
    assert row is not None
    assert (row["survey_score"], row["operator_interface"]) == (4, interface)
    steps = await journal(pool, answered["uniqueid"])
    score = only(steps, "survey.score")
    assert (score["score"], score["stored"], score["operator"]) == (4, True, interface)


async def test_every_sound_was_found(asterisk: sandbox.SandboxSpec) -> None:
    """Runs last: English prompts and the composed numbers and dates all exist."""
    log = (asterisk.log_dir / "messages.log").read_text(errors="replace")
    missing = [line for line in log.splitlines() if "does not exist" in line]
    assert missing == []
