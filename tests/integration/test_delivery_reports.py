"""The SMS gateway's webhooks and the opt-out link over HTTP, on the real
PostgreSQL: signed or refused, idempotent, and what they change."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import asyncpg
import pytest_asyncio
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from crm_sync.notifications.optout import OptOutLinks
from hotline.web.app import build_web_app
from hotline.web.delivery_reports import NOTIFICATIONS, Notifications, sign
from tests.support.appeals import Ids, appeals_case_store
from tests.support.databases import MakeDatabase
from tests.support.web import SESSION_KEY

Client = TestClient[web.Request, web.Application]
SECRET = b"gateway-shared-secret"
LINKS = OptOutLinks(SECRET, "https://1551.test")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pool(make_database: MakeDatabase) -> AsyncIterator[asyncpg.Pool]:
    async with appeals_case_store(make_database, "dlr") as p:
        yield p


@pytest_asyncio.fixture
async def client(pool: asyncpg.Pool, redis_client: aioredis.Redis) -> AsyncIterator[Client]:
    app = build_web_app(pool, redis_client, SESSION_KEY)
    app[NOTIFICATIONS] = Notifications(SECRET, LINKS, frozenset({"STOP", "СТОП"}))
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def _message(pool: asyncpg.Pool, citizen_id: int | None, provider_id: str,
                   status: str = "sent") -> int:
    event = await pool.fetchval(
        "INSERT INTO outbox (topic, key, payload, delivered_at) VALUES ('t', $1, '{}', now()) "
        "RETURNING id", f"dlr:{provider_id}")
    value: int = await pool.fetchval(
        """INSERT INTO outbox_messages (event_id, idempotency_key, provider, order_key,
               citizen_id, recipient, body, status, provider_message_id)
           VALUES ($1, $2, 'sms', $2, $3, '+380500000001', 'x', $4, $5) RETURNING id""",
        event, f"dlr:{provider_id}", citizen_id, status, provider_id)
    return value


async def _post(client: Client, path: str, data: dict[str, str],
                secret: bytes = SECRET) -> tuple[int, dict[str, str]]:
    body = json.dumps(data).encode()
    async with client.post(path, data=body, headers={
            "Content-Type": "application/json",
            "X-Hotline-Signature": sign(secret, body)}) as response:
        return response.status, await response.json()


async def test_a_delivery_report_is_signed_applied_once_and_never_undone(
    pool: asyncpg.Pool, client: Client
) -> None:
    message = await _message(pool, None, "gw-a1")
    report = {"id": "gw-a1", "status": "delivered"}
    assert (await _post(client, "/webhooks/sms/delivery", report, b"wrong"))[0] == 401
    assert await pool.fetchval("SELECT status FROM outbox_messages WHERE id = $1",
                               message) == "sent"
    assert await _post(client, "/webhooks/sms/delivery", report) == (200, {"result": "applied"})
    assert await _post(client, "/webhooks/sms/delivery", report) == (
        200, {"result": "duplicate"})
    late = {"id": "gw-a1", "status": "failed"}
    assert (await _post(client, "/webhooks/sms/delivery", late))[1] == {"result": "pending"}
    row = await pool.fetchrow("SELECT status, delivered_at FROM outbox_messages WHERE id = $1",
                              message)
    assert row["status"] == "delivered" and row["delivered_at"] is not None
    assert (await _post(client, "/webhooks/sms/delivery", {"id": "x", "status": "read"}))[0] \
        == 400


async def test_a_stop_reply_and_the_link_opt_a_citizen_out(
    pool: asyncpg.Pool, client: Client
) -> None:
    ids = Ids(pool)
    replier, clicker = await ids.citizen(), await ids.citizen()
    queued = await _message(pool, replier, "gw-b1", status="queued")
    phone = await pool.fetchval("SELECT phone FROM citizens WHERE id = $1", replier)
    assert await _post(client, "/webhooks/sms/inbound", {"from": phone, "text": "дякую"}) == (
        200, {"result": "ignored"})
    assert await _post(client, "/webhooks/sms/inbound", {"from": phone, "text": " стоп "}) == (
        200, {"result": "opted_out"})
    row = await pool.fetchrow("SELECT opted_out_at, opt_out_via FROM citizens WHERE id = $1",
                              replier)
    assert row["opted_out_at"] is not None and row["opt_out_via"] == "reply"
    assert await pool.fetchval("SELECT status FROM outbox_messages WHERE id = $1",
                               queued) == "cancelled"

    url = LINKS.url(clicker).removeprefix(LINKS.public_url)
    async with client.get(url) as page:  # a mail scanner's GET changes nothing
        assert page.status == 200 and "Unsubscribe" in await page.text()
    assert await pool.fetchval("SELECT opted_out_at FROM citizens WHERE id = $1",
                               clicker) is None
    async with client.post(url.replace(LINKS.token(clicker), "0" * 32)) as forged:
        assert forged.status == 400
    async with client.post(url) as done:
        assert done.status == 200
    assert await pool.fetchval("SELECT opt_out_via FROM citizens WHERE id = $1",
                               clicker) == "link"
