"""The web app over HTTP against the real PostgreSQL and Redis (aiohttp's test server)."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from crm_sync.call_store import PostgresCallStore
from hotline.core.live import LIVE_CHANNEL, QUEUES_KEY
from hotline.core.privacy import mask_phone
from hotline.core.records import CallOutcome
from hotline.web.app import build_web_app
from hotline.web.auth import COOKIE
from hotline.web.common import ROUTE_ROLES
from hotline.web.live import HUB
from hotline.web.sessions import SESSION_TTL_SECONDS
from hotline.web.wallboard import start_of_today
from tests.support.web import (
    PASSWORD,
    SESSION_KEY,
    User,
    add_user,
    csrf_in,
    make_call,
    unique_queue,
)

#: Routes anyone may reach, on purpose.
PUBLIC = {"/login", "/healthz", "/readyz", "/metrics", "/static", "/openapi.json",
          # Open311: clients are servers with an api_key, checked by the handlers
          "/open311/v2/services.{format}", "/open311/v2/services/{code}.{format}",
          "/open311/v2/requests.{format}", "/open311/v2/requests/{id}.{format}",
          "/open311/v2/tokens/{token}.{format}",
          # the SMS gateway's webhooks (signed) and the opt-out link (a token)
          "/webhooks/sms/delivery", "/webhooks/sms/inbound", "/notifications/opt-out",
          # the external CRM's status webhook (signed)
          "/webhooks/crm/status",
          # a campaign subscription's confirmation link (a token; the page's CSRF token)
          "/subscriptions/confirm"}
#: Every route that needs a session, and how a request without one is turned away.
PROTECTED: list[tuple[str, str, str]] = [
    ("GET", "/", "page"),
    ("POST", "/logout", "page"),
    ("GET", "/wallboard", "page"),
    ("GET", "/api/calls/recent", "api"),
    ("GET", "/api/stats/today", "api"),
    ("GET", "/api/queues", "api"),
    ("GET", "/ws/live", "api"),
    ("GET", "/executor", "page"),
    ("GET", "/executor/appeals/{appeal_id}", "page"),
    ("POST", "/executor/appeals/{appeal_id}/status", "page"),
    ("POST", "/executor/appeals/{appeal_id}/decline", "page"),
    ("POST", "/executor/appeals/{appeal_id}/comments", "page"),
    ("GET", "/api/executor/appeals", "api"),
    ("GET", "/api/executor/appeals/{appeal_id}", "api"),
    ("GET", "/api/admin/routing/rules", "api"),
    ("POST", "/api/admin/routing/rules", "api"),
    ("POST", "/api/admin/routing/rules/{rule_id}/deactivate", "api"),
    ("POST", "/api/admin/routing/fallback", "api"),
    ("GET", "/api/admin/routing/explain", "api"),
    ("GET", "/api/admin/outbox", "api"),
    ("POST", "/api/admin/outbox/{message_id}/replay", "api"),
    ("POST", "/api/admin/outbox/replay-dead", "api"),
    ("GET", "/api/citizens/{citizen_id}/preferences", "api"),
    ("PUT", "/api/citizens/{citizen_id}/preferences", "api"),
    ("GET", "/api/campaigns", "api"),
    ("POST", "/api/campaigns", "api"),
    ("GET", "/api/campaigns/{campaign_id}", "api"),
    ("POST", "/api/campaigns/{campaign_id}/approve", "api"),
    ("POST", "/api/campaigns/{campaign_id}/cancel", "api"),
    ("POST", "/api/subscriptions", "api"),
    ("GET", "/admin/informing", "page"),
    ("GET", "/dashboard", "page"),
    ("GET", "/dashboard/csv/{name}.csv", "page"),
    ("GET", "/api/dashboard", "api"),
    ("GET", "/admin/announcements", "page"),
    ("GET", "/api/admin/announcements", "api"),
    ("POST", "/api/admin/announcements", "api"),
    ("PUT", "/api/admin/announcements/{announcement_id}/recording", "api"),
    ("POST", "/api/admin/announcements/{announcement_id}/cancel", "api"),
    ("GET", "/api/admin/hours", "api"),
    ("POST", "/api/admin/hours/override", "api"),
    ("GET", "/api/callbacks", "api"),
    # the in-call panel and the knowledge base (hotline.web.call_panel)
    ("GET", "/desk/call/{uniqueid}", "page"),
    ("GET", "/desk/knowledge", "page"),
    ("GET", "/api/desk/calls/{uniqueid}", "api"),
    ("POST", "/api/desk/calls/{uniqueid}/appeal", "api"),
    ("POST", "/api/desk/calls/{uniqueid}/disposition", "api"),
    ("POST", "/api/desk/calls/{uniqueid}/article", "api"),
    ("GET", "/api/desk/taxonomy", "api"),
    ("GET", "/api/desk/streets", "api"),
    ("GET", "/api/desk/kb", "api"),
    ("GET", "/api/desk/kb/{article_id}", "api"),
    ("GET", "/api/desk/directory", "api"),
    ("GET", "/api/admin/kb/articles", "api"),
    ("POST", "/api/admin/kb/articles", "api"),
    ("GET", "/api/admin/kb/articles/{article_id}", "api"),
    ("POST", "/api/admin/kb/articles/{article_id}", "api"),
    ("GET", "/reports", "page"),
    ("GET", "/api/reports/{view}", "api"),
    ("GET", "/desk", "page"),
    ("GET", "/api/desk/state", "api"),
    ("POST", "/api/desk/presence", "api"),
    ("POST", "/api/desk/call", "api"),
    ("GET", "/ws/desk", "api"),
]
WATCHER_ONLY = ["/wallboard", "/api/calls/recent", "/api/stats/today", "/api/queues", "/ws/live"]


# --- fixtures ---------------------------------------------------------------------


@pytest_asyncio.fixture
async def app(pg_pool: asyncpg.Pool, redis_client: aioredis.Redis) -> web.Application:
    return build_web_app(pg_pool, redis_client, SESSION_KEY)


@pytest_asyncio.fixture
async def client(app: web.Application) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


@pytest_asyncio.fixture
async def supervisor(pg_pool: asyncpg.Pool) -> User:
    return await add_user(pg_pool, "supervisor", "Черговий <супервізор> & Ко")


@pytest_asyncio.fixture
async def operator(pg_pool: asyncpg.Pool) -> User:
    return await add_user(pg_pool, "operator", "Оператор 101")


Client = TestClient[web.Request, web.Application]


async def form_token(client: Client) -> str:
    """The CSRF token a page rendered now would carry (the sign-in form is public)."""
    return csrf_in(await (await client.get("/login")).text())


async def post_form(
    client: Client, path: str, data: dict[str, str] | None = None, **kwargs: Any
) -> aiohttp.ClientResponse:
    """A form submitted from one of our pages, as a browser would (with its token)."""
    form = {**(data or {}), "csrf": await form_token(client)}
    return await client.post(path, data=form, allow_redirects=False, **kwargs)


async def sign_in(client: Client, user: User) -> aiohttp.ClientResponse:
    response = await post_form(client, "/login", {"login": user.login, "password": user.password})
    assert response.status == 302, await response.text()
    assert response.headers["Location"] == "/"
    return response


async def get_with_token(client: Client, path: str, token: str) -> tuple[int, str]:
    """GET ``path`` with only ``token`` as the session cookie (not the client's jar)."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        response = await session.get(
            client.make_url(path), headers={"Cookie": f"{COOKIE}={token}"},
            allow_redirects=False,
        )
        return response.status, response.headers.get("Location", "")


