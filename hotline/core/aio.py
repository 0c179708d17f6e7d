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
