"""Opt-out: a signed link in every message, a reply keyword through the gateway's
inbound webhook; both set ``citizens.opted_out_at`` once."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from urllib.parse import urlencode

import asyncpg

OPT_OUT_PATH = "/notifications/opt-out"


class OptOutLinks:
    def __init__(self, secret: bytes, public_url: str) -> None:
        self._key = hmac.new(secret, b"opt-out", hashlib.sha256).digest()
        self.public_url = public_url.rstrip("/")

    def token(self, citizen_id: int) -> str:
        return hmac.new(self._key, str(citizen_id).encode(), hashlib.sha256).hexdigest()[:32]

    def url(self, citizen_id: int) -> str:
        query = urlencode({"c": citizen_id, "t": self.token(citizen_id)})
        return f"{self.public_url}{OPT_OUT_PATH}?{query}"

    def valid(self, citizen_id: int, token: str) -> bool:
        return hmac.compare_digest(self.token(citizen_id), token)


async def opt_out(conn: asyncpg.Connection | asyncpg.Pool, citizen_id: int, via: str,
                  at: datetime) -> bool:
    """True the first time; queued messages to the citizen are cancelled with it."""
    changed = await conn.fetchval(
        """UPDATE citizens SET opted_out_at = $2, opt_out_via = $3, updated_at = $2
           WHERE id = $1 AND opted_out_at IS NULL RETURNING true""", citizen_id, at, via)
    await conn.execute(
        """UPDATE outbox_messages SET status = 'cancelled', last_error = 'opted out',
               updated_at = $2
           WHERE citizen_id = $1 AND status = 'queued'""", citizen_id, at)
    return bool(changed)


async def opt_out_phone(pool: asyncpg.Pool, phone: str, via: str, at: datetime) -> int | None:
    citizen_id: int | None = await pool.fetchval(
        "SELECT id FROM citizens WHERE phone = $1", phone)
    if citizen_id is not None:
        await opt_out(pool, citizen_id, via, at)
    return citizen_id
