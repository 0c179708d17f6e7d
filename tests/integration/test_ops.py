"""``/readyz`` and ``/metrics`` over HTTP against the real PostgreSQL and Redis
(aiohttp's test server), and the readiness the composition root wires for each role."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import asyncpg
import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from hotline.app import HotlineService, open_backends
from hotline.core import health, metrics
from hotline.settings import Settings
from hotline.web.app import build_web_app
from hotline.web.ops import MetricsAccess
from tests.support.fake_ami_server import FakeAmiServer
from tests.support.web import SESSION_KEY, add_user, form_token

pytestmark = pytest.mark.asyncio(loop_scope="session")

Client = TestClient[web.Request, web.Application]
TOKEN = "metrics-token-for-tests-0123456789"
FAMILIES = {
    "hotline_calls", "hotline_queue_callers_waiting", "hotline_ami_link_up",
    "hotline_ami_reconnects", "hotline_agi_sessions", "hotline_agi_sessions_active",
    "hotline_agi_sessions_failed", "hotline_sink_backlog", "hotline_sink_retries",
    "hotline_sink_dropped", "hotline_websocket_clients",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest_asyncio.fixture(loop_scope="session")
async def dead_redis() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0",
                                     socket_connect_timeout=0.5)
    yield client
    await client.aclose()


async def serve(app: web.Application, host: str = "127.0.0.1") -> Client:
    client: Client = TestClient(TestServer(app, host=host))
    await client.start_server()
    return client


# --- /readyz ----------------------------------------------------------------------


async def test_readyz_is_public_and_ready_when_the_backends_answer(
    pg_pool: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    client = await serve(build_web_app(pg_pool, redis_client, SESSION_KEY))
    try:
        response = await client.get("/readyz", allow_redirects=False)
        assert response.status == 200
        assert await response.json() == {
            "status": "ready", "failing": [],
            "parts": {"database": "ready", "redis": "ready"},
        }
        assert response.headers["Cache-Control"] == "no-store"
    finally:
        await client.close()


async def test_readyz_names_redis_when_it_is_down(
    pg_pool: asyncpg.Pool, dead_redis: aioredis.Redis
) -> None:
    client = await serve(build_web_app(pg_pool, dead_redis, SESSION_KEY))
    try:
        response = await client.get("/readyz")
        assert response.status == 503
        body = await response.json()
        assert body["failing"] == ["redis"]
        assert body["parts"] == {"database": "ready", "redis": "not_ready"}
        assert "127.0.0.1" not in await response.text()  # reasons go to the log only
    finally:
        await client.close()


async def test_readyz_reports_the_registry_it_is_given(
    pg_pool: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    readiness = health.Readiness(running=False, timeout=0.2)
    link = [False]
    readiness.add(health.DATABASE, lambda: pg_pool.fetchval("SELECT 1"))
    readiness.add(health.AMI_LINK, lambda: link[0])
    client = await serve(build_web_app(pg_pool, redis_client, SESSION_KEY, readiness=readiness))
    try:
        response = await client.get("/readyz")
        assert response.status == 503
        assert (await response.json())["failing"] == ["ami_link", "service"]
        readiness.running = True
        link[0] = True
        response = await client.get("/readyz")
        assert response.status == 200
        assert set((await response.json())["parts"]) == {"database", "ami_link"}
    finally:
        await client.close()


# --- /metrics ---------------------------------------------------------------------


async def test_metrics_from_this_host_in_the_prometheus_text_format(
    pg_pool: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    client = await serve(build_web_app(pg_pool, redis_client, SESSION_KEY))
    try:
        response = await client.get("/metrics", allow_redirects=False)
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        text = await response.text()
        families = {family.name for family in text_string_to_metric_families(text)}
        assert families >= FAMILIES
        assert "python_gc" not in text  # our registry, not the library's default one
    finally:
        await client.close()


async def test_metrics_over_ipv6_loopback(
    pg_pool: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    client = await serve(build_web_app(pg_pool, redis_client, SESSION_KEY), host="::1")
    try:
        assert (await client.get("/metrics")).status == 200
    finally:
        await client.close()


async def test_metrics_refused_from_an_address_not_allowed(
    pg_pool: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    access = MetricsAccess.parse(["10.0.0.0/8"])
    client = await serve(build_web_app(pg_pool, redis_client, SESSION_KEY, metrics_access=access))
    try:
        response = await client.get("/metrics", allow_redirects=False)
        assert response.status == 403
        assert (await response.json())["error"] == "forbidden"
        assert "hotline_" not in await response.text()
        # a bearer header changes nothing when no token is configured
        response = await client.get("/metrics", headers={"Authorization": "Bearer "})
        assert response.status == 403
    finally:
        await client.close()


async def test_metrics_with_the_bearer_token(
    pg_pool: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    access = MetricsAccess.parse([], TOKEN)
    client = await serve(build_web_app(pg_pool, redis_client, SESSION_KEY, metrics_access=access))
    try:
        response = await client.get("/metrics", allow_redirects=False)
        assert response.status == 401
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="metrics"'
        assert (await response.json())["error"] == "not_signed_in"

        response = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}x"})
        assert response.status == 401
        assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]

        response = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status == 200
        assert "hotline_ami_link_up" in await response.text()
    finally:
        await client.close()


async def test_websocket_clients_are_counted(
    pg_pool: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    user = await add_user(pg_pool, "supervisor")
    client = await serve(build_web_app(pg_pool, redis_client, SESSION_KEY))

    def clients() -> float:
        return metrics.REGISTRY.get_sample_value("hotline_websocket_clients") or 0.0

    try:
        response = await client.post("/login", data={"login": user.login,
                                                     "password": user.password,
                                                     "csrf": await form_token(client)},
                                     allow_redirects=False)
        assert response.status == 302
        before = clients()
        async with client.ws_connect("/ws/live"):
            assert clients() == before + 1
        async with asyncio.timeout(10):  # the server notices the close asynchronously
            while clients() != before:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    finally:
        await client.close()


# --- the composition root's wiring ---------------------------------------------------


@pytest_asyncio.fixture(loop_scope="session")
async def fake_ami() -> AsyncIterator[FakeAmiServer]:
    server = FakeAmiServer(username="hotline", secret="s")
    server.replies["corestatus"] = {"CoreStartupDate": "2026-11-28",
                                    "CoreStartupTime": "09:00:00"}
    server.lists["coreshowchannels"] = ("CoreShowChannelsComplete", [])
    server.lists["queuesummary"] = ("QueueSummaryComplete", [])
    await server.start()
    yield server
    await server.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def service(
    fake_ami: FakeAmiServer, pg_url: str, redis_url: str
) -> AsyncIterator[HotlineService]:
    settings = Settings()
    settings.service.server_id = "ops-wiring"
    settings.agi.port = 0
    settings.ami.port, settings.ami.secret = fake_ami.port, "s"
    settings.web.port = free_port()
    settings.database.url, settings.redis.url = pg_url, redis_url
    backends = await open_backends(settings)
    svc = HotlineService(settings, backends)
    assert not svc.readiness.running
    await svc.start()
    assert svc.cti is not None
    svc.cti.ami.reconnect_delay = 0.05
    yield svc
    await svc.stop()
    assert not svc.readiness.running
    await backends.close()


async def readyz(svc: HotlineService) -> tuple[int, dict[str, object]]:
    from aiohttp import ClientSession

    async with ClientSession() as http, http.get(f"{svc.web_url}readyz") as response:
        return response.status, await response.json()


async def wait_readyz(svc: HotlineService, status: int) -> dict[str, object]:
    async with asyncio.timeout(15):
        while True:
            got, body = await readyz(svc)
            if got == status:
                return body
            await asyncio.sleep(0.1)


async def test_service_readiness_names_the_parts_of_its_roles(
    service: HotlineService, fake_ami: FakeAmiServer
) -> None:
    status, body = await readyz(service)
    assert status == 200, body
    assert body["parts"] == {"database": "ready", "redis": "ready",
                             "ami_link": "ready", "fastagi_listener": "ready"}
    assert metrics.REGISTRY.get_sample_value("hotline_ami_link_up") == 1

    port = fake_ami.port
    await fake_ami.stop()  # Asterisk's manager goes away
    body = await wait_readyz(service, 503)
    assert body["failing"] == ["ami_link"]
    assert metrics.REGISTRY.get_sample_value("hotline_ami_link_up") == 0
    await fake_ami.start(port)
    await wait_readyz(service, 200)

    assert service.agi_server is not None
    await service.agi_server.stop()
    try:
        body = await wait_readyz(service, 503)
        assert body["failing"] == ["fastagi_listener"]
    finally:
        await service.agi_server.start()
    await wait_readyz(service, 200)


async def test_a_process_without_the_ami_role_does_not_wait_for_asterisk(
    pg_url: str, redis_url: str
) -> None:
    settings = Settings()
    settings.service.roles = ["web"]
    settings.web.port = free_port()
    settings.ami.port = free_port()  # nobody listens: this process must not care
    settings.database.url, settings.redis.url = pg_url, redis_url
    backends = await open_backends(settings)
    svc = HotlineService(settings, backends)
    await svc.start()
    try:
        status, body = await readyz(svc)
        assert status == 200
        assert body["parts"] == {"database": "ready", "redis": "ready"}
    finally:
        await svc.stop()
        await backends.close()
