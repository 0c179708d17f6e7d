"""API keys of the Open311 intake: one per channel's client, stored hashed, revocable.

A key is 32 random bytes (``secrets.token_urlsafe``) behind a short prefix. Its
SHA-256 is what the case store keeps: with that much entropy a slow hash adds
nothing (nobody can guess a key from its hash), and a lookup stays one indexed
query per request. The key itself is shown once, by ``hotline apikey add``.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from hotline.core.appeals import Channel
from hotline.core.errors import InvalidInput, NotFound

#: The channels that reach us through Open311 (the phone has its own path).
API_CHANNELS = (Channel.WEB, Channel.MOBILE, Channel.FACEBOOK, Channel.GOV_CONTACT_CENTRE)
KEY_PREFIX = "h1551_"
MAX_KEY = 200
MAX_LABEL = 200


class ApiKeyNotFound(NotFound):
    error_id = "api_key_not_found"


@dataclass(frozen=True)
class ApiKey:
    id: int
    channel: Channel
    label: str
    prefix: str
    created_at: datetime
    created_by: str
    revoked_at: datetime | None


@dataclass(frozen=True)
class NewKey:
    key: ApiKey
    secret: str  # shown once, never stored


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


def channel_of(name: str) -> Channel:
    try:
        channel = Channel(name)
    except ValueError:
        channel = None
    if channel not in API_CHANNELS:
        raise InvalidInput(
            f"channel: expected one of {', '.join(c.value for c in API_CHANNELS)}, got {name!r}",
            details={"field": "channel"})
    assert channel is not None
    return channel


def _key(row: asyncpg.Record) -> ApiKey:
    return ApiKey(row["id"], Channel(row["channel"]), row["label"], row["prefix"],
                  row["created_at"], row["created_by"], row["revoked_at"])


async def create_key(
    pool: asyncpg.Pool, channel: str, *, label: str = "", created_by: str = ""
) -> NewKey:
    chan = channel_of(channel)
    if len(label) > MAX_LABEL:
        raise InvalidInput(f"label: at most {MAX_LABEL} characters", details={"field": "label"})
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    row = await pool.fetchrow(
        """INSERT INTO api_keys (channel, label, prefix, key_sha256, created_by)
           VALUES ($1, $2, $3, $4, $5) RETURNING *""",
        chan.value, label, secret[:len(KEY_PREFIX) + 6], _digest(secret), created_by)
    return NewKey(_key(row), secret)


async def revoke_key(pool: asyncpg.Pool, key_id: int) -> ApiKey:
    """Revoked at once for every web process (each request looks the key up)."""
    row = await pool.fetchrow(
        """UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now()) WHERE id = $1
           RETURNING *""", key_id)
    if row is None:
        raise ApiKeyNotFound(f"api key {key_id}: no such key")
    return _key(row)


async def list_keys(pool: asyncpg.Pool) -> list[ApiKey]:
    return [_key(r) for r in await pool.fetch("SELECT * FROM api_keys ORDER BY id")]


async def key_for(pool: asyncpg.Pool, secret: str) -> ApiKey | None:
    """The active key this secret is, or None (unknown, revoked, or not a key at all)."""
    if not secret or len(secret) > MAX_KEY:
        return None
    row = await pool.fetchrow(
        "SELECT * FROM api_keys WHERE key_sha256 = $1 AND revoked_at IS NULL", _digest(secret))
    return _key(row) if row is not None else None
