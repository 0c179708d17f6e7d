"""A citizen's choices for notifications, as an operator records them on the
citizen's word: language, channel, e-mail, consent."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import asyncpg

from hotline.core.errors import InvalidInput, NotFound

LANGUAGES = ("uk", "en")
CHANNELS = ("sms", "email", "none")
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]{1,190}\.[^@\s]{2,}")


async def preferences(pool: asyncpg.Pool, citizen_id: int) -> dict[str, Any]:
    row = await pool.fetchrow(
        """SELECT id, preferred_language, notify_channel, email, notify_consent, consent_at,
                  opted_out_at, opt_out_via FROM citizens WHERE id = $1""", citizen_id)
    if row is None:
        raise NotFound(f"citizen {citizen_id} not found")
    return dict(row)


def _check(language: str, channel: str, email: str | None, consent: bool) -> None:
    if language not in LANGUAGES:
        raise InvalidInput(f"language: one of {', '.join(LANGUAGES)}",
                           details={"field": "language"})
    if channel not in CHANNELS:
        raise InvalidInput(f"channel: one of {', '.join(CHANNELS)}",
                           details={"field": "channel"})
    if email is not None and not _EMAIL.fullmatch(email):
        raise InvalidInput("email: not an e-mail address", details={"field": "email"})
    if channel == "email" and email is None:
        raise InvalidInput("email: required for the e-mail channel", details={"field": "email"})


async def set_preferences(
    pool: asyncpg.Pool, citizen_id: int, *, language: str, channel: str,
    email: str | None, consent: bool, at: datetime,
) -> dict[str, Any]:
    """Consent given here also lifts an earlier opt-out (the citizen asked again);
    consent withdrawn cancels what is still queued for them."""
    _check(language, channel, email, consent)
    async with pool.acquire() as conn, conn.transaction():
        updated = await conn.fetchval(
            """UPDATE citizens SET preferred_language = $2, notify_channel = $3, email = $4,
                   consent_at = CASE WHEN $5 AND NOT notify_consent THEN $6 ELSE consent_at END,
                   opted_out_at = CASE WHEN $5 THEN NULL ELSE opted_out_at END,
                   opt_out_via = CASE WHEN $5 THEN NULL ELSE opt_out_via END,
                   notify_consent = $5, updated_at = $6
               WHERE id = $1 RETURNING id""",
            citizen_id, language, channel, email, consent, at)
        if updated is None:
            raise NotFound(f"citizen {citizen_id} not found")
        if not consent:
            await conn.execute(
                """UPDATE outbox_messages SET status = 'cancelled',
                       last_error = 'consent withdrawn', updated_at = $2
                   WHERE citizen_id = $1 AND status = 'queued'""", citizen_id, at)
    return await preferences(pool, citizen_id)
