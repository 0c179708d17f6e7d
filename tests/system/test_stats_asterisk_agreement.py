"""Through a REAL Asterisk 22: every figure of the queue report (per queue and
for all queues) equals the one computed from Asterisk's own queue_log for the
same period, by a parser of the test's own (tests/support/queue_log_stats.py).

The mix: callers answered at once and after a wait (two operators, a burst),
short abandons (gone within 5 s of waiting), abandons within and beyond the
20 s service level, and callers whose wait ran out (EXITWITHTIMEOUT) and who
were answered in the overflow queue — a call in two queues. The one operator of
``transport`` is on a long call, so its callers wait."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio

from crm_sync.stats import queries
from crm_sync.stats.metrics import CITY_TZ, Period, parse_period, to_slot
from crm_sync.stats.rollup import write_thresholds
from hotline.app import HotlineService
from hotline.devtools import asterisk_sandbox as sandbox
from hotline.devtools import simulator
from ivr.menu import load_catalogue
from tests.support.databases import MakeDatabase
from tests.support.paths import CONFIG_DIR
from tests.support.ports import port
from tests.support.queue_log_stats import figures, read_queue_log
from tests.support.sandbox import make_sandbox, migrated_database, running_service, service_settings

pytestmark = [pytest.mark.asterisk, pytest.mark.asyncio(loop_scope="session")]

SERVER_ID = "hotline-stats"
AMI_PORT, AGI_PORT, SIP_PORT = port(34038), port(34574), port(34060)
QUEUE_TIMEOUT = 25  # seconds before EXITWITHTIMEOUT (then the overflow queue)
SHORT_ABANDON = 5
DIGIT_DELAY = 4.5  # the greeting is not interruptible
DIGITS = {"housing": "1", "transport": "2"}
# (queue, seconds the caller stays after pressing, pause before the next call)
MIX = [
    ("transport", 200.0, 0.5),  # taken by the transport operator: a 70 s call
    *[("housing", 120.0, 0.4)] * 11,  # a burst for two operators: some wait beyond SL
    ("transport", 2.0, 0.5), ("transport", 2.5, 0.5),  # short abandons
    ("transport", 9.0, 0.5), ("transport", 12.0, 0.5),  # abandons within SL
    ("transport", 23.0, 0.5),  # an abandon beyond SL (or at it)
    ("transport", 120.0, 0.5), ("transport", 120.0, 0.5),  # time out → main, answered
    ("housing", 1.5, 0.5), ("housing", 60.0, 0.5),
]


@pytest.fixture(scope="module")
def asterisk() -> Iterator[sandbox.SandboxSpec]:
    spec = make_sandbox("stats", SERVER_ID, ami_port=AMI_PORT, agi_port=AGI_PORT,
                        sip_port=SIP_PORT, queue_timeout=QUEUE_TIMEOUT)
    sandbox.down(spec)
    spec.queue_log.unlink(missing_ok=True)  # judge this run's lines only
    sandbox.up(spec)
    yield spec
    sandbox.down(spec)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def database(make_database: MakeDatabase) -> AsyncIterator[tuple[str, asyncpg.Pool]]:
    async with migrated_database(make_database, "stats_agreement") as created:
        yield created


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def service(
    asterisk: sandbox.SandboxSpec, database: tuple[str, asyncpg.Pool], redis_url: str
) -> AsyncIterator[HotlineService]:
    state = Path(tempfile.mkdtemp(prefix="hotline-stats-"))
    settings = service_settings(asterisk, database_url=database[0], redis_url=redis_url,
                                roles=["agi", "ami"], state_dir=str(state))
    # No callback offers: an offer's prompt before the queue would change how long
    # each caller waits in it, and a callback never reaches queue_log anyway (ivr-b
    # books it in the IVR; tests/integration/test_stats_reports.py counts them).
    config = state / "config"
    shutil.copytree(CONFIG_DIR, config)
    callflow = config / "callflow.toml"
    callflow.write_text(callflow.read_text("utf-8").replace(
        "[callback]\nenabled = true", "[callback]\nenabled = false"), "utf-8")
    assert "enabled = false" in callflow.read_text("utf-8")
    settings.service.config_dir = str(config)
    async with running_service(settings) as svc:
        yield svc
    shutil.rmtree(state, ignore_errors=True)


async def settled(pool: asyncpg.Pool, spec: sandbox.SandboxSpec, calls: int) -> bool:
    """Every call closed in queue_log, and every record finished and reconciled."""
    log = read_queue_log(spec.queue_log, f"{SERVER_ID}-")
    if len({s.callid for s in log.stays}) < calls or not log.closed():
        return False
    pending = await pool.fetchval(
        "SELECT count(*) FROM calls WHERE outcome = 'in_progress' OR "
        "(queue IS NOT NULL AND reconciled_at IS NULL)")
    return bool(pending == 0)


async def test_queue_report_equals_figures_from_queue_log(
    service: HotlineService, asterisk: sandbox.SandboxSpec,
    database: tuple[str, asyncpg.Pool],
) -> None:
    pool = database[1]
    catalogue = load_catalogue(CONFIG_DIR)
    levels = {name: q.service_level for name, q in catalogue.queues.items()}
    await write_thresholds(pool, levels, SHORT_ABANDON)
    ami = sandbox.simulator_ami(asterisk)
    await ami.start()
    started = datetime.now(UTC)
    try:
        await simulator.add_operator(ami, 311, ["transport"], talk_seconds=70)
        for n in (312, 313):
            await simulator.add_operator(ami, n, ["housing", "main"], talk_seconds=6)
        for i, (queue, stay, pause) in enumerate(MIX):
            await simulator.call_in(ami, simulator.Citizen(
                f"38050{i:07d}", "Тарас Шевченко", DIGITS[queue], DIGIT_DELAY, stay))
            await asyncio.sleep(pause)
        async with asyncio.timeout(240):
            while not await settled(pool, asterisk, len(MIX)):  # noqa: ASYNC110 (a file)
                await asyncio.sleep(1)
    finally:
        for n, queues in ((311, ["transport"]), (312, ["housing", "main"]),
                          (313, ["housing", "main"])):
            await simulator.remove_operator(ami, n, queues)
        await ami.close()

    log = read_queue_log(asterisk.queue_log, f"{SERVER_ID}-")
    # the mix happened as meant (else the comparison proves less than it claims)
    endings = [s.ending for s in log.stays]
    assert endings.count("EXITWITHTIMEOUT") >= 2 and endings.count("COMPLETE") >= 10
    waits = {s.wait for s in log.stays if s.ending == "ABANDON"}
    assert min(waits) < SHORT_ABANDON <= max(waits)
    assert any(s.wait > 0 for s in log.stays if s.ending == "COMPLETE")
    assert len({s.callid for s in log.stays if s.ending == "EXITWITHTIMEOUT"}
               & {s.callid for s in log.stays if s.queue == "main"}) >= 2

    # the same period for both: the run, in whole half-hours (the reports' resolution)
    since, until = to_slot(started), to_slot(datetime.now(UTC), up=True)
    period = Period(since.astimezone(CITY_TZ), until.astimezone(CITY_TZ), "day")
    report = await queries.queue_report(pool, period)
    in_period = [s for s in log.stays if since.timestamp() <= s.entered < until.timestamp()]
    assert len(in_period) == len(log.stays)
    expected = {q: figures([s for s in in_period if s.queue == q], levels[q], SHORT_ABANDON)
                for q in sorted({s.queue for s in in_period})}
    got = {row["queue"]: {k: v for k, v in row.items() if k != "queue"}
           for row in report["queues"]}
    assert got == expected
    # all queues together: SL2 etc. over the union (the sums, not an average of rates)
    assert {k: v for k, v in report["total"].items() if k != "queue"} == figures(
        in_period, levels["housing"], SHORT_ABANDON)
    # the city's whole day, from the day rollup (this database holds only this run)
    today = datetime.now(CITY_TZ).date()
    by_day = await queries.queue_report(pool, parse_period(None, None, "day", today=today))
    assert {row["queue"]: {k: v for k, v in row.items() if k != "queue"}
            for row in by_day["queues"]} == expected
