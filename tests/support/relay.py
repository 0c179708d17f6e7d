"""Helpers for the relay's tests: waiting for the case store to reach a state, a
clock set to Kyiv's daytime (or night) that still moves, relays to run."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import asyncpg

from crm_sync.outbox import NewMessage, Router
from crm_sync.outbox.model import Event

KYIV = ZoneInfo("Europe/Kyiv")


def moving_clock(local: time) -> Callable[[], datetime]:
    """Now, moved to today's ``local`` time in Kyiv (so the tests do not depend on
    the hour they run at), still ticking."""
    real = datetime.now(UTC)
    target = datetime.combine(real.astimezone(KYIV).date(), local, tzinfo=KYIV)
    offset = target - real
    return lambda: datetime.now(UTC) + offset


async def eventually(check: Callable[[], Awaitable[bool]], what: str,
                     deadline: float = 60.0) -> None:
    """A deadline against a hang, not a timing assertion."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while not await check():
        if loop.time() > end:
            raise AssertionError(f"not reached within {deadline} s: {what}")
        await asyncio.sleep(0.05)




def ping_router(order_keys: int = 0) -> Router:
    """One SMS per test event (payload ``{"n": …}``); ``order_keys`` > 0 spreads the
    messages over that many recipients' order keys."""

    async def route(conn: asyncpg.Connection, event: Event, now: datetime) -> list[NewMessage]:
        n = int(event.payload["n"])
        order = f"sms:test:{n % order_keys}" if order_keys else f"sms:test:{event.key}"
        return [NewMessage("sms", f"{event.key}:sms", order, "+380500000000",
                           f"text {n}", meta={"n": n})]

    return route
