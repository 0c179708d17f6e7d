"""Helpers for the appeals tests: a migrated, seeded case store of their own, a
clock the test moves, actors, unique addresses."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from crm_sync.appeals import AppealsService, load_appeals_config, load_routing_config
from crm_sync.db import create_pool
from crm_sync.migrate import migrate
from crm_sync.taxonomy import load_taxonomy, seed_taxonomy
from hotline.core.appeals import Actor, ActorKind
from tests.support.databases import MakeDatabase
from tests.support.paths import CONFIG_DIR

OPERATOR = Actor(ActorKind.OPERATOR, "operator1")
ADMIN = Actor(ActorKind.ADMIN, "admin1")
_house = itertools.count(1)


class Clock:
    """A clock the test moves; starts on a Monday morning in Kyiv."""

    def __init__(self, start: datetime = datetime(2026, 2, 2, 8, 0, tzinfo=UTC)) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


def unique_street() -> str:
    """A street no other test uses (so no report is taken for a duplicate by accident)."""
    return f"вул. Тестова{uuid.uuid4().hex[:8]}"


def house(street: str | None = None) -> str:
    return f"{street or unique_street()}, {next(_house)}"


@asynccontextmanager
async def appeals_case_store(make_database: MakeDatabase, label: str) -> AsyncIterator[
    asyncpg.Pool
]:
    """A new database with the schema, the taxonomy and the shipped routing config."""
    url = await make_database(label)
    pool = await create_pool(url, max_size=20)
    try:
        await migrate(pool)
        await seed_taxonomy(pool, load_taxonomy(CONFIG_DIR))
        config = load_appeals_config(CONFIG_DIR)
        await load_routing_config(pool, config.routing, config.settings)
        yield pool
    finally:
        await pool.close()


@dataclass
class Ids:
    pool: asyncpg.Pool

    async def executor(self, code: str) -> int:
        value: int = await self.pool.fetchval("SELECT id FROM executors WHERE code = $1", code)
        return value

    async def executor_actor(self, code: str, login: str = "worker") -> Actor:
        return Actor(ActorKind.EXECUTOR, f"{login}@{code}", executor_id=await self.executor(code))

    async def citizen(self, phone: str | None = None, name: str = "") -> int:
        phone = phone or f"+38050{uuid.uuid4().int % 10**7:07d}"
        value: int = await self.pool.fetchval(
            "INSERT INTO citizens (phone, name) VALUES ($1, $2) RETURNING id", phone, name)
        return value


def make_service(pool: asyncpg.Pool, clock: Clock) -> AppealsService:
    config = load_appeals_config(CONFIG_DIR)
    return AppealsService(pool, calendar=config.calendar, settings=config.settings, clock=clock)
