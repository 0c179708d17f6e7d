"""The appeals service: registering, routing, status changes, duplicates,
comments and attachments over the case store.

Every public method that changes something runs in ONE transaction: the
appeal's row, its history, its routing decision and its outbox rows commit
together or not at all (a refused change writes nothing). The rules it applies
are pure and live apart: the transition table in :mod:`hotline.core.appeals`,
working days in :mod:`hotline.core.workdays`, executor choice in
:mod:`crm_sync.appeals.routing`, addresses in :mod:`crm_sync.appeals.addresses`.

Callers (the operator desktop, Open311 intake, the executor portal, the IVR)
pass an :class:`~hotline.core.appeals.Actor` and a
:class:`~hotline.core.appeals.Channel`; an executor's user only ever reaches
their own organisation's appeals (anything else is "not found"), a citizen
only the appeals they are a citizen of.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from crm_sync.appeals import store
from crm_sync.appeals.addresses import bounding_box, check_point, distance_m, normalise_address
from crm_sync.appeals.config import AppealsSettings
from crm_sync.appeals.routing import RoutingDecision, RoutingQuery, choose
from hotline.core.appeals import (
    INTAKE_CHANNELS,
    OPEN_STATUSES,
    SETTLED_STATUSES,
    SLA_STATUSES,
    SYSTEM_ACTOR,
    Actor,
    ActorKind,
    Appeal,
    AppealChanged,
    AppealNotFound,
    AppealStatus,
    AppealSummary,
    AppealTransitionForbidden,
    Channel,
    HistoryEntry,
    NoExecutorLeft,
    ReopenPeriodOver,
    check_transition,
)
from hotline.core.errors import Forbidden, InvalidInput
from hotline.core.logs import get_logger
from hotline.core.workdays import WorkingCalendar

ROUTER = Actor(ActorKind.SYSTEM, "router")
MAX_TEXT = 10_000
MAX_ADDRESS = 500
MAX_REASON = 2_000
MAX_URL = 2_048
MAX_INTAKE_KEY = 200
_PHONE = re.compile(r"\+?[0-9]{3,20}")
_STAFF = frozenset({ActorKind.OPERATOR, ActorKind.SUPERVISOR, ActorKind.ADMIN})
#: advisory-lock namespace for the duplicate check (serialises reports of one problem)
_DUP_LOCK = "appeal-duplicate:"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

log = get_logger("crm_sync.appeals")


@dataclass(frozen=True)
class NewAttachment:
    url: str
    content_type: str | None = None
    caption: str = ""


@dataclass(frozen=True)
class NewAppeal:
    """A report as an intake channel gives it. ``category`` and ``district`` are codes."""

    channel: Channel
    category: str
    text: str
    address: str = ""
    district: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    citizen_id: int | None = None
    citizen_phone: str | None = None  # found or created when no citizen_id is given
    citizen_name: str = ""
    call_id: int | None = None
    intake_key: str | None = None  # a retried POST with the same key gives the same appeal
    attachments: tuple[NewAttachment, ...] = ()


@dataclass(frozen=True)
class Registered:
    appeal: Appeal
    created: bool  # False: the intake key was seen before, nothing new was written
    primary: Appeal | None = None  # set when the report was linked as a duplicate


@dataclass(frozen=True)
class Comment:
    id: int
    at: datetime
    actor: str
    actor_kind: str
    channel: str
    visibility: str
    body: str


@dataclass(frozen=True)
class Attachment:
    id: int
    at: datetime
    actor: str
    url: str
    content_type: str | None
    caption: str


@dataclass(frozen=True)
class RoutingRecord:
    at: datetime
    trigger: str
    actor: str
    executor_code: str | None
    rule_id: int | None
    reason: str
    declined_at: datetime | None
    declined_by: str | None
    declined_reason: str | None


@dataclass(frozen=True)
class Cursor:
    """Where a page ends: keyset pagination on (time, id) — (created_at, id) newest
    first for lists, (due_at, id) most overdue first for the due lists."""

    at: datetime
    id: int

    def encode(self) -> str:
        # exact microseconds: a float timestamp would round and skip or repeat rows
        delta = self.at - _EPOCH
        micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
        return f"{micros}_{self.id}"

    @classmethod
    def decode(cls, token: str) -> Cursor:
        try:
            micros, ident = token.split("_")
            return cls(_EPOCH + timedelta(microseconds=int(micros)), int(ident))
        except (ValueError, OverflowError):
            raise InvalidInput(f"cursor: not a page cursor: {token[:40]!r}",
                               details={"field": "cursor"}) from None


@dataclass(frozen=True)
class AppealFilter:
    """For lists: the executor's portal and Open311 ``GET requests``."""

    executor_id: int | None = None
    citizen_id: int | None = None  # their own appeals and those they joined (screen-pop)
    statuses: frozenset[AppealStatus] | None = None
    category_ids: tuple[int, ...] = ()
    district_ids: tuple[int, ...] = ()
    numbers: tuple[str, ...] = ()
    created_from: datetime | None = None
    created_to: datetime | None = None
    overdue_at: datetime | None = None  # only appeals on the clock and past due at this time
    include_duplicates: bool = True
    #: words that must all occur in the address or text, any case (trigram index, 0006)
    search: str = ""


@dataclass(frozen=True)
class Page:
    items: list[AppealSummary]
    next_cursor: Cursor | None = None


@dataclass
class _Change:
    """What a status change sets besides the status."""

    values: dict[str, Any] = field(default_factory=dict)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _clean_reason(reason: str | None) -> str | None:
    if reason is None:
        return None
    reason = reason.strip()
    if len(reason) > MAX_REASON:
        raise InvalidInput(f"reason: at most {MAX_REASON} characters", details={"field": "reason"})
    return reason or None


def _check_url(url: str, name: str) -> str:
    url = url.strip()
    if not re.fullmatch(r"https?://[^\s]+", url, re.IGNORECASE) or len(url) > MAX_URL:
        raise InvalidInput(f"{name}: expected an http(s) URL of at most {MAX_URL} characters",
                           details={"field": name})
    return url


