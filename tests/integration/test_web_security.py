"""The web side under attack and under load, against the real PostgreSQL and Redis:
forged sessions, sign-in storms, hundreds of websockets, sessions that must end
with their user, cross-site requests, and what the logs and the audit keep."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest
import pytest_asyncio
import redis.asyncio as aioredis
import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from crm_sync.people import deactivate_person, upsert_operator
from hotline.core.live import LIVE_CHANNEL
from hotline.web.app import build_web_app
from hotline.web.auth import COOKIE
from hotline.web.common import REDIS
from hotline.web.guard import CONTENT_SECURITY_POLICY, CSRF_COOKIE
from hotline.web.live import CLOSE_SIGNED_OUT, HUB
from hotline.web.options import WebOptions
from hotline.web.sessions import KEY_PREFIX, session_id
from tests.support.web import (
    PASSWORD,
    SESSION_KEY,
    User,
    add_user,
    csrf_in,
    sign_in_session,
)

Client = TestClient[web.Request, web.Application]
EVIL = "https://evil.example"


@contextlib.asynccontextmanager
async def serve(
    pool: asyncpg.Pool, redis: aioredis.Redis, **options: Any
) -> AsyncIterator[Client]:
    app = build_web_app(pool, redis, SESSION_KEY, WebOptions(**options))
    async with TestClient(TestServer(app)) as client:
        yield client


@pytest_asyncio.fixture
async def client(pg_pool: asyncpg.Pool, redis_client: aioredis.Redis) -> AsyncIterator[Client]:
    async with serve(pg_pool, redis_client) as test_client:
        yield test_client


@pytest_asyncio.fixture
async def supervisor(pg_pool: asyncpg.Pool) -> User:
    return await add_user(pg_pool, "supervisor")


def fresh_address() -> str:
    """A client address of our own (documentation range), so that limits do not
    leak between tests that all come from 127.0.0.1."""
    return f"203.0.113.{uuid.uuid4().int % 250 + 1}"


async def form_token(client: Client) -> str:
    return csrf_in(await (await client.get("/login")).text())


async def sign_in(
    client: Client, user: User, password: str | None = None, **headers: str
) -> aiohttp.ClientResponse:
    token = await form_token(client)
    return await client.post(
        "/login", data={"login": user.login, "password": password or user.password,
                        "csrf": token},
        headers=headers, allow_redirects=False,
    )


async def signed_in(client: Client, user: User) -> str:
    response = await sign_in(client, user)
    assert response.status == 302, await response.text()
    return response.cookies[COOKIE].value


async def status_with_token(client: Client, path: str, token: str) -> int:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        response = await http.get(client.make_url(path), allow_redirects=False,
                                  headers={"Cookie": f"{COOKIE}={token}"})
        return response.status


async def sign_out_with(client: Client, token: str) -> int:
    """POST /logout from a browser that holds ``token`` (not the client's own jar)."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        page = await http.get(client.make_url("/login"), headers={"Cookie": f"{COOKIE}={token}"})
        nonce = page.cookies[CSRF_COOKIE].value
        response = await http.post(
            client.make_url("/logout"), data={"csrf": csrf_in(await page.text())},
            headers={"Cookie": f"{COOKIE}={token}; {CSRF_COOKIE}={nonce}"},
            allow_redirects=False,
        )
        return response.status


async def closed_with(ws: aiohttp.ClientWebSocketResponse) -> int | None:
    """Read until the server closes the socket; its close code."""
    async with asyncio.timeout(15):
        while True:
            msg = await ws.receive()
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                            aiohttp.WSMsgType.CLOSING):
                return ws.close_code


async def audit_rows(pool: asyncpg.Pool, address: str) -> list[tuple[Any, ...]]:
    rows = await pool.fetch(
        "SELECT login, outcome, reason FROM sign_in_audit WHERE client_address = $1 "
        "ORDER BY id", address,
    )
    return [tuple(row.values()) for row in rows]


# --- 1. sessions Redis cannot vouch for ----------------------------------------------