def session_token(client: Client) -> str:
    for cookie in client.session.cookie_jar:
        if cookie.key == COOKIE:
            return cookie.value
    raise AssertionError("no session cookie")


# --- public routes, authentication ------------------------------------------------


async def test_healthz_is_public_and_checks_both_backends(client: Client) -> None:
    response = await client.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"database": "ok", "redis": "ok"}


async def test_healthz_reports_redis_down(pg_pool: asyncpg.Pool) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dead = aioredis.Redis.from_url(f"redis://127.0.0.1:{port}/0", socket_connect_timeout=0.5)
    try:
        async with TestClient(TestServer(build_web_app(pg_pool, dead, SESSION_KEY))) as test_client:
            response = await test_client.get("/healthz")
            assert response.status == 503
            assert await response.json() == {"database": "ok", "redis": "down"}
    finally:
        await dead.aclose()


async def test_login_page_is_public(client: Client) -> None:
    response = await client.get("/login")
    assert response.status == 200
    text = await response.text()
    assert '<form method="post" action="/login">' in text
    assert 'name="login"' in text and 'name="password"' in text
    assert csrf_in(text)


def test_every_route_is_public_or_in_the_role_table(app: web.Application) -> None:
    """A route added without a role entry would be forbidden to all; without a test, untested."""
    canonical = {resource.canonical for resource in app.router.resources()}
    role_table = app[ROUTE_ROLES]
    assert canonical == set(role_table)
    public = {path for path, roles in role_table.items() if roles == ()}
    assert public == PUBLIC
    assert {path for _, path, _ in PROTECTED} == set(role_table) - public


