"""Call records reconciled with queue_log in a real PostgreSQL, and the file follower."""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from structlog.testing import capture_logs

from crm_sync.call_store import PostgresCallStore
from crm_sync.queue_log import QueueLogEntry, parse_line
from crm_sync.reconciler import QueueLogReconciler, QueueLogTail
from hotline.core.records import CallOutcome, CallRecord, QueueAttempt

BOOT = 1796020000
_serial = itertools.count(1)


def uid() -> str:
    """A fresh caller uniqueid (the session database is shared by the tests)."""
    return f"pbx-{BOOT + 100}.{next(_serial) + 1000 * (os.getpid() % 1000)}"


def answered(uniqueid: str, talk: int | None = 4, source: str | None = "derived",
             server: str = "pbx") -> CallRecord:
    at = datetime.fromtimestamp(BOOT + 105, UTC)
    return CallRecord(
        call_key=f"{server}:{BOOT}:{uniqueid}", asterisk_server=server, uniqueid=uniqueid,
        linkedid=uniqueid, channel="Local/1551@hotline-inbound-1;2",
        started_at=datetime.fromtimestamp(BOOT + 100, UTC), ended_at=at,
        outcome=CallOutcome.ANSWERED, queue="housing", wait_seconds=2, talk_seconds=talk,
        talk_source=source,
        attempts=[QueueAttempt("housing", at, answered_at=at, wait_seconds=2, talk_seconds=talk,
                               talk_source=source, outcome="answered",
                               operator_name="Operator 7")],
    )


def log_lines(uniqueid: str, talk: int = 3, start: int = BOOT + 101) -> list[str]:
    return [
        f"{start}|{uniqueid}|housing|NONE|ENTERQUEUE||380501234567|1",
        f"{start + 2}|{uniqueid}|housing|Operator 7|CONNECT|2|{uniqueid}9|1",
        f"{start + 2 + talk}|{uniqueid}|housing|Operator 7|COMPLETECALLER|2|{talk}|1",
    ]


def entries(lines: list[str]) -> list[QueueLogEntry]:
    return [e for e in map(parse_line, lines) if e is not None]


async def stored(pool: asyncpg.Pool, uniqueid: str) -> asyncpg.Record:
    row = await pool.fetchrow("SELECT * FROM calls WHERE uniqueid = $1", uniqueid)
    assert row is not None
    return row


async def test_queue_log_after_the_record_corrects_it(pg_pool: asyncpg.Pool) -> None:
    store, u = PostgresCallStore(pg_pool), uid()
    await store.save_call(answered(u, talk=4))
    with capture_logs() as logs:
        assert await store.record_queue_log("pbx", entries(log_lines(u, talk=3)), None) == 1
    row = await stored(pg_pool, u)
    assert (row["talk_seconds"], row["talk_source"]) == (3, "queue_log")
    assert row["reconciled_at"] is not None
    attempt = await pg_pool.fetchrow(
        "SELECT talk_seconds, talk_source, completed_by FROM queue_attempts WHERE call_id = $1",
        row["id"])
    assert dict(attempt) == {"talk_seconds": 3, "talk_source": "queue_log",
                             "completed_by": "caller"}
    corrections = await pg_pool.fetch(
        "SELECT field, was, became, source FROM call_corrections WHERE call_id = $1 "
        "ORDER BY field", row["id"])
    assert [tuple(c) for c in corrections] == [
        ("attempts[0].completed_by", None, "caller", "queue_log"),
        ("attempts[0].ring_seconds", None, "1", "queue_log"),
        ("attempts[0].talk_seconds", "4", "3", "queue_log"),
        ("talk_seconds", "4", "3", "queue_log"),
        ("talk_source", "derived", "queue_log", "queue_log"),
    ]
    [event] = [e for e in logs if e["event"] == "call_corrected_from_queue_log"]
    assert event["uniqueid"] == u and event["fields"]["talk_seconds"] == ["4", "3"]


async def test_queue_log_before_the_record_is_applied_when_it_is_saved(
    pg_pool: asyncpg.Pool,
) -> None:
    store, u = PostgresCallStore(pg_pool), uid()
    assert await store.record_queue_log("pbx", entries(log_lines(u, talk=6)), None) == 0
    await store.save_call(answered(u, talk=None, source=None))  # AgentComplete never came
    row = await stored(pg_pool, u)
    assert (row["talk_seconds"], row["talk_source"], row["outcome"]) == (6, "queue_log",
                                                                         "answered")
    # a later AMI version (a late AgentComplete) is reconciled again: same figures
    await store.save_call(answered(u, talk=6, source="agent_complete"))
    row = await stored(pg_pool, u)
    assert (row["talk_seconds"], row["talk_source"]) == (6, "agent_complete")


async def test_lines_of_another_server_or_an_earlier_boot_do_not_apply(
    pg_pool: asyncpg.Pool,
) -> None:
    store, u = PostgresCallStore(pg_pool), uid()
    await store.record_queue_log("other-pbx", entries(log_lines(u, talk=9)), None)
    await store.record_queue_log("pbx", entries(log_lines(u, talk=8, start=BOOT - 500)), None)
    await store.save_call(answered(u, talk=4))
    row = await stored(pg_pool, u)
    assert (row["talk_seconds"], row["talk_source"], row["reconciled_at"]) == (4, "derived",
                                                                               None)


async def test_a_finished_call_is_not_undone_by_an_older_version(pg_pool: asyncpg.Pool) -> None:
    store, u = PostgresCallStore(pg_pool), uid()
    await store.save_call(answered(u))
    older = answered(u)
    older.outcome, older.ended_at = CallOutcome.IN_PROGRESS, None
    await store.save_call(older)  # e.g. replayed from the spool after the final one
    assert (await stored(pg_pool, u))["outcome"] == "answered"


