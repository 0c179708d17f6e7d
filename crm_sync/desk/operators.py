"""The operator desk's view of the case store: operators as people (their phone and
skills) and what the screen-pop shows of a caller (their record, appeals, calls)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from crm_sync.appeals import AppealFilter, AppealsService
from hotline.core.appeals import OPEN_STATUSES, Actor, ActorKind
from hotline.core.desk import (
    PRESENCE_FILE,
    DeskConfig,
    DeskConfigError,
    Skill,
    load_desk_config_text,
    member_interface,
    parse_desk_config,
    phone_variants,
)
from hotline.core.errors import InvalidInput, NotFound
from hotline.core.people import ADMIN, OPERATOR, SUPERVISOR
from hotline.core.problems import Problem

#: Roles whose people can sit at a desk (have a phone and skills).
DESK_ROLES = (OPERATOR, SUPERVISOR, ADMIN)
RECENT_CALLS = 5
RECENT_APPEALS = 10


@dataclass(frozen=True)
class DeskOperator:
    id: int
    login: str
    display_name: str
    role: str
    interface: str  # the queue member (and state) interface
    skills: tuple[Skill, ...]


async def desk_operator(pool: asyncpg.Pool, login: str) -> DeskOperator | None:
    """An active person who can sit at a desk, with their phone and skills."""
    row = await pool.fetchrow(
        """SELECT o.id, o.login, o.display_name, o.role, o.queue_interface,
                  COALESCE(array_agg(s.queue ORDER BY s.penalty, s.queue)
                           FILTER (WHERE s.queue IS NOT NULL), '{}') AS queues,
                  COALESCE(array_agg(s.penalty ORDER BY s.penalty, s.queue)
                           FILTER (WHERE s.queue IS NOT NULL), '{}') AS penalties
           FROM operators o LEFT JOIN operator_skills s ON s.operator_id = o.id
           WHERE o.login = $1 AND o.active AND o.role = ANY($2::text[])
           GROUP BY o.id""",
        login, list(DESK_ROLES))
    if row is None:
        return None
    skills = tuple(Skill(q, p) for q, p in zip(row["queues"], row["penalties"], strict=True))
    return DeskOperator(row["id"], row["login"], row["display_name"], row["role"],
                        member_interface(row["login"], row["queue_interface"]), skills)


async def set_skills(
    pool: asyncpg.Pool, login: str, skills: Mapping[str, int], queues: Iterable[str]
) -> None:
    """Replace an operator's skills; every queue must be one of ``queues`` (the catalogue)."""
    known = set(queues)
    for queue, penalty in skills.items():
        if queue not in known:
            raise InvalidInput(f"skills: {queue!r} is not a queue of the catalogue "
                               f"({', '.join(sorted(known))})", details={"field": "skills"})
        if not 0 <= penalty <= 100:
            raise InvalidInput(f"skills: penalty of {queue!r} must be 0 to 100",
                               details={"field": "skills"})
    async with pool.acquire() as conn, conn.transaction():
        operator_id = await conn.fetchval(
            "SELECT id FROM operators WHERE login = $1 AND role = ANY($2::text[])",
            login, list(DESK_ROLES))
        if operator_id is None:
            raise NotFound(f"no operator {login!r}")
        await conn.execute("DELETE FROM operator_skills WHERE operator_id = $1", operator_id)
        await conn.executemany(
            "INSERT INTO operator_skills (operator_id, queue, penalty) VALUES ($1, $2, $3)",
            [(operator_id, q, p) for q, p in skills.items()])


class PostgresOperatorDirectory:
    """:class:`~hotline.core.desk.OperatorDirectory`: every desk operator's interface,
    read in one query and kept ``ttl`` seconds. A ringing phone must not wait for a
    database round trip, and the answer changes only when an admin edits a person."""

    def __init__(self, pool: asyncpg.Pool, *, ttl: float = 30.0, miss_ttl: float = 2.0) -> None:
        self._pool = pool
        self._ttl = ttl
        self._miss_ttl = miss_ttl  # an interface not known: read again, but not every event
        self._logins: dict[str, str] = {}
        self._read_at = -1e9
        self._lock = asyncio.Lock()

    async def login_of_interface(self, interface: str) -> str | None:
        age = time.monotonic() - self._read_at
        if age >= self._ttl or (interface not in self._logins and age >= self._miss_ttl):
            async with self._lock:
                if self._read_at == -1e9 or time.monotonic() - self._read_at >= self._miss_ttl:
                    rows = await self._pool.fetch(
                        """SELECT login, queue_interface FROM operators
                           WHERE active AND role = ANY($1::text[])""", list(DESK_ROLES))
                    self._logins = {member_interface(r["login"], r["queue_interface"]):
                                    r["login"] for r in rows}
                    self._read_at = time.monotonic()
        return self._logins.get(interface)


