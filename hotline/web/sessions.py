"""Sign-in sessions, kept in Redis so that any web process can serve any browser.

Redis is not trusted with who is signed in: each payload carries an HMAC-SHA256,
under a key that is not in Redis, over the session's id (the hash of the token
the browser holds) and the payload. A row that someone else wrote into Redis, or
a real session's row copied under another key or edited (say ``role=admin``),
fails the check and means "not signed in".
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from hotline.core.people import Principal

SESSION_TTL_SECONDS = 12 * 3600
KEY_PREFIX = "hotline:session:"
#: Shorter keys are refused: a MAC is only as strong as its key.
MIN_KEY_BYTES = 32
MAX_TOKEN = 100


class KeyValueStore(Protocol):
    """The slice of redis.asyncio.Redis that sessions need."""

    def set(self, name: str, value: str, ex: int | None = None) -> Awaitable[Any]: ...
    def get(self, name: str) -> Awaitable[Any]: ...
    def mget(self, keys: Sequence[str]) -> Awaitable[Any]: ...
    def delete(self, *names: str) -> Awaitable[Any]: ...


@dataclass(frozen=True)
class Session:
    """A session as read back: ``sid`` names it (the SHA-256 of the token, hex),
    ``epoch`` is the person's session epoch when it was made."""

    sid: str
    who: Principal
    epoch: int


def session_id(token: str) -> str:
    # Only a hash of the token is stored: a Redis dump does not hand out sessions.
    return hashlib.sha256(token.encode()).hexdigest()


class SessionStore:
    def __init__(
        self, redis: KeyValueStore, key: bytes, ttl: int = SESSION_TTL_SECONDS
    ) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"the session key must have at least {MIN_KEY_BYTES} bytes")
        self._redis = redis
        self._key = key
        self._ttl = ttl

    async def create(self, who: Principal, epoch: int) -> str:
        token = secrets.token_urlsafe(32)
        sid = session_id(token)
        body = {"login": who.login, "display_name": who.display_name, "role": who.role,
                "epoch": epoch}
        body["mac"] = self._mac(sid, body)
        await self._redis.set(KEY_PREFIX + sid, json.dumps(body), ex=self._ttl)
        return token

    async def get(self, token: str) -> Session | None:
        if not token or len(token) > MAX_TOKEN:
            return None
        sid = session_id(token)
        return self._parse(sid, await self._redis.get(KEY_PREFIX + sid))

    async def get_many(self, sids: Sequence[str]) -> dict[str, Session | None]:
        """Sessions by id in one round trip (None: gone or not genuine)."""
        if not sids:
            return {}
        raws = await self._redis.mget([KEY_PREFIX + sid for sid in sids])
        return {sid: self._parse(sid, raw) for sid, raw in zip(sids, raws, strict=True)}

    async def delete(self, token: str) -> None:
        if token and len(token) <= MAX_TOKEN:
            await self._redis.delete(KEY_PREFIX + session_id(token))

    async def delete_id(self, sid: str) -> None:
        await self._redis.delete(KEY_PREFIX + sid)

    def _parse(self, sid: str, raw: Any) -> Session | None:
        if raw is None:
            return None
        try:
            body = json.loads(raw)
            mac = body.pop("mac")
            if not isinstance(mac, str) or not hmac.compare_digest(mac, self._mac(sid, body)):
                return None
            who = Principal(str(body["login"]), str(body["display_name"]), str(body["role"]))
            epoch = body["epoch"]
            if not isinstance(epoch, int):
                return None
        except (ValueError, KeyError, TypeError, AttributeError):  # not written by create()
            return None
        return Session(sid, who, epoch)

    def _mac(self, sid: str, body: dict[str, Any]) -> str:
        message = sid.encode() + b"\n" + json.dumps(body, sort_keys=True).encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()