async def test_orphaned_in_progress_call_is_finished_from_queue_log(
    pg_pool: asyncpg.Pool,
) -> None:
    store, u = PostgresCallStore(pg_pool), uid()
    record = answered(u)
    record.outcome, record.ended_at, record.talk_seconds = CallOutcome.IN_PROGRESS, None, None
    record.attempts[0].outcome = None
    await store.save_call(record)  # the service died while the call waited
    await store.record_queue_log("pbx", entries(log_lines(u, talk=5)), None)
    assert (await stored(pg_pool, u))["outcome"] == "in_progress"  # a live call would be too
    assert await store.finish_orphans("pbx", after_seconds=0) >= 1
    row = await stored(pg_pool, u)
    assert (row["outcome"], row["talk_seconds"]) == ("answered", 5)
    assert row["ended_at"] == datetime.fromtimestamp(BOOT + 101 + 2 + 5, UTC)
    assert "queue_log" in row["hangup_cause_text"]


# --- following the file ------------------------------------------------------------


def test_tail_follows_rotation_truncation_and_partial_lines(tmp_path: Path) -> None:
    path = tmp_path / "queue_log"
    path.write_text("1|a|q|NONE|ENTERQUEUE||1|1\n2|a|q|NONE|ABAN")
    tail = QueueLogTail(path)
    chunk = tail.read()
    assert chunk is not None and chunk.lines == ["1|a|q|NONE|ENTERQUEUE||1|1"]
    with path.open("a") as f:
        f.write("DON|1|1|3\n3|b|q|NONE|ENTERQUEUE||2|1\n")
    chunk = tail.read()
    assert chunk is not None and chunk.lines == ["2|a|q|NONE|ABANDON|1|1|3",
                                                 "3|b|q|NONE|ENTERQUEUE||2|1"]
    # logrotate: renamed, Asterisk writes one more line to the old file, then a new one
    with path.open("a") as f:
        f.write("4|b|q|NONE|ABANDON|1|1|1\n")
    path.rename(tmp_path / "queue_log.1")
    path.write_text("5|c|q|NONE|ENTERQUEUE||3|1\n")
    chunk = tail.read()
    assert chunk is not None and chunk.lines == ["4|b|q|NONE|ABANDON|1|1|1"]
    chunk = tail.read()
    assert chunk is not None and chunk.lines == ["5|c|q|NONE|ENTERQUEUE||3|1"]
    assert tail.rotations == 1
    # copytruncate
    path.write_text("")
    path.write_text("6|c|q|NONE|ABANDON|1|1|1\n")
    chunk = tail.read()
    assert chunk is not None and chunk.lines == ["6|c|q|NONE|ABANDON|1|1|1"]
    assert tail.truncations == 1
    assert tail.read() is not None and tail.read().lines == []  # type: ignore[union-attr]
    (tmp_path / "queue_log").unlink()
    assert tail.read() is None


def test_tail_finds_the_file_it_was_reading_after_a_rotation_while_stopped(
    tmp_path: Path,
) -> None:
    path = tmp_path / "queue_log"
    path.write_text("1|a|q|NONE|ENTERQUEUE||1|1\n")
    first = QueueLogTail(path)
    chunk = first.read()
    assert chunk is not None
    with path.open("a") as f:
        f.write("2|a|q|NONE|ABANDON|1|1|1\n")
    path.rename(tmp_path / "queue_log-20261130")
    path.write_text("3|b|q|NONE|ENTERQUEUE||1|1\n")
    restarted = QueueLogTail(path, chunk.inode, chunk.offset)  # from the stored position
    lines = []
    while (more := restarted.read()) is not None and more.lines:
        lines += more.lines
    assert lines == ["2|a|q|NONE|ABANDON|1|1|1", "3|b|q|NONE|ENTERQUEUE||1|1"]


async def eventually(predicate: Callable[[], object], within: float = 20.0) -> None:
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 (polling state that has no event)
            await asyncio.sleep(0.05)


async def test_reconciler_follows_the_file_and_resumes_where_it_stopped(
    pg_pool: asyncpg.Pool, tmp_path: Path,
) -> None:
    store = PostgresCallStore(pg_pool)
    server = f"pbx-{os.getpid()}-{next(_serial)}"
    path = tmp_path / "queue_log"
    u1, u2 = uid(), uid()
    await store.save_call(answered(u1, talk=1, server=server))
    path.write_text("\n".join(log_lines(u1, talk=7)) + "\n")

    reconciler = QueueLogReconciler(store, server, path, poll_seconds=0.05)
    reconciler.start()
    await eventually(lambda: reconciler.lines == 3)
    await reconciler.stop()
    assert (await stored(pg_pool, u1))["talk_seconds"] == 7

    with path.open("a") as f:  # written while no reconciler runs
        f.write("\n".join(log_lines(u2, talk=2)) + "\n")
    await store.save_call(answered(u2, talk=9, server=server))
    again = QueueLogReconciler(store, server, path, poll_seconds=0.05)
    again.start()
    await eventually(lambda: again.lines == 3)  # only the new lines
    await again.stop()
    assert (await stored(pg_pool, u2))["talk_seconds"] == 2
    count = await pg_pool.fetchval(
        "SELECT count(*) FROM queue_log_events WHERE asterisk_server = $1", server)
    assert count == 6  # nothing read twice
    position = await store.queue_log_position(server, str(path))
    assert position == (path.stat().st_ino, path.stat().st_size)
