"""The appeals' SQL: reading appeals as records, and writing a change's history
row together with its outbox row (one statement, inside the caller's transaction)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from crm_sync.appeals.routing import Area, RoutingRule
from hotline.core.appeals import (
    Actor,
    Appeal,
    AppealStatus,
    AppealSummary,
    Channel,
    HistoryEntry,
    open311_status,
)

OPEN_SQL = ("'registered', 'routed', 'accepted', 'in_progress', 'needs_clarification', "
            "'reopened'")

SUMMARY_COLUMNS = """
    a.id, a.number, a.status, a.due_at, a.created_at, a.updated_at,
    c.code AS category_code, c.name_uk AS category_name_uk, c.name_en AS category_name_en,
    e.code AS executor_code, e.name AS executor_name, e.name_uk AS executor_name_uk,
    p.number AS duplicate_of_number, a.status_reason, a.address, a.latitude, a.longitude,
    d.code AS district_code, a.text,
    (SELECT f.url FROM appeal_attachments f WHERE f.appeal_id = a.id
     ORDER BY f.id LIMIT 1) AS media_url"""

SUMMARY_FROM = """
FROM appeals a
JOIN categories c ON c.id = a.category_id
LEFT JOIN executors e ON e.id = a.executor_id
LEFT JOIN appeals p ON p.id = a.duplicate_of
LEFT JOIN districts d ON d.id = a.district_id"""

APPEAL_SELECT = f"""
SELECT {SUMMARY_COLUMNS},
    a.channel, a.citizen_id, a.call_id, a.category_id, a.district_id, a.executor_id,
    a.address_norm, a.status_changed_at, a.duplicate_of, a.reopen_count, a.version,
    c.sla_working_days,
    ARRAY(SELECT ac.citizen_id FROM appeal_citizens ac WHERE ac.appeal_id = a.id
          ORDER BY ac.role = 'joined', ac.attached_at, ac.citizen_id) AS citizen_ids
{SUMMARY_FROM}"""

_HISTORY_AND_OUTBOX = """
WITH h AS (
    INSERT INTO appeal_history (appeal_id, at, actor, actor_kind, channel, event, from_status,
                                to_status, note, executor_id, details)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
    RETURNING id
)
INSERT INTO outbox (topic, key, payload, created_at, available_at)
SELECT $12, 'appeal:' || $1::bigint || ':history:' || h.id,
       $13::jsonb || jsonb_build_object('history_id', h.id), $2, $2
