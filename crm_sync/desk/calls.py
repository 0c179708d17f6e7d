"""The call the in-call panel works on (found by its channel's uniqueid), and what
the operator records on it: the disposition and the knowledge-base article used.

Only ``calls.disposition``, ``calls.kb_article_id`` and an empty ``citizen_id``
are written here; the call store's upsert never touches the first two, so a late
AMI update of the call does not undo the operator's wrap-up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from hotline.core.desk import Disposition
from hotline.core.errors import InvalidInput, NotFound
from hotline.core.logs import get_logger

_UNIQUEID = re.compile(r"[A-Za-z0-9._:-]{1,150}")
log = get_logger("crm_sync.desk")


class CallNotFound(NotFound):
    error_id = "call_not_found"


@dataclass(frozen=True)
class PanelCall:
    id: int
    uniqueid: str
    caller_number: str
    caller_name: str
    language: str
    started_at: datetime
    answered_at: datetime | None
    ended_at: datetime | None
    ivr_choice: str | None
    queue: str | None
    outcome: str
    operator_name: str | None
    citizen_id: int | None
    disposition: str | None
    kb_article_id: int | None


_CALL_COLUMNS = """id, uniqueid, caller_number, caller_name, language, started_at, answered_at,
    ended_at, ivr_choice, queue, outcome, operator_name, citizen_id, disposition,
    kb_article_id"""


async def find_call(pool: asyncpg.Pool | asyncpg.Connection, uniqueid: str) -> PanelCall:
    """The newest call of that channel uniqueid (Asterisk's uniqueids repeat only
    across restarts or servers; the panel is opened while the call is up)."""
    if not _UNIQUEID.fullmatch(uniqueid):
        raise CallNotFound(f"call {uniqueid[:40]!r} not found")
    row = await pool.fetchrow(
        f"SELECT {_CALL_COLUMNS} FROM calls WHERE uniqueid = $1 "
        "ORDER BY started_at DESC, id DESC LIMIT 1", uniqueid)
    if row is None:
        raise CallNotFound(f"call {uniqueid!r} not found")
    return PanelCall(**dict(row))


async def call_context(pool: asyncpg.Pool, call: PanelCall) -> dict[str, Any]:
    """What the panel prefills from: the citizen (by the call's link, else by the
    caller's number), the spheres of the call's queue, the call's appeals, the
    article recorded."""
    citizen = await pool.fetchrow(
        """SELECT ci.id, ci.phone, ci.name, ci.email, ci.notify_channel, ci.notify_consent,
                  ci.preferred_language, d.code AS district
           FROM citizens ci LEFT JOIN districts d ON d.id = ci.district_id
           WHERE ci.id = $1 OR (ci.phone = $2 AND $2 <> '')
           ORDER BY (ci.id = $1) IS TRUE DESC LIMIT 1""", call.citizen_id, call.caller_number)
    spheres = await pool.fetch(
        """SELECT DISTINCT s.code, s.name_uk FROM categories c JOIN spheres s ON s.id = c.sphere_id
           WHERE c.default_queue = $1 ORDER BY s.code""", call.queue or "")
    appeals = await pool.fetch(
        """SELECT number, status, created_at FROM appeals WHERE call_id = $1
           ORDER BY created_at, id""", call.id)
    article = None
    if call.kb_article_id is not None:
        article = await pool.fetchrow("SELECT id, title FROM kb_articles WHERE id = $1",
                                      call.kb_article_id)
    return {
        "citizen": dict(citizen) if citizen is not None else None,
        "spheres": [dict(r) for r in spheres],
        "appeals": [dict(r) for r in appeals],
        "article": dict(article) if article is not None else None,
    }


def parse_disposition(value: Any) -> Disposition:
    try:
        return Disposition(value)
    except ValueError:
        raise InvalidInput(
            f"disposition: one of {', '.join(d.value for d in Disposition)}",
            details={"field": "disposition"}) from None


async def set_disposition(
    pool: asyncpg.Pool, call: PanelCall, disposition: Disposition, by: str
) -> None:
    await pool.execute("UPDATE calls SET disposition = $2, updated_at = now() WHERE id = $1",
                       call.id, disposition.value)
    log.info("call_disposition_recorded", uniqueid=call.uniqueid, call_id=call.id,
             disposition=disposition.value, by=by)


async def set_article(pool: asyncpg.Pool, call: PanelCall, article_id: int, by: str) -> None:
    """Only an active article can be the answer given."""
    async with pool.acquire() as conn, conn.transaction():
        known = await conn.fetchval(
            "SELECT 1 FROM kb_articles WHERE id = $1 AND active FOR SHARE", article_id)
        if not known:
            raise InvalidInput(f"article_id: no active article {article_id}",
                               details={"field": "article_id"})
        await conn.execute("UPDATE calls SET kb_article_id = $2, updated_at = now() "
                           "WHERE id = $1", call.id, article_id)
    log.info("call_article_recorded", uniqueid=call.uniqueid, call_id=call.id,
             article_id=article_id, by=by)
