"""Routing rules edited by an admin over HTTP (real PostgreSQL and Redis): a rule
saved through the API changes where a new appeal goes; only admins and
supervisors may change rules, and only with the CSRF token."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import asyncpg
import pytest_asyncio
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from hotline.web.app import build_web_app
from tests.support.appeals import appeals_case_store
from tests.support.databases import MakeDatabase
from tests.support.web import SESSION_KEY, add_user, csrf_in, sign_in_form

Client = TestClient[web.Request, web.Application]
CATEGORY, DISTRICT = "billing_subsidies", "pecherskyi"
BASE = "/api/admin/routing"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pool(make_database: MakeDatabase) -> AsyncIterator[asyncpg.Pool]:
    async with appeals_case_store(make_database, "routing_admin") as p:
        yield p


@pytest_asyncio.fixture
async def client(pool: asyncpg.Pool, redis_client: aioredis.Redis) -> AsyncIterator[Client]:
    async with TestClient(TestServer(build_web_app(pool, redis_client, SESSION_KEY))) as c:
        yield c


async def where_it_goes(client: Client) -> str:
    response = await client.get(f"{BASE}/explain",
                                params={"category": CATEGORY, "district": DISTRICT})
    assert response.status == 200, await response.text()
    decision = (await response.json())["decision"]
    return f"{decision['rule']['executor_id']}:{decision['reason']}"


async def test_an_admin_rule_changes_where_appeals_go_and_can_be_switched_off(
    client: Client, pool: asyncpg.Pool
) -> None:
    csrf = await sign_in_form(client, await add_user(pool, "admin"))
    before = await where_it_goes(client)
    saved = await client.post(f"{BASE}/rules", headers={"X-CSRF-Token": csrf}, data=json.dumps({
        "executor": "rda_obolonskyi", "category": CATEGORY, "district": DISTRICT,
        "priority": 0, "name": "тимчасово: Оболонська РДА"}))
    assert saved.status == 201, await saved.text()
    rule_id = (await saved.json())["id"]
    obolon = await pool.fetchval("SELECT id FROM executors WHERE code = 'rda_obolonskyi'")
    assert (await where_it_goes(client)).startswith(f"{obolon}:")
    row = await pool.fetchrow("SELECT source, updated_by FROM routing_rules WHERE id = $1",
                              rule_id)
    assert row["source"] == "admin" and row["updated_by"]

    off = await client.post(f"{BASE}/rules/{rule_id}/deactivate",
                            headers={"X-CSRF-Token": csrf})
    assert off.status == 200
    assert await where_it_goes(client) == before


async def test_bad_input_is_named_and_nothing_is_written(
    client: Client, pool: asyncpg.Pool
) -> None:
    csrf = await sign_in_form(client, await add_user(pool, "supervisor"))
    count = await pool.fetchval("SELECT count(*) FROM routing_rules")
    for body, field in (("not json", None), (json.dumps({"category": CATEGORY}), "executor"),
                        (json.dumps({"executor": "nobody_here", "priority": 1}), "executor"),
                        (json.dumps({"executor": "rda_obolonskyi", "priority": "high"}),
                         "priority")):
        response = await client.post(f"{BASE}/rules", headers={"X-CSRF-Token": csrf},
                                     data=body)
        assert response.status == 400, body
        answer = await response.json()
        assert answer["error"] == "invalid_input"
        if field:
            assert field in answer["message"]
    assert await pool.fetchval("SELECT count(*) FROM routing_rules") == count


async def test_only_admins_and_supervisors_with_the_token_change_rules(
    client: Client, pool: asyncpg.Pool
) -> None:
    body = json.dumps({"executor": "rda_obolonskyi", "category": CATEGORY,
                       "district": DISTRICT, "priority": 0})
    operator = await add_user(pool, "operator")
    token = csrf_in(await (await client.get("/login")).text())
    await client.post("/login", data={"login": operator.login, "password": operator.password,
                                      "csrf": token})
    assert (await client.get(f"{BASE}/rules")).status == 403
    client.session.cookie_jar.clear()
    await sign_in_form(client, await add_user(pool, "admin"))
    changed = "SELECT max(updated_at) FROM routing_rules"
    before = await pool.fetchval(changed)
    refused = await client.post(f"{BASE}/rules", data=body)  # no CSRF token
    assert refused.status == 403
    assert await pool.fetchval(changed) == before
