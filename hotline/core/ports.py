"""The ports: small Protocols the services talk to.

Each service can be tested with an in-memory implementation and is wired to
PostgreSQL / Redis in the composition root (``hotline.app``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from hotline.core.appeals import AppealLookup
from hotline.core.callflow import HoursOverride, QueueLoad
from hotline.core.records import (
    CallbackJob,
    CallbackRequest,
    CallRecord,
    IvrStep,
    Notice,
    OperatorStateChange,
)

__all__ = [
    "AppealLookup", "CallSink", "CallbackBook", "CallbackQueue", "CallerLanguages",
    "HoursOverrideSource", "IvrJournal", "LiveBus", "NoticeSource", "OperatorStateSink",
    "QueueLoadSource", "SurveySink",
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


class NoticeSource(Protocol):
    """Active announcements for a caller's district (the district of the citizen
    with that number in the case store)."""

    async def notices_for(self, caller_number: str, at: datetime) -> list[Notice]: ...


class QueueLoadSource(Protocol):
    """The queues' live state as the AMI role last saw it."""

    async def queue_load(self, queue: str) -> QueueLoad | None: ...


class HoursOverrideSource(Protocol):
    async def hours_overrides(self) -> Mapping[str, HoursOverride]: ...


class CallbackBook(Protocol):
    """Where the IVR books a callback; returns the request's id (the same one
    again for the same call)."""

    async def book_callback(self, request: CallbackRequest) -> int: ...


class CallbackQueue(Protocol):
    """The dialer's side of the callback requests (shared by every dialer process)."""

    async def queues_waiting(self) -> list[str]: ...

    async def claim(
        self, queue: str, free: int, dialer: str, lease_seconds: float
    ) -> CallbackJob | None:
        """The oldest due request of ``queue`` (by original arrival), if fewer than
        ``free`` (free operators less callers waiting) callbacks of it are being
        dialled; None otherwise. At most one dialer gets a given attempt."""

    async def finish(
        self, job: CallbackJob, answered: bool, detail: str, retry_seconds: float
    ) -> str: ...
