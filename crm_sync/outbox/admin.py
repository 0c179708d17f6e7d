"""Inspecting and replaying messages (``hotline outbox list|replay``), and applying
providers' delivery reports."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

#: A report only moves a message forward: sent → delivered or failed; a late
#: ``failed`` never undoes ``delivered``.
_APPLY_REPORT = """
UPDATE outbox_messages
SET status = $3::text, updated_at = $4::timestamptz,
    delivered_at = CASE WHEN $3::text = 'delivered' THEN $4::timestamptz ELSE delivered_at END,
    last_error = CASE WHEN $3::text = 'failed' THEN $5::text ELSE last_error END
WHERE provider = $1 AND provider_message_id = $2 AND status IN ('sending', 'sent')
RETURNING id
"""


async def apply_report(pool: asyncpg.Pool, provider: str, provider_message_id: str,
                       status: str, at: datetime, detail: str | None = None) -> str:
    """``applied``, ``duplicate`` (this report was seen) or ``pending`` (no message with
    that id yet: kept, and applied when the send is recorded)."""
    if status not in ("delivered", "failed"):
        raise ValueError(f"status: delivered or failed, got {status!r}")
    async with pool.acquire() as conn, conn.transaction():
        fresh = await conn.fetchval(
            """INSERT INTO delivery_reports (provider, provider_message_id, status,
                   received_at, detail) VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT DO NOTHING RETURNING true""",
            provider, provider_message_id, status, at, detail)
        if not fresh:
            return "duplicate"
        applied = await conn.fetchval(_APPLY_REPORT, provider, provider_message_id, status,
                                      at, detail)
        return "applied" if applied else "pending"


async def list_messages(pool: asyncpg.Pool, *, dead: bool = False,
                        limit: int = 100) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        f"""SELECT id, provider, idempotency_key, recipient, status, attempts, available_at,
                   provider_message_id, last_error, created_at
            FROM outbox_messages {"WHERE status = 'dead'" if dead else ""}
            ORDER BY id DESC LIMIT $1""", limit)
    return [dict(r) for r in rows]


async def replay(pool: asyncpg.Pool, message_id: int | None, at: datetime) -> int:
    """Back to the queue with a fresh count of attempts: one message (dead or failed),
    or every dead one when ``message_id`` is None. The idempotency key stays: a
    provider that did take it once will not take it twice."""
    if message_id is None:
        status = await pool.execute(
            """UPDATE outbox_messages SET status = 'queued', attempts = 0, available_at = $1,
                   last_error = NULL, updated_at = $1 WHERE status = 'dead'""", at)
    else:
        status = await pool.execute(
            """UPDATE outbox_messages SET status = 'queued', attempts = 0, available_at = $2,
                   last_error = NULL, updated_at = $2
               WHERE id = $1 AND status IN ('dead', 'failed')""", message_id, at)
    return int(status.split()[-1])
