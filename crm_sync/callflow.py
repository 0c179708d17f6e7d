"""The case store's side of the IVR's notices, hours override and callbacks (issue 9).

Implements the ports of :mod:`hotline.core.ports` that ``ivr`` and the
dialer use: :class:`PostgresNotices`, :class:`PostgresHoursOverrides`,
:class:`PostgresCallbacks`; :class:`RedisQueueLoad` reads the queue summary
the AMI role keeps in Redis. :class:`Announcements` is what the web API edits.

Claims: a dialer takes a per-queue transaction advisory lock, counts the
callbacks of that queue being dialled, and takes the oldest due request with
``FOR UPDATE SKIP LOCKED``; the attempt row's primary key (request, attempt)
makes a second Originate of one attempt impossible to record. So with any
number of dialer processes a request is dialled by one of them at a time, in
order of the callers' original arrival, never beyond the free operators.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from hotline.core.callflow import OVERRIDE_MODES, HoursOverride, QueueLoad
from hotline.core.errors import InvalidInput, NotFound
from hotline.core.live import QUEUES_KEY
from hotline.core.logs import get_logger
from hotline.core.records import CallbackJob, CallbackRequest, Notice

log = get_logger("crm_sync.callflow")
#: Namespace of the dialers' per-queue advisory locks ("1551" + "0015").
CLAIM_LOCK_NAMESPACE = 1551_0015
#: Where announcements' sounds live, under the channel language's sounds folder.
NOTICE_SOUNDS = "hotline/notices"


def notice_sound(announcement_id: int) -> str:
    return f"{NOTICE_SOUNDS}/{announcement_id}"


class PostgresNotices:
    """:class:`~hotline.core.ports.NoticeSource`: a caller's district from their
    citizen record (by number), the announcements active for it now."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def notices_for(self, caller_number: str, at: datetime) -> list[Notice]:
        if not caller_number:
            return []
        rows = await self._pool.fetch(
            """
            SELECT a.id, a.kind, a.text FROM citizens c
            JOIN announcements a ON c.district_id = ANY (a.district_ids)
            WHERE c.phone = $1 AND a.cancelled_at IS NULL
              AND a.starts_at <= $2 AND a.ends_at > $2
            ORDER BY (a.kind = 'emergency') DESC, a.starts_at DESC, a.id DESC
            LIMIT 3
            """,
            caller_number, at,
        )
        return [Notice(r["id"], r["kind"], notice_sound(r["id"]), r["text"]) for r in rows]


