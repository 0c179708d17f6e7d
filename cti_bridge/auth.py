"""People who sign in to the web pages: password hashing, sessions, roles.

Passwords are hashed with scrypt (stdlib, memory-hard) and a per-user salt.
Sessions live in Redis so that any web process can serve any browser.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Protocol

ROLES = ("operator", "supervisor", "admin", "executor", "leadership")
_N, _R, _P = 2**14, 8, 1
SESSION_TTL_SECONDS = 12 * 3600


def hash_password(password: str) -> str:
    if not password:
        raise ValueError("password must not be empty")
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    salt_b64, digest_b64 = base64.b64encode(salt).decode(), base64.b64encode(digest).decode()
    return f"scrypt${_N}${_R}${_P}${salt_b64}${digest_b64}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt_b64, digest_b64 = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest_b64, validate=True)
        digest = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt_b64, validate=True),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
        )
    except (ValueError, TypeError, MemoryError):  # malformed, or parameters out of range
        return False
    return hmac.compare_digest(digest, expected)


@dataclass(frozen=True)
class Principal:
    """Who is signed in."""

    login: str
    display_name: str
    role: str


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