@pytest.mark.parametrize(("method", "path", "kind"), PROTECTED)
async def test_protected_route_without_session(
    client: Client, method: str, path: str, kind: str
) -> None:
    headers = {"X-CSRF-Token": await form_token(client)} if method != "GET" else {}
    response = await client.request(method, path, allow_redirects=False, headers=headers)
    if kind == "api":
        assert response.status == 401
        assert (await response.json())["error"] == "not_signed_in"
    else:
        assert response.status == 302
        assert response.headers["Location"] == "/login"


@pytest.mark.parametrize(("method", "path", "kind"), PROTECTED)
async def test_protected_route_with_forged_cookie(
    client: Client, method: str, path: str, kind: str
) -> None:
    client.session.cookie_jar.update_cookies({COOKIE: f"forged-{'a' * 40}"})
    headers = {"X-CSRF-Token": await form_token(client)} if method != "GET" else {}
    response = await client.request(method, path, allow_redirects=False, headers=headers)
    assert response.status == (401 if kind == "api" else 302)


async def test_unknown_paths_reveal_nothing_without_session(client: Client) -> None:
    assert (await client.get("/api/nope", allow_redirects=False)).status == 401
    response = await client.get("/admin", allow_redirects=False)
    assert (response.status, response.headers["Location"]) == (302, "/login")


# --- signing in -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"login": "", "password": PASSWORD}, "Enter your login and password."),
        ({"login": "   ", "password": PASSWORD}, "Enter your login and password."),
        ({"password": PASSWORD}, "Enter your login and password."),
        ({"login": "someone", "password": ""}, "Enter your login and password."),
        ({"login": "some one", "password": PASSWORD}, "A login is up to 64 letters"),
        ({"login": "nul\x00byte", "password": PASSWORD}, "A login is up to 64 letters"),
        ({"login": "x" * 65, "password": PASSWORD}, "A login is up to 64 letters"),
        ({"login": "x'; DROP TABLE operators;--", "password": PASSWORD},
         "A login is up to 64 letters"),
    ],
)
async def test_sign_in_with_bad_form_field_is_400_with_a_message(
    client: Client, form: dict[str, str], message: str
) -> None:
    response = await post_form(client, "/login", form)
    assert response.status == 400
    assert response.content_type == "text/html"
    text = await response.text()
    assert 'role="alert"' in text and message in text
    assert COOKIE not in response.cookies


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"login=%FF%FE&password=x", "application/x-www-form-urlencoded"),
        (b"login=a&password=b", "application/x-www-form-urlencoded; charset=no-such-charset"),
        (b'{"login": "a", "password": "b"}', "application/json"),
        (b"--zzz\r\nbroken", "multipart/form-data; boundary=zzz"),
    ],
)
async def test_sign_in_with_unreadable_body_is_400_not_500(
    client: Client, body: bytes, content_type: str
) -> None:
    headers = {"Content-Type": content_type, "X-CSRF-Token": await form_token(client)}
    response = await client.post("/login", data=body, headers=headers, allow_redirects=False)
    assert response.status == 400
    assert 'role="alert"' in await response.text()


