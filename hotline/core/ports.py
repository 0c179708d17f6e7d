"""The ports: small Protocols the services talk to.

Each service can be tested with an in-memory implementation and is wired to
PostgreSQL / Redis in the composition root (``hotline.app``).
"""

from __future__ import annotations

from typing import Any, Protocol

from hotline.core.appeals import AppealLookup
from hotline.core.records import CallRecord, IvrStep, OperatorStateChange

__all__ = [
    "AppealLookup", "CallSink", "CallerLanguages", "IvrJournal", "LiveBus",
    "OperatorStateSink", "SurveySink",
]


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


class CallerLanguages(Protocol):
    """The language a citizen chose in the IVR, remembered by their number
    (``citizens.preferred_language``)."""

    async def preferred_language(self, phone: str) -> str | None: ...

    async def remember_language(self, phone: str, language: str) -> None: ...


class SurveySink(Protocol):
    """Post-call survey scores, stored on the call (and so on its operator)."""

    async def record_survey(
        self, asterisk_server: str, uniqueid: str, score: int, operator_interface: str
    ) -> bool:
        """True when the call's record took the score."""
        ...
