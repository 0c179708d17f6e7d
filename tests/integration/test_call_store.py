from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from structlog.testing import capture_logs

from crm_sync.call_store import (
    PostgresCallStore,
    PostgresIvrJournal,
    RetryingCallSink,
    RetryingIvrJournal,
    RetryingWriter,
)
from crm_sync.db import create_pool
from crm_sync.migrate import migrate
from hotline.core.records import CallOutcome, CallRecord, IvrStep, QueueAttempt
from hotline.devtools.embedded import astart_embedded_postgres

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def make_call(key: str, **changes: Any) -> CallRecord:
    record = CallRecord(
        call_key=f"pbx1:1772441000:{key}", asterisk_server="pbx1", uniqueid=key,
        linkedid=key, channel="PJSIP/trunk-00000001", started_at=T0,
        caller_number="+380441234567", caller_name="Олена Ґудзь-Їжакевич", language="uk",
    )
    for name, value in changes.items():
        setattr(record, name, value)
    return record


def attempt(queue: str, minute: int, **changes: Any) -> QueueAttempt:
    return QueueAttempt(queue=queue, entered_at=T0 + timedelta(minutes=minute), **changes)


async def eventually(predicate: Callable[[], bool], within: float = 30.0) -> None:
    """Poll a condition on objects that offer no event to wait for."""
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


# --- PostgresCallStore / PostgresIvrJournal ---------------------------------------


async def test_upsert_twice_keeps_one_row_and_replaces_attempts(pg_pool: asyncpg.Pool) -> None:
    store = PostgresCallStore(pg_pool)
    record = make_call("1772441000.1", attempts=[attempt("housing", 1), attempt("general", 3)])
    await store.save_call(record)
    first = await store.get_call(record.call_key)
    assert first is not None and [a["queue"] for a in first["attempts"]] == ["housing", "general"]

    record.outcome = CallOutcome.ANSWERED
    record.linkedids = ["1772441000.1", "1772441000.7"]
    record.attempts = [
        attempt("social", 2, answered_at=T0 + timedelta(minutes=3), wait_seconds=61,
                talk_seconds=200, operator_name="Оператор 101", completed_by="caller")
    ]
    await store.save_call(record)

    rows = await pg_pool.fetch("SELECT id FROM calls WHERE call_key = $1", record.call_key)
    assert len(rows) == 1 and rows[0]["id"] == first["id"]
    saved = await store.get_call(record.call_key)
    assert saved is not None
    assert saved["outcome"] == "answered"
    assert saved["linkedids"] == ["1772441000.1", "1772441000.7"]
    assert saved["caller_name"] == "Олена Ґудзь-Їжакевич"
    assert [(a["seq"], a["queue"], a["operator_name"], a["wait_seconds"])
            for a in saved["attempts"]] == [(1, "social", "Оператор 101", 61)]
    assert await pg_pool.fetchval(
        "SELECT count(*) FROM queue_attempts WHERE call_id = $1", first["id"]
    ) == 1


async def test_every_call_outcome_is_accepted(pg_pool: asyncpg.Pool) -> None:
    store = PostgresCallStore(pg_pool)
    for outcome in CallOutcome:
        await store.save_call(make_call(f"outcome-{outcome}", outcome=outcome))
        saved = await store.get_call(f"pbx1:1772441000:outcome-{outcome}")
        assert saved is not None and saved["outcome"] == outcome.value
    recent = await store.recent_calls(limit=3)
    assert len(recent) == 3


async def test_call_is_linked_to_a_known_citizen(pg_pool: asyncpg.Pool) -> None:
    citizen_id = await pg_pool.fetchval(
        """INSERT INTO citizens (phone, name) VALUES ('+380509998877', 'Тарас')
           ON CONFLICT (phone) DO UPDATE SET name = EXCLUDED.name RETURNING id"""
    )
    store = PostgresCallStore(pg_pool)
    await store.save_call(make_call("citizen-1", caller_number="+380509998877"))
    saved = await store.get_call("pbx1:1772441000:citizen-1")
    assert saved is not None and saved["citizen_id"] == citizen_id


async def test_ivr_journal_keeps_cyrillic_detail_and_ignores_a_repeated_step(
    pg_pool: asyncpg.Pool,
) -> None:
    journal = PostgresIvrJournal(pg_pool)
    step = IvrStep("pbx1", "1772441000.9", T0, "choice", {"digit": "2", "menu": "Головне меню"})
    await journal.record_step(step)
    await journal.record_step(step)  # a retry after a lost acknowledgement
    steps = await journal.steps_for("pbx1", "1772441000.9")
    assert steps == [{"at": T0, "step": "choice",
                      "detail": {"digit": "2", "menu": "Головне меню"}}]


# --- RetryingWriter without a database -----------------------------------------------


class FlakySink:
    def __init__(self, failures: int = 0, error: Exception | None = None) -> None:
        self.failures = failures
        self.error = error or ConnectionRefusedError("down")
        self.written: list[CallRecord] = []
        self.gate: asyncio.Event | None = None
        self.started = asyncio.Event()

    async def save_call(self, record: CallRecord) -> None:
        snapshot = make_call(record.uniqueid, caller_name=record.caller_name)
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.failures:
            self.failures -= 1
            raise self.error
        self.written.append(snapshot)


async def test_retrying_sink_retries_transient_errors_and_logs_outage_once() -> None:
    sink = FlakySink(failures=4)
    with capture_logs() as logs:
        retrying = RetryingCallSink(sink, initial_delay=0.01, max_delay=0.02)
        retrying.start()
        for key in ("a", "b", "c"):
            await retrying.save_call(make_call(key))
        await eventually(lambda: retrying.pending == 0)
        await retrying.stop()
    assert [r.uniqueid for r in sink.written] == ["a", "b", "c"]
    events = [entry["event"] for entry in logs]
    assert events.count("call_store_unavailable") == 1
    assert events.count("call_store_recovered") == 1


