"""Small asyncio helpers shared by the services."""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel_and_wait(*tasks: asyncio.Task[Any] | None) -> list[BaseException]:
    """Cancel ``tasks`` and wait until they have all finished; returns the errors
    they ended with (other than their cancellation), for the caller to log.

    ``asyncio.wait`` is used on purpose: ``with suppress(CancelledError): await
    task`` would also swallow a cancellation of the caller itself (a ``wait_for``
    timeout around a stop(), a Ctrl-C), which then never stops. The current task
    is skipped: a task that stops its own owner must not wait for itself.
    """
    current = asyncio.current_task()
    waiting = {t for t in tasks if t is not None and t is not current}
    for task in waiting:
        task.cancel()
    if waiting:
        await asyncio.wait(waiting)
    return [
        error for t in waiting
        if not t.cancelled() and (error := t.exception()) is not None
    ]


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