class PostgresHoursOverrides:
    """:class:`~hotline.core.ports.HoursOverrideSource`, and the admin's switch
    (every change audited, with who and why)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def hours_overrides(self) -> Mapping[str, HoursOverride]:
        rows = await self._pool.fetch("SELECT * FROM hours_overrides")
        return {r["scope"]: HoursOverride(r["scope"], r["mode"], r["reason"], r["set_by"],
                                          r["set_at"]) for r in rows}

    async def set_override(self, scope: str, mode: str | None, reason: str, by: str) -> None:
        """``mode`` None lifts the override of ``scope``."""
        if mode is not None and mode not in OVERRIDE_MODES:
            raise InvalidInput(f"mode: one of {', '.join(OVERRIDE_MODES)} or null",
                               details={"field": "mode"})
        async with self._pool.acquire() as conn, conn.transaction():
            if mode is None:
                await conn.execute("DELETE FROM hours_overrides WHERE scope = $1", scope)
            else:
                await conn.execute(
                    """INSERT INTO hours_overrides (scope, mode, reason, set_by)
                       VALUES ($1, $2, $3, $4)
                       ON CONFLICT (scope) DO UPDATE SET mode = $2, reason = $3, set_by = $4,
                                                         set_at = now()""",
                    scope, mode, reason, by)
            await conn.execute(
                "INSERT INTO hours_override_audit (scope, mode, reason, set_by)"
                " VALUES ($1, $2, $3, $4)", scope, mode, reason, by)
        log.info("hours_override_set", scope=scope, mode=mode, by=by)

    async def audit(self, limit: int = 50) -> list[dict[str, Any]]:
        rows = await self._pool.fetch(
            "SELECT scope, mode, reason, set_by, at FROM hours_override_audit"
            " ORDER BY id DESC LIMIT $1", limit)
        return [dict(r) for r in rows]


class RedisQueueLoad:
    """:class:`~hotline.core.ports.QueueLoadSource` over the summary the AMI role
    writes to Redis every few seconds (``hotline.core.live.QUEUES_KEY``); read at
    most once a second, whatever the call rate."""

    def __init__(self, redis: aioredis.Redis, *, max_age: float = 1.0) -> None:
        self._redis = redis
        self._max_age = max_age
        self._cached: dict[str, QueueLoad] = {}
        self._read_at = float("-inf")

    async def queue_load(self, queue: str) -> QueueLoad | None:
        if time.monotonic() - self._read_at > self._max_age:
            raw = await self._redis.get(QUEUES_KEY)
            self._cached = parse_queue_summary(raw)
            self._read_at = time.monotonic()
        return self._cached.get(queue)


def parse_queue_summary(raw: Any) -> dict[str, QueueLoad]:
    """The Redis JSON of ``CtiService.queue_summary`` → loads by queue; junk → {}."""
    if not raw:
        return {}
    try:
        data = json.loads(raw)
        return {
            str(q["queue"]): QueueLoad(str(q["queue"]), int(q["logged_in"]), int(q["available"]),
                                       int(q["callers"]), int(q["hold_time"]),
                                       int(q["talk_time"]))
            for q in data["queues"]
        }
    except (ValueError, KeyError, TypeError):
        return {}


class PostgresCallbacks:
    """:class:`~hotline.core.ports.CallbackBook` and :class:`~hotline.core.ports.CallbackQueue`."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def book_callback(self, request: CallbackRequest) -> int:
        request_id: int = await self._pool.fetchval(
            """
            INSERT INTO callback_requests (asterisk_server, uniqueid, queue, caller_number,
                                           reason, arrived_at, max_attempts)
            VALUES ($1, $2, $3, $4, $5, $6, $7)
            ON CONFLICT (asterisk_server, uniqueid) DO UPDATE SET queue = callback_requests.queue
            RETURNING id
            """,
            request.asterisk_server, request.uniqueid, request.queue, request.caller_number,
            request.reason, request.arrived_at, request.max_attempts,
        )
        return request_id

    async def queues_waiting(self) -> list[str]:
        rows = await self._pool.fetch(
            "SELECT DISTINCT queue FROM callback_requests WHERE status IN ('pending', 'dialing')"
            " ORDER BY queue")
        return [r["queue"] for r in rows]

    async def claim(
        self, queue: str, free: int, dialer: str, lease_seconds: float
    ) -> CallbackJob | None:
        if free <= 0:
            return None
        async with self._pool.acquire() as conn, conn.transaction():
            # One dialer at a time per queue: counting the calls being dialled and
            # taking the next must not interleave with another dialer's.
            await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))",
                               CLAIM_LOCK_NAMESPACE, queue)
            dialing = await conn.fetchval(
                "SELECT count(*) FROM callback_requests WHERE queue = $1 AND status = 'dialing'"
                " AND claimed_until > now()", queue)
            if dialing >= free:
                return None
            # A dialing request whose lease ran out (its dialer died) is taken again
            # with the SAME attempt number: its Originate's ChannelId is the same, so
            # Asterisk refuses it while the first call still exists.
            row = await conn.fetchrow(
                """
                SELECT id, status FROM callback_requests
                WHERE queue = $1
                  AND ((status = 'pending' AND next_attempt_at <= now())
                       OR (status = 'dialing' AND claimed_until <= now()))
                ORDER BY arrived_at, id
                LIMIT 1
                FOR UPDATE SKIP LOCKED
                """,
                queue,
            )
            if row is None:
                return None
            bump = 1 if row["status"] == "pending" else 0
            job = await conn.fetchrow(
                """
                UPDATE callback_requests
                SET status = 'dialing', attempts = attempts + $2, claimed_by = $3,
                    claimed_until = now() + make_interval(secs => $4)
                WHERE id = $1
                RETURNING id, queue, caller_number, arrived_at, attempts, max_attempts
                """,
                row["id"], bump, dialer, lease_seconds,
            )
            assert job is not None
            await conn.execute(
                """INSERT INTO callback_attempts (request_id, attempt, dialer) VALUES ($1, $2, $3)
                   ON CONFLICT (request_id, attempt) DO UPDATE SET dialer = $3""",
                job["id"], job["attempts"], dialer)
        return CallbackJob(job["id"], job["queue"], job["caller_number"], job["arrived_at"],
                           job["attempts"], job["max_attempts"])

    async def finish(
        self, job: CallbackJob, answered: bool, detail: str, retry_seconds: float
    ) -> str:
        """Record the attempt's result; returns the request's new status."""
        if answered:
            status = "done"
        elif job.attempt >= job.max_attempts:
            status = "failed"
        else:
            status = "pending"
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                """UPDATE callback_attempts SET result = $3, detail = $4, finished_at = now()
                   WHERE request_id = $1 AND attempt = $2""",
                job.request_id, job.attempt, "answered" if answered else "failed", detail[:200])
            await conn.execute(
                """
                UPDATE callback_requests
                SET status = $3, claimed_until = NULL,
                    next_attempt_at = now() + make_interval(secs => $4),
                    finished_at = CASE WHEN $3 IN ('done', 'failed') THEN now() END
                WHERE id = $1 AND attempts = $2 AND status = 'dialing'
                """,
                job.request_id, job.attempt, status, float(retry_seconds))
        return status

    async def summary(self) -> list[dict[str, Any]]:
        """Per queue: callbacks waiting, being dialled, placed and failed today (Kyiv)."""
        rows = await self._pool.fetch(
            """
            SELECT queue,
                   count(*) FILTER (WHERE status = 'pending') AS waiting,
                   count(*) FILTER (WHERE status = 'dialing') AS dialing,
                   count(*) FILTER (WHERE status = 'done' AND finished_at >= date_trunc(
                       'day', now() AT TIME ZONE 'Europe/Kyiv') AT TIME ZONE 'Europe/Kyiv')
                       AS placed_today,
                   count(*) FILTER (WHERE status = 'failed' AND finished_at >= date_trunc(
                       'day', now() AT TIME ZONE 'Europe/Kyiv') AT TIME ZONE 'Europe/Kyiv')
                       AS failed_today
            FROM callback_requests GROUP BY queue ORDER BY queue
            """)
        return [dict(r) for r in rows]


