"""Sign-in sessions, kept in Redis so that any web process can serve any browser."""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Awaitable
from typing import Any, Protocol

from hotline.core.people import Principal

SESSION_TTL_SECONDS = 12 * 3600


class KeyValueStore(Protocol):
    """The slice of redis.asyncio.Redis that sessions need."""

    def set(self, name: str, value: str, ex: int | None = None) -> Awaitable[Any]: ...
    def get(self, name: str) -> Awaitable[Any]: ...
    def delete(self, *names: str) -> Awaitable[Any]: ...


class SessionStore:
    def __init__(self, redis: KeyValueStore, ttl: int = SESSION_TTL_SECONDS) -> None:
        self._redis = redis
        self._ttl = ttl

    async def create(self, who: Principal) -> str:
        token = secrets.token_urlsafe(32)
        payload = json.dumps(
            {"login": who.login, "display_name": who.display_name, "role": who.role}
        )
        await self._redis.set(self._key(token), payload, ex=self._ttl)
        return token

    async def get(self, token: str) -> Principal | None:
        if not token or len(token) > 100:
            return None
        raw = await self._redis.get(self._key(token))
        if raw is None:
            return None
        try:
            data = json.loads(raw)
            return Principal(str(data["login"]), str(data["display_name"]), str(data["role"]))
        except (ValueError, KeyError, TypeError):  # not written by create(): no session
            return None

    async def delete(self, token: str) -> None:
        if token and len(token) <= 100:
            await self._redis.delete(self._key(token))

    @staticmethod
    def _key(token: str) -> str:
        # Only a hash of the token is stored: a Redis dump does not hand out sessions.
        return "hotline:session:" + hashlib.sha256(token.encode()).hexdigest()
