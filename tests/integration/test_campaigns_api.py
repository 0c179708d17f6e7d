"""Campaigns over HTTP (real PostgreSQL and Redis): a subscription confirmed through
its signed link, a campaign previewed, refused to its author's approval, approved
by a second supervisor, followed and cancelled; CSRF and roles enforced."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import UTC, datetime

import asyncpg
import pytest_asyncio
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from crm_sync.campaigns import ConfirmLinks, load_campaigns_config
from crm_sync.notifications.optout import OptOutLinks
from hotline.web.app import build_web_app
from hotline.web.campaigns import CAMPAIGNS_CONFIG
from hotline.web.delivery_reports import NOTIFICATIONS, Notifications
from tests.support.appeals import appeals_case_store
from tests.support.databases import MakeDatabase
from tests.support.paths import CONFIG_DIR
from tests.support.web import SESSION_KEY, User, add_user, csrf_in

Client = TestClient[web.Request, web.Application]
SECRET = b"api-test-secret"
CONFIRM = ConfirmLinks(SECRET, "https://1551.test")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pool(make_database: MakeDatabase) -> AsyncIterator[asyncpg.Pool]:
    async with appeals_case_store(make_database, "campaigns_api") as p:
        yield p


@pytest_asyncio.fixture
async def clients(pool: asyncpg.Pool, redis_client: aioredis.Redis
                  ) -> AsyncIterator[Callable[[], Awaitable[Client]]]:
    """Browsers of their own (cookie jars) on one app."""
    app = build_web_app(pool, redis_client, SESSION_KEY)
    app[NOTIFICATIONS] = Notifications(SECRET, OptOutLinks(SECRET, "https://1551.test"),
                                       frozenset({"STOP"}))
    app[CAMPAIGNS_CONFIG] = load_campaigns_config(CONFIG_DIR)
    server = TestServer(app)
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(server)

        async def new() -> Client:
            return await stack.enter_async_context(TestClient(server))
        yield new


async def signed_in(new: Callable[[], Awaitable[Client]], user: User) -> tuple[Client, str]:
    client = await new()
    token = csrf_in(await (await client.get("/login")).text())
    response = await client.post("/login", data={"login": user.login, "password": user.password,
                                                 "csrf": token}, allow_redirects=False)
    assert response.status == 302, await response.text()
    listing = await client.get("/api/campaigns")
    assert listing.status == 200, await listing.text()
    body = await listing.json()
    assert "emergencies" in body["topics"]
    return client, str(body["csrf"])


async def test_subscribe_confirm_preview_four_eyes_approve_and_cancel(
    pool: asyncpg.Pool, clients: Callable[[], Awaitable[Client]]
) -> None:
    district = await pool.fetchval("SELECT code FROM districts ORDER BY id LIMIT 1")
    author, author_csrf = await signed_in(clients, await add_user(pool, "supervisor"))
    second, second_csrf = await signed_in(clients, await add_user(pool, "admin"))

    sub = await author.post("/api/subscriptions", headers={"X-CSRF-Token": author_csrf},
                            data=json.dumps({"phone": "+380671112233", "district": district,
                                             "topic": "outages", "language": "uk"}))
    assert sub.status == 201, await sub.text()
    sub_id = (await sub.json())["id"]
    confirmation = await pool.fetchval(
        "SELECT count(*) FROM outbox WHERE topic = 'campaign.confirm' "
        "AND payload->>'subscription' = $1", str(sub_id))
    assert confirmation == 1

    citizen = await clients()
    bad = await citizen.get("/subscriptions/confirm", params={"s": sub_id, "t": "0" * 32})
    assert bad.status == 400
    page = await citizen.get("/subscriptions/confirm",
                             params={"s": sub_id, "t": CONFIRM.token(sub_id)})
    assert page.status == 200
    assert await pool.fetchval("SELECT confirmed_at FROM subscriptions WHERE id = $1",
                               sub_id) is None  # a link previewer confirms nothing
    done = await citizen.post(f"/subscriptions/confirm?s={sub_id}&t={CONFIRM.token(sub_id)}",
                              data={"csrf": csrf_in(await page.text())})
    assert done.status == 200, await done.text()
    assert await pool.fetchval("SELECT confirmed_at FROM subscriptions WHERE id = $1",
                               sub_id) is not None

    created = await author.post("/api/campaigns", headers={"X-CSRF-Token": author_csrf},
                                data=json.dumps({
                                    "topic": "outages", "districts": [district],
                                    "text_uk": "Завтра без води", "text_en": "No water",
                                    "send_at": datetime(2099, 1, 1, tzinfo=UTC).isoformat()}))
    assert created.status == 201, await created.text()
    campaign = await created.json()
    assert campaign["audience"] == 1 and campaign["status"] == "draft"
    path = f"/api/campaigns/{campaign['id']}"

    own = await author.post(f"{path}/approve", headers={"X-CSRF-Token": author_csrf})
    assert own.status == 403
    assert (await own.json())["error"] == "campaign_second_approver_required"
    no_csrf = await second.post(f"{path}/approve")
    assert no_csrf.status == 403
    approved = await second.post(f"{path}/approve", headers={"X-CSRF-Token": second_csrf})
    assert approved.status == 200, await approved.text()
    body = await approved.json()
    assert (body["status"], body["recipients"], body["progress"]["not_fanned_out"]) == (
        "approved", 1, 1)
    again = await second.post(f"{path}/approve", headers={"X-CSRF-Token": second_csrf})
    assert again.status == 409

    cancelled = await author.post(f"{path}/cancel", headers={"X-CSRF-Token": author_csrf})
    assert cancelled.status == 200
    assert (await cancelled.json())["status"] == "cancelled"


async def test_operators_subscribe_callers_but_do_not_run_campaigns(
    pool: asyncpg.Pool, clients: Callable[[], Awaitable[Client]]
) -> None:
    operator = await add_user(pool, "operator")
    client = await clients()
    token = csrf_in(await (await client.get("/login")).text())
    await client.post("/login", data={"login": operator.login, "password": operator.password,
                                      "csrf": token}, allow_redirects=False)
    assert (await client.get("/api/campaigns")).status == 403