async def test_sign_in_with_a_file_instead_of_a_login_is_400(client: Client) -> None:
    form = aiohttp.FormData()
    form.add_field("login", b"admin", filename="login.txt")
    form.add_field("password", PASSWORD)
    form.add_field("csrf", await form_token(client))
    response = await client.post("/login", data=form, allow_redirects=False)
    assert response.status == 400
    assert "must be text fields" in await response.text()


async def test_wrong_password_is_401(client: Client, supervisor: User) -> None:
    for login, password in [
        (supervisor.login, supervisor.password + "x"),
        (f"ghost_{uuid.uuid4().hex[:8]}", PASSWORD),
        (supervisor.login, "x" * 5000),
    ]:
        response = await post_form(client, "/login", {"login": login, "password": password})
        assert response.status == 401
        assert "Wrong login or password." in await response.text()
        assert COOKIE not in response.cookies


async def test_session_cookie_is_httponly_and_samesite_strict(
    client: Client, supervisor: User
) -> None:
    response = await sign_in(client, supervisor)
    headers = [h for h in response.headers.getall("Set-Cookie") if h.startswith(f"{COOKIE}=")]
    assert len(headers) == 1
    attributes = {part.strip().split("=")[0].lower(): part.strip()
                  for part in headers[0].split(";")[1:]}
    assert "httponly" in attributes
    assert attributes["samesite"].lower() == "samesite=strict"
    assert attributes["path"] == "Path=/"
    assert attributes["max-age"] == f"Max-Age={SESSION_TTL_SECONDS}"


async def test_supervisor_signs_in_and_lands_on_the_wallboard(
    client: Client, supervisor: User
) -> None:
    await sign_in(client, supervisor)
    response = await client.get("/")
    assert response.status == 200
    assert response.url.path == "/wallboard"
    text = await response.text()
    assert "wallboard" in text
    # the display name is escaped, not injected
    assert "Черговий &lt;супервізор&gt; &amp; Ко" in text
    assert "<супервізор>" not in text
    assert response.headers["Cache-Control"] == "no-store"


async def test_signing_in_again_drops_the_previous_session(
    client: Client, supervisor: User
) -> None:
    await sign_in(client, supervisor)
    first = session_token(client)
    await sign_in(client, supervisor)
    second = session_token(client)
    assert first != second
    assert await get_with_token(client, "/api/queues", first) == (401, "")
    assert await get_with_token(client, "/api/queues", second) == (200, "")


async def test_logout_kills_the_session(client: Client, supervisor: User) -> None:
    await sign_in(client, supervisor)
    token = session_token(client)
    assert await get_with_token(client, "/api/queues", token) == (200, "")
    response = await post_form(client, "/logout")
    assert (response.status, response.headers["Location"]) == (302, "/login")
    # the cookie is cleared in the browser …
    assert response.cookies[COOKIE].value == ""
    assert (await client.get("/api/queues")).status == 401
    # … and the token is dead on the server, even when replayed
    assert await get_with_token(client, "/api/queues", token) == (401, "")
    assert await get_with_token(client, "/wallboard", token) == (302, "/login")


# --- roles ------------------------------------------------------------------------


