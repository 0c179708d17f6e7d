"""`hotline demo`'s status line, from a real case store and a queue summary."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest_asyncio

from crm_sync.call_store import PostgresCallStore
from crm_sync.db import create_pool
from crm_sync.migrate import migrate
from hotline.cli import _demo_status
from hotline.core.errors import PeerError
from hotline.core.records import CallOutcome
from tests.support.databases import MakeDatabase
from tests.support.web import make_call

STATUS = re.compile(
    r"^\d\d:\d\d:\d\d  calls (\S+)  waiting (\S+)  answered (\S+)  abandoned (\S+)$"
)


async def _summary() -> dict[str, Any]:
    return {"queues": [{"queue": "housing", "callers": 2}, {"queue": "main", "callers": 1}]}


async def _ami_down() -> dict[str, Any]:
    raise PeerError("AMI link down")


@pytest_asyncio.fixture
async def own_pool(make_database: MakeDatabase) -> AsyncIterator[asyncpg.Pool]:
    """A database of its own: the status counts every call since a time."""
    pool = await create_pool(await make_database("demo_status"))
    await migrate(pool)
    yield pool
    await pool.close()


async def test_status_line_counts_this_demos_calls_and_who_waits(own_pool: asyncpg.Pool) -> None:
    since = datetime.now(UTC) - timedelta(hours=1)
    store = PostgresCallStore(own_pool)
    tag = "demo"
    for minutes, outcome in [(1, CallOutcome.ANSWERED), (2, CallOutcome.ANSWERED),
                             (3, CallOutcome.ABANDONED), (4, CallOutcome.IN_PROGRESS),
                             (-5, CallOutcome.ANSWERED)]:  # before the demo started
        await store.save_call(make_call(tag, since + timedelta(minutes=minutes), outcome=outcome))

    match = STATUS.match(await _demo_status(own_pool, _summary, since))
    assert match, "not a status line"
    assert match.groups() == ("3", "3", "2", "1")

    # Asterisk unreachable: the line still comes, with what is known
    match = STATUS.match(await _demo_status(own_pool, _ami_down, since))
    assert match and match.groups() == ("3", "?", "2", "1")