async def test_a_newer_version_saved_during_a_write_is_written_after_it() -> None:
    sink = FlakySink()
    sink.gate = asyncio.Event()
    retrying = RetryingCallSink(sink)
    retrying.start()
    record = make_call("x", caller_name="v1")
    await retrying.save_call(record)
    await sink.started.wait()
    record.caller_name = "v2"  # same object, mutated and saved again
    await retrying.save_call(record)
    sink.gate.set()
    await eventually(lambda: retrying.pending == 0)
    await retrying.stop()
    assert [r.caller_name for r in sink.written] == ["v1", "v2"]


async def test_versions_queued_during_an_outage_collapse_to_the_latest() -> None:
    sink = FlakySink(failures=3)
    retrying = RetryingCallSink(sink, initial_delay=0.05, max_delay=0.05)
    retrying.start()
    for version in range(5):
        await retrying.save_call(make_call("y", caller_name=f"v{version}"))
    await eventually(lambda: retrying.pending == 0)
    await retrying.stop()
    assert [r.caller_name for r in sink.written][-1] == "v4"
    assert len(sink.written) <= 2


async def test_a_rejected_record_is_dropped_and_the_rest_flow() -> None:
    class PoisonSink(FlakySink):
        async def save_call(self, record: CallRecord) -> None:
            if record.uniqueid == "bad":
                raise asyncpg.exceptions.CheckViolationError("outcome")
            await super().save_call(record)

    sink = PoisonSink()
    with capture_logs() as logs:
        retrying = RetryingCallSink(sink)
        retrying.start()
        for key in ("ok1", "bad", "ok2"):
            await retrying.save_call(make_call(key))
        await eventually(lambda: retrying.pending == 0)
        await retrying.stop()
    assert [r.uniqueid for r in sink.written] == ["ok1", "ok2"]
    assert [e["event"] for e in logs] == ["call_store_write_rejected"]


async def test_buffer_is_bounded_and_stop_gives_up_after_the_flush_timeout() -> None:
    sink = FlakySink(failures=10**6)
    with capture_logs() as logs:
        writer: RetryingWriter[CallRecord] = RetryingWriter(
            sink.save_call, name="call_store", key=lambda r: r.call_key, max_buffer=3,
            initial_delay=0.01, max_delay=0.01,
        )
        for key in "abcde":
            writer.submit(make_call(key))
        assert writer.pending == 3 and writer.dropped == 2
        writer.start()
        async with asyncio.timeout(2):
            await writer.stop(flush_timeout=0.1)
    assert writer.pending == 3
    events = [e["event"] for e in logs]
    assert events.count("call_store_buffer_overflow") == 2
    assert "call_store_not_flushed" in events


async def test_retrying_ivr_journal_keeps_every_step() -> None:
    class Journal:
        def __init__(self) -> None:
            self.steps: list[IvrStep] = []

        async def record_step(self, step: IvrStep) -> None:
            self.steps.append(step)

    journal = Journal()
    retrying = RetryingIvrJournal(journal)
    retrying.start()
    steps = [IvrStep("pbx1", "u1", T0, "menu"), IvrStep("pbx1", "u1", T0, "menu")]
    for step in steps:
        await retrying.record_step(step)
    await eventually(lambda: retrying.pending == 0)
    await retrying.stop()
    assert journal.steps == steps


# --- a real outage ------------------------------------------------------------------


async def test_retrying_sink_loses_nothing_across_a_postgres_restart(scratch_dir: Path) -> None:
    """The server is stopped (pg_ctl stop) with writes pending, then started again."""
    server = await astart_embedded_postgres(scratch_dir / "pg")
    pool = await create_pool(server.url, max_size=2)
    try:
        await migrate(pool)
        store = PostgresCallStore(pool)
        with capture_logs() as logs:
            sink = RetryingCallSink(store, initial_delay=0.05, max_delay=0.5)
            sink.start()
            for i in range(5):
                await sink.save_call(make_call(f"k{i}"))
            await eventually(lambda: sink.pending == 0)

            await asyncio.to_thread(server.stop)
            for i in range(5):  # finished versions of calls already stored
                await sink.save_call(make_call(
                    f"k{i}", outcome=CallOutcome.ANSWERED, attempts=[attempt("housing", 1)]
                ))
            for version in range(3):  # new calls, updated several times while down
                for i in range(5, 10):
                    await sink.save_call(make_call(f"k{i}", caller_name=f"Абонент v{version}"))
            await eventually(lambda: any(e["event"] == "call_store_unavailable" for e in logs))
            assert sink.pending == 10

            await asyncio.to_thread(server.restart)
            await eventually(lambda: sink.pending == 0)
            await sink.stop()

        rows = await pool.fetch(
            "SELECT uniqueid, outcome, caller_name FROM calls ORDER BY uniqueid"
        )
        assert [r["uniqueid"] for r in rows] == [f"k{i}" for i in range(10)]
        assert all(r["outcome"] == "answered" for r in rows[:5])
        assert all(r["caller_name"] == "Абонент v2" for r in rows[5:])
        assert await pool.fetchval("SELECT count(*) FROM queue_attempts") == 5
        events = [e["event"] for e in logs]
        assert events.count("call_store_unavailable") == 1
        assert events.count("call_store_recovered") == 1
        assert "call_store_write_rejected" not in events
    finally:
        await pool.close()
        await asyncio.to_thread(server.stop)