@pytest.mark.parametrize("path", WATCHER_ONLY)
async def test_operator_is_forbidden_the_wallboard_and_api(
    client: Client, operator: User, path: str
) -> None:
    await sign_in(client, operator)
    response = await client.get(path, allow_redirects=False)
    assert response.status == 403
    if path.startswith(("/api/", "/ws/")):
        assert (await response.json())["error"] == "forbidden"
    else:
        assert "not available for your role" in await response.text()


async def test_operator_home_is_a_page_not_a_403(client: Client, operator: User) -> None:
    await sign_in(client, operator)
    response = await client.get("/", allow_redirects=False)
    assert (response.status, response.headers["Location"]) == (302, "/desk")  # their desk
    response = await client.get("/desk", allow_redirects=False)
    assert response.status == 200
    text = await response.text()
    assert "Оператор 101" in text and 'action="/logout"' in text
    assert (await post_form(client, "/logout")).status == 302


@pytest.mark.parametrize("role", ["admin", "leadership"])
async def test_other_watchers_see_the_wallboard(
    client: Client, pg_pool: asyncpg.Pool, role: str
) -> None:
    await sign_in(client, await add_user(pg_pool, role))
    assert (await client.get("/wallboard")).status == 200
    assert (await client.get("/api/stats/today")).status == 200


async def test_signed_in_unknown_path_is_404_and_wrong_method_405(
    client: Client, supervisor: User
) -> None:
    await sign_in(client, supervisor)
    assert (await client.get("/no/such/page", allow_redirects=False)).status == 404
    assert (await client.get("/logout", allow_redirects=False)).status == 405


# --- API --------------------------------------------------------------------------


async def test_recent_calls_newest_first_with_masked_numbers(
    client: Client, supervisor: User, pg_pool: asyncpg.Pool
) -> None:
    tag = uuid.uuid4().hex[:8]
    now = datetime.now(UTC)
    store = PostgresCallStore(pg_pool)
    calls = [
        make_call(tag, now - timedelta(minutes=3), caller_name="Петро Іваненко",
                  caller_number="+380441112233"),
        make_call(tag, now - timedelta(minutes=1), caller_name="Ґанна Їжак-Євтушенко",
                  outcome=CallOutcome.ABANDONED, operator_name=None, talk_seconds=None),
        make_call(tag, now - timedelta(minutes=2), caller_number="101", caller_name=""),
    ]
    for call in calls:
        await store.save_call(call)
    await sign_in(client, supervisor)

    response = await client.get("/api/calls/recent", params={"limit": "500"})
    assert response.status == 200
    assert response.content_type == "application/json"
    body = await response.json()
    ours = [c for c in body["calls"] if c["call_key"].startswith(f"webtest:{tag}:")]
    assert [c["call_key"] for c in ours] == [calls[1].call_key, calls[2].call_key,
                                             calls[0].call_key]
    newest = ours[0]
    assert newest["caller_name"] == "Ґанна Їжак-Євтушенко"
    assert newest["outcome"] == "abandoned" and newest["operator_name"] is None
    assert datetime.fromisoformat(newest["started_at"]) == calls[1].started_at
    assert [c["caller_number"] for c in ours] == ["+38067*****67", "101", "+38044*****33"]
    # only what the wallboard shows leaves the server
    assert set(newest) == {"call_key", "started_at", "caller_number", "caller_name",
                           "ivr_choice", "queue", "wait_seconds", "talk_seconds",
                           "operator_name", "outcome"}
    started = [datetime.fromisoformat(c["started_at"]) for c in body["calls"]]
    assert started == sorted(started, reverse=True)
    # the raw body is UTF-8 JSON, not \\u escapes
    assert "Ґанна".encode() in await response.read()


async def test_recent_calls_limit(client: Client, supervisor: User, pg_pool: asyncpg.Pool) -> None:
    store = PostgresCallStore(pg_pool)
    now = datetime.now(UTC)
    tag = uuid.uuid4().hex[:8]
    for seconds in (1, 2):
        await store.save_call(make_call(tag, now - timedelta(seconds=seconds)))
    await sign_in(client, supervisor)
    one = await (await client.get("/api/calls/recent", params={"limit": "1"})).json()
    assert len(one["calls"]) == 1
    zero = await client.get("/api/calls/recent", params={"limit": "0"})  # clamped to 1
    assert zero.status == 200 and len((await zero.json())["calls"]) == 1