def validate_new_appeal(new: NewAppeal) -> NewAppeal:
    """Refuses what cannot be registered; the error names the field."""
    if not isinstance(new.channel, Channel) or new.channel not in INTAKE_CHANNELS:
        raise InvalidInput(
            f"channel: expected one of {', '.join(sorted(INTAKE_CHANNELS))}, got {new.channel!r}",
            details={"field": "channel"})
    if not new.category or not isinstance(new.category, str):
        raise InvalidInput("category: required", details={"field": "category"})
    text = (new.text or "").strip()
    if not text:
        raise InvalidInput("text: describe the problem", details={"field": "text"})
    if len(text) > MAX_TEXT:
        raise InvalidInput(f"text: at most {MAX_TEXT} characters", details={"field": "text"})
    if len(new.address) > MAX_ADDRESS:
        raise InvalidInput(f"address: at most {MAX_ADDRESS} characters",
                           details={"field": "address"})
    check_point(new.latitude, new.longitude)
    if new.citizen_phone is not None and not _PHONE.fullmatch(new.citizen_phone):
        raise InvalidInput("citizen_phone: digits with an optional leading +, 3 to 20 of them",
                           details={"field": "citizen_phone"})
    if new.intake_key is not None and not 0 < len(new.intake_key) <= MAX_INTAKE_KEY:
        raise InvalidInput(f"intake_key: 1 to {MAX_INTAKE_KEY} characters",
                           details={"field": "intake_key"})
    for i, attachment in enumerate(new.attachments):
        _check_url(attachment.url, f"attachments[{i}].url")
    return new


