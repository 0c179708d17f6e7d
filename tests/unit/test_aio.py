"""Stopping tasks without swallowing the stopper's own cancellation."""

from __future__ import annotations

import asyncio

import pytest

from hotline.core.aio import cancel_and_wait, raise_if_cancelled

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_task_is_cancelled_and_finished() -> None:
    task = asyncio.create_task(asyncio.sleep(10))
    await asyncio.sleep(0)
    await cancel_and_wait(task)
    assert task.cancelled()
    await cancel_and_wait(task)  # twice is fine
    await cancel_and_wait(None)


async def test_callers_timeout_still_works_when_the_task_is_slow_to_stop() -> None:
    release = asyncio.Event()

    async def slow_to_clean_up() -> None:
        try:
            await asyncio.sleep(10)
        finally:
            await release.wait()  # e.g. a flush that cannot finish

    task = asyncio.create_task(slow_to_clean_up())
    await asyncio.sleep(0)
    with pytest.raises(TimeoutError):  # with suppress(CancelledError) this would hang
        await asyncio.wait_for(cancel_and_wait(task), 0.2)
    release.set()
    await asyncio.wait({task})


async def test_a_loop_stops_even_when_a_library_swallows_its_cancellation() -> None:
    """What Python 3.11's ``asyncio.wait_for`` does inside redis-py when the reply
    and the cancel arrive together: the awaited call returns normally."""
    turns = 0

    async def swallowing_call() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            return  # the result wins over the cancel

    async def poller() -> None:
        nonlocal turns
        while True:
            turns += 1
            await swallowing_call()
            raise_if_cancelled()
            await asyncio.sleep(0.01)

    task = asyncio.create_task(poller())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait(task), 5)
    assert task.cancelled() and turns == 1
