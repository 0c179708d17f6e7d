"""The supervisors' wallboard: queues now, today's figures per queue, recent
calls, updated live over a websocket."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from crm_sync.call_store import PostgresCallStore
from crm_sync.stats import figures_by_queue
from hotline.core.errors import InvalidInput
from hotline.core.live import QUEUES_KEY, call_view
from hotline.core.logs import get_logger
from hotline.core.people import WATCHERS
from hotline.web.common import (
    POOL,
    REDIS,
    Route,
    html_response,
    json_response,
    principal,
    render,
    session,
)
from hotline.web.guard import csrf_token
from hotline.web.live import HUB

#: "Today" on the wallboard is the city's day, not UTC's.
CITY_TZ = ZoneInfo("Europe/Kyiv")
#: Service level threshold, seconds (answered within it counts as "in SL").
SL_SECONDS = 20

log = get_logger("hotline.web.wallboard")


async def wallboard(request: web.Request) -> web.Response:
    page = render("wallboard.html", name=principal(request).display_name,
                  csrf=csrf_token(request))
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
    """The live channel, forwarded to the browser until it leaves or its session ends
    (through the process's one subscriber: see :mod:`hotline.web.live`)."""
    current = session(request)
    return await request.app[HUB].serve(request, current.who.login, current.sid)


ROUTES = [
    Route("GET", "/wallboard", wallboard, WATCHERS),
    Route("GET", "/api/calls/recent", api_recent_calls, WATCHERS),
    Route("GET", "/api/stats/today", api_today, WATCHERS),
    Route("GET", "/api/queues", api_queues, WATCHERS),
    Route("GET", "/ws/live", ws_live, WATCHERS),
]
