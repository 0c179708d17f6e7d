"""The supervisors' wallboard: queues now, today's figures per queue, recent
calls, updated live over a websocket."""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import redis.asyncio as aioredis
from aiohttp import WSMsgType, web

from crm_sync.call_store import PostgresCallStore
from crm_sync.stats import figures_by_queue
from hotline.core import metrics
from hotline.core.aio import cancel_and_wait
from hotline.core.errors import InvalidInput, UnavailableError
from hotline.core.live import LIVE_CHANNEL, QUEUES_KEY, call_view
from hotline.core.logs import get_logger
from hotline.core.people import WATCHERS
from hotline.web.common import POOL, REDIS, Route, html_response, json_response, principal, render

#: "Today" on the wallboard is the city's day, not UTC's.
CITY_TZ = ZoneInfo("Europe/Kyiv")
#: Service level threshold, seconds (answered within it counts as "in SL").
SL_SECONDS = 20

log = get_logger("hotline.web.wallboard")


async def wallboard(request: web.Request) -> web.Response:
    page = render("wallboard.html", name=principal(request).display_name)
    return html_response(page, headers={"Cache-Control": "no-store"})


async def api_recent_calls(request: web.Request) -> web.Response:
    try:
        limit = min(max(int(request.query.get("limit", "50")), 1), 500)
    except ValueError:
        raise InvalidInput("limit must be an integer", details={"field": "limit"}) from None
    calls = await PostgresCallStore(request.app[POOL]).recent_calls(limit)
    return json_response({"calls": [call_view(call) for call in calls]})


def start_of_today(now: datetime | None = None) -> datetime:
    """Midnight of the current day in the city (an aware datetime)."""
    local = (now or datetime.now(CITY_TZ)).astimezone(CITY_TZ)
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


async def api_today(request: web.Request) -> web.Response:
    """Today's figures per queue (the city's day), Asterisk's SL and SL2."""
    since = start_of_today()
    queues = await figures_by_queue(request.app[POOL], since, SL_SECONDS)
    return json_response({"since": since.isoformat(), "sl_seconds": SL_SECONDS, "queues": queues})


async def api_queues(request: web.Request) -> web.Response:
    raw = await request.app[REDIS].get(QUEUES_KEY)
    empty: dict[str, Any] = {"queues": [], "at": None}
    if not raw:
        return json_response(empty)
    try:
        data = json.loads(raw)
    except ValueError:
        log.warning("web_queues_unreadable", key=QUEUES_KEY)
        return json_response(empty)
    return json_response(data if isinstance(data, dict) else empty)


async def ws_live(request: web.Request) -> web.WebSocketResponse:
    """Forward the live channel to the browser until either side goes away.

    The subscription is made before the handshake completes, so nothing published after
    the browser sees the socket open is missed (the page reloads its data on open).
    """
    pubsub = request.app[REDIS].pubsub(ignore_subscribe_messages=True)
    try:
        await pubsub.subscribe(LIVE_CHANNEL)
    except (OSError, aioredis.RedisError) as exc:
        with contextlib.suppress(OSError, aioredis.RedisError):
            await pubsub.aclose()  # type: ignore[no-untyped-call]
        log.warning("web_live_unavailable", error=f"{type(exc).__name__}: {exc}")
        raise UnavailableError("the live feed is not available") from None
    ws = web.WebSocketResponse(heartbeat=30)
    try:
        await ws.prepare(request)

        async def forward() -> None:
            while not ws.closed:
                message = await pubsub.get_message(timeout=1.0)
                if message is not None and message.get("type") == "message":
                    data = message["data"]
                    text = data.decode(errors="replace") if isinstance(data, bytes) else str(data)
                    await ws.send_str(text)

        async def forward_then_close() -> None:
            try:
                await forward()
            except (OSError, aioredis.RedisError) as exc:  # Redis gone: let the page reconnect
                log.warning("web_live_lost", error=f"{type(exc).__name__}: {exc}")
            finally:
                if not ws.closed:
                    await ws.close()

        forwarder = asyncio.create_task(forward_then_close())
        metrics.WEBSOCKET_CLIENTS.inc()
        try:
            async for msg in ws:
                if msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                    break
        finally:
            metrics.WEBSOCKET_CLIENTS.dec()
            await cancel_and_wait(forwarder)
    finally:
        with contextlib.suppress(OSError, aioredis.RedisError):
            await pubsub.aclose()  # type: ignore[no-untyped-call]
    return ws


ROUTES = [
    Route("GET", "/wallboard", wallboard, WATCHERS),
    Route("GET", "/api/calls/recent", api_recent_calls, WATCHERS),
    Route("GET", "/api/stats/today", api_today, WATCHERS),
    Route("GET", "/api/queues", api_queues, WATCHERS),
    Route("GET", "/ws/live", ws_live, WATCHERS),
]
