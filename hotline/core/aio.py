"""Small asyncio helpers shared by the services."""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` and wait until it has finished.

    ``asyncio.wait`` is used on purpose: ``with suppress(CancelledError): await
    task`` would also swallow a cancellation of the caller itself (a ``wait_for``
    timeout around a stop(), a Ctrl-C), which then never stops.
    """
    if task is None or task.done():
        return
    task.cancel()
    await asyncio.wait({task})


def raise_if_cancelled() -> None:
    """Re-raise a cancellation that a library swallowed.

    Python 3.11's ``asyncio.wait_for`` returns the result when the awaited call
    completes in the same loop turn as the cancel (fixed in 3.12), and redis-py
    wraps every send in it: a loop that catches errors and goes round again then
    never stops. Such loops call this once per turn.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