async def test_forged_admin_session_written_into_redis_is_refused(
    client: Client, supervisor: User, redis_client: aioredis.Redis
) -> None:
    token = secrets.token_urlsafe(32)
    key = KEY_PREFIX + session_id(token)
    forged = {"login": supervisor.login, "display_name": "Mallory", "role": "admin",
              "epoch": 1}
    await redis_client.set(key, json.dumps(forged), ex=60)
    try:
        assert await status_with_token(client, "/api/queues", token) == 401
        assert await status_with_token(client, "/wallboard", token) == 302
    finally:
        await redis_client.delete(key)
    # a real session of the same person works: the refusal is the MAC's doing
    assert await status_with_token(client, "/api/queues", await signed_in(client, supervisor)) \
        == 200


# --- 3. sign-in storms ----------------------------------------------------------------


async def test_300_parallel_bad_sign_ins_leave_healthz_answering_and_get_429s(
    pg_pool: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    address = fresh_address()
    async with serve(pg_pool, redis_client, trusted_proxies=("127.0.0.1",)) as client:
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                         cookie_jar=jar) as http:
            async with http.get(client.make_url("/login")) as page:
                token = csrf_in(await page.text())

            async def guess(n: int) -> int:
                form = {"login": f"ghost_{n}", "password": f"guess-{n}", "csrf": token}
                async with http.post(client.make_url("/login"), data=form,
                                     headers={"X-Forwarded-For": address},
                                     allow_redirects=False) as response:
                    await response.read()
                    if response.status in (429, 503):
                        assert int(response.headers["Retry-After"]) >= 1
                    return response.status

            storm = [asyncio.create_task(guess(n)) for n in range(300)]
            answered_during_storm = 0
            while not all(task.done() for task in storm):
                async with http.get(client.make_url("/healthz")) as health:
                    assert health.status == 200
                    assert await health.json() == {"database": "ok", "redis": "ok"}
                if not all(task.done() for task in storm):
                    answered_during_storm += 1
                await asyncio.sleep(0.01)
            statuses = Counter(await asyncio.gather(*storm))
    assert answered_during_storm >= 1, "/healthz never answered while the storm ran"
    assert set(statuses) <= {401, 429, 503}, statuses
    assert statuses[429] >= 150, statuses  # past 50 failures the address is refused
    assert statuses[401] >= 1, statuses
    rows = await audit_rows(pg_pool, address)
    assert (None, "refused", "too_many_failures_address") in rows
    assert (None, "failure", "unknown_login") in rows
    assert all(login is None for login, _, _ in rows), "a typed unknown login was stored"