FROM h
RETURNING id
"""

_OUTBOX_ONLY = """
INSERT INTO outbox (topic, key, payload, created_at, available_at) VALUES ($1, $2, $3, $4, $4)
"""


def summary_from_row(row: asyncpg.Record) -> AppealSummary:
    return AppealSummary(
        id=row["id"], number=row["number"], status=AppealStatus(row["status"]),
        category_code=row["category_code"], category_name_uk=row["category_name_uk"],
        category_name_en=row["category_name_en"], executor_code=row["executor_code"],
        executor_name=row["executor_name"], executor_name_uk=row["executor_name_uk"],
        due_at=row["due_at"], created_at=row["created_at"], updated_at=row["updated_at"],
        duplicate_of_number=row["duplicate_of_number"], status_reason=row["status_reason"],
        address=row["address"], latitude=row["latitude"], longitude=row["longitude"],
        district_code=row["district_code"], text=row["text"], media_url=row["media_url"],
    )


def appeal_from_row(row: asyncpg.Record) -> Appeal:
    summary = summary_from_row(row)
    return Appeal(
        **{f: getattr(summary, f) for f in summary.__dataclass_fields__},
        channel=row["channel"], citizen_id=row["citizen_id"], call_id=row["call_id"],
        category_id=row["category_id"], district_id=row["district_id"],
        executor_id=row["executor_id"],
        status_changed_at=row["status_changed_at"], duplicate_of=row["duplicate_of"],
        reopen_count=row["reopen_count"], version=row["version"],
        citizen_ids=tuple(row["citizen_ids"]),
    )


async def fetch_appeal_row(
    conn: asyncpg.Connection, appeal_id: int, *, for_update: bool = False
) -> asyncpg.Record | None:
    lock = " FOR UPDATE OF a" if for_update else ""
    return await conn.fetchrow(f"{APPEAL_SELECT} WHERE a.id = $1{lock}", appeal_id)


async def appeal_id_of_number(conn: asyncpg.Connection, number: str) -> int | None:
    value: int | None = await conn.fetchval("SELECT id FROM appeals WHERE number = $1", number)
    return value


def payload_of(appeal: Appeal) -> dict[str, Any]:
    """What a notification or an external CRM needs to know of the appeal after a change.
    Citizens are given by id: their contacts and consent stay in the case store."""
    return {
        "appeal_id": appeal.id,
        "number": appeal.number,
        "status": appeal.status.value,
        "open311_status": open311_status(appeal.status),
        "status_reason": appeal.status_reason,
        "channel": appeal.channel,
        "category": {"code": appeal.category_code, "name_uk": appeal.category_name_uk,
                     "name_en": appeal.category_name_en},
        "district": appeal.district_code,
        "address": appeal.address,
        "executor": (
            {"code": appeal.executor_code, "name": appeal.executor_name,
             "name_uk": appeal.executor_name_uk} if appeal.executor_code else None
        ),
        "due_at": appeal.due_at.isoformat() if appeal.due_at else None,
        "created_at": appeal.created_at.isoformat(),
        "duplicate_of": appeal.duplicate_of_number,
        "citizen_ids": list(appeal.citizen_ids),
        "version": appeal.version,
    }


async def write_change(
    conn: asyncpg.Connection,
    appeal: Appeal,
    *,
    at: datetime,
    actor: Actor,
    channel: Channel,
    event: str,
    topic: str,
    from_status: AppealStatus | None,
    note: str | None,
    details: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """One history row and its outbox row; ``appeal`` is the state after the change."""
    details = details or {}
    payload = {
        **payload_of(appeal),
        "event": event,
        "from_status": from_status.value if from_status else None,
        "to_status": appeal.status.value,
        "note": note,
        "actor_kind": actor.kind.value,
        "change_channel": channel.value,
        "at": at.isoformat(),
        "details": details,
        **(extra or {}),
    }
    await conn.fetchval(
        _HISTORY_AND_OUTBOX,
        appeal.id, at, actor.label, actor.kind.value, channel.value, event,
        from_status.value if from_status else None, appeal.status.value, note,
        appeal.executor_id, details, topic, payload,
    )


async def write_outbox(
    conn: asyncpg.Connection, topic: str, key: str, payload: dict[str, Any], at: datetime
) -> None:
    await conn.execute(_OUTBOX_ONLY, topic, key, payload, at)


async def history_of(conn: asyncpg.Connection, appeal_id: int) -> list[HistoryEntry]:
    rows = await conn.fetch(
        """SELECT at, event, actor, actor_kind, channel, from_status, to_status, note,
                  executor_id, details
           FROM appeal_history WHERE appeal_id = $1 ORDER BY at, id""",
        appeal_id,
    )
    return [
        HistoryEntry(
            at=r["at"], event=r["event"], actor=r["actor"], actor_kind=r["actor_kind"],
            channel=r["channel"],
            from_status=AppealStatus(r["from_status"]) if r["from_status"] else None,
            to_status=AppealStatus(r["to_status"]), note=r["note"],
            executor_id=r["executor_id"], details=r["details"],
        )
        for r in rows
    ]


_RULES = """
SELECT r.id, r.executor_id, e.code AS executor_code, r.priority, r.category_id, r.district_id,
       r.address_prefixes, r.area_lat, r.area_lon, r.area_radius_m, r.fallback, r.name,
       c.code AS category_code, d.code AS district_code
FROM routing_rules r
JOIN executors e ON e.id = r.executor_id AND e.active
LEFT JOIN categories c ON c.id = r.category_id
LEFT JOIN districts d ON d.id = r.district_id
WHERE r.active AND (r.fallback OR ((r.category_id = $1 OR r.category_id IS NULL)
                                    AND (r.district_id = $2 OR r.district_id IS NULL)))
"""


def rule_from_row(row: asyncpg.Record) -> RoutingRule:
    area = (
        Area(row["area_lat"], row["area_lon"], row["area_radius_m"])
        if row["area_lat"] is not None else None
    )
    return RoutingRule(
        id=row["id"], executor_id=row["executor_id"], executor_code=row["executor_code"],
        priority=row["priority"], category_id=row["category_id"],
        district_id=row["district_id"], address_prefixes=tuple(row["address_prefixes"]),
        area=area, fallback=row["fallback"], name=row["name"],
        category_code=row["category_code"], district_code=row["district_code"],
    )


async def rules_for(
    conn: asyncpg.Connection, category_id: int, district_id: int | None
) -> Sequence[RoutingRule]:
    return [rule_from_row(r) for r in await conn.fetch(_RULES, category_id, district_id)]