class Announcements:
    """The announcements the admin page and API edit."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def create(
        self, *, kind: str, text: str, district_ids: list[int], starts_at: datetime,
        ends_at: datetime, by: str,
    ) -> int:
        known = await self._pool.fetchval(
            "SELECT count(*) FROM districts WHERE id = ANY ($1::int[])", district_ids)
        if known != len(set(district_ids)):
            raise InvalidInput("district_ids: unknown district", details={"field": "district_ids"})
        announcement_id: int = await self._pool.fetchval(
            """INSERT INTO announcements (kind, text, district_ids, starts_at, ends_at, created_by)
               VALUES ($1, $2, $3, $4, $5, $6) RETURNING id""",
            kind, text, sorted(set(district_ids)), starts_at, ends_at, by)
        log.info("announcement_created", id=announcement_id, kind=kind, by=by,
                 districts=len(set(district_ids)))
        return announcement_id

    async def attach_recording(self, announcement_id: int, wav: bytes, by: str) -> None:
        done = await self._pool.execute(
            "UPDATE announcements SET recording = $2, audio_source = 'recording'"
            " WHERE id = $1 AND cancelled_at IS NULL", announcement_id, wav)
        if done.endswith(" 0"):
            raise NotFound(f"no active announcement {announcement_id}")
        log.info("announcement_recording", id=announcement_id, bytes=len(wav), by=by)

    async def cancel(self, announcement_id: int, by: str) -> None:
        done = await self._pool.execute(
            "UPDATE announcements SET cancelled_at = now() WHERE id = $1 AND cancelled_at IS NULL",
            announcement_id)
        if done.endswith(" 0"):
            raise NotFound(f"no active announcement {announcement_id}")
        log.info("announcement_cancelled", id=announcement_id, by=by)

    async def listing(self, include_past: bool = False) -> list[dict[str, Any]]:
        rows = await self._pool.fetch(
            """SELECT id, kind, text, district_ids, starts_at, ends_at, audio_source,
                      cancelled_at, created_by, created_at
               FROM announcements
               WHERE $1 OR (cancelled_at IS NULL AND ends_at > now())
               ORDER BY starts_at DESC, id DESC LIMIT 200""", include_past)
        return [dict(r) for r in rows]

    async def districts(self) -> list[dict[str, Any]]:
        rows = await self._pool.fetch(
            "SELECT id, code, name_uk, name_en FROM districts ORDER BY id")
        return [dict(r) for r in rows]


async def notices_saved(pool: asyncpg.Pool, since: datetime, until: datetime) -> int:
    """Calls the notice saved: callers who heard a notice and hung up in the IVR
    without queueing (the ``hangup`` step after a ``notice`` carries it)."""
    count: int = await pool.fetchval(
        """SELECT count(DISTINCT (asterisk_server, uniqueid)) FROM ivr_steps
           WHERE step = 'hangup' AND (detail ->> 'after_notice')::boolean
             AND at >= $1 AND at < $2""", since, until)
    return count
