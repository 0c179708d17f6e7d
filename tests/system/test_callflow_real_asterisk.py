"""District notices, opening hours and callbacks through a REAL Asterisk 22 (issue 9).

Simulated citizens (Local channels pressing digits with SendDTMF) call our
FastAGI IVR; the service runs the agi and ami roles (the ami role's callback
dialer included) and a SECOND dialer runs beside it with its own AMI login, as
a second service process would. Assertions are on the IVR journal (what was
played and chosen), the case store's rows and Asterisk's own queue_log.

Needs root (debootstrap, chroot, mount). It never skips.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from crm_sync.callflow import (
    Announcements,
    PostgresCallbacks,
    PostgresHoursOverrides,
    notices_saved,
)
from crm_sync.taxonomy import load_taxonomy, seed_taxonomy
from cti_bridge.ami_client import AmiClient
from cti_bridge.callback_dialer import CallbackDialer
from hotline.app import Backends, HotlineService, announcement_audio, open_backends
from hotline.core.live import QUEUES_KEY
from hotline.devtools import asterisk_sandbox as sandbox
from hotline.devtools import simulator
from hotline.devtools.prompts import in_tree
from ivr.flows.callflow import load_callflow
from tests.support.databases import MakeDatabase
from tests.support.paths import CONFIG_DIR
from tests.support.ports import port
from tests.support.sandbox import make_sandbox, service_settings

pytestmark = [pytest.mark.asterisk, pytest.mark.asyncio(loop_scope="session")]

SERVER_ID = "hotline-cbtest"
AMI_PORT, AGI_PORT, SIP_PORT = port(20138), port(20674), port(20160)
DIGIT_DELAY = 4.5  # the greeting (silence/1 + hello) is not interruptible for the menu
_numbers = itertools.count(1)


def unique_number() -> str:
    return f"38050{int(time.time()) % 100000:05d}{next(_numbers):02d}"


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped configuration, with the test's hours and callback settings:
    "social" never open, callbacks dialled to simulated citizens, a short threshold."""
    target = tmp_path_factory.mktemp("callflow-config")
    shutil.copytree(CONFIG_DIR, target, dirs_exist_ok=True)
    text = (target / "callflow.toml").read_text()
    text = (text.replace('dial = "PJSIP/{number}@citizens-trunk"',
                         'dial = "Local/{number}@hotline-sim-callee"')
            .replace("threshold_seconds = 180", "threshold_seconds = 60")
            .replace("retry_seconds = 300", "retry_seconds = 5")
            .replace("offer_timeout_ms = 5000", "offer_timeout_ms = 4000")
            .replace("poll_seconds = 2", "poll_seconds = 0.5"))
    text += '\n[hours.queues.social]\nworking_days = ""\ndays_off = ""\n'
    (target / "callflow.toml").write_text(text)
    load_callflow(target, ("housing", "transport", "social", "main"))  # still valid
    return target


@pytest.fixture(scope="module")
def asterisk(config_dir: Path) -> Iterator[sandbox.SandboxSpec]:
    spec = make_sandbox("callflow", SERVER_ID, ami_port=AMI_PORT, agi_port=AGI_PORT,
                        sip_port=SIP_PORT, queue_timeout=120)
    spec = dataclasses.replace(spec, config_dir=config_dir)
    sandbox.down(spec)
    (spec.log_dir / "messages.log").unlink(missing_ok=True)
    sandbox.up(spec)
    yield spec
    sandbox.down(spec)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def db(make_database: MakeDatabase) -> str:
    return await make_database("callflow_system")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def service(
    asterisk: sandbox.SandboxSpec, db: str, redis_url: str, config_dir: Path
) -> AsyncIterator[HotlineService]:
    settings = service_settings(asterisk, database_url=db, redis_url=redis_url,
                                roles=["agi", "ami"])
    settings.service.config_dir = str(config_dir)
    backends: Backends = await open_backends(settings)
    from crm_sync.migrate import migrate

    await migrate(backends.pool)
    await seed_taxonomy(backends.pool, load_taxonomy(config_dir))
    svc = HotlineService(settings, backends)
    await svc.start()
    yield svc
    await svc.stop()
    await backends.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pool(service: HotlineService) -> asyncpg.Pool:
    return service.backends.pool


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def sim(asterisk: sandbox.SandboxSpec) -> AsyncIterator[AmiClient]:
    client = sandbox.simulator_ami(asterisk)
    await client.start()
    yield client
    await client.close()