#: The announcements active now for a district, emergencies first (the IVR plays
#: the same ones to the caller before the menu).
_NOTICES = """
SELECT id, kind, text, ends_at FROM announcements
WHERE $1 = ANY (district_ids) AND cancelled_at IS NULL AND starts_at <= $2 AND ends_at > $2
ORDER BY (kind = 'emergency') DESC, starts_at DESC, id DESC LIMIT 3
"""


class PostgresCallerContext:
    """:class:`~hotline.core.desk.CallerContext`: the citizen found by number, their
    appeals through the appeals service, their recent calls, the announcements
    active for their district."""

    def __init__(self, pool: asyncpg.Pool, appeals: AppealsService) -> None:
        self._pool = pool
        self._appeals = appeals
        self._actor = Actor(ActorKind.SYSTEM, "desk:screen-pop")

    async def caller_context(self, number: str) -> dict[str, Any]:
        variants = phone_variants(number) if number else []
        if not variants:
            return {"citizen": None, "appeals": [], "recent_calls": [], "notices": []}
        citizen_row, calls = await asyncio.gather(
            self._pool.fetchrow(
                """SELECT c.id, c.phone, c.name, c.preferred_language, c.district_id,
                          d.code AS district_code, d.name_uk AS district_name
                   FROM citizens c LEFT JOIN districts d ON d.id = c.district_id
                   WHERE c.phone = ANY($1::text[])
                   ORDER BY array_position($1::text[], c.phone) LIMIT 1""", variants),
            self._pool.fetch(
                """SELECT call_key, started_at, queue, outcome, wait_seconds, talk_seconds,
                          operator_name
                   FROM calls WHERE caller_number = ANY($1::text[])
                   ORDER BY started_at DESC LIMIT $2""", variants, RECENT_CALLS + 1))
        appeals: list[dict[str, Any]] = []
        notices: list[dict[str, Any]] = []
        citizen: dict[str, Any] | None = None
        if citizen_row is not None:
            citizen = dict(citizen_row.items())
            if citizen_row["district_id"] is not None:
                notices = [{**dict(r.items()), "ends_at": r["ends_at"].isoformat()}
                           for r in await self._pool.fetch(
                               _NOTICES, citizen_row["district_id"], datetime.now(UTC))]
            page = await self._appeals.list_appeals(
                self._actor, AppealFilter(citizen_id=citizen_row["id"]), limit=RECENT_APPEALS)
            appeals = [{
                "number": a.number, "status": str(a.status),
                "open": a.status in OPEN_STATUSES, "category": a.category_name_uk,
                "executor": a.executor_name_uk or a.executor_name, "address": a.address,
                "created_at": a.created_at.isoformat(),
                "due_at": a.due_at.isoformat() if a.due_at else None,
            } for a in page.items]
            appeals.sort(key=lambda a: not a["open"])  # open ones first, each group newest first
        recent = [{**dict(r.items()), "started_at": r["started_at"].isoformat()}
                  for r in calls]
        return {"citizen": citizen, "appeals": appeals, "recent_calls": recent,
                "notices": notices}



def load_presence_config(config_dir: Path) -> DeskConfig:
    """``config_dir/presence.toml``; blocking (read once at start)."""
    path = config_dir / PRESENCE_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DeskConfigError([Problem(PRESENCE_FILE, "", f"cannot read: {exc}")],
                              where=str(config_dir)) from None
    return load_desk_config_text(text, where=str(config_dir))


def check_presence_config(config_dir: Path) -> list[Problem]:
    """``hotline check-config``: the desk's file reads and holds together."""
    try:
        text = (config_dir / PRESENCE_FILE).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [Problem(PRESENCE_FILE, "", f"cannot read: {exc}")]
    return parse_desk_config(text)[1]