@pytest.mark.parametrize("limit", ["abc", "", "1.5", "10; DROP TABLE calls"])
async def test_recent_calls_bad_limit_is_400(client: Client, supervisor: User, limit: str) -> None:
    await sign_in(client, supervisor)
    response = await client.get("/api/calls/recent", params={"limit": limit})
    assert response.status == 400
    body = await response.json()
    assert body["error"] == "invalid_input" and body["message"] == "limit must be an integer"


@pytest.mark.parametrize(
    ("number", "masked"),
    [("+380671234567", "+38067*****67"), ("0671234567", "067*****67"),
     ("1234567", "*****67"), ("12345", "***45"), ("1551", "1551"), ("", "")],
)
def test_mask_phone(number: str, masked: str) -> None:
    assert mask_phone(number) == masked


async def _today(client: Client) -> dict[str, dict[str, Any]]:
    response = await client.get("/api/stats/today")
    assert response.status == 200
    body = await response.json()
    assert body["sl_seconds"] == 20
    assert datetime.fromisoformat(body["since"]) == start_of_today()
    return {row["queue"]: row for row in body["queues"]}


async def test_stats_today_aggregates_per_queue(
    client: Client, supervisor: User, pg_pool: asyncpg.Pool
) -> None:
    queue, other = unique_queue("stats"), unique_queue("other")
    tag = uuid.uuid4().hex[:8]
    since = start_of_today()

    def at(second: int) -> datetime:
        return since + timedelta(seconds=second)

    rows = [
        make_call(tag, at(1), queue=queue, wait_seconds=5, talk_seconds=60),
        make_call(tag, at(2), queue=queue, wait_seconds=20, talk_seconds=120),  # SL boundary
        make_call(tag, at(3), queue=queue, wait_seconds=45, talk_seconds=30),
        make_call(tag, at(4), queue=queue, outcome=CallOutcome.ABANDONED, wait_seconds=70,
                  talk_seconds=None),
        make_call(tag, at(5), queue=queue, outcome=CallOutcome.TIMEOUT, wait_seconds=300,
                  talk_seconds=None),
        # not counted: still in progress, and yesterday's call
        make_call(tag, at(6), queue=queue, outcome=CallOutcome.IN_PROGRESS),
        make_call(tag, since - timedelta(seconds=1), queue=queue, wait_seconds=1),
        make_call(tag, at(7), queue=other, outcome=CallOutcome.ABANDONED, wait_seconds=3),
    ]
    await sign_in(client, supervisor)
    before = await _today(client)
    store = PostgresCallStore(pg_pool)
    for row in rows:
        await store.save_call(row)
    ivr_only = [make_call(tag, at(8 + n), queue=None, outcome=CallOutcome.IVR_ONLY,
                          wait_seconds=None, talk_seconds=None, operator_name=None)
                for n in range(2)]
    for row in ivr_only:
        await store.save_call(row)

    after = await _today(client)
    assert after[queue] == {
        "queue": queue, "offered": 5, "answered": 3, "abandoned": 1, "ivr_only": 0,
        "answered_within_sl": 2, "service_level": 66.7, "service_level2": 50.0,
        "asa": 23.3, "avg_talk": 70.0,
    }
    assert after[other] == {
        "queue": other, "offered": 1, "answered": 0, "abandoned": 1, "ivr_only": 0,
        "answered_within_sl": 0, "service_level": None, "service_level2": 100.0,
        "asa": None, "avg_talk": None,
    }
    # calls that never reached a queue land in "(ivr)", shared with other tests: compare counts
    ivr_before = before.get("(ivr)", {"offered": 0, "ivr_only": 0})
    assert after["(ivr)"]["ivr_only"] - ivr_before["ivr_only"] == 2
    assert after["(ivr)"]["offered"] - ivr_before["offered"] == 2


