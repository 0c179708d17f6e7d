"""Calls and IVR steps in PostgreSQL, and a buffer that rides out database outages.

``PostgresCallStore`` / ``PostgresIvrJournal`` write straight through and raise
when the database is down. ``RetryingCallSink`` / ``RetryingIvrJournal`` wrap
them for the live path: ``save_call`` never blocks or fails, a background task
writes with exponential backoff, so a database restart loses nothing. With a
:class:`~crm_sync.spool.Spool` the call sink also writes each pending record to
local disk first and replays them on start: a process killed during an outage
loses nothing either.

Every call record is reconciled with Asterisk's queue_log (the reference for
call figures) in the case store: ``save_call`` applies the queue_log lines
already stored for the call, and :meth:`PostgresCallStore.record_queue_log`
(fed by :mod:`crm_sync.reconciler`) stores new lines and corrects the calls
they concern. Both run under one advisory lock per call, so whichever comes
second sees the other's work and the result is the same in either order.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import asyncpg

from crm_sync.db import DatabaseUnavailable
from crm_sync.queue_log import (
    CALL_EVENTS,
    Correction,
    LoggedCall,
    QueueLogEntry,
    fold_call,
    reconcile,
)
from crm_sync.spool import Spool
from hotline.core import metrics
from hotline.core.aio import cancel_and_wait
from hotline.core.logs import get_logger
from hotline.core.ports import CallSink, IvrJournal
from hotline.core.records import CallOutcome, CallRecord, IvrStep, QueueAttempt

ACQUIRE_TIMEOUT = 10.0
#: A call whose AMI record stays in progress although queue_log says its every
#: stay in a queue ended this long ago lost its tracker (the service died, the
#: AMI link was down at its Hangup): the reconciler finishes it from queue_log.
ORPHAN_AFTER_SECONDS = 120
ORPHAN_TEXT = "finished from queue_log: no Hangup seen by this service"
log = get_logger("crm_sync.call_store")

_UPSERT_CALL = """
INSERT INTO calls (call_key, asterisk_server, uniqueid, linkedid, linkedids, channel,
    caller_number, caller_name, language, started_at, answered_at, ended_at, ivr_choice,
    ivr_source, queue, wait_seconds, talk_seconds, operator_interface, operator_name, outcome,
    hangup_cause, hangup_cause_text, talk_source, reconciled_at, citizen_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19,
    $20, $21, $22, $23, CASE WHEN $24 THEN now() END,
    (SELECT id FROM citizens WHERE phone = $7 AND $7 <> ''))
ON CONFLICT (call_key) DO UPDATE SET
    linkedid = EXCLUDED.linkedid, linkedids = EXCLUDED.linkedids, channel = EXCLUDED.channel,
    caller_number = EXCLUDED.caller_number, caller_name = EXCLUDED.caller_name,
    language = EXCLUDED.language, started_at = EXCLUDED.started_at,
    answered_at = EXCLUDED.answered_at, ended_at = EXCLUDED.ended_at,
    ivr_choice = EXCLUDED.ivr_choice, ivr_source = EXCLUDED.ivr_source, queue = EXCLUDED.queue,
    wait_seconds = EXCLUDED.wait_seconds, talk_seconds = EXCLUDED.talk_seconds,
    operator_interface = EXCLUDED.operator_interface, operator_name = EXCLUDED.operator_name,
    outcome = EXCLUDED.outcome, hangup_cause = EXCLUDED.hangup_cause,
    hangup_cause_text = EXCLUDED.hangup_cause_text, talk_source = EXCLUDED.talk_source,
    reconciled_at = CASE WHEN $24 THEN now() ELSE calls.reconciled_at END,
    citizen_id = COALESCE(calls.citizen_id, EXCLUDED.citizen_id), updated_at = now()
-- A finished call never goes back to in progress: an older version replayed from
-- the spool (or retried late) must not undo a newer one.
WHERE calls.outcome = 'in_progress' OR EXCLUDED.outcome <> 'in_progress'
RETURNING id
"""

_INSERT_ATTEMPT = """
INSERT INTO queue_attempts (call_id, seq, queue, entered_at, answered_at, left_at, position,
    wait_seconds, talk_seconds, ring_seconds, outcome, operator_interface, operator_name,
    completed_by, talk_source)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
"""

_ATTEMPT_COLUMNS = """seq, queue, entered_at, answered_at, left_at, position, wait_seconds,
    talk_seconds, ring_seconds, outcome, operator_interface, operator_name, completed_by,
    talk_source"""

_RECORD_CORRECTION = """
INSERT INTO call_corrections (call_id, field, was, became) VALUES ($1, $2, $3, $4)
ON CONFLICT (call_id, field) DO UPDATE SET at = now(), was = EXCLUDED.was,
    became = EXCLUDED.became
