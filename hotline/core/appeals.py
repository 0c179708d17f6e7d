"""Appeals: the one catalogue of statuses, the one table of allowed transitions,
the records other packages see, the errors, and the read port the IVR uses.

Pure: the database schema (``crm_sync/migrations/0004_appeals.sql``) repeats
the status list in its CHECK constraints, and a test compares the two.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from hotline.core.errors import Conflict, InvalidInput, NotFound


class AppealStatus(enum.StrEnum):
    REGISTERED = "registered"  # recorded, no executor yet (the dispatcher's queue)
    ROUTED = "routed"  # sent to an executor organisation
    ACCEPTED = "accepted"  # the executor took it
    IN_PROGRESS = "in_progress"
    NEEDS_CLARIFICATION = "needs_clarification"  # waiting for the citizen; SLA clock paused
    DONE = "done"  # the executor says it is fixed
    REJECTED = "rejected"  # refused on the merits, with a reason
    REOPENED = "reopened"  # the citizen (or an operator for them) says it is not fixed
    CLOSED = "closed"  # final


#: Still to be acted on (Open311 ``open``); the rest is Open311 ``closed``.
OPEN_STATUSES = frozenset({
    AppealStatus.REGISTERED, AppealStatus.ROUTED, AppealStatus.ACCEPTED,
    AppealStatus.IN_PROGRESS, AppealStatus.NEEDS_CLARIFICATION, AppealStatus.REOPENED,
})
#: Open and on the executor's clock (waiting for the citizen does not count).
SLA_STATUSES = OPEN_STATUSES - {AppealStatus.NEEDS_CLARIFICATION}
#: The citizen may reopen these within the configured period.
SETTLED_STATUSES = frozenset({AppealStatus.DONE, AppealStatus.REJECTED})


def open311_status(status: AppealStatus) -> str:
    """GeoReport v2 knows only ``open`` and ``closed``."""
    return "open" if status in OPEN_STATUSES else "closed"


class ActorKind(enum.StrEnum):
    CITIZEN = "citizen"
    OPERATOR = "operator"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"
    EXECUTOR = "executor"  # a user of an executor organisation
    SYSTEM = "system"  # routing, the auto-close job


class Channel(enum.StrEnum):
    """Where a change came from (the appeal's own intake channel is one of the first five)."""

    PHONE = "phone"
    WEB = "web"
    MOBILE = "mobile"
    FACEBOOK = "facebook"
    GOV_CONTACT_CENTRE = "gov_contact_centre"
    EXECUTOR_PORTAL = "executor_portal"
    IVR = "ivr"
    ADMIN = "admin"
    SYSTEM = "system"


#: The channels an appeal can arrive through (``appeals.channel``).
INTAKE_CHANNELS = frozenset({
    Channel.PHONE, Channel.WEB, Channel.MOBILE, Channel.FACEBOOK, Channel.GOV_CONTACT_CENTRE,
})


@dataclass(frozen=True)
class Actor:
    """Who makes a change. An executor's user carries their organisation: the
    service never shows or changes another organisation's appeal for them."""

    kind: ActorKind
    name: str  # login, "citizen:<id>", or the job's name
    executor_id: int | None = None
    citizen_id: int | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise InvalidInput("actor.name: must not be empty")
        if self.kind is ActorKind.EXECUTOR and self.executor_id is None:
            raise InvalidInput("actor.executor_id: an executor's user needs their organisation")
        if self.kind is ActorKind.CITIZEN and self.citizen_id is None:
            raise InvalidInput("actor.citizen_id: a citizen actor needs the citizen's id")

    @property
    def label(self) -> str:
        return f"{self.kind.value}:{self.name}"


SYSTEM_ACTOR = Actor(ActorKind.SYSTEM, "appeals")


# --- the transition table -----------------------------------------------------

S = AppealStatus
K = ActorKind
_STAFF = frozenset({K.OPERATOR, K.SUPERVISOR, K.ADMIN})
_MANAGERS = frozenset({K.SUPERVISOR, K.ADMIN})
_WORKERS = frozenset({K.EXECUTOR}) | _MANAGERS  # the executor, or a manager correcting
_ROUTERS = _STAFF | {K.SYSTEM, K.EXECUTOR}  # re-routing: staff, the router, "not ours"
_WITHDRAW = _STAFF | {K.CITIZEN, K.SYSTEM}  # withdrawn by the citizen, or a duplicate
_ASKERS = _WORKERS | {K.OPERATOR}
_ANSWERERS = _ASKERS | {K.CITIZEN}
_REOPENERS = frozenset({K.CITIZEN}) | _STAFF


@dataclass(frozen=True)
class Transition:
    source: AppealStatus
    target: AppealStatus
    actors: frozenset[ActorKind]
    reason_required: bool = False


def _t(
    source: AppealStatus, target: AppealStatus, actors: frozenset[ActorKind], reason: bool = False
) -> Transition:
    return Transition(source, target, actors, reason)


#: Every allowed change of status, and who may make it. Nothing else is allowed.
#: ``X → routed`` from a routed/working status is a re-routing (category or
#: address changed, or the executor said "not ours").
TRANSITIONS: tuple[Transition, ...] = (
    _t(S.REGISTERED, S.ROUTED, _STAFF | {K.SYSTEM}),
    _t(S.REGISTERED, S.REJECTED, _STAFF, reason=True),
    _t(S.REGISTERED, S.CLOSED, _WITHDRAW, reason=True),

    _t(S.ROUTED, S.ROUTED, _ROUTERS, reason=True),
    _t(S.ROUTED, S.ACCEPTED, _WORKERS),
    _t(S.ROUTED, S.REJECTED, _WORKERS | {K.OPERATOR}, reason=True),
    _t(S.ROUTED, S.CLOSED, _WITHDRAW, reason=True),

    _t(S.ACCEPTED, S.IN_PROGRESS, _WORKERS),
    _t(S.ACCEPTED, S.NEEDS_CLARIFICATION, _ASKERS, reason=True),
    _t(S.ACCEPTED, S.DONE, _WORKERS, reason=True),
    _t(S.ACCEPTED, S.REJECTED, _WORKERS, reason=True),
    _t(S.ACCEPTED, S.ROUTED, _ROUTERS, reason=True),
    _t(S.ACCEPTED, S.CLOSED, _WITHDRAW, reason=True),

    _t(S.IN_PROGRESS, S.NEEDS_CLARIFICATION, _ASKERS, reason=True),
    _t(S.IN_PROGRESS, S.DONE, _WORKERS, reason=True),
    _t(S.IN_PROGRESS, S.REJECTED, _WORKERS, reason=True),
    _t(S.IN_PROGRESS, S.ROUTED, _ROUTERS, reason=True),
    _t(S.IN_PROGRESS, S.CLOSED, _WITHDRAW, reason=True),

    _t(S.NEEDS_CLARIFICATION, S.IN_PROGRESS, _ANSWERERS),
    _t(S.NEEDS_CLARIFICATION, S.REJECTED, _WORKERS, reason=True),
    _t(S.NEEDS_CLARIFICATION, S.ROUTED, _STAFF | {K.SYSTEM}, reason=True),
    _t(S.NEEDS_CLARIFICATION, S.CLOSED, _WITHDRAW, reason=True),

    _t(S.DONE, S.REOPENED, _REOPENERS, reason=True),
    _t(S.DONE, S.CLOSED, _WITHDRAW),
    _t(S.REJECTED, S.REOPENED, _REOPENERS, reason=True),
    _t(S.REJECTED, S.CLOSED, _WITHDRAW),

    _t(S.REOPENED, S.IN_PROGRESS, _WORKERS),
    _t(S.REOPENED, S.NEEDS_CLARIFICATION, _ASKERS, reason=True),
    _t(S.REOPENED, S.DONE, _WORKERS, reason=True),
    _t(S.REOPENED, S.REJECTED, _WORKERS, reason=True),
    _t(S.REOPENED, S.ROUTED, _ROUTERS, reason=True),
    _t(S.REOPENED, S.CLOSED, _WITHDRAW, reason=True),
)
del S, K

_BY_PAIR: Mapping[tuple[AppealStatus, AppealStatus], Transition] = {
    (t.source, t.target): t for t in TRANSITIONS
}


def transition_for(source: AppealStatus, target: AppealStatus) -> Transition | None:
    return _BY_PAIR.get((source, target))


def allowed_targets(source: AppealStatus, actor: ActorKind) -> list[AppealStatus]:
    """What this kind of actor may do next (for the buttons a page shows)."""
    return [t.target for t in TRANSITIONS if t.source is source and actor in t.actors]


def check_transition(
    source: AppealStatus, target: AppealStatus, actor: ActorKind, reason: str | None
) -> Transition:
    """The table's entry for this change, or the error that refuses it."""
    entry = _BY_PAIR.get((source, target))
    if entry is None:
        raise AppealTransitionForbidden(source, target, actor, "no such transition")
    if actor not in entry.actors:
        raise AppealTransitionForbidden(source, target, actor, f"not allowed to a {actor.value}")
    if entry.reason_required and not (reason and reason.strip()):
        raise InvalidInput(
            f"reason: required to change an appeal from {source.value} to {target.value}",
            details={"field": "reason"},
        )
    return entry


# --- errors --------------------------------------------------------------------


class AppealTransitionForbidden(Conflict):
    error_id = "appeal_transition_forbidden"

    def __init__(
        self, source: AppealStatus, target: AppealStatus, actor: ActorKind, why: str
    ) -> None:
        super().__init__(
            f"appeal status cannot change from {source.value} to {target.value}: {why}",
            details={"from": source.value, "to": target.value, "actor": actor.value},
        )
        self.source, self.target = source, target


class AppealNotFound(NotFound):
    """Also what an executor gets for another organisation's appeal: nothing leaks."""

    error_id = "appeal_not_found"


class AppealChanged(Conflict):
    """The appeal changed since the caller read it (``expected_status`` differs)."""

    error_id = "appeal_changed_meanwhile"


class ReopenPeriodOver(Conflict):
    error_id = "appeal_reopen_period_over"


class NoExecutorLeft(Conflict):
    """Every matching executor (and the fallback) declined; a person must assign one."""

    error_id = "appeal_no_executor_left"


# --- records ---------------------------------------------------------------------


@dataclass(frozen=True)
class AppealSummary:
    """What the IVR, the screen-pop and lists show of an appeal."""

    id: int
    number: str
    status: AppealStatus
    category_code: str
    category_name_uk: str
    category_name_en: str
    executor_code: str | None
    executor_name: str | None
    executor_name_uk: str | None
    due_at: datetime | None
    created_at: datetime
    updated_at: datetime
    duplicate_of_number: str | None = None
    status_reason: str | None = None  # why the last change (Open311 status_notes)
    address: str = ""
    latitude: float | None = None
    longitude: float | None = None
    district_code: str | None = None
    text: str = ""
    media_url: str | None = None  # the first attachment

    @property
    def open311_status(self) -> str:
        return open311_status(self.status)


@dataclass(frozen=True)
class Appeal(AppealSummary):
    """One appeal in full (without its history, comments and attachments)."""

    channel: str = ""
    citizen_id: int | None = None
    call_id: int | None = None
    category_id: int = 0
    district_id: int | None = None
    executor_id: int | None = None
    status_changed_at: datetime | None = None
    duplicate_of: int | None = None
    reopen_count: int = 0
    version: int = 1
    citizen_ids: tuple[int, ...] = ()  # the author first, then citizens attached as duplicates


@dataclass(frozen=True)
class HistoryEntry:
    at: datetime
    event: str  # created / status / updated / duplicate_linked / citizen_attached
    actor: str
    actor_kind: str
    channel: str
    from_status: AppealStatus | None
    to_status: AppealStatus
    note: str | None
    executor_id: int | None
    details: dict[str, Any] = field(default_factory=dict)


class AppealLookup(Protocol):
    """The read side the IVR needs (``ivr/`` cannot import ``crm_sync``)."""

    async def open_appeals_of_phone(self, phone: str, *, limit: int = 5) -> list[AppealSummary]:
        """The caller's open appeals, newest first (their own and those they joined)."""
        ...

    async def appeal_for_caller(self, number: str, phone: str) -> AppealSummary | None:
        """The appeal with this number, only if ``phone`` is one of its citizens'."""
        ...
