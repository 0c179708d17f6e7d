"""``kill -9`` of the real service during a database outage loses no call record.

The service runs as a person runs it (``python -m hotline.cli run --role ami``)
against a real PostgreSQL (embedded, stopped and started by the test) and the
fake AMI server replaying the recorded Asterisk 22 transcripts (answered,
abandoned, hung up in the IVR) as many distinct calls.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import asyncpg
import pytest

from crm_sync.call_store import record_from_json
from crm_sync.spool import read_spool
from hotline.devtools.embedded import astart_embedded_postgres
from tests.support.fake_ami_server import FakeAmiServer, transcript_events
from tests.support.paths import AMI_FIXTURES

pytestmark = pytest.mark.asyncio(loop_scope="session")

COPIES = 10
OUTCOMES = {"answered": "answered", "abandoned": "abandoned", "ivr_hangup": "ivr_only"}
_UNIQUEID = re.compile(rb"\b(1795881\d{3})\.(\d+)\b")


def calls(copy: int) -> tuple[bytes, dict[str, str]]:
    """The three recorded calls with their uniqueids made distinct for ``copy``;
    returns the AMI bytes and each caller uniqueid's expected outcome."""
    data, expected = b"", {}
    for name, outcome in OUTCOMES.items():
        events = _UNIQUEID.sub(
            lambda m: b"%s.%d" % (m.group(1), int(m.group(2)) + 1000 * (copy + 1)),
            transcript_events(AMI_FIXTURES / f"{name}.txt"),
        )
        data += events
        caller = {"answered": 41, "abandoned": 45, "ivr_hangup": 47}[name]
        epoch = {"answered": 1795881204, "abandoned": 1795881229, "ivr_hangup": 1795881246}[name]
        expected[f"{epoch}.{caller + 1000 * (copy + 1)}"] = outcome
    return data, expected


def spooled(state_dir: Path) -> dict[str, str]:
    """uniqueid → outcome of the latest version of each record in the service's spool."""
    latest: dict[str, str] = {}
    for directory in (state_dir / "spool").glob("calls-*"):
        for entry in read_spool(directory):
            record = record_from_json(entry.payload)
            latest[record.uniqueid] = str(record.outcome)
    return latest


async def start_service(env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hotline.cli", "run", "--role", "ami",
            env=env, stdout=out, stderr=out,
        )


def tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:]


async def until(predicate_async: object, what: str, within: float, log: Path) -> None:
    assert callable(predicate_async)
    try:
        async with asyncio.timeout(within):
            while not await predicate_async():  # noqa: ASYNC110 (files and a database)
                await asyncio.sleep(0.2)
    except TimeoutError:
        raise AssertionError(f"{what} within {within} s; service log:\n{tail(log)}") from None


@pytest.fixture
def shared_scratch(scratch_dir: Path) -> Path:
    scratch_dir.chmod(0o755)  # the embedded PostgreSQL runs as its own user
    return scratch_dir


async def test_kill_9_during_a_database_outage_loses_no_call(
    shared_scratch: Path, redis_url: str,
) -> None:
    scratch_dir = shared_scratch
    server = await astart_embedded_postgres(scratch_dir / "pg")
    ami = FakeAmiServer(username="hotline", secret="s3cret")
    ami.replies["corestatus"] = {"CoreStartupDate": "2026-11-28",
                                 "CoreStartupTime": "09:00:00", "CoreCurrentCalls": "0"}
    ami.lists["coreshowchannels"] = ("CoreShowChannelsComplete", [])
    ami.lists["queuesummary"] = ("QueueSummaryComplete", [])
    port = await ami.start()
    state_dir, log = scratch_dir / "state", scratch_dir / "service.log"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("HOTLINE_") and k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(DATABASE_URL=server.url, REDIS_URL=redis_url, HOTLINE_AMI_PORT=str(port),
               HOTLINE_AMI_SECRET="s3cret", HOTLINE_SERVICE_STATE_DIR=str(state_dir),
               HOTLINE_SERVICE_SERVER_ID="pbx-kill", HOTLINE_ASTERISK_QUEUE_LOG="off",
               HOTLINE_ASTERISK_INBOUND_CONTEXTS="hotline", HOTLINE_SERVICE_LOG_FORMAT="json")
    service = await start_service(env, log)
    try:
        async def synced() -> bool:
            return any((a.get("Action") or "").lower() == "corestatus" for a in ami.actions)

        await until(synced, "the service did not log in to AMI", 60, log)
        await asyncio.to_thread(server.stop)  # the database goes down …
        expected: dict[str, str] = {}
        for copy in range(COPIES):  # … and calls keep coming
            data, outcomes = calls(copy)
            expected |= outcomes
            await ami.send(data)

        async def all_spooled() -> bool:
            spool = spooled(state_dir)
            return all(spool.get(u) == outcome for u, outcome in expected.items())

        await until(all_spooled, "the finished records did not reach the spool", 60, log)
        service.send_signal(signal.SIGKILL)  # kill -9: nothing is flushed, nothing said
        await service.wait()

        await asyncio.to_thread(server.restart)
        service = await start_service(env, log)
        conn = await asyncpg.connect(server.url)
        try:
            async def all_stored() -> bool:
                try:
                    rows = await conn.fetch("SELECT uniqueid, outcome, talk_seconds FROM calls")
                except asyncpg.UndefinedTableError:  # not migrated yet
                    return False
                return {r["uniqueid"]: r["outcome"] for r in rows} == expected

            await until(all_stored, "the calls did not all reach the database", 60, log)
            talk = await conn.fetch("SELECT talk_seconds FROM calls WHERE outcome = 'answered'")
            assert [r["talk_seconds"] for r in talk] == [3] * COPIES
        finally:
            await conn.close()

        async def spool_empty() -> bool:
            return spooled(state_dir) == {}

        await until(spool_empty, "the spool was not emptied once written", 30, log)
        assert "call_store_spool_replayed" in await asyncio.to_thread(log.read_text)
    finally:
        if service.returncode is None:
            service.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(service.wait(), 30)
            except TimeoutError:
                service.kill()
                await service.wait()
        await ami.stop()
        await asyncio.to_thread(server.stop)
    assert service.returncode == 0, tail(log)
