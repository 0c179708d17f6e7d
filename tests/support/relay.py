"""Helpers for the relay's tests: waiting for the case store to reach a state, a
clock set to Kyiv's daytime (or night) that still moves, relays to run."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import asyncpg

from crm_sync.outbox import NewMessage, Router
from crm_sync.outbox.model import Event
from hotline.core.aio import cancel_and_wait

KYIV = ZoneInfo("Europe/Kyiv")


def moving_clock(local: time) -> Callable[[], datetime]:
    """Now, moved forward to the next ``local`` time in Kyiv (so the tests do not
    depend on the hour they run at), still ticking. Never backward: rows the
    database stamps with its own ``now()`` must already be due on this clock."""
    real = datetime.now(UTC)
    target = datetime.combine(real.astimezone(KYIV).date(), local, tzinfo=KYIV)
    if target < real:
        target = datetime.combine(real.astimezone(KYIV).date() + timedelta(days=1), local,
                                  tzinfo=KYIV)
    offset = target - real
    return lambda: datetime.now(UTC) + offset


class LoopLag:
    """The worst lateness of this event loop while in use (``async with``): on a busy
    machine a late loop bunches events that were spaced right, so a rate is judged
    over ``width + worst`` seconds, not ``width``."""

    def __init__(self, tick: float = 0.01) -> None:
        self.worst = 0.0
        self._tick = tick
        self._task: asyncio.Task[None] | None = None

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(self._tick)
            self.worst = max(self.worst, loop.time() - before - self._tick)

    async def __aenter__(self) -> LoopLag:
        self._task = asyncio.create_task(self._watch())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        await cancel_and_wait(self._task)


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
