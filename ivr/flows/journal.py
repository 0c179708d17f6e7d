"""One way for every flow to write its path into the IVR journal (``ivr_steps``).

A journal write is bounded by a timeout and never fails the call: with the
database down the caller must be served, not kept waiting or dropped.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, Protocol

from hotline.core.ports import IvrJournal
from hotline.core.records import IvrStep


class Recorder(Protocol):
    async def __call__(self, step: str, **detail: Any) -> None: ...


def step_recorder(
    journal: IvrJournal, server_id: str, uniqueid: str, log: Any, timeout: float = 1.0
) -> Recorder:
    async def record(step: str, **detail: Any) -> None:
        fact = IvrStep(server_id, uniqueid, datetime.now(UTC), step, detail)
        try:
            async with asyncio.timeout(timeout):
                await journal.record_step(fact)
        except Exception as exc:  # the call matters more than its journal
            log.warning("ivr_journal_failed", step=step, error=repr(exc))

    return record

