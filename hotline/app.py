"""The composition root: the one place that wires adapters to services.

``Backends`` are PostgreSQL and Redis (embedded unless URLs are given);
``HotlineService`` starts the roles asked for (agi, ami, web) on top of them
and stops them in reverse order, awaiting every task it started.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from aiohttp import web

from crm_sync.call_store import (
    PostgresCallStore,
    PostgresIvrJournal,
    RetryingCallSink,
    RetryingIvrJournal,
)
from crm_sync.db import DatabaseUnavailable, create_pool
from crm_sync.live_bus import RedisLiveBus
from crm_sync.operator_states import PostgresOperatorStates, RetryingOperatorStates
from cti_bridge.ami_client import AmiClient
from cti_bridge.call_tracker import CallTracker
from cti_bridge.service import CtiService
from cti_bridge.web import build_web_app
from hotline.embedded import (
    EmbeddedPostgres,
    EmbeddedRedis,
    start_embedded_postgres,
    start_embedded_redis,
)
from hotline.logs import get_logger
from hotline.settings import CONFIG_DIR, Settings
from ivr.flows import build_routes
from ivr.menu import load_ivr_config
from ivr.server import FastAgiServer

log = get_logger("hotline.app")
STOP_TIMEOUT_SECONDS = 15.0


class RedisUnavailable(Exception):
    """Redis cannot be reached; the message names where we looked."""


async def close_pool(pool: asyncpg.Pool, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
    """Close gracefully, but not forever: ``Pool.close`` waits for every borrowed
    connection, and one stuck query must not keep the process from exiting."""
    try:
        await asyncio.wait_for(pool.close(), timeout)
    except TimeoutError:
        log.error("database_pool_close_timed_out", seconds=timeout)
        pool.terminate()


@dataclass
class Backends:
    pool: asyncpg.Pool
    redis: aioredis.Redis
    database_url: str
    redis_url: str
    embedded: list[EmbeddedPostgres | EmbeddedRedis] = field(default_factory=list)

    async def close(self) -> None:
        await close_pool(self.pool)
        await self.redis.aclose()
        for server in reversed(self.embedded):
            await asyncio.to_thread(server.release)


@dataclass
class Database:
    """The case store's pool, and the embedded server behind it if we started one."""

    pool: asyncpg.Pool
    url: str
    embedded: EmbeddedPostgres | None = None

    async def close(self) -> None:
        await close_pool(self.pool)
        if self.embedded is not None:
            await asyncio.to_thread(self.embedded.release)


async def open_database(settings: Settings, *, keep_embedded: bool = False) -> Database:
    """Connect to PostgreSQL, starting the embedded one when ``database.url`` is empty.

    With ``keep_embedded`` an embedded server outlives this process (``hotline
    migrate`` uses that so that a following ``hotline run`` finds its data).
    """
    url = settings.database.url
    embedded: EmbeddedPostgres | None = None
    if not url:
        embedded = await asyncio.to_thread(
            start_embedded_postgres, settings.state_path / "postgres"
        )
        url = embedded.url
    try:
        pool = await create_pool(url)
    except DatabaseUnavailable:
        if embedded is not None and not keep_embedded:
            await asyncio.to_thread(embedded.release)
        raise
    return Database(pool, url, None if keep_embedded else embedded)


async def open_backends(settings: Settings) -> Backends:
    """The case store and Redis (embedded ones unless URLs are set)."""
    database = await open_database(settings)
    embedded: list[EmbeddedPostgres | EmbeddedRedis] = []
    if database.embedded is not None:
        embedded.append(database.embedded)
    redis_url = settings.redis.url
    opened = False
    try:
        if not redis_url:
            server = await asyncio.to_thread(start_embedded_redis, settings.state_path / "redis")
            redis_url = server.url
            embedded.append(server)
        redis = aioredis.Redis.from_url(redis_url, socket_connect_timeout=3)
        try:
            await redis.ping()
        except (OSError, aioredis.RedisError) as exc:
            await redis.aclose()
            where = redis_url.rpartition("@")[2]
            raise RedisUnavailable(f"Redis at {where} is not reachable: {exc}") from None
        opened = True
    finally:
        if not opened:
            await close_pool(database.pool)
            for server_ in reversed(embedded):
                await asyncio.to_thread(server_.release)
    return Backends(database.pool, redis, database.url, redis_url, embedded)


