"""Failed sign-ins counted per login and per client address, in Redis so that the
limits hold across web processes.

An attempt takes its place in both counts *before* the password is checked, so
300 parallel guesses cannot all get past the check before the first one fails;
a sign-in that succeeds gives its place back (and clears its login's count).
Windows are fixed: they start with the first failure and last
``window_seconds``. Keys hold an HMAC of the login and address, never what was
typed (a password typed into the login field does not land in Redis).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from aiohttp import web

from hotline.core.errors import TooManyRequests

KEY_PREFIX = "hotline:sign-in-failures:"


class SignInThrottled(TooManyRequests):
    """Too many failed sign-ins for this login or from this address."""

    error_id = "sign_in_throttled"

    def __init__(self, message: str, *, retry_after: int, scope: str, first: bool) -> None:
        super().__init__(message, retry_after=retry_after, details={"scope": scope})
        self.scope = scope
        #: The attempt that went over the limit (the one worth an audit row).
        self.first = first


@dataclass(frozen=True)
class Reservation:
    keys: tuple[str, ...]
    login_key: str


class LoginLimiter:
    def __init__(
        self, redis: aioredis.Redis, key: bytes, *, per_login: int, per_address: int,
        window_seconds: int,
    ) -> None:
        self._redis = redis
        self._key = key
        self._limits = {"login": per_login, "address": per_address}
        self._window = window_seconds

    def _name(self, scope: str, value: str) -> str:
        digest = hmac.new(self._key, f"{scope}\n{value}".encode(), hashlib.sha256).hexdigest()
        return f"{KEY_PREFIX}{scope}:{digest[:40]}"

    async def reserve(self, login: str, address: str | None) -> Reservation:
        """Count this attempt as a failure until it proves otherwise; raise
        :class:`SignInThrottled` when the login or the address is over its limit."""
        scopes = [("login", self._name("login", login))]
        if address:
            scopes.append(("address", self._name("address", address)))
        async with self._redis.pipeline(transaction=True) as pipe:
            for _, name in scopes:
                # SET NX EX then INCR: a window that starts with its first failure
                # (EXPIRE … NX needs Redis 7).
                pipe.set(name, 0, ex=self._window, nx=True)
                pipe.incr(name)
                pipe.ttl(name)
            replies: list[Any] = await pipe.execute()
        over: list[tuple[str, int, bool]] = []
        for n, (scope, name) in enumerate(scopes):
            count, ttl = int(replies[3 * n + 1]), int(replies[3 * n + 2])
            if ttl < 0:  # a count left without expiry (see give_back): never for ever
                await self._redis.expire(name, self._window)
                ttl = self._window
            limit = self._limits[scope]
            if count > limit:
                over.append((scope, max(ttl, 1), count == limit + 1))
        reservation = Reservation(tuple(name for _, name in scopes), scopes[0][1])
        if over:
            scope, retry_after, first = max(over, key=lambda item: item[1])
            minutes = max(1, -(-retry_after // 60))
            what = "this login" if scope == "login" else "your address"
            raise SignInThrottled(
                f"Too many failed sign-ins for {what}. Try again in {minutes} min.",
                retry_after=retry_after, scope=scope, first=first,
            )
        return reservation

    async def give_back(self, reservation: Reservation) -> None:
        """The attempt was not judged (the service was busy): it does not count."""
        async with self._redis.pipeline(transaction=True) as pipe:
            for name in reservation.keys:
                pipe.decr(name)
            await pipe.execute()

    async def succeeded(self, reservation: Reservation) -> None:
        """Right password: the address gets its place back, the login starts afresh."""
        async with self._redis.pipeline(transaction=True) as pipe:
            for name in reservation.keys:
                if name == reservation.login_key:
                    pipe.delete(name)
                else:
                    pipe.decr(name)
            await pipe.execute()


LIMITER = web.AppKey("login_limiter", LoginLimiter)
