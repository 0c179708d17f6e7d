"""The ports: small Protocols the services talk to.

Each service can be tested with an in-memory implementation and is wired to
PostgreSQL / Redis in the composition root (``hotline.app``).
"""

from __future__ import annotations

from typing import Any, Protocol

from hotline.core.records import CallRecord, IvrStep, OperatorStateChange


class CallSink(Protocol):
    """Where finished (and updated) call records go."""

    async def save_call(self, record: CallRecord) -> None: ...


class IvrJournal(Protocol):
    async def record_step(self, step: IvrStep) -> None: ...


class OperatorStateSink(Protocol):
    async def record_operator_state(self, change: OperatorStateChange) -> None: ...


class LiveBus(Protocol):
    """Live notifications for browsers (Redis pub/sub in production)."""

    async def publish(self, channel: str, message: dict[str, Any]) -> None: ...
