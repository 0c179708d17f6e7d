"""Calls and IVR steps in PostgreSQL, and a buffer that rides out database outages.

``PostgresCallStore`` / ``PostgresIvrJournal`` write straight through and raise
when the database is down. ``RetryingCallSink`` / ``RetryingIvrJournal`` wrap
them for the live path: ``save_call`` never blocks or fails, a background task
writes with exponential backoff, so a database restart loses nothing.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

import asyncpg

from crm_sync.db import DatabaseUnavailable
from hotline.core import metrics
from hotline.core.logs import get_logger
from hotline.core.ports import CallSink, IvrJournal
from hotline.core.records import CallRecord, IvrStep

ACQUIRE_TIMEOUT = 10.0

_UPSERT_CALL = """
INSERT INTO calls (call_key, asterisk_server, uniqueid, linkedid, linkedids, channel,
    caller_number, caller_name, language, started_at, answered_at, ended_at, ivr_choice,
    ivr_source, queue, wait_seconds, talk_seconds, operator_interface, operator_name, outcome,
    hangup_cause, hangup_cause_text, citizen_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19,
    $20, $21, $22, (SELECT id FROM citizens WHERE phone = $7 AND $7 <> ''))
ON CONFLICT (call_key) DO UPDATE SET
    linkedid = EXCLUDED.linkedid, linkedids = EXCLUDED.linkedids, channel = EXCLUDED.channel,
    caller_number = EXCLUDED.caller_number, caller_name = EXCLUDED.caller_name,
    language = EXCLUDED.language, started_at = EXCLUDED.started_at,
    answered_at = EXCLUDED.answered_at, ended_at = EXCLUDED.ended_at,
    ivr_choice = EXCLUDED.ivr_choice, ivr_source = EXCLUDED.ivr_source, queue = EXCLUDED.queue,
    wait_seconds = EXCLUDED.wait_seconds, talk_seconds = EXCLUDED.talk_seconds,
    operator_interface = EXCLUDED.operator_interface, operator_name = EXCLUDED.operator_name,
    outcome = EXCLUDED.outcome, hangup_cause = EXCLUDED.hangup_cause,
    hangup_cause_text = EXCLUDED.hangup_cause_text,
    citizen_id = COALESCE(calls.citizen_id, EXCLUDED.citizen_id), updated_at = now()
RETURNING id
"""

_INSERT_ATTEMPT = """
INSERT INTO queue_attempts (call_id, seq, queue, entered_at, answered_at, left_at, position,
    wait_seconds, talk_seconds, ring_seconds, outcome, operator_interface, operator_name,
    completed_by)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
"""

_ATTEMPT_COLUMNS = """seq, queue, entered_at, answered_at, left_at, position, wait_seconds,
    talk_seconds, ring_seconds, outcome, operator_interface, operator_name, completed_by"""


class PostgresCallStore:
    """:class:`~hotline.core.ports.CallSink` on the ``calls`` and ``queue_attempts`` tables."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def save_call(self, record: CallRecord) -> None:
        """Upsert by ``call_key``; the call's queue attempts are replaced."""
        # Arguments are taken before the first await: the caller may keep mutating record.
        call_args = (
            record.call_key, record.asterisk_server, record.uniqueid, record.linkedid,
            list(record.linkedids), record.channel, record.caller_number, record.caller_name,
            record.language, record.started_at, record.answered_at, record.ended_at,
            record.ivr_choice, record.ivr_source, record.queue, record.wait_seconds,
            record.talk_seconds, record.operator_interface, record.operator_name,
            str(record.outcome), record.hangup_cause, record.hangup_cause_text,
        )
        attempts = [
            (seq, a.queue, a.entered_at, a.answered_at, a.left_at, a.position, a.wait_seconds,
             a.talk_seconds, a.ring_seconds, a.outcome, a.operator_interface, a.operator_name,
             a.completed_by)
            for seq, a in enumerate(record.attempts, start=1)
        ]
        async with self._pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn, conn.transaction():
            call_id = await conn.fetchval(_UPSERT_CALL, *call_args)
            await conn.execute("DELETE FROM queue_attempts WHERE call_id = $1", call_id)
            if attempts:
                await conn.executemany(_INSERT_ATTEMPT, [(call_id, *a) for a in attempts])

    async def recent_calls(self, limit: int = 50) -> list[dict[str, Any]]:
        """The latest calls, newest first (without their queue attempts)."""
        rows = await self._pool.fetch(
            "SELECT * FROM calls ORDER BY started_at DESC, id DESC LIMIT $1", limit
        )
        return [dict(row.items()) for row in rows]

    async def get_call(self, call_key: str) -> dict[str, Any] | None:
        """One call with its queue attempts (key ``attempts``, in order)."""
        async with self._pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn:
            row = await conn.fetchrow("SELECT * FROM calls WHERE call_key = $1", call_key)
            if row is None:
                return None
            attempts = await conn.fetch(
                f"SELECT {_ATTEMPT_COLUMNS} FROM queue_attempts WHERE call_id = $1 ORDER BY seq",
                row["id"],
            )
        call = dict(row.items())
        call["attempts"] = [dict(a.items()) for a in attempts]
        return call