"""

_LOGGED_EVENTS = """
SELECT extract(epoch FROM at)::bigint AS epoch, callid, queue, agent, event, data
FROM queue_log_events
WHERE asterisk_server = $1 AND callid = $2 AND at >= to_timestamp($3)
ORDER BY id
"""


def boot_epoch(call_key: str) -> int:
    """The Asterisk start time inside a call key (``server:boot:uniqueid``)."""
    parts = call_key.split(":", 2)
    try:
        return int(parts[1])
    except (IndexError, ValueError):
        return 0


def _lock_key(asterisk_server: str, uniqueid: str) -> str:
    return f"{asterisk_server}:{uniqueid}"


async def _lock_call(conn: asyncpg.Connection, asterisk_server: str, uniqueid: str) -> None:
    """Serialise the AMI path and the queue_log path on one call (transaction-scoped)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 1551))",
                       _lock_key(asterisk_server, uniqueid))


async def _logged_call(conn: asyncpg.Connection, record: CallRecord) -> LoggedCall:
    """queue_log's lines of this call, since the Asterisk start in its key."""
    rows = await conn.fetch(_LOGGED_EVENTS, record.asterisk_server, record.uniqueid,
                            boot_epoch(record.call_key))
    return fold_call(record.uniqueid, [
        QueueLogEntry(r["epoch"], r["callid"], r["queue"], r["agent"], r["event"],
                      tuple(r["data"])) for r in rows])


async def _write_call(conn: asyncpg.Connection, record: CallRecord,
                      corrections: Sequence[Correction], *, reconciled: bool) -> int | None:
    """Upsert the call, replace its queue attempts, record the corrections (in a
    transaction); None when the stored version is final and this one is not."""
    call_id: int | None = await conn.fetchval(
        _UPSERT_CALL,
        record.call_key, record.asterisk_server, record.uniqueid, record.linkedid,
        list(record.linkedids), record.channel, record.caller_number, record.caller_name,
        record.language, record.started_at, record.answered_at, record.ended_at,
        record.ivr_choice, record.ivr_source, record.queue, record.wait_seconds,
        record.talk_seconds, record.operator_interface, record.operator_name,
        str(record.outcome), record.hangup_cause, record.hangup_cause_text,
        record.talk_source, reconciled,
    )
    if call_id is None:
        log.info("call_stale_version_ignored", call_key=record.call_key,
                 uniqueid=record.uniqueid)
        return None
    await conn.execute("DELETE FROM queue_attempts WHERE call_id = $1", call_id)
    if record.attempts:
        await conn.executemany(_INSERT_ATTEMPT, [
            (call_id, seq, a.queue, a.entered_at, a.answered_at, a.left_at, a.position,
             a.wait_seconds, a.talk_seconds, a.ring_seconds, a.outcome, a.operator_interface,
             a.operator_name, a.completed_by, a.talk_source)
            for seq, a in enumerate(record.attempts, start=1)
        ])
    if corrections:
        await conn.executemany(_RECORD_CORRECTION,
                               [(call_id, c.field, c.was, c.became) for c in corrections])
    return call_id


def _log_corrections(record: CallRecord, corrections: Sequence[Correction]) -> None:
    if corrections:
        log.info("call_corrected_from_queue_log", call_key=record.call_key,
                 uniqueid=record.uniqueid, outcome=str(record.outcome),
                 fields={c.field: [c.was, c.became] for c in corrections})


def copy_record(record: CallRecord) -> CallRecord:
    return dataclasses.replace(record, attempts=[dataclasses.replace(a) for a in record.attempts],
                               linkedids=list(record.linkedids))


def record_from_rows(row: Any, attempts: Iterable[Any]) -> CallRecord:
    """A :class:`CallRecord` from a ``calls`` row and its ``queue_attempts`` rows."""
    names = {f.name for f in dataclasses.fields(CallRecord)} - {"attempts", "outcome"}
    attempt_names = {f.name for f in dataclasses.fields(QueueAttempt)}
    return CallRecord(
        **{name: row[name] for name in names},
        outcome=CallOutcome(row["outcome"]),
        attempts=[QueueAttempt(**{k: a[k] for k in attempt_names}) for a in attempts],
    )


# --- the spool's encoding of a record --------------------------------------------


def record_to_json(record: CallRecord) -> bytes:
    def default(value: object) -> str:
        if isinstance(value, datetime):
            return value.isoformat()
        raise TypeError(type(value).__name__)

    return json.dumps(dataclasses.asdict(record), default=default,
                      ensure_ascii=False, separators=(",", ":")).encode()