def test_start_of_today_is_kyiv_midnight() -> None:
    # 2026-03-01 23:30 UTC is already 2 March in Kyiv (UTC+2 in winter)
    now = datetime(2026, 3, 1, 23, 30, tzinfo=UTC)
    assert start_of_today(now) == datetime(2026, 3, 1, 22, 0, tzinfo=UTC)
    # summer time: UTC+3
    assert start_of_today(datetime(2026, 7, 1, 12, 0, tzinfo=UTC)) == datetime(
        2026, 6, 30, 21, 0, tzinfo=UTC
    )


async def test_queues_snapshot_from_redis(
    client: Client, supervisor: User, redis_client: aioredis.Redis
) -> None:
    await sign_in(client, supervisor)
    saved = await redis_client.get(QUEUES_KEY)
    snapshot = {"queues": [{"queue": "housing", "callers": 3, "longest_hold": 41,
                            "available": 1, "logged_in": 4}], "at": "2026-03-02T09:00:00+00:00"}
    try:
        await redis_client.set(QUEUES_KEY, json.dumps(snapshot))
        assert await (await client.get("/api/queues")).json() == snapshot
        await redis_client.set(QUEUES_KEY, "{not json")
        response = await client.get("/api/queues")
        assert response.status == 200
        assert await response.json() == {"queues": [], "at": None}
        await redis_client.delete(QUEUES_KEY)
        assert await (await client.get("/api/queues")).json() == {"queues": [], "at": None}
    finally:
        if saved is not None:
            await redis_client.set(QUEUES_KEY, saved)


# --- live feed --------------------------------------------------------------------


async def test_ws_live_forwards_redis_messages(
    client: Client, supervisor: User, redis_client: aioredis.Redis
) -> None:
    await sign_in(client, supervisor)
    marker = uuid.uuid4().hex
    async with client.ws_connect("/ws/live") as ws:
        # subscribed before the handshake completed: the first publish is not lost
        message = {"type": "call", "event": "answered", "caller_name": "Олена", "id": marker}
        receivers = await redis_client.publish(LIVE_CHANNEL, json.dumps(message,
                                                                         ensure_ascii=False))
        assert receivers >= 1
        await redis_client.publish(LIVE_CHANNEL, json.dumps({"type": "queues", "id": marker}))
        async with asyncio.timeout(10):
            first = await ws.receive_json()
            second = await ws.receive_json()
        assert first == message
        assert second == {"type": "queues", "id": marker}


async def test_ws_live_is_one_subscriber_per_process_whatever_the_sockets(
    client: Client, app: web.Application, supervisor: User, redis_client: aioredis.Redis
) -> None:
    await sign_in(client, supervisor)
    hub = app[HUB]

    async def subscribers() -> int:
        counts = await redis_client.pubsub_numsub(LIVE_CHANNEL)
        return int(counts[0][1])

    async with client.ws_connect("/ws/live"):
        with_one = await subscribers()
        assert hub.count == 1
        async with client.ws_connect("/ws/live"), client.ws_connect("/ws/live"):
            assert await subscribers() == with_one  # the process's one subscriber
            assert hub.count == 3
    async with asyncio.timeout(10):  # the server notices the close asynchronously: poll
        while hub.count:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    assert await subscribers() == with_one


@pytest.mark.parametrize(("role", "home"), [("leadership", "/dashboard"),
                                            ("supervisor", "/wallboard"),
                                            ("admin", "/wallboard"),
                                            ("executor", "/executor")])
async def test_each_role_lands_on_its_own_page(
    client: Client, pg_pool: asyncpg.Pool, role: str, home: str
) -> None:
    await sign_in(client, await add_user(pg_pool, role))
    response = await client.get("/", allow_redirects=False)
    assert (response.status, response.headers["Location"]) == (302, home)
