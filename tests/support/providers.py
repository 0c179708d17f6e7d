"""Loopback providers for the relay's tests: a real SMTP server (aiosmtpd) and an
SMS gateway (aiohttp) that can be slow, down, or answer 429 with Retry-After.
Both count what arrives, per idempotency key, on their own side."""

from __future__ import annotations

import asyncio
import email
import itertools
import uuid
from collections import Counter
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

from aiohttp import web
from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass
class SmtpSink:
    """What the SMTP server received."""

    messages: list[Message] = field(default_factory=list)
    raws: list[bytes] = field(default_factory=list)  # as received: what DKIM verifies

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        self.raws.append(raw)
        self.messages.append(email.message_from_bytes(raw))
        return "250 OK"

    def keys(self) -> Counter[str]:
        return Counter(str(m["X-Hotline-Idempotency-Key"]) for m in self.messages)


class LoopbackSmtp:
    def __init__(self) -> None:
        self.sink = SmtpSink()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: SMTP(self.sink, hostname="smtp.test", loop=loop), "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@dataclass
class Arrival:
    key: str
    to: str
    text: str
    id: str


class LoopbackGateway:
    """``mode``: ``up``, ``down`` (503), ``throttle`` (429 + Retry-After), ``slow``
    (answers after ``delay`` seconds). A repeated Idempotency-Key gets the first id."""

    def __init__(self, api_key: str = "gateway-test-key") -> None:
        self.api_key = api_key
        self.mode = "up"
        self.delay = 0.0
        self.retry_after = "1"
        self.arrivals: list[Arrival] = []
        self.by_key: dict[str, Arrival] = {}
        self.posts = 0
        self.refused = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._ids = itertools.count(1)
        self._run = uuid.uuid4().hex[:8]  # ids unique across gateways, as a real one's are
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _messages(self, request: web.Request) -> web.Response:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._answer(request)
        finally:
            self.in_flight -= 1

    async def _answer(self, request: web.Request) -> web.Response:
        self.posts += 1
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return web.json_response({"error": "unauthorised"}, status=401)
        if self.mode == "down":
            self.refused += 1
            return web.json_response({"error": "unavailable"}, status=503)
        if self.mode == "throttle":
            self.refused += 1
            return web.json_response({"error": "slow down"}, status=429,
                                     headers={"Retry-After": self.retry_after})
        if self.mode == "slow":
            await asyncio.sleep(self.delay)
        body: dict[str, Any] = await request.json()
        if not str(body.get("to", "")).startswith("+"):
            return web.json_response({"error": "bad number"}, status=400)
        key = request.headers.get("Idempotency-Key", "")
        known = self.by_key.get(key)
        if known is None:
            known = Arrival(key, body["to"], body["text"], f"gw-{self._run}-{next(self._ids)}")
            self.by_key[key] = known
            self.arrivals.append(known)
        return web.json_response({"id": known.id}, status=202)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/messages", self._messages)
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