async def test_right_password_after_60_wrong_is_refused_until_the_window_passes(
    pg_pool: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    user = await add_user(pg_pool, "supervisor")
    address = fresh_address()
    # Long enough for 61 sign-ins (ten of them hashing a password) on a busy machine.
    window = 10
    async with serve(pg_pool, redis_client, trusted_proxies=("127.0.0.1",),
                     login_window_seconds=window) as client:
        for n in range(60):
            response = await sign_in(client, user, f"wrong-{n}", **{"X-Forwarded-For": address})
            assert response.status == (401 if n < 10 else 429)
        response = await sign_in(client, user, **{"X-Forwarded-For": address})
        assert response.status == 429
        assert 1 <= int(response.headers["Retry-After"]) <= window
        text = await response.text()
        assert 'role="alert"' in text and "Too many failed sign-ins for this login" in text
        assert COOKIE not in response.cookies
        # another address does not help: the login itself is locked
        other = await sign_in(client, user, **{"X-Forwarded-For": fresh_address()})
        assert other.status == 429
        async with asyncio.timeout(2 * window + 5):
            while response.status == 429:
                await asyncio.sleep(int(response.headers["Retry-After"]))
                response = await sign_in(client, user, **{"X-Forwarded-For": address})
        assert response.status == 302
    rows = await audit_rows(pg_pool, address)
    assert rows.count((user.login, "failure", "wrong_password")) == 10
    assert (user.login, "refused", "too_many_failures_login") in rows
    assert rows[-1] == (user.login, "success", "ok")


# --- 10. what the logs keep -----------------------------------------------------------


async def test_sign_in_logs_keep_known_logins_and_addresses_only(
    client: Client, supervisor: User
) -> None:
    typed_password = "Zq9-" + secrets.token_urlsafe(12)  # passes the login pattern
    with structlog.testing.capture_logs() as logs:
        await sign_in(client, User(typed_password, "x" * 10, "", ""))
        await sign_in(client, supervisor, "wrong password")
        await signed_in(client, supervisor)
    assert typed_password not in repr(logs)
    events = {(e["event"], e.get("reason")): e for e in logs if e["event"].startswith("web_login")}
    unknown = events["web_login_failed", "unknown_login"]
    assert "login" not in unknown and unknown["client"] == "127.0.0.1"
    wrong = events["web_login_failed", "wrong_password"]
    assert wrong["login"] == supervisor.login and wrong["client"] == "127.0.0.1"
    assert events["web_login", None]["login"] == supervisor.login


# --- 4. hundreds of websockets ----------------------------------------------------------


async def test_200_websockets_leave_sign_in_and_the_api_working(
    pg_pool: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    supervisor, other = await add_user(pg_pool, "supervisor"), await add_user(pg_pool, "admin")
    async with serve(pg_pool, redis_client, ws_per_user=250) as client:
        await signed_in(client, supervisor)
        hub = client.app[HUB]
        before = int((await redis_client.pubsub_numsub(LIVE_CHANNEL))[0][1])
        async with contextlib.AsyncExitStack() as sockets, aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0), cookie_jar=client.session.cookie_jar
        ) as http:
            opened = [await sockets.enter_async_context(http.ws_connect(client.make_url(
                "/ws/live"))) for _ in range(200)]
            assert hub.count == 200
            assert int((await redis_client.pubsub_numsub(LIVE_CHANNEL))[0][1]) == before

            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as fresh:
                async with fresh.get(client.make_url("/login")) as page:
                    token = csrf_in(await page.text())
                async with fresh.post(client.make_url("/login"), allow_redirects=False, data={
                        "login": other.login, "password": other.password, "csrf": token}) as r:
                    assert r.status == 302
                for path in ("/api/queues", "/api/calls/recent", "/api/stats/today"):
                    async with fresh.get(client.make_url(path)) as api:
                        assert api.status == 200, path
            async with http.get(client.make_url("/healthz")) as health:
                assert await health.json() == {"database": "ok", "redis": "ok"}

            marker = uuid.uuid4().hex
            await redis_client.publish(LIVE_CHANNEL, json.dumps({"type": "queues", "id": marker}))
            async with asyncio.timeout(20):
                received = await asyncio.gather(*(ws.receive_json() for ws in opened))
            assert all(message == {"type": "queues", "id": marker} for message in received)