async def wait_for_call(pool: asyncpg.Pool, number: str, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = await pool.fetchrow(
            "SELECT * FROM calls WHERE caller_number = $1 AND outcome <> 'in_progress'"
            " AND ended_at IS NOT NULL", number)
        if row is not None and (row["outcome"] != "answered" or row["talk_seconds"] is not None):
            return dict(row)
        await asyncio.sleep(0.25)
    raise AssertionError(f"no finished call record for {number} within {timeout} s")


async def steps_of(pool: asyncpg.Pool, uniqueid: str) -> list[tuple[str, dict[str, Any]]]:
    rows = await pool.fetch(
        "SELECT step, detail FROM ivr_steps WHERE uniqueid = $1 ORDER BY at, id", uniqueid)
    return [(r["step"], json.loads(r["detail"]) if isinstance(r["detail"], str)
             else dict(r["detail"])) for r in rows]


def queue_log(spec: sandbox.SandboxSpec) -> list[list[str]]:
    return [line.split("|") for line in spec.queue_log.read_text(errors="replace").splitlines()]


async def test_notice_is_played_to_its_district_only_and_counted_when_it_saved_a_call(
    service: HotlineService, sim: AmiClient, asterisk: sandbox.SandboxSpec, pool: asyncpg.Pool
) -> None:
    obolon = await pool.fetchval("SELECT id FROM districts WHERE code = 'obolonskyi'")
    pechersk = await pool.fetchval("SELECT id FROM districts WHERE code = 'pecherskyi'")
    ours, theirs = unique_number(), unique_number()
    await pool.execute("INSERT INTO citizens (phone, district_id) VALUES ($1, $2), ($3, $4)",
                       ours, obolon, theirs, pechersk)
    now = datetime.now(UTC)
    notice_id = await Announcements(pool).create(
        kind="water", text="Увага! В Оболонському районі немає холодної води до шостої вечора.",
        district_ids=[obolon], starts_at=now - timedelta(minutes=1),
        ends_at=now + timedelta(hours=1), by="test")
    # the web role's renderer: the text spoken into the sandbox tree's sounds
    await announcement_audio(service.settings)(notice_id, "Немає холодної води.", None)
    sound = (asterisk.root / "usr/share/asterisk/sounds/uk/hotline/notices" / f"{notice_id}.wav")
    try:
        assert sound.stat().st_size > 8000
        # both hang up during the menu, having pressed nothing
        for number in (ours, theirs):
            await simulator.call_in(sim, simulator.Citizen(number, "Мешканець", "", 1.0, 16))
        heard = await wait_for_call(pool, ours)
        other = await wait_for_call(pool, theirs)
        ours_steps, their_steps = (await steps_of(pool, heard["uniqueid"]),
                                   await steps_of(pool, other["uniqueid"]))
    finally:
        for language in ("uk", "en"):
            made = in_tree(asterisk.root, sound.parents[3] / language) / "hotline/notices" / (
                sound.name)
            assert made.exists(), language  # an English-speaking caller hears it too
            made.unlink()
            made.with_suffix(".sha256").unlink(missing_ok=True)

    notices = [d for s, d in ours_steps if s == "notice"]
    assert notices == [{"ids": [notice_id], "kinds": ["water"], "skipped": False}]
    # heard after the greeting, before the menu (during which this caller hung up)
    names = [s for s, _ in ours_steps]
    assert names[-2:] == ["notice", "hangup"] and names.index("greeting") < names.index("notice")
    assert ("hangup", {"during": "menu", "after_notice": True}) in ours_steps
    assert "notice" not in [s for s, _ in their_steps]  # another district: nothing
    assert heard["outcome"] == other["outcome"] == "ivr_only"
    since = now - timedelta(minutes=5)
    assert await notices_saved(pool, since, datetime.now(UTC) + timedelta(minutes=1)) == 1
    log = (asterisk.log_dir / "messages.log").read_text(errors="replace")
    assert not [line for line in log.splitlines() if "does not exist" in line]


async def test_out_of_hours_the_caller_hears_it_and_never_queues_until_an_admin_opens(
    service: HotlineService, sim: AmiClient, asterisk: sandbox.SandboxSpec, pool: asyncpg.Pool
) -> None:
    number = unique_number()
    await simulator.call_in(sim, simulator.Citizen(number, "Ірина Мельник", "3", DIGIT_DELAY, 14))
    call = await wait_for_call(pool, number)
    steps = await steps_of(pool, call["uniqueid"])
    assert ("hours", {"queue": "social", "open": False, "override": None}) in steps
    assert ("callback_offer", {"queue": "social", "reason": "closed", "accepted": False}) in steps
    assert ("exit", {"queue": "social", "exit": "closed"}) in steps
    assert call["outcome"] == "ivr_only" and call["queue"] is None
    assert not [f for f in queue_log(asterisk) if len(f) > 1 and f[1] == call["uniqueid"]]

    # the emergency override opens "social" whatever its hours say
    overrides = PostgresHoursOverrides(pool)
    await overrides.set_override("social", "open", "heating emergency", "test-admin")
    try:
        number = unique_number()
        await simulator.call_in(sim, simulator.Citizen(number, "Ірина Мельник", "3",
                                                       DIGIT_DELAY, 4))
        call = await wait_for_call(pool, number)
    finally:
        await overrides.set_override("social", None, "over", "test-admin")
    steps = await steps_of(pool, call["uniqueid"])
    assert ("hours", {"queue": "social", "open": True, "override": "open"}) in steps
    assert call["outcome"] == "abandoned" and call["queue"] == "social"


async def queue_state(redis_url: str, queue: str, **wanted: int) -> None:
    """Until the AMI role's summary in Redis shows the queue in this state."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        async with asyncio.timeout(30):
            while True:
                raw = await client.get(QUEUES_KEY)
                for q in (json.loads(raw)["queues"] if raw else []):
                    if q["queue"] == queue and all(q[k] == v for k, v in wanted.items()):
                        return
                await asyncio.sleep(0.3)
    finally:
        await client.aclose()


async def test_callbacks_are_offered_and_placed_once_each_in_order_with_two_dialers(
    service: HotlineService, sim: AmiClient, asterisk: sandbox.SandboxSpec, pool: asyncpg.Pool,
    redis_url: str, config_dir: Path,
) -> None:
    callflow, _ = load_callflow(config_dir, ("housing", "transport", "social", "main"))
    # A second dialer, as a second service process would run it: its own AMI login.
    ami2 = AmiClient("127.0.0.1", asterisk.ami_port, asterisk.ami_user, asterisk.ami_secret)
    second = CallbackDialer(ami2, PostgresCallbacks(pool), callflow.callback, "second",
                            SERVER_ID)
    await ami2.start()
    second.start()
    operator = 301
    began = int(time.time())
    first, c1, c2 = unique_number(), unique_number(), unique_number()
    try:
        # The one operator of "housing" talks to a first caller for a while…
        await simulator.add_operator(sim, operator, queues=("housing",), talk_seconds=30)
        await queue_state(redis_url, "housing", logged_in=1, available=1)
        await simulator.call_in(sim, simulator.Citizen(first, "Перший", "1", DIGIT_DELAY, 60))
        await queue_state(redis_url, "housing", available=0)
        # …so the next two are offered a callback (1 × 180 s ÷ 1 > 60 s) and press 1 for it.
        accept = "1" + "w" * 6 + "1"
        await simulator.call_in(sim, simulator.Citizen(c1, "Другий", accept, DIGIT_DELAY, 30))
        await asyncio.sleep(2.0)
        await simulator.call_in(sim, simulator.Citizen(c2, "Третій", accept, DIGIT_DELAY, 30))
        booked = [await wait_for_call(pool, c) for c in (c1, c2)]
        # (read when the operator answers: the first caller's 30 s are already set)
        await sim.action("Setvar", Variable=f"SIM_TALK_{operator}", Value="4")
        # the operator frees up, and each is called back, first come first served
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            done = await pool.fetchval(
                "SELECT count(*) FROM callback_requests WHERE caller_number = ANY($1)"
                " AND status IN ('done', 'failed')", [c1, c2])
            if done == 2:
                break
            await asyncio.sleep(0.5)
        await asyncio.sleep(3)  # any second Originate would have started by now
    finally:
        await second.stop()
        await ami2.close()
        await simulator.remove_operator(sim, operator, queues=("housing",))

    for call in booked:
        steps_detail = await steps_of(pool, call["uniqueid"])
        assert call["outcome"] == "callback" and call["queue"] == "housing", steps_detail
        steps = [s for s, _ in steps_detail]
        assert "callback_offer" in steps and "callback_booked" in steps
    requests = await pool.fetch(
        "SELECT * FROM callback_requests WHERE caller_number = ANY($1) ORDER BY arrived_at",
        [c1, c2])
    assert [r["caller_number"] for r in requests] == [c1, c2]
    assert [r["status"] for r in requests] == ["done", "done"]
    attempts = await pool.fetch(
        "SELECT request_id, attempt, dialer, result, started_at FROM callback_attempts"
        " WHERE request_id = ANY($1) ORDER BY started_at", [r["id"] for r in requests])
    assert [(a["request_id"], a["attempt"], a["result"]) for a in attempts] == [
        (requests[0]["id"], 1, "answered"), (requests[1]["id"], 1, "answered")]

    # Asterisk's own account: each callback entered "housing" once, in arrival order,
    # and was answered by the operator.
    # (the sandbox's queue_log outlives a test database: this run's lines only)
    channel_ids = [f"{SERVER_ID}-cb-{r['id']}-1" for r in requests]
    lines = [f for f in queue_log(asterisk) if len(f) > 4 and f[0].isdigit()
             and int(f[0]) >= began and f[1] in channel_ids]
    entered = [f[1] for f in lines if f[4] == "ENTERQUEUE"]
    assert entered == channel_ids
    connected = [f[1] for f in lines if f[4] == "CONNECT"]
    assert connected == channel_ids