class PostgresIvrJournal:
    """:class:`~hotline.core.ports.IvrJournal` on ``ivr_steps``; a repeated step is written once."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def record_step(self, step: IvrStep) -> None:
        await self._pool.execute(
            """INSERT INTO ivr_steps (asterisk_server, uniqueid, at, step, detail)
               VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING""",
            step.asterisk_server, step.uniqueid, step.at, step.step, dict(step.detail),
        )

    async def steps_for(self, asterisk_server: str, uniqueid: str) -> list[dict[str, Any]]:
        rows = await self._pool.fetch(
            """SELECT at, step, detail FROM ivr_steps
               WHERE asterisk_server = $1 AND uniqueid = $2 ORDER BY at, id""",
            asterisk_server, uniqueid,
        )
        return [dict(row.items()) for row in rows]


# --- riding out outages -----------------------------------------------------------

T = TypeVar("T")

#: Errors after which a retry can succeed (connection lost, server restarting, overload).
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    DatabaseUnavailable,
    asyncpg.InterfaceError,  # connection closed / does not exist, pool closing
    asyncpg.PostgresConnectionError,  # 08xxx
    asyncpg.exceptions.OperatorInterventionError,  # 57xxx: admin shutdown, cannot connect now
    asyncpg.exceptions.InsufficientResourcesError,  # 53xxx: too many connections, disk full
)


class RetryingWriter(Generic[T]):
    """Buffers items and writes them in the background until the write succeeds.

    Items with the same key replace each other while not yet written (latest
    wins); ``key=None`` keeps every item. Transient errors (see
    :data:`TRANSIENT_ERRORS`) are retried with capped exponential backoff; any
    other error means the item itself is bad: it is logged and dropped, so one
    poison record cannot block the rest. When ``max_buffer`` is exceeded the
    oldest item is dropped (and logged) — the process must not run out of memory.
    """

    def __init__(
        self,
        write: Callable[[T], Awaitable[None]],
        *,
        name: str,
        key: Callable[[T], Hashable] | None = None,
        max_buffer: int = 100_000,
        initial_delay: float = 0.2,
        max_delay: float = 5.0,
    ) -> None:
        self._write = write
        self._name = name
        self._key = key
        self._max_buffer = max_buffer
        self._initial_delay = initial_delay
        self._max_delay = max_delay
        self._pending: OrderedDict[Hashable, tuple[int, T]] = OrderedDict()
        self._versions = itertools.count()
        self._has_work = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._outage = False
        self._log = get_logger(f"crm_sync.{name}")
        self.dropped = 0
        self._backlog = metrics.SINK_BACKLOG.labels(sink=name)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def submit(self, item: T) -> None:
        """Queue ``item`` for writing; never blocks, never raises on a down database."""
        version = next(self._versions)
        key = self._key(item) if self._key is not None else version
        if key not in self._pending and len(self._pending) >= self._max_buffer:
            self._pending.popitem(last=False)
            self.dropped += 1
            metrics.SINK_DROPPED.labels(sink=self._name).inc()
            self._log.error(f"{self._name}_buffer_overflow", dropped=self.dropped,
                            max_buffer=self._max_buffer)
        self._pending[key] = (version, item)
        self._backlog.set(len(self._pending))
        self._idle.clear()
        self._has_work.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"{self._name}-writer")

    async def stop(self, flush_timeout: float = 5.0) -> None:
        """Try to write what is pending for up to ``flush_timeout`` s, then stop the task."""
        task, self._task = self._task, None
        if task is None:
            return
        if self._pending:
            try:
                await asyncio.wait_for(self._idle.wait(), flush_timeout)
            except TimeoutError:
                self._log.error(f"{self._name}_not_flushed", pending=len(self._pending))
        task.cancel()
        await asyncio.wait({task})

    async def _run(self) -> None:
        delay = self._initial_delay
        while True:
            await self._has_work.wait()
            while self._pending:
                key, (version, item) = next(iter(self._pending.items()))
                try:
                    await self._write(item)
                except TRANSIENT_ERRORS as exc:
                    metrics.SINK_RETRIES.labels(sink=self._name).inc()
                    if not self._outage:
                        self._outage = True
                        self._log.warning(f"{self._name}_unavailable", error=_describe(exc),
                                          pending=len(self._pending))
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self._max_delay)
                    continue
                except Exception as exc:
                    self._log.error(f"{self._name}_write_rejected", key=str(key),
                                    error=_describe(exc))
                    self.dropped += 1
                    metrics.SINK_DROPPED.labels(sink=self._name).inc()
                else:
                    delay = self._initial_delay
                    if self._outage:
                        self._outage = False
                        self._log.info(f"{self._name}_recovered", pending=len(self._pending) - 1)
                current = self._pending.get(key)
                if current is not None and current[0] == version:  # not replaced meanwhile
                    del self._pending[key]
                    self._backlog.set(len(self._pending))
            self._has_work.clear()
            self._idle.set()


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:300]


class RetryingPort(Generic[T]):
    """What the retrying ports share: a background writer and its lifecycle."""

    _writer: RetryingWriter[T]

    @property
    def pending(self) -> int:
        return self._writer.pending

    def start(self) -> None:
        self._writer.start()

    async def stop(self, flush_timeout: float = 5.0) -> None:
        await self._writer.stop(flush_timeout)


class RetryingCallSink(RetryingPort[CallRecord]):
    """A :class:`~hotline.core.ports.CallSink` that survives a database outage.

    Logs ``call_store_unavailable`` once per outage and ``call_store_recovered``.
    """

    def __init__(self, inner: CallSink, *, max_buffer: int = 100_000,
                 initial_delay: float = 0.2, max_delay: float = 5.0) -> None:
        self._writer = RetryingWriter(
            inner.save_call, name="call_store", key=lambda r: r.call_key,
            max_buffer=max_buffer, initial_delay=initial_delay, max_delay=max_delay,
        )

    async def save_call(self, record: CallRecord) -> None:
        self._writer.submit(record)


class RetryingIvrJournal(RetryingPort[IvrStep]):
    """The same for the :class:`~hotline.core.ports.IvrJournal` (every step is kept)."""

    def __init__(self, inner: IvrJournal, *, max_buffer: int = 100_000,
                 initial_delay: float = 0.2, max_delay: float = 5.0) -> None:
        self._writer = RetryingWriter(
            inner.record_step, name="ivr_journal", max_buffer=max_buffer,
            initial_delay=initial_delay, max_delay=max_delay,
        )

    async def record_step(self, step: IvrStep) -> None:
        self._writer.submit(step)
