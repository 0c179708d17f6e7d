"""Helpers for the relay's tests: waiting for the case store to reach a state, a
clock set to Kyiv's daytime (or night) that still moves, relays to run."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

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


