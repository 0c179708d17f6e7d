"""Dead letters and a citizen's notification choices over HTTP (real PostgreSQL and
Redis): supervisors see masked messages and replay dead ones; operators record
consent, channel and language; roles and the CSRF token are enforced."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest_asyncio
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from hotline.web.app import build_web_app
from tests.support.appeals import Ids, appeals_case_store
from tests.support.databases import MakeDatabase
from tests.support.web import SESSION_KEY, add_user, sign_in_form

Client = TestClient[web.Request, web.Application]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pool(make_database: MakeDatabase) -> AsyncIterator[asyncpg.Pool]:
    async with appeals_case_store(make_database, "outbox_admin") as p:
        yield p


@pytest_asyncio.fixture
async def client(pool: asyncpg.Pool, redis_client: aioredis.Redis) -> AsyncIterator[Client]:
    async with TestClient(TestServer(build_web_app(pool, redis_client, SESSION_KEY))) as c:
        yield c


async def dead_letter(pool: asyncpg.Pool, citizen_id: int, phone: str) -> int:
    event = await pool.fetchval(
        "INSERT INTO outbox (topic, key, payload) VALUES ('test.admin', $1, '{}') RETURNING id",
        uuid.uuid4().hex)
    message: int = await pool.fetchval(
        """INSERT INTO outbox_messages (event_id, idempotency_key, provider, order_key,
               citizen_id, recipient, body, status, attempts, last_error)
           VALUES ($1, $2, 'sms', $3, $4, $5, 'Ваше звернення зареєстровано', 'dead', 8,
                   'gateway 500')
           RETURNING id""",
        event, uuid.uuid4().hex, f"sms:{citizen_id}", citizen_id, phone)
    return message


async def test_a_supervisor_sees_dead_letters_masked_and_replays_one(
    client: Client, pool: asyncpg.Pool
) -> None:
    phone = "+380661112233"
    citizen_id = await Ids(pool).citizen(f"+38066{uuid.uuid4().int % 10**7:07d}")
    message_id = await dead_letter(pool, citizen_id, phone)
    await sign_in_form(client, await add_user(pool, "supervisor"))
    listing = await (await client.get("/api/admin/outbox", params={"dead": "1"})).json()
    shown = next(m for m in listing["messages"] if m["id"] == message_id)
    assert shown["status"] == "dead" and shown["last_error"] == "gateway 500"
    assert phone not in json.dumps(listing) and shown["recipient"].startswith("+38066")
    replayed = await client.post(f"/api/admin/outbox/{message_id}/replay",
                                 headers={"X-CSRF-Token": listing["csrf"]})
    assert replayed.status == 200
    row = await pool.fetchrow("SELECT status, attempts FROM outbox_messages WHERE id = $1",
                              message_id)
    assert (row["status"], row["attempts"]) == ("queued", 0)
    again = await client.post(f"/api/admin/outbox/{message_id}/replay",
                              headers={"X-CSRF-Token": listing["csrf"]})
    assert again.status == 404  # no longer dead: nothing to replay


async def test_an_operator_records_consent_and_withdrawal_cancels_what_is_queued(
    client: Client, pool: asyncpg.Pool
) -> None:
    citizen_id = await Ids(pool).citizen()
    csrf = await sign_in_form(client, await add_user(pool, "operator"))
    url = f"/api/citizens/{citizen_id}/preferences"
    given = await client.put(url, headers={"X-CSRF-Token": csrf}, data=json.dumps(
        {"language": "en", "channel": "email", "email": "olena@example.org", "consent": True}))
    assert given.status == 200, await given.text()
    saved = await given.json()
    assert (saved["preferred_language"], saved["notify_channel"], saved["notify_consent"]) == (
        "en", "email", True)
    assert saved["consent_at"] is not None
    queued = await dead_letter(pool, citizen_id, "olena@example.org")
    await pool.execute("UPDATE outbox_messages SET status = 'queued' WHERE id = $1", queued)
    withdrawn = await client.put(url, headers={"X-CSRF-Token": csrf}, data=json.dumps(
        {"language": "en", "channel": "email", "email": "olena@example.org", "consent": False}))
    assert withdrawn.status == 200
    assert await pool.fetchval("SELECT status FROM outbox_messages WHERE id = $1",
                               queued) == "cancelled"
    for body, field in (({"consent": "yes"}, "consent"),
                        ({"consent": True, "channel": "pigeon"}, "channel"),
                        ({"consent": True, "channel": "email"}, "email"),
                        ({"consent": True, "language": "fr"}, "language")):
        bad = await client.put(url, headers={"X-CSRF-Token": csrf}, data=json.dumps(body))
        assert bad.status == 400 and field in (await bad.json())["message"], body
    missing = await client.get("/api/citizens/999999999/preferences")
    assert missing.status == 404


async def test_operators_may_not_replay_and_changes_need_the_token(
    client: Client, pool: asyncpg.Pool
) -> None:
    citizen_id = await Ids(pool).citizen()
    csrf = await sign_in_form(client, await add_user(pool, "operator"))
    assert (await client.get("/api/admin/outbox")).status == 403
    refused = await client.post("/api/admin/outbox/replay-dead",
                                headers={"X-CSRF-Token": csrf})
    assert refused.status == 403
    no_token = await client.put(f"/api/citizens/{citizen_id}/preferences",
                                data=json.dumps({"consent": True}))
    assert no_token.status == 403
    assert await pool.fetchval("SELECT notify_consent FROM citizens WHERE id = $1",
                               citizen_id) is False