def record_from_json(data: bytes) -> CallRecord:
    raw = json.loads(data)
    times = {f.name for f in dataclasses.fields(CallRecord) if "datetime" in str(f.type)}
    attempt_times = {f.name for f in dataclasses.fields(QueueAttempt)
                     if "datetime" in str(f.type)}

    def parse(values: dict[str, Any], names: set[str]) -> dict[str, Any]:
        return {k: datetime.fromisoformat(v) if k in names and v is not None else v
                for k, v in values.items()}

    attempts = [QueueAttempt(**parse(a, attempt_times)) for a in raw.pop("attempts", [])]
    raw["outcome"] = CallOutcome(raw.get("outcome", "in_progress"))
    return CallRecord(**parse(raw, times), attempts=attempts)


class PostgresCallStore:
    """:class:`~hotline.core.ports.CallSink` on the ``calls`` and ``queue_attempts`` tables."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def save_call(self, record: CallRecord) -> None:
        """Upsert by ``call_key``; the call's queue attempts are replaced. The call's
        queue_log lines already stored are applied first (see the module docstring)."""
        # A copy taken before the first await: the caller may keep mutating record.
        record = copy_record(record)
        async with self._pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn, conn.transaction():
            await _lock_call(conn, record.asterisk_server, record.uniqueid)
            logged = await _logged_call(conn, record)
            corrections = reconcile(record, logged)
            written = await _write_call(conn, record, corrections,
                                        reconciled=bool(logged.attempts))
        if written is not None:
            _log_corrections(record, corrections)

    async def record_queue_log(
        self, asterisk_server: str, entries: Sequence[QueueLogEntry],
        position: tuple[str, int, int] | None,
    ) -> int:
        """Store queue_log lines, correct the calls they concern and move the read
        position ``(path, inode, byte offset)`` — one transaction. Returns how many
        calls were corrected."""
        calls = sorted({e.callid for e in entries if e.callid and e.callid != "NONE"
                        and e.event in CALL_EVENTS})
        corrected: list[tuple[CallRecord, list[Correction]]] = []
        async with self._pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn, conn.transaction():
            if entries:
                await conn.copy_records_to_table(
                    "queue_log_events",
                    columns=["asterisk_server", "at", "callid", "queue", "agent", "event",
                             "data"],
                    records=[(asterisk_server, e.at, e.callid, e.queue, e.agent, e.event,
                              list(e.data)) for e in entries],
                )
            for callid in calls:  # sorted: two batches never wait on each other in a cycle
                await _lock_call(conn, asterisk_server, callid)
                record = await self._load(conn, asterisk_server, callid)
                if record is None:
                    continue  # AMI's record is not stored yet: save_call will apply these
                logged = await _logged_call(conn, record)
                corrections = reconcile(record, logged)
                await _write_call(conn, record, corrections, reconciled=True)
                corrected.append((record, corrections))
            if position is not None:
                await conn.execute(
                    """INSERT INTO queue_log_offsets (asterisk_server, path, inode, byte_offset)
                       VALUES ($1, $2, $3, $4)
                       ON CONFLICT (asterisk_server, path) DO UPDATE SET inode = $3,
                           byte_offset = $4, updated_at = now()""",
                    asterisk_server, *position,
                )
        for record, corrections in corrected:
            _log_corrections(record, corrections)
        return sum(1 for _, c in corrected if c)

    async def queue_log_position(self, asterisk_server: str, path: str) -> tuple[int, int] | None:
        """``(inode, byte offset)`` the reconciler reached in ``path``, if it read it before."""
        row = await self._pool.fetchrow(
            "SELECT inode, byte_offset FROM queue_log_offsets "
            "WHERE asterisk_server = $1 AND path = $2", asterisk_server, path)
        return (row["inode"], row["byte_offset"]) if row is not None else None

    async def finish_orphans(self, asterisk_server: str,
                             after_seconds: float = ORPHAN_AFTER_SECONDS) -> int:
        """Finish the calls still ``in_progress`` whose every queue stay ended in
        queue_log more than ``after_seconds`` ago (see :data:`ORPHAN_AFTER_SECONDS`)."""
        candidates = await self._pool.fetch(
            """SELECT DISTINCT c.uniqueid FROM calls c
               JOIN queue_log_events e ON e.asterisk_server = c.asterisk_server
                                      AND e.callid = c.uniqueid
               WHERE c.asterisk_server = $1 AND c.outcome = 'in_progress'
                 AND c.updated_at < now() - make_interval(secs => $2)
                 AND e.at < now() - make_interval(secs => $2)""",
            asterisk_server, after_seconds)
        finished = 0
        for row in candidates:
            async with self._pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn, conn.transaction():
                await _lock_call(conn, asterisk_server, row["uniqueid"])
                record = await self._load(conn, asterisk_server, row["uniqueid"])
                if record is None or record.outcome is not CallOutcome.IN_PROGRESS:
                    continue
                logged = await _logged_call(conn, record)
                last = logged.last_epoch
                if not logged.closed or last is None or time.time() - last < after_seconds:
                    continue
                corrections = reconcile(record, logged, finish=True)
                record.ended_at = record.ended_at or datetime.fromtimestamp(last, tz=UTC)
                record.hangup_cause_text = record.hangup_cause_text or ORPHAN_TEXT
                await _write_call(conn, record, corrections, reconciled=True)
            finished += 1
            log.warning("call_finished_from_queue_log", call_key=record.call_key,
                        uniqueid=record.uniqueid, outcome=str(record.outcome))
            _log_corrections(record, corrections)
        return finished

    @staticmethod
    async def _load(conn: asyncpg.Connection, asterisk_server: str,
                    uniqueid: str) -> CallRecord | None:
        row = await conn.fetchrow(
            "SELECT * FROM calls WHERE asterisk_server = $1 AND uniqueid = $2 "
            "ORDER BY started_at DESC LIMIT 1", asterisk_server, uniqueid)
        if row is None:
            return None
        attempts = await conn.fetch(
            f"SELECT {_ATTEMPT_COLUMNS} FROM queue_attempts WHERE call_id = $1 ORDER BY seq",
            row["id"])
        return record_from_rows(row, attempts)

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

    With a ``spool`` (and ``encode``/``decode``), every submitted item is also
    appended to it, :meth:`open_spool` replays what a previous process left, and
    what is written (or superseded) is released from it; item versions are the
    spool's sequence numbers.
    """

    #: How often, at most, the spool is told what the database already has while a
    #: backlog drains (finding the oldest pending item is a scan of the backlog).
    RELEASE_INTERVAL = 1.0

    def __init__(
        self,
        write: Callable[[T], Awaitable[None]],
        *,
        name: str,
        key: Callable[[T], Hashable] | None = None,
        max_buffer: int = 100_000,
        initial_delay: float = 0.2,
        max_delay: float = 5.0,
        spool: Spool | None = None,
        encode: Callable[[T], bytes] | None = None,
        decode: Callable[[bytes], T] | None = None,
    ) -> None:
        if spool is not None and (encode is None or decode is None):
            raise ValueError("a spool needs encode and decode")
        self._spool = spool
        self._encode = encode
        self._decode = decode
        self._released_at = 0.0
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

    async def open_spool(self) -> int:
        """Replay what the spool holds from a previous process; returns how many items."""
        if self._spool is None:
            return 0
        entries = await asyncio.to_thread(self._spool.open)
        assert self._decode is not None
        for entry in entries:
            try:
                item = self._decode(entry.payload)
            except (ValueError, TypeError, KeyError) as exc:
                self._log.error(f"{self._name}_spool_entry_unreadable", seq=entry.seq,
                                error=_describe(exc))
                continue
            self._put(entry.seq, item)
        return len(entries)

    def submit(self, item: T) -> None:
        """Queue ``item`` for writing; never blocks, never raises on a down database."""
        if self._spool is not None:
            assert self._encode is not None
            version = self._spool.next_seq()
            self._spool.append(version, self._encode(item))
        else:
            version = next(self._versions)
        self._put(version, item)

    def _put(self, version: int, item: T) -> None:
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
        await cancel_and_wait(task)
        if self._spool is not None:
            self._release(force=True)
            await asyncio.to_thread(self._spool.close)

    def _release(self, *, force: bool = False) -> None:
        """Tell the spool which items the database has (all but the pending ones)."""
        if self._spool is None:
            return
        now = time.monotonic()
        if self._pending and not force and now - self._released_at < self.RELEASE_INTERVAL:
            return
        self._released_at = now
        oldest = min((v for v, _ in self._pending.values()), default=self._spool.last_seq + 1)
        self._spool.release(oldest - 1)

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
                self._release()
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

    async def open_spool(self) -> int:
        """Replay the spool left by a previous process (before :meth:`start`)."""
        return await self._writer.open_spool()

    async def stop(self, flush_timeout: float = 5.0) -> None:
        await self._writer.stop(flush_timeout)


class RetryingCallSink(RetryingPort[CallRecord]):
    """A :class:`~hotline.core.ports.CallSink` that survives a database outage.

    Logs ``call_store_unavailable`` once per outage and ``call_store_recovered``.
    With a ``spool`` pending records survive the process too (call
    :meth:`open_spool` before :meth:`start`).
    """

    def __init__(self, inner: CallSink, *, max_buffer: int = 100_000,
                 initial_delay: float = 0.2, max_delay: float = 5.0,
                 spool: Spool | None = None) -> None:
        self._writer = RetryingWriter(
            inner.save_call, name="call_store", key=lambda r: r.call_key,
            max_buffer=max_buffer, initial_delay=initial_delay, max_delay=max_delay,
            spool=spool, encode=record_to_json, decode=record_from_json,
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
