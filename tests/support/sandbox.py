"""The real-Asterisk sandbox as the system tests start it, and the service's
settings pointed at it: one place, so every module's instance differs only in
what it is named and where it listens."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg

from crm_sync.db import create_pool
from crm_sync.migrate import migrate
from hotline.app import HotlineService, open_backends
from hotline.devtools import asterisk_sandbox as sandbox
from hotline.settings import Settings
from tests.support.databases import MakeDatabase
from tests.support.paths import CONFIG_DIR
from tests.support.ports import asterisk_root, instance


def make_sandbox(
    name: str, server_id: str, *, ami_port: int, agi_port: int, sip_port: int, **extra: Any
) -> sandbox.SandboxSpec:
    """A sandbox instance of its own (``name`` + the test slot), fresh secrets."""
    return sandbox.SandboxSpec(
        instance=instance(name), root=asterisk_root(), server_id=server_id,
        ami_port=ami_port, ami_user="hotline", ami_secret=secrets.token_urlsafe(18),
        agi_host="127.0.0.1", agi_port=agi_port, sip_port=sip_port,
        sip_password=secrets.token_urlsafe(12), config_dir=CONFIG_DIR, **extra,
    )


def service_settings(
    spec: sandbox.SandboxSpec, *, database_url: str, redis_url: str,
    roles: Sequence[str] | None = None, web_port: int | None = None, state_dir: str = "",
) -> Settings:
    """The service's settings for this sandbox (its queue_log is the one reconciled)."""
    settings = Settings()
    settings.service.server_id = spec.server_id
    if roles is not None:
        settings.service.roles = list(roles)
    if state_dir:
        settings.service.state_dir = state_dir
    settings.agi.port = spec.agi_port
    settings.ami.port = spec.ami_port
    settings.ami.secret = spec.ami_secret
    settings.asterisk.instance = spec.instance
    if web_port is not None:
        settings.web.port = web_port
    settings.database.url = database_url
    settings.redis.url = redis_url
    return settings


@contextlib.asynccontextmanager
async def running_service(settings: Settings) -> AsyncIterator[HotlineService]:
    """The whole service as ``hotline run`` starts it, stopped and closed after."""
    backends = await open_backends(settings)
    try:
        service = HotlineService(settings, backends)
        await service.start()
        try:
            yield service
        finally:
            await service.stop()
    finally:
        await backends.close()


@contextlib.asynccontextmanager
async def migrated_database(make_database: MakeDatabase, label: str
                            ) -> AsyncIterator[tuple[str, asyncpg.Pool]]:
    """A new database of its own with the schema: its URL (for the service) and a pool."""
    url = await make_database(label)
    pool = await create_pool(url)
    try:
        await migrate(pool)
        yield url, pool
    finally:
        await pool.close()