class HotlineService:
    """The roles of one process, started over shared backends."""

    def __init__(self, settings: Settings, backends: Backends) -> None:
        self.settings = settings
        self.backends = backends
        self.agi_server: FastAgiServer | None = None
        self.cti: CtiService | None = None
        self.web_runner: web.AppRunner | None = None
        self.call_sink: RetryingCallSink | None = None
        self.operator_states: RetryingOperatorStates | None = None
        self.journal: RetryingIvrJournal | None = None
        self.bus = RedisLiveBus(backends.redis_url)

    async def start(self) -> None:
        s = self.settings
        roles = set(s.service.roles)
        started = False
        try:
            if "agi" in roles:
                self.journal = RetryingIvrJournal(PostgresIvrJournal(self.backends.pool))
                self.journal.start()
                routes = build_routes(
                    load_ivr_config(CONFIG_DIR / "ivr.toml"), self.journal, s.service.server_id
                )
                self.agi_server = FastAgiServer(
                    routes, s.agi.host, s.agi.port, env_timeout=s.agi.env_timeout
                )
                await self.agi_server.start()
            if "ami" in roles:
                self.call_sink = RetryingCallSink(PostgresCallStore(self.backends.pool))
                self.call_sink.start()
                self.operator_states = RetryingOperatorStates(
                    PostgresOperatorStates(self.backends.pool)
                )
                self.operator_states.start()
                ami = AmiClient(
                    s.ami.host, s.ami.port, s.ami.username, s.ami.secret,
                    action_timeout=s.ami.action_timeout, ping_interval=s.ami.ping_interval,
                )
                tracker = CallTracker(s.service.server_id, s.asterisk.inbound_contexts)
                self.cti = CtiService(
                    ami, tracker, self.call_sink, self.bus, self.backends.redis,
                    self.operator_states,
                )
                await self.cti.start()
            if "web" in roles:
                app = build_web_app(self.backends.pool, self.backends.redis)
                self.web_runner = web.AppRunner(app, access_log=None)
                await self.web_runner.setup()
                site = web.TCPSite(self.web_runner, s.web.host, s.web.port)
                await site.start()
                log.info("web_listening", url=self.web_url)
            started = True
        finally:
            if not started:
                await self.stop()

    @property
    def web_url(self) -> str:
        return f"http://{self.settings.web.host}:{self.settings.web.port}/"

    async def stop(self) -> None:
        """Reverse order of start; each part is stopped even if another fails."""
        steps: list[tuple[str, Callable[[], Awaitable[Any]]]] = []
        if self.web_runner is not None:
            steps.append(("web", self.web_runner.cleanup))
        if self.cti is not None:
            steps.append(("ami", self.cti.stop))
        if self.call_sink is not None:
            steps.append(("call_sink", self.call_sink.stop))
        if self.operator_states is not None:
            steps.append(("operator_states", self.operator_states.stop))
        if self.agi_server is not None:
            steps.append(("agi", self.agi_server.stop))
        if self.journal is not None:
            steps.append(("journal", self.journal.stop))
        steps.append(("bus", self.bus.close))
        for name, step in steps:
            try:
                # A part that does not stop in time must not keep the others running.
                await asyncio.wait_for(step(), STOP_TIMEOUT_SECONDS)
            except TimeoutError:
                log.error("stop_timed_out", part=name, seconds=STOP_TIMEOUT_SECONDS)
            except Exception as exc:
                log.warning("stop_failed", part=name, error=str(exc))
        self.web_runner = self.cti = self.agi_server = None
        self.call_sink = self.operator_states = self.journal = None


async def run_until_stopped(service: HotlineService, stop: asyncio.Event) -> None:
    await service.start()
    try:
        await stop.wait()
    finally:
        await service.stop()