async def test_websocket_caps_per_person_and_per_process(
    pg_pool: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    first, second = await add_user(pg_pool, "supervisor"), await add_user(pg_pool, "admin")
    async with serve(pg_pool, redis_client, ws_per_user=2, ws_per_process=3) as client:
        await signed_in(client, first)
        async with client.ws_connect("/ws/live"), client.ws_connect("/ws/live"):
            refused = await client.get("/ws/live")
            assert refused.status == 429
            assert (await refused.json())["error"] == "too_many_requests"
            assert refused.headers["Retry-After"] == "5"
            with pytest.raises(aiohttp.WSServerHandshakeError) as handshake:
                await client.ws_connect("/ws/live")
            assert handshake.value.status == 429
            # another person: one more socket fits, then the process is full
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as other:
                base = str(client.make_url("")).rstrip("/")
                response = await sign_in_session(other, base, second.login, second.password,
                                                 allow_redirects=False)
                assert response.status == 302
                async with other.ws_connect(f"{base}/ws/live"):
                    full = await other.get(f"{base}/ws/live")
                    assert full.status == 503
                    assert (await full.json())["error"] == "live_feed_full"
        hub = client.app[HUB]
        async with asyncio.timeout(10):  # the server notices closes asynchronously
            while hub.count:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        async with client.ws_connect("/ws/live"), client.ws_connect("/ws/live"):
            assert hub.count_for(first.login) == 2  # the caps count open sockets only


async def test_an_exhausted_redis_pool_is_a_clear_503_not_a_500(
    pg_pool: asyncpg.Pool, redis_client: aioredis.Redis, supervisor: User
) -> None:
    async with serve(pg_pool, redis_client, redis_connections=2,
                     redis_wait_seconds=0.2) as client:
        await signed_in(client, supervisor)
        pool = client.app[REDIS].connection_pool
        taken = [await pool.get_connection() for _ in range(2)]  # type: ignore[no-untyped-call]
        try:
            api = await client.get("/api/queues")
            assert api.status == 503
            assert (await api.json())["error"] == "unavailable"
            assert api.headers["Retry-After"] == "5"
            page = await client.get("/wallboard", allow_redirects=False)
            assert page.status == 503 and 'role="alert"' in await page.text()
        finally:
            for connection in taken:
                await pool.release(connection)
        assert (await client.get("/api/queues")).status == 200


# --- 7. sessions end with their user -----------------------------------------------------


async def test_deactivated_user_cookie_and_websocket_stop_at_once(
    client: Client, pg_pool: asyncpg.Pool, supervisor: User
) -> None:
    token = await signed_in(client, supervisor)
    async with client.ws_connect("/ws/live") as ws:
        await deactivate_person(pg_pool, supervisor.login)
        assert await status_with_token(client, "/api/queues", token) == 401
        assert await closed_with(ws) == CLOSE_SIGNED_OUT
    assert await status_with_token(client, "/wallboard", token) == 302
    assert (await sign_in(client, supervisor)).status == 401


async def test_demoted_user_cookie_and_websocket_stop_at_once(
    client: Client, pg_pool: asyncpg.Pool, supervisor: User
) -> None:
    token = await signed_in(client, supervisor)
    async with client.ws_connect("/ws/live") as ws:
        await upsert_operator(pg_pool, supervisor.login, "Demoted", "operator", PASSWORD)
        # no request from this browser: the periodic check closes the socket by itself
        assert await closed_with(ws) == CLOSE_SIGNED_OUT
    assert await status_with_token(client, "/api/queues", token) == 401
    await signed_in(client, supervisor)  # signs in again, now as an operator
    assert (await client.get("/api/queues")).status == 403


async def test_logout_closes_the_sessions_websockets_in_every_process(
    pg_pool: asyncpg.Pool, redis_client: aioredis.Redis, supervisor: User
) -> None:
    async with serve(pg_pool, redis_client, recheck_seconds=3600) as one, \
            serve(pg_pool, redis_client, recheck_seconds=3600) as two:
        token = await signed_in(one, supervisor)
        other_session = await signed_in(two, supervisor)
        async with one.ws_connect("/ws/live") as mine, two.ws_connect("/ws/live") as theirs:
            # signing out through process two ends the socket held by process one
            assert await sign_out_with(two, token) == 302
            assert await closed_with(mine) == CLOSE_SIGNED_OUT
            assert await status_with_token(one, "/api/queues", token) == 401
            # the same person's other session goes on
            assert await status_with_token(two, "/api/queues", other_session) == 200
            assert not theirs.closed


# --- 8. cross-site requests, headers, TLS proxies -----------------------------------------


async def test_evil_origin_is_403_on_forms_and_websockets(
    client: Client, supervisor: User
) -> None:
    assert (await sign_in(client, supervisor, Origin=EVIL)).status == 403
    token = await signed_in(client, supervisor)  # no Origin: not a browser, CSRF suffices
    logout = await client.post("/logout", data={"csrf": await form_token(client)},
                               headers={"Origin": EVIL}, allow_redirects=False)
    assert logout.status == 403
    assert await status_with_token(client, "/api/queues", token) == 200  # still signed in
    with pytest.raises(aiohttp.WSServerHandshakeError) as handshake:
        await client.ws_connect("/ws/live", origin=EVIL)
    assert handshake.value.status == 403
    refused = await client.get("/ws/live", headers={
        "Origin": "null", "Upgrade": "websocket", "Connection": "Upgrade"})
    assert refused.status == 403 and (await refused.json())["error"] == "origin_refused"
    cross = await sign_in(client, supervisor, **{"Sec-Fetch-Site": "cross-site"})
    assert cross.status == 403
    own = str(client.make_url("")).rstrip("/")
    assert (await sign_in(client, supervisor, Origin=own)).status == 302
    async with client.ws_connect("/ws/live", origin=own) as ws:
        assert not ws.closed


async def test_configured_origin_is_accepted(
    pg_pool: asyncpg.Pool, redis_client: aioredis.Redis, supervisor: User
) -> None:
    async with serve(pg_pool, redis_client, origins=("https://hotline.example",)) as client:
        assert (await sign_in(client, supervisor, Origin="https://hotline.example")).status \
            == 302
        assert (await sign_in(client, supervisor, Origin=EVIL)).status == 403


async def test_forms_without_the_right_csrf_token_are_refused(
    client: Client, supervisor: User
) -> None:
    form = {"login": supervisor.login, "password": supervisor.password}
    missing = await client.post("/login", data=form, allow_redirects=False)
    assert missing.status == 403
    text = await missing.text()
    assert "The form has expired" in text and csrf_in(text)  # a fresh form to retry with
    wrong = await client.post("/login", data={**form, "csrf": "0" * 64}, allow_redirects=False)
    assert wrong.status == 403
    # a token is only good with the cookie it was made for
    token = await form_token(client)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as stranger:
        stolen = await stranger.post(client.make_url("/login"), data={**form, "csrf": token},
                                     allow_redirects=False)
        assert stolen.status == 403
    before_sign_in = await form_token(client)
    await signed_in(client, supervisor)
    # a token made before signing in does not sign this session out
    stale = await client.post("/logout", data={"csrf": before_sign_in}, allow_redirects=False)
    assert stale.status == 403
    fresh = await client.post("/logout", data={"csrf": await form_token(client)},
                              allow_redirects=False)
    assert fresh.status == 302


@pytest.mark.parametrize(
    ("method", "path", "signed"),
    [("GET", "/login", False), ("GET", "/healthz", False), ("GET", "/static/card.css", False),
     ("GET", "/static/wallboard.js", False), ("GET", "/api/queues", False),
     ("GET", "/wallboard", False), ("GET", "/no/such/page", True), ("GET", "/wallboard", True),
     ("GET", "/api/calls/recent", True), ("POST", "/login", False), ("GET", "/ws/live", False)],
)
async def test_every_response_carries_the_security_headers(
    client: Client, supervisor: User, method: str, path: str, signed: bool
) -> None:
    if signed:
        await signed_in(client, supervisor)
    response = await client.request(method, path, allow_redirects=False)
    headers = response.headers
    assert headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY
    assert "'unsafe-inline'" not in CONTENT_SECURITY_POLICY
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "same-origin"
    assert "Strict-Transport-Security" not in headers  # plain HTTP here


async def test_secure_cookies_behind_a_trusted_tls_proxy_only(
    pg_pool: asyncpg.Pool, redis_client: aioredis.Redis, supervisor: User
) -> None:
    address = fresh_address()
    proxied = {"X-Forwarded-Proto": "https", "X-Forwarded-For": f"10.9.8.7, {address}"}

    def cookie_flags(response: aiohttp.ClientResponse, name: str) -> str:
        return next(h for h in response.headers.getall("Set-Cookie") if h.startswith(name))

    async with serve(pg_pool, redis_client, trusted_proxies=("127.0.0.0/8",)) as client:
        page = await client.get("/login", headers=proxied)
        assert "Secure" in cookie_flags(page, CSRF_COOKIE)
        assert page.headers["Strict-Transport-Security"] == "max-age=31536000"
        origin = f"https://{client.host}:{client.port}"
        response = await sign_in(client, supervisor, Origin=origin, **proxied)
        assert response.status == 302
        assert "Secure" in cookie_flags(response, COOKIE)
        plain_origin = await sign_in(client, supervisor, Origin=origin.replace("https", "http"),
                                     **proxied)
        assert plain_origin.status == 403  # the browser is on https: http is another origin
    assert (await audit_rows(pg_pool, address))[-1] == (supervisor.login, "success", "ok")

    async with serve(pg_pool, redis_client) as client:  # no trusted proxy: headers ignored
        response = await sign_in(client, supervisor, **proxied)
        assert response.status == 302
        assert "Secure" not in cookie_flags(response, COOKIE)
        assert "Strict-Transport-Security" not in response.headers
    assert (await audit_rows(pg_pool, address))[-1] == (supervisor.login, "success", "ok")
    assert len(await audit_rows(pg_pool, address)) == 1, "X-Forwarded-For of a stranger believed"


async def test_metrics_behind_a_trusted_proxy_judges_the_client_not_the_proxy(
    pg_pool: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    """Every request through a local proxy comes from 127.0.0.1: the allow-list
    must look at the client the proxy names, or /metrics is open to the world."""
    async with serve(pg_pool, redis_client, trusted_proxies=("127.0.0.0/8",)) as client:
        outside = await client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
        assert outside.status == 403
        inside = await client.get("/metrics", headers={"X-Forwarded-For": "127.0.0.1"})
        assert inside.status == 200
    async with serve(pg_pool, redis_client) as client:  # no proxy trusted: the peer counts
        direct = await client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
        assert direct.status == 200
