"""What the relay moves: source events, the messages they fan out to, the provider
interface and its failures."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import asyncpg

from hotline.core.errors import HotlineError


@dataclass(frozen=True)
class Event:
    """A row of ``outbox`` written in a change's transaction."""

    id: int
    topic: str
    key: str
    payload: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class NewMessage:
    """One message to one recipient by one provider; ``key`` is unique per event."""

    provider: str
    key: str
    order_key: str
    recipient: str
    body: str
    subject: str = ""
    html: str | None = None
    citizen_id: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    available_at: datetime | None = None


@dataclass(frozen=True)
class Outgoing:
    """A claimed message as a provider sees it."""

    id: int
    provider: str
    idempotency_key: str
    recipient: str
    subject: str
    body: str
    html: str | None
    meta: dict[str, Any]
    attempt: int


class DeliveryError(HotlineError):
    """A provider could not take the message."""

    error_id = "delivery_failed"


class TemporaryFailure(DeliveryError):
    """Worth retrying (timeout, 5xx, connection refused, 429 with ``retry_after``)."""

    error_id = "delivery_temporary_failure"

    def __init__(self, message: str, retry_after: float | None = None,
                 *, throttled: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        #: The provider asked us to slow down: not the message's fault, no attempt spent.
        self.throttled = throttled


class PermanentFailure(DeliveryError):
    """The provider refused the message itself (bad number, bad address): no retry."""

    error_id = "delivery_permanent_failure"


class Provider(Protocol):
    """SMS gateway, SMTP server, later the external CRM: ``send`` returns the
    provider's message id, passes ``idempotency_key`` on, raises a DeliveryError."""

    name: str

    async def send(self, message: Outgoing) -> str: ...


#: Turns one event into its messages, inside the fan-out's transaction.
Router = Callable[[asyncpg.Connection, Event, datetime], Awaitable[list[NewMessage]]]
