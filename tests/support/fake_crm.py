"""A fake external CRM on loopback (aiohttp): takes appeal events, counts them per
Idempotency-Key on its own side, lists its appeals, and can be ``down`` (503),
``error`` (500), ``throttle`` (429), ``slow`` (answers after ``delay`` seconds) or ``up``."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web


@dataclass
class CrmAppeal:
    number: str
    status: str
    updated_at: datetime
    events: list[str] = field(default_factory=list)


class FakeCrm:
    def __init__(self, api_key: str = "crm-test-key") -> None:
        self.api_key = api_key
        self.mode = "up"
        self.delay = 0.0
        self.posts = 0
        self.keys: Counter[str] = Counter()  # accepted events per Idempotency-Key
        self.received: list[dict[str, Any]] = []
        self.appeals: dict[str, CrmAppeal] = {}
        self._ids: dict[str, str] = {}
        self._next = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/appeals/{number}/events", self._event)
        app.router.add_get("/appeals", self._list)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _authorised(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.api_key}"

    async def _event(self, request: web.Request) -> web.Response:
        self.posts += 1
        if self.mode == "slow":
            await asyncio.sleep(self.delay)
        if self.mode == "down":
            return web.json_response({"error": "down"}, status=503)
        if self.mode == "error":
            return web.json_response({"error": "boom"}, status=500)
        if self.mode == "throttle":
            return web.json_response({"error": "slow down"}, status=429)
        if not self._authorised(request):
            return web.json_response({"error": "unauthorised"}, status=401)
        key = request.headers.get("Idempotency-Key", "")
        if not key:
            return web.json_response({"error": "Idempotency-Key required"}, status=400)
        if key in self._ids:
            return web.json_response({"id": self._ids[key]})
        body = json.loads(await request.read())
        number = request.match_info["number"]
        self._ids[key] = f"crm-{next(self._next)}"
        self.keys[key] += 1
        self.received.append(body)
        appeal = self.appeals.setdefault(number, CrmAppeal(number, "", datetime.now(UTC)))
        appeal.status = str(body.get("status"))
        appeal.updated_at = datetime.now(UTC)
        appeal.events.append(key)
        return web.json_response({"id": self._ids[key]}, status=201)

    async def _list(self, request: web.Request) -> web.Response:
        if self.mode in ("down", "error"):
            return web.json_response({"error": self.mode}, status=503)
        if not self._authorised(request):
            return web.json_response({"error": "unauthorised"}, status=401)
        since = datetime.fromisoformat(request.query["since"])
        return web.json_response([
            {"number": a.number, "status": a.status, "updated_at": a.updated_at.isoformat()}
            for a in self.appeals.values() if a.updated_at >= since])
