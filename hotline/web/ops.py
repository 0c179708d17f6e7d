"""Operations endpoints: ``/healthz`` (public, cheap)."""

from __future__ import annotations

import asyncpg
import redis.asyncio as aioredis
from aiohttp import web

from hotline.web.common import POOL, REDIS, Route, json_response


async def healthz(request: web.Request) -> web.Response:
    checks: dict[str, str] = {}
    try:
        await request.app[POOL].fetchval("SELECT 1")
        checks["database"] = "ok"
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        checks["database"] = "down"
    try:
        await request.app[REDIS].ping()
        checks["redis"] = "ok"
    except (OSError, aioredis.RedisError):
        checks["redis"] = "down"
    status = 200 if all(v == "ok" for v in checks.values()) else 503
    return json_response(checks, status=status)


ROUTES = [Route("GET", "/healthz", healthz, None)]