class AppealsService:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        calendar: WorkingCalendar,
        settings: AppealsSettings | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._pool = pool
        self._calendar = calendar
        self._settings = settings or AppealsSettings()
        self._clock = clock

    @property
    def calendar(self) -> WorkingCalendar:
        return self._calendar

    # --- registering -----------------------------------------------------------

    async def register(self, new: NewAppeal, actor: Actor) -> Registered:
        """Record a report; link it to an open appeal of the same problem if there is
        one (its citizen joins that appeal), else route it to an executor."""
        validate_new_appeal(new)
        if actor.kind is ActorKind.EXECUTOR:
            raise Forbidden("executors do not register appeals")
        now = self._clock()
        address_norm = normalise_address(new.address)
        point = check_point(new.latitude, new.longitude)
        async with self._pool.acquire() as conn, conn.transaction():
            if new.intake_key is not None:
                known = await conn.fetchval(
                    "SELECT id FROM appeals WHERE channel = $1 AND intake_key = $2",
                    new.channel.value, new.intake_key)
                if known is not None:
                    return Registered(await self._view(conn, known), created=False)
            category = await conn.fetchrow(
                "SELECT id, sla_working_days FROM categories WHERE code = $1", new.category)
            if category is None:
                raise InvalidInput(f"category: unknown code {new.category!r}",
                                   details={"field": "category"})
            district_id = None
            if new.district:
                district_id = await conn.fetchval(
                    "SELECT id FROM districts WHERE code = $1", new.district)
                if district_id is None:
                    raise InvalidInput(f"district: unknown code {new.district!r}",
                                       details={"field": "district"})
            citizen_id = await self._citizen(conn, new, district_id)
            await self._lock_problem(conn, category["id"], address_norm, point)
            primary_id = await self._find_primary(conn, category["id"], address_norm, point)
            sla = category["sla_working_days"] or self._settings.default_sla_working_days
            appeal_id = await conn.fetchval(
                """INSERT INTO appeals (number, channel, citizen_id, call_id, category_id,
                       address, address_norm, district_id, latitude, longitude, text, due_at,
                       intake_key, created_at, updated_at, status_changed_at)
                   VALUES (appeal_number_at($12, nextval('appeal_number_seq')), $1, $2, $3, $4,
                       $5, $6, $7, $8, $9, $10, $11, $13, $12, $12, $12)
                   ON CONFLICT (channel, intake_key) DO NOTHING
                   RETURNING id""",
                new.channel.value, citizen_id, new.call_id, category["id"], new.address.strip(),
                address_norm, district_id, point[0] if point else None,
                point[1] if point else None, new.text.strip(),
                self._calendar.due_at(now, sla), now, new.intake_key,
            )
            if appeal_id is None:  # the same key committed meanwhile by a concurrent retry
                known = await conn.fetchval(
                    "SELECT id FROM appeals WHERE channel = $1 AND intake_key = $2",
                    new.channel.value, new.intake_key)
                return Registered(await self._view(conn, known), created=False)
            if citizen_id is not None:
                await conn.execute(
                    """INSERT INTO appeal_citizens (appeal_id, citizen_id, role, attached_at)
                       VALUES ($1, $2, 'author', $3)""", appeal_id, citizen_id, now)
            for attachment in new.attachments:
                await conn.execute(
                    """INSERT INTO appeal_attachments (appeal_id, at, actor, url, content_type,
                           caption) VALUES ($1, $2, $3, $4, $5, $6)
                       ON CONFLICT (appeal_id, url) DO NOTHING""",
                    appeal_id, now, actor.label, attachment.url.strip(), attachment.content_type,
                    attachment.caption)
            appeal = await self._view(conn, appeal_id)
            await store.write_change(
                conn, appeal, at=now, actor=actor, channel=new.channel, event="created",
                topic="appeal.created", from_status=None, note=None,
                details={"attachments": len(new.attachments)},
                extra={"text": appeal.text},
            )
            log.info("appeal_registered", appeal=appeal.number, category=new.category,
                     channel=new.channel.value, actor=actor.label)
            if primary_id is not None:
                primary = await self._link_duplicate(conn, appeal, primary_id, actor, now)
                return Registered(await self._view(conn, appeal_id), True, primary)
            await self._route(conn, appeal, ROUTER, now, trigger="created",
                              declined=frozenset(), allow_none=True)
            return Registered(await self._view(conn, appeal_id), created=True)

    async def _citizen(
        self, conn: asyncpg.Connection, new: NewAppeal, district_id: int | None
    ) -> int | None:
        if new.citizen_id is not None:
            if not await conn.fetchval("SELECT 1 FROM citizens WHERE id = $1", new.citizen_id):
                raise InvalidInput(f"citizen_id: no citizen {new.citizen_id}",
                                   details={"field": "citizen_id"})
            return new.citizen_id
        if new.citizen_phone is None:
            return None
        citizen_id: int = await conn.fetchval(
            """INSERT INTO citizens (phone, name, district_id) VALUES ($1, $2, $3)
               ON CONFLICT (phone) DO UPDATE SET
                   name = CASE WHEN citizens.name = '' THEN EXCLUDED.name ELSE citizens.name END,
                   district_id = COALESCE(citizens.district_id, EXCLUDED.district_id)
               RETURNING id""",
            new.citizen_phone, new.citizen_name.strip(), district_id)
        return citizen_id

    async def _lock_problem(
        self, conn: asyncpg.Connection, category_id: int, address_norm: str,
        point: tuple[float, float] | None,
    ) -> None:
        """Two citizens reporting one problem at once must not both become the
        first report: the check and the insert are serialised per address (and
        per category when coordinates are compared)."""
        keys = []
        if address_norm:
            keys.append(f"{_DUP_LOCK}{category_id}:{address_norm}")
        if point is not None:
            keys.append(f"{_DUP_LOCK}{category_id}:point")
        for key in sorted(keys):
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", key)

    async def _find_primary(
        self, conn: asyncpg.Connection, category_id: int, address_norm: str,
        point: tuple[float, float] | None,
    ) -> int | None:
        candidates: list[tuple[datetime, int]] = []
        if address_norm:
            row = await conn.fetchrow(
                f"""SELECT id, created_at FROM appeals
                    WHERE category_id = $1 AND address_norm = $2 AND duplicate_of IS NULL
                      AND address_norm <> '' AND status IN ({store.OPEN_SQL})
                    ORDER BY created_at, id LIMIT 1""",
                category_id, address_norm)
            if row is not None:
                candidates.append((row["created_at"], row["id"]))
        radius = self._settings.duplicate_radius_m
        if point is not None and radius > 0:
            lat_lo, lat_hi, lon_lo, lon_hi = bounding_box(*point, radius)
            rows = await conn.fetch(
                f"""SELECT id, created_at, latitude, longitude FROM appeals
                    WHERE category_id = $1 AND duplicate_of IS NULL AND latitude IS NOT NULL
                      AND status IN ({store.OPEN_SQL})
                      AND latitude BETWEEN $2 AND $3 AND longitude BETWEEN $4 AND $5
                    ORDER BY created_at, id LIMIT 200""",
                category_id, lat_lo, lat_hi, lon_lo, lon_hi)
            candidates += [
                (r["created_at"], r["id"]) for r in rows
                if distance_m(r["latitude"], r["longitude"], *point) <= radius
            ]
        return min(candidates)[1] if candidates else None

    async def _link_duplicate(
        self, conn: asyncpg.Connection, duplicate: Appeal, primary_id: int, actor: Actor,
        now: datetime,
    ) -> Appeal:
        primary = await self._view(conn, primary_id, for_update=True)
        await self._set_status(
            conn, duplicate, AppealStatus.CLOSED, ROUTER, Channel.SYSTEM,
            f"duplicate of {primary.number}", now,
            _Change({"duplicate_of": primary_id, "closed_at": now}),
            details={"primary": primary.number}, event="duplicate_linked")
        joined = False
        if duplicate.citizen_id is not None:
            joined = await conn.fetchval(
                """INSERT INTO appeal_citizens (appeal_id, citizen_id, role, via_appeal,
                       attached_at) VALUES ($1, $2, 'joined', $3, $4)
                   ON CONFLICT (appeal_id, citizen_id) DO NOTHING RETURNING true""",
                primary_id, duplicate.citizen_id, duplicate.id, now) or False
        await conn.execute(
            "UPDATE appeals SET updated_at = $2, version = version + 1 WHERE id = $1",
            primary_id, now)
        primary = await self._view(conn, primary_id)
        await store.write_change(
            conn, primary, at=now, actor=actor, channel=Channel(duplicate.channel),
            event="citizen_attached", topic="appeal.citizen_attached",
            from_status=primary.status,
            note=f"same problem reported again as {duplicate.number}",
            details={"duplicate": duplicate.number, "citizen_id": duplicate.citizen_id,
                     "citizen_joined": joined})
        log.info("appeal_duplicate_linked", appeal=duplicate.number, primary=primary.number)
        return primary

    # --- routing -------------------------------------------------------------------

    async def _declined_since_change(self, conn: asyncpg.Connection, appeal_id: int) -> set[int]:
        """Executors that said "not ours" since the category or place last changed."""
        rows = await conn.fetch(
            """SELECT executor_id FROM appeal_routings
               WHERE appeal_id = $1 AND declined_at IS NOT NULL AND executor_id IS NOT NULL
                 AND id > COALESCE((SELECT max(id) FROM appeal_routings WHERE appeal_id = $1
                     AND trigger IN ('category_changed', 'address_changed')), 0)""",
            appeal_id)
        return {r["executor_id"] for r in rows}

    async def _route(
        self, conn: asyncpg.Connection, appeal: Appeal, actor: Actor, now: datetime, *,
        trigger: str, declined: frozenset[int], allow_none: bool, note_prefix: str = "",
        channel: Channel = Channel.SYSTEM,
    ) -> RoutingDecision:
        """Choose the executor, keep the decision and its reason, move the appeal
        to ``routed`` (or leave it registered for the dispatcher when nobody is left
        and ``allow_none``)."""
        rules = await store.rules_for(conn, appeal.category_id, appeal.district_id)
        decision = choose(rules, RoutingQuery(
            appeal.category_id, appeal.district_id, normalise_address(appeal.address),
            (appeal.latitude, appeal.longitude) if appeal.latitude is not None
            and appeal.longitude is not None else None,
            declined,
        ))
        if decision.rule is None and not allow_none:
            raise NoExecutorLeft(
                f"appeal {appeal.number}: {decision.reason}; assign an executor by hand",
                details={"appeal": appeal.number})
        await conn.execute(
            """INSERT INTO appeal_routings (appeal_id, at, trigger, actor, executor_id, rule_id,
                   reason, details) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
            appeal.id, now, trigger, actor.label, decision.executor_id,
            decision.rule.id if decision.rule else None, decision.reason, decision.details)
        if decision.rule is None:
            log.warning("appeal_not_routed", appeal=appeal.number, reason=decision.reason)
            return decision
        note = note_prefix + decision.reason
        await self._set_status(
            conn, appeal, AppealStatus.ROUTED, actor, channel, note, now,
            _Change({"executor_id": decision.rule.executor_id}),
            details={"trigger": trigger, "rule_id": decision.rule.id,
                     "executor": decision.rule.executor_code,
                     "previous_executor": appeal.executor_code},
        )
        log.info("appeal_routed", appeal=appeal.number, executor=decision.rule.executor_code,
                 rule=decision.rule.id, trigger=trigger)
        return decision

    async def decline(
        self, appeal_id: int, actor: Actor, reason: str, *, channel: Channel,
        expected_version: int | None = None,
    ) -> Appeal:
        """The executor says "not ours": the next rule's executor gets the appeal, or
        the fallback; :class:`NoExecutorLeft` (nothing written) when none is left."""
        reason_text = _clean_reason(reason)
        if reason_text is None:
            raise InvalidInput("reason: say why it is not yours", details={"field": "reason"})
        now = self._clock()
        async with self._pool.acquire() as conn, conn.transaction():
            appeal = await self._locked(conn, appeal_id, actor, expected_version)
            check_transition(appeal.status, AppealStatus.ROUTED, actor.kind, reason_text)
            if appeal.executor_id is None:
                raise AppealTransitionForbidden(
                    appeal.status, AppealStatus.ROUTED, actor.kind, "it has no executor")
            await conn.execute(
                """UPDATE appeal_routings SET declined_at = $3, declined_by = $4,
                       declined_reason = $5
                   WHERE id = (SELECT max(id) FROM appeal_routings
                               WHERE appeal_id = $1 AND executor_id = $2)""",
                appeal.id, appeal.executor_id, now, actor.label, reason_text)
            declined = await self._declined_since_change(conn, appeal.id)
            declined.add(appeal.executor_id)
            await self._route(
                conn, appeal, actor, now, trigger="declined", declined=frozenset(declined),
                allow_none=False, channel=channel,
                note_prefix=f"declined by {appeal.executor_code}: {reason_text}; ",
            )
            return await self._view(conn, appeal.id)

    async def assign(
        self, appeal_id: int, executor_code: str, actor: Actor, reason: str, *,
        channel: Channel = Channel.ADMIN,
    ) -> Appeal:
        """A person (the dispatcher, a supervisor) routes the appeal by hand."""
        if actor.kind not in _STAFF:
            raise Forbidden("only staff assign executors by hand")
        reason_text = _clean_reason(reason)
        now = self._clock()
        async with self._pool.acquire() as conn, conn.transaction():
            appeal = await self._locked(conn, appeal_id, actor, None)
            check_transition(appeal.status, AppealStatus.ROUTED, actor.kind, reason_text)
            executor = await conn.fetchrow(
                "SELECT id, code FROM executors WHERE code = $1 AND active", executor_code)
            if executor is None:
                raise InvalidInput(f"executor: unknown or inactive code {executor_code!r}",
                                   details={"field": "executor"})
            why = f"assigned by {actor.label}: {reason_text}"
            await conn.execute(
                """INSERT INTO appeal_routings (appeal_id, at, trigger, actor, executor_id,
                       reason) VALUES ($1, $2, 'manual', $3, $4, $5)""",
                appeal.id, now, actor.label, executor["id"], why)
            await self._set_status(
                conn, appeal, AppealStatus.ROUTED, actor, channel, why, now,
                _Change({"executor_id": executor["id"]}),
                details={"trigger": "manual", "executor": executor["code"],
                         "previous_executor": appeal.executor_code})
            return await self._view(conn, appeal.id)

    # --- status changes ---------------------------------------------------------------

    async def change_status(
        self, appeal_id: int, target: AppealStatus, actor: Actor, *, channel: Channel,
        reason: str | None = None, expected_version: int | None = None,
    ) -> Appeal:
        """Any change the transition table allows, except to ``routed`` (that is
        :meth:`decline`, :meth:`assign` or :meth:`update_details`)."""
        if target is AppealStatus.ROUTED:
            raise InvalidInput("status: routing goes through decline, assign or a change "
                               "of category or address", details={"field": "status"})
        reason_text = _clean_reason(reason)
        now = self._clock()
        async with self._pool.acquire() as conn, conn.transaction():
            appeal = await self._locked(conn, appeal_id, actor, expected_version)
            check_transition(appeal.status, target, actor.kind, reason_text)
            change = _Change()
            if target is AppealStatus.REOPENED:
                assert appeal.status_changed_at is not None
                until = appeal.status_changed_at + timedelta(days=self._settings.reopen_days)
                if now > until:
                    raise ReopenPeriodOver(
                        f"appeal {appeal.number} was {appeal.status.value} on "
                        f"{self._calendar.local_date(appeal.status_changed_at)}; it could be "
                        f"reopened until {self._calendar.local_date(until)}",
                        details={"until": until.isoformat()})
                change.values["reopen_count"] = appeal.reopen_count + 1
                change.values["due_at"] = self._calendar.due_at(now, await self._sla(conn, appeal))
                change.values["closed_at"] = None
            if appeal.status is AppealStatus.NEEDS_CLARIFICATION and appeal.due_at is not None:
                # the clock stood still while the citizen was asked
                assert appeal.status_changed_at is not None
                change.values["due_at"] = self._calendar.shift_due(
                    appeal.due_at, appeal.status_changed_at, now)
            if target is AppealStatus.CLOSED:
                change.values["closed_at"] = now
            await self._set_status(conn, appeal, target, actor, channel, reason_text, now, change)
            return await self._view(conn, appeal.id)

    async def accept(self, appeal_id: int, actor: Actor, *, channel: Channel,
                     expected_version: int | None = None) -> Appeal:
        return await self.change_status(appeal_id, AppealStatus.ACCEPTED, actor,
                                        channel=channel, expected_version=expected_version)

    async def start_work(self, appeal_id: int, actor: Actor, *, channel: Channel,
                         reason: str | None = None) -> Appeal:
        return await self.change_status(appeal_id, AppealStatus.IN_PROGRESS, actor,
                                        channel=channel, reason=reason)

    async def ask_clarification(self, appeal_id: int, actor: Actor, question: str, *,
                                channel: Channel) -> Appeal:
        return await self.change_status(appeal_id, AppealStatus.NEEDS_CLARIFICATION, actor,
                                        channel=channel, reason=question)

    async def clarify(self, appeal_id: int, actor: Actor, answer: str, *,
                      channel: Channel) -> Appeal:
        """The citizen's answer (or an operator's on their behalf): back to work."""
        return await self.change_status(appeal_id, AppealStatus.IN_PROGRESS, actor,
                                        channel=channel, reason=answer)

    async def resolve(self, appeal_id: int, actor: Actor, resolution: str, *,
                      channel: Channel) -> Appeal:
        return await self.change_status(appeal_id, AppealStatus.DONE, actor,
                                        channel=channel, reason=resolution)

    async def reject(self, appeal_id: int, actor: Actor, reason: str, *,
                     channel: Channel) -> Appeal:
        return await self.change_status(appeal_id, AppealStatus.REJECTED, actor,
                                        channel=channel, reason=reason)

    async def reopen(self, appeal_id: int, actor: Actor, reason: str, *,
                     channel: Channel) -> Appeal:
        return await self.change_status(appeal_id, AppealStatus.REOPENED, actor,
                                        channel=channel, reason=reason)

    async def close(self, appeal_id: int, actor: Actor, *, channel: Channel,
                    reason: str | None = None) -> Appeal:
        return await self.change_status(appeal_id, AppealStatus.CLOSED, actor,
                                        channel=channel, reason=reason)

    async def close_settled(self, *, limit: int = 1000) -> int:
        """Close done/rejected appeals whose reopening period is over (a nightly job);
        returns how many were closed."""
        now = self._clock()
        cutoff = now - timedelta(days=self._settings.reopen_days)
        async with self._pool.acquire() as conn:
            ids = [r["id"] for r in await conn.fetch(
                """SELECT id FROM appeals WHERE status IN ('done', 'rejected')
                   AND status_changed_at < $1 ORDER BY status_changed_at LIMIT $2""",
                cutoff, limit)]
        closed = 0
        for appeal_id in ids:
            async with self._pool.acquire() as conn, conn.transaction():
                appeal = await self._view(conn, appeal_id, for_update=True)
                if appeal.status not in SETTLED_STATUSES or (
                    appeal.status_changed_at is not None and appeal.status_changed_at >= cutoff
                ):
                    continue  # reopened or changed meanwhile
                await self._set_status(
                    conn, appeal, AppealStatus.CLOSED, SYSTEM_ACTOR, Channel.SYSTEM,
                    f"closed automatically: not reopened within {self._settings.reopen_days} "
                    "days", now, _Change({"closed_at": now}))
                closed += 1
        return closed

    async def _sla(self, conn: asyncpg.Connection, appeal: Appeal) -> int:
        days: int | None = await conn.fetchval(
            "SELECT sla_working_days FROM categories WHERE id = $1", appeal.category_id)
        return days or self._settings.default_sla_working_days

    async def _set_status(
        self, conn: asyncpg.Connection, appeal: Appeal, target: AppealStatus, actor: Actor,
        channel: Channel, reason: str | None, now: datetime, change: _Change,
        details: dict[str, Any] | None = None, event: str = "status",
    ) -> Appeal:
        # every change of status passes the one table, whichever path it comes by
        check_transition(appeal.status, target, actor.kind, reason)
        values = {"status": target.value, "status_reason": reason, "status_changed_at": now,
                  "updated_at": now, **change.values}
        columns = list(values)
        assignments = ", ".join(f"{c} = ${i + 2}" for i, c in enumerate(columns))
        await conn.execute(
            f"UPDATE appeals SET {assignments}, version = version + 1 WHERE id = $1",
            appeal.id, *values.values())
        after = await self._view(conn, appeal.id)
        await store.write_change(
            conn, after, at=now, actor=actor, channel=channel, event=event,
            topic="appeal.status_changed", from_status=appeal.status, note=reason,
            details=details)
        log.info("appeal_status_changed", appeal=appeal.number, from_status=appeal.status.value,
                 to_status=target.value, actor=actor.label, channel=channel.value)
        return after

    # --- details, comments, attachments ---------------------------------------------------

    async def update_details(
        self, appeal_id: int, actor: Actor, *, channel: Channel, reason: str,
        category: str | None = None, district: str | None = None, address: str | None = None,
        latitude: float | None = None, longitude: float | None = None, text: str | None = None,
        expected_version: int | None = None,
    ) -> Appeal:
        """Correct an open appeal. A new category or place re-routes it (the declines
        of the old question are forgotten); a new category recomputes the due date."""
        if actor.kind not in _STAFF:
            raise Forbidden("only staff change an appeal's category, place or text")
        reason_text = _clean_reason(reason)
        if reason_text is None:
            raise InvalidInput("reason: say why the appeal is changed", details={"field": "reason"})
        point = check_point(latitude, longitude)
        if text is not None and not 0 < len(text.strip()) <= MAX_TEXT:
            raise InvalidInput(f"text: 1 to {MAX_TEXT} characters", details={"field": "text"})
        if address is not None and len(address) > MAX_ADDRESS:
            raise InvalidInput(f"address: at most {MAX_ADDRESS} characters",
                               details={"field": "address"})
        now = self._clock()
        async with self._pool.acquire() as conn, conn.transaction():
            appeal = await self._locked(conn, appeal_id, actor, expected_version)
            if appeal.status not in OPEN_STATUSES:
                raise AppealTransitionForbidden(appeal.status, appeal.status, actor.kind,
                                                "only an open appeal can be changed")
            values: dict[str, Any] = {}
            changed: dict[str, Any] = {}
            if category is not None and category != appeal.category_code:
                row = await conn.fetchrow(
                    "SELECT id, sla_working_days FROM categories WHERE code = $1", category)
                if row is None:
                    raise InvalidInput(f"category: unknown code {category!r}",
                                       details={"field": "category"})
                values["category_id"] = row["id"]
                sla = row["sla_working_days"] or self._settings.default_sla_working_days
                values["due_at"] = self._calendar.due_at(appeal.created_at, sla)
                changed["category"] = [appeal.category_code, category]
            if district is not None and district != appeal.district_code:
                district_id = await conn.fetchval(
                    "SELECT id FROM districts WHERE code = $1", district)
                if district_id is None:
                    raise InvalidInput(f"district: unknown code {district!r}",
                                       details={"field": "district"})
                values["district_id"] = district_id
                changed["district"] = [appeal.district_code, district]
            if address is not None and address.strip() != appeal.address:
                values["address"] = address.strip()
                values["address_norm"] = normalise_address(address)
                changed["address"] = [appeal.address, address.strip()]
            if point is not None and point != (appeal.latitude, appeal.longitude):
                values["latitude"], values["longitude"] = point
                changed["point"] = [[appeal.latitude, appeal.longitude], list(point)]
            if text is not None and text.strip() != appeal.text:
                values["text"] = text.strip()
                changed["text"] = True
            if not values:
                return appeal
            columns = list(values)
            assignments = ", ".join(f"{c} = ${i + 2}" for i, c in enumerate(columns))
            await conn.execute(
                f"UPDATE appeals SET {assignments}, updated_at = ${len(columns) + 2}, "
                "version = version + 1 WHERE id = $1",
                appeal.id, *values.values(), now)
            after = await self._view(conn, appeal.id)
            await store.write_change(
                conn, after, at=now, actor=actor, channel=channel, event="updated",
                topic="appeal.updated", from_status=appeal.status, note=reason_text,
                details={"changed": changed})
            reroute = "category" in changed or any(k in changed
                                                   for k in ("district", "address", "point"))
            if reroute and after.duplicate_of is None and (
                after.status is AppealStatus.REGISTERED or after.executor_id is not None
            ):
                trigger = "category_changed" if "category" in changed else "address_changed"
                await self._reroute_after_change(conn, after, actor, now, trigger, channel)
            return await self._view(conn, appeal.id)

    async def _reroute_after_change(
        self, conn: asyncpg.Connection, appeal: Appeal, actor: Actor, now: datetime,
        trigger: str, channel: Channel,
    ) -> None:
        rules = await store.rules_for(conn, appeal.category_id, appeal.district_id)
        point = (appeal.latitude, appeal.longitude) if appeal.latitude is not None \
            and appeal.longitude is not None else None
        decision = choose(rules, RoutingQuery(appeal.category_id, appeal.district_id,
                                              normalise_address(appeal.address), point))
        if decision.executor_id is not None and decision.executor_id == appeal.executor_id:
            # the same executor stays: keep the decision, do not disturb their work
            await conn.execute(
                """INSERT INTO appeal_routings (appeal_id, at, trigger, actor, executor_id,
                       rule_id, reason, details) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
                appeal.id, now, trigger, actor.label, decision.executor_id,
                decision.rule.id if decision.rule else None,
                "executor unchanged: " + decision.reason, decision.details)
            return
        if appeal.status is not AppealStatus.REGISTERED:
            check_transition(appeal.status, AppealStatus.ROUTED, actor.kind, "re-routed")
        await self._route(conn, appeal, ROUTER if appeal.status is AppealStatus.REGISTERED
                          else actor, now, trigger=trigger, declined=frozenset(),
                          allow_none=True, channel=channel,
                          note_prefix=f"{trigger.replace('_', ' ')}; ")

    async def add_comment(
        self, appeal_id: int, actor: Actor, body: str, *, visibility: str, channel: Channel,
    ) -> Comment:
        """``visibility``: ``internal`` (staff and the executor) or ``citizen``."""
        body = (body or "").strip()
        if not 0 < len(body) <= MAX_TEXT:
            raise InvalidInput(f"body: 1 to {MAX_TEXT} characters", details={"field": "body"})
        if visibility not in ("internal", "citizen"):
            raise InvalidInput("visibility: internal or citizen", details={"field": "visibility"})
        if actor.kind is ActorKind.CITIZEN and visibility != "citizen":
            raise Forbidden("a citizen's comment is visible to the citizen")
        now = self._clock()
        async with self._pool.acquire() as conn, conn.transaction():
            appeal = await self._locked(conn, appeal_id, actor, None)
            row = await conn.fetchrow(
                """INSERT INTO appeal_comments (appeal_id, at, actor, actor_kind, channel,
                       visibility, body) VALUES ($1, $2, $3, $4, $5, $6, $7)
                   RETURNING id""",
                appeal.id, now, actor.label, actor.kind.value, channel.value, visibility, body)
            await self._touch(conn, appeal.id, now)
            await store.write_outbox(
                conn, "appeal.comment_added", f"appeal:{appeal.id}:comment:{row['id']}",
                {**store.payload_of(await self._view(conn, appeal.id)), "event": "comment_added",
                 "comment_id": row["id"], "visibility": visibility,
                 "body": body if visibility == "citizen" else None,
                 "actor_kind": actor.kind.value, "at": now.isoformat()}, now)
            return Comment(row["id"], now, actor.label, actor.kind.value, channel.value,
                           visibility, body)

    async def add_attachment(
        self, appeal_id: int, actor: Actor, url: str, *, channel: Channel,
        content_type: str | None = None, caption: str = "",
    ) -> Attachment:
        url = _check_url(url, "url")
        now = self._clock()
        async with self._pool.acquire() as conn, conn.transaction():
            appeal = await self._locked(conn, appeal_id, actor, None)
            row = await conn.fetchrow(
                """INSERT INTO appeal_attachments (appeal_id, at, actor, url, content_type,
                       caption) VALUES ($1, $2, $3, $4, $5, $6)
                   ON CONFLICT (appeal_id, url) DO NOTHING RETURNING id""",
                appeal.id, now, actor.label, url, content_type, caption.strip())
            if row is None:
                raise InvalidInput("url: already attached to this appeal",
                                   details={"field": "url"})
            await self._touch(conn, appeal.id, now)
            await store.write_outbox(
                conn, "appeal.attachment_added", f"appeal:{appeal.id}:attachment:{row['id']}",
                {**store.payload_of(await self._view(conn, appeal.id)),
                 "event": "attachment_added", "url": url, "content_type": content_type,
                 "actor_kind": actor.kind.value, "change_channel": channel.value,
                 "at": now.isoformat()}, now)
            return Attachment(row["id"], now, actor.label, url, content_type, caption.strip())

    async def _touch(self, conn: asyncpg.Connection, appeal_id: int, now: datetime) -> None:
        await conn.execute(
            "UPDATE appeals SET updated_at = $2, version = version + 1 WHERE id = $1",
            appeal_id, now)

    # --- reading ----------------------------------------------------------------------------

    async def get(self, appeal_id: int, actor: Actor) -> Appeal:
        async with self._pool.acquire() as conn:
            row = await store.fetch_appeal_row(conn, appeal_id)
            return self._visible(row, actor, str(appeal_id))

    async def get_by_number(self, number: str, actor: Actor) -> Appeal:
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(f"{store.APPEAL_SELECT} WHERE a.number = $1", number)
            return self._visible(row, actor, number)

    async def history(self, appeal_id: int, actor: Actor) -> list[HistoryEntry]:
        async with self._pool.acquire() as conn:
            self._visible(await store.fetch_appeal_row(conn, appeal_id), actor, str(appeal_id))
            entries = await store.history_of(conn, appeal_id)
        if actor.kind is ActorKind.CITIZEN:  # the citizen sees what happened, not who inside
            return [HistoryEntry(e.at, e.event, "", e.actor_kind, e.channel, e.from_status,
                                 e.to_status, e.note, e.executor_id) for e in entries]
        return entries

    async def comments(self, appeal_id: int, actor: Actor) -> list[Comment]:
        async with self._pool.acquire() as conn:
            self._visible(await store.fetch_appeal_row(conn, appeal_id), actor, str(appeal_id))
            only_public = actor.kind is ActorKind.CITIZEN
            rows = await conn.fetch(
                """SELECT id, at, actor, actor_kind, channel, visibility, body
                   FROM appeal_comments WHERE appeal_id = $1
                     AND (NOT $2 OR visibility = 'citizen') ORDER BY at, id""",
                appeal_id, only_public)
        return [Comment(r["id"], r["at"], r["actor"], r["actor_kind"], r["channel"],
                        r["visibility"], r["body"]) for r in rows]

    async def attachments(self, appeal_id: int, actor: Actor) -> list[Attachment]:
        async with self._pool.acquire() as conn:
            self._visible(await store.fetch_appeal_row(conn, appeal_id), actor, str(appeal_id))
            rows = await conn.fetch(
                """SELECT id, at, actor, url, content_type, caption FROM appeal_attachments
                   WHERE appeal_id = $1 ORDER BY at, id""", appeal_id)
        return [Attachment(r["id"], r["at"], r["actor"], r["url"], r["content_type"],
                           r["caption"]) for r in rows]

    async def routings(self, appeal_id: int, actor: Actor) -> list[RoutingRecord]:
        """Every routing decision of the appeal with its reason (staff only)."""
        if actor.kind not in _STAFF | {ActorKind.SYSTEM}:
            raise Forbidden("routing decisions are for staff")
        async with self._pool.acquire() as conn:
            self._visible(await store.fetch_appeal_row(conn, appeal_id), actor, str(appeal_id))
            rows = await conn.fetch(
                """SELECT r.at, r.trigger, r.actor, e.code, r.rule_id, r.reason, r.declined_at,
                          r.declined_by, r.declined_reason
                   FROM appeal_routings r LEFT JOIN executors e ON e.id = r.executor_id
                   WHERE r.appeal_id = $1 ORDER BY r.id""", appeal_id)
        return [RoutingRecord(*r) for r in rows]

    async def list_appeals(
        self, actor: Actor, flt: AppealFilter = AppealFilter(), *, after: Cursor | None = None,
        limit: int = 50,
    ) -> Page:
        """A page of appeals, newest first; an executor's user sees only their
        organisation's, a citizen only their own, whatever the filter says."""
        if not 1 <= limit <= 500:
            raise InvalidInput("limit: 1 to 500", details={"field": "limit"})
        where: list[str] = []
        args: list[Any] = []

        def arg(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        executor_id = flt.executor_id
        if actor.kind is ActorKind.EXECUTOR:
            executor_id = actor.executor_id
        if executor_id is not None:
            where.append(f"a.executor_id = {arg(executor_id)}")
        for citizen_id in {actor.citizen_id if actor.kind is ActorKind.CITIZEN else None,
                           flt.citizen_id} - {None}:
            where.append(f"a.id IN (SELECT appeal_id FROM appeal_citizens "
                         f"WHERE citizen_id = {arg(citizen_id)})")
        if flt.statuses is not None:
            where.append(_status_in(flt.statuses))
        if flt.category_ids:
            where.append(f"a.category_id = ANY({arg(list(flt.category_ids))}::int[])")
        if flt.district_ids:
            where.append(f"a.district_id = ANY({arg(list(flt.district_ids))}::int[])")
        if flt.numbers:
            where.append(f"a.number = ANY({arg(list(flt.numbers))}::text[])")
        if flt.created_from is not None:
            where.append(f"a.created_at >= {arg(flt.created_from)}")
        if flt.created_to is not None:
            where.append(f"a.created_at < {arg(flt.created_to)}")
        if flt.overdue_at is not None:
            where.append(f"a.due_at < {arg(flt.overdue_at)} AND {_status_in(SLA_STATUSES)}")
        if not flt.include_duplicates:
            where.append("a.duplicate_of IS NULL")
        words = search_words(flt.search)
        for word in words:
            if len(word) < 3:
                # no trigram in it: kept off the index, which would have to read all of itself
                where.append(f"strpos(lower(a.address || ' ' || a.text), lower({arg(word)})) > 0")
            else:
                where.append(f"(a.address || ' ' || a.text) ILIKE {arg(_like_pattern(word))}")
        if after is not None:
            where.append(f"(a.created_at, a.id) < ({arg(after.at)}, {arg(after.id)})")
        sql = (f"SELECT {store.SUMMARY_COLUMNS} {store.SUMMARY_FROM} "
               f"{'WHERE ' + ' AND '.join(where) if where else ''} "
               f"ORDER BY a.created_at DESC, a.id DESC LIMIT {arg(limit + 1)}")
        async with self._pool.acquire() as conn:
            if words:
                # A cached generic plan cannot tell a rare word from a common one: planned
                # for a street name it reads the trigram index for "Київ" too. Each search
                # gets a plan for its own words.
                async with conn.transaction():
                    await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
                    rows = await conn.fetch(sql, *args)
            else:
                rows = await conn.fetch(sql, *args)
        items = [store.summary_from_row(r) for r in rows[:limit]]
        cursor = Cursor(items[-1].created_at, items[-1].id) if len(rows) > limit else None
        return Page(items, cursor)

    async def overdue(
        self, actor: Actor, *, executor_id: int | None = None, now: datetime | None = None,
        after: Cursor | None = None, limit: int = 100,
    ) -> Page:
        """Appeals on the executor's clock past their due time, most overdue first
        (keyset on due_at): what the portal's "overdue" view pages through."""
        now = now or self._clock()
        return await self._by_due(actor, executor_id, None, now, after, limit)

    async def due_soon(
        self, actor: Actor, *, executor_id: int | None = None, now: datetime | None = None,
        within: timedelta | None = None, after: Cursor | None = None, limit: int = 100,
    ) -> Page:
        """Appeals on the clock due within ``within`` (default: ``due_soon_hours``)."""
        now = now or self._clock()
        within = within or timedelta(hours=self._settings.due_soon_hours)
        return await self._by_due(actor, executor_id, now, now + within, after, limit)

    async def _by_due(
        self, actor: Actor, executor_id: int | None, start: datetime | None, end: datetime,
        after: Cursor | None, limit: int,
    ) -> Page:
        if not 1 <= limit <= 500:
            raise InvalidInput("limit: 1 to 500", details={"field": "limit"})
        if actor.kind is ActorKind.EXECUTOR:
            executor_id = actor.executor_id
        elif actor.kind is ActorKind.CITIZEN:
            raise Forbidden("due lists are for staff and executors")
        # one statement per shape (not "$n IS NULL OR ..."), so that each gets its index
        where = [_status_in(SLA_STATUSES), "a.due_at < $1"]
        args: list[Any] = [end, limit + 1]
        if start is not None:
            args.append(start)
            where.append(f"a.due_at >= ${len(args)}")
        if executor_id is not None:
            args.append(executor_id)
            where.append(f"a.executor_id = ${len(args)}")
        if after is not None:
            args += [after.at, after.id]
            where.append(f"(a.due_at, a.id) > (${len(args) - 1}, ${len(args)})")
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                f"""SELECT {store.SUMMARY_COLUMNS} {store.SUMMARY_FROM}
                    WHERE {' AND '.join(where)} ORDER BY a.due_at, a.id LIMIT $2""", *args)
        items = [store.summary_from_row(r) for r in rows[:limit]]
        last = items[-1] if len(rows) > limit else None
        return Page(items, Cursor(last.due_at, last.id) if last and last.due_at else None)

    async def open_appeals_of_phone(self, phone: str, *, limit: int = 5) -> list[AppealSummary]:
        """:class:`~hotline.core.appeals.AppealLookup`: the caller's open appeals, newest
        first — their own and those they joined (a duplicate shows its primary)."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                f"""SELECT {store.SUMMARY_COLUMNS} {store.SUMMARY_FROM}
                    JOIN appeal_citizens ac ON ac.appeal_id = a.id
                    JOIN citizens ci ON ci.id = ac.citizen_id
                    WHERE ci.phone = $1 AND a.status IN ({store.OPEN_SQL})
                    ORDER BY a.created_at DESC, a.id DESC LIMIT $2""",
                phone, limit)
        return [store.summary_from_row(r) for r in rows]

    async def appeal_for_caller(self, number: str, phone: str) -> AppealSummary | None:
        """:class:`~hotline.core.appeals.AppealLookup`: the appeal only if the caller is
        one of its citizens (by the duplicate they reported, its primary)."""
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(
                f"""SELECT {store.SUMMARY_COLUMNS} {store.SUMMARY_FROM}
                    WHERE a.id = (SELECT COALESCE(x.duplicate_of, x.id) FROM appeals x
                                  WHERE x.number = $1)
                      AND EXISTS (SELECT 1 FROM appeal_citizens ac
                                  JOIN citizens ci ON ci.id = ac.citizen_id
                                  WHERE ac.appeal_id = a.id AND ci.phone = $2)""",
                number, phone)
        return store.summary_from_row(row) if row is not None else None

    # --- helpers ---------------------------------------------------------------------------

    async def _view(self, conn: asyncpg.Connection, appeal_id: int, *,
                    for_update: bool = False) -> Appeal:
        row = await store.fetch_appeal_row(conn, appeal_id, for_update=for_update)
        if row is None:
            raise AppealNotFound(f"appeal {appeal_id} not found")
        return store.appeal_from_row(row)

    async def _locked(self, conn: asyncpg.Connection, appeal_id: int, actor: Actor,
                      expected_version: int | None) -> Appeal:
        row = await store.fetch_appeal_row(conn, appeal_id, for_update=True)
        appeal = self._visible(row, actor, str(appeal_id))
        if expected_version is not None and appeal.version != expected_version:
            raise AppealChanged(
                f"appeal {appeal.number} changed meanwhile (version {appeal.version}, "
                f"expected {expected_version}); reload it",
                details={"version": appeal.version})
        return appeal

    @staticmethod
    def _visible(row: asyncpg.Record | None, actor: Actor, ref: str) -> Appeal:
        """The appeal if this actor may see it; "not found" otherwise, the same answer
        as for an appeal that does not exist."""
        appeal = store.appeal_from_row(row) if row is not None else None
        if appeal is not None and actor.kind is ActorKind.EXECUTOR:
            if appeal.executor_id != actor.executor_id:
                appeal = None
        elif appeal is not None and actor.kind is ActorKind.CITIZEN:
            if actor.citizen_id not in appeal.citizen_ids:
                appeal = None
        if appeal is None:
            raise AppealNotFound(f"appeal {ref} not found")
        return appeal


def _status_in(statuses: frozenset[AppealStatus]) -> str:
    """The statuses written into the statement: the planner then sees which partial
    index applies (a parameter would hide it). Safe: enum values only."""
    values = sorted(AppealStatus(s).value for s in statuses)
    if not values:
        return "false"
    return "a.status IN (" + ", ".join(f"'{v}'" for v in values) + ")"


MAX_SEARCH = 200
MAX_SEARCH_WORDS = 8


def search_words(search: str) -> list[str]:
    """The words of a search box; the error names the field when it is too much."""
    search = (search or "").strip()
    if len(search) > MAX_SEARCH:
        raise InvalidInput(f"search: at most {MAX_SEARCH} characters", details={"field": "search"})
    words = search.split()
    if len(words) > MAX_SEARCH_WORDS:
        raise InvalidInput(f"search: at most {MAX_SEARCH_WORDS} words",
                           details={"field": "search"})
    return words


def _like_pattern(word: str) -> str:
    # what the person typed is matched literally: % and _ are not wildcards for them
    escaped = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def statuses_of(names: Sequence[str]) -> frozenset[AppealStatus]:
    """Status names from a form or a query string; the error names the bad one."""
    out = set()
    for name in names:
        try:
            out.add(AppealStatus(name))
        except ValueError:
            raise InvalidInput(f"status: unknown status {name!r}",
                               details={"field": "status"}) from None
    return frozenset(out)
