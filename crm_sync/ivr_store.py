"""What the IVR reads and writes in the case store, behind the ports of
:mod:`hotline.core.ports`: the caller's remembered language
(``citizens.preferred_language``), survey scores (``calls.survey_score``), and
appeals by phone (:class:`~hotline.core.appeals.AppealLookup`, over the
appeals service).

Asterisk gives the calling number as the trunk sends it (``380671234567``);
citizens' numbers are stored as they were registered, with or without a
leading ``+``: both spellings are tried, never anything looser (a caller must
never hear another citizen's appeal because two numbers look alike).
"""

from __future__ import annotations

from pathlib import Path

import asyncpg

from crm_sync.appeals.config import load_appeals_config
from crm_sync.taxonomy import load_taxonomy
from hotline.core.appeals import AppealLookup, AppealSummary

#: Where the IVR finds the spoken names (ivr/speech.py has the same prefixes).
CATEGORY_PROMPT = "hotline/category/"
EXECUTOR_PROMPT = "hotline/executor/"


def spoken_names(config_dir: Path) -> dict[str, tuple[str, str]]:
    """The prompts that name categories and executors, with their words
    ``(uk, en)``: the taxonomy's and ``routing.toml``'s. An executor added later
    through the admin API has none until the prompts are rendered again; the
    IVR then leaves its name out."""
    taxonomy = load_taxonomy(config_dir)
    names = {f"{CATEGORY_PROMPT}{c.code}": (c.name_uk, c.name_en) for c in taxonomy.categories}
    names |= {f"{EXECUTOR_PROMPT}{e.code}": (e.name_uk, e.name) for e in taxonomy.executors}
    names |= {f"{EXECUTOR_PROMPT}{e.code}": (e.name_uk or e.name, e.name)
              for e in load_appeals_config(config_dir).routing.executors}
    return names


def phone_spellings(phone: str) -> list[str]:
    """``"380671234567"`` → ``["380671234567", "+380671234567"]`` (and back)."""
    phone = phone.strip()
    if not phone:
        return []
    bare = phone[1:] if phone.startswith("+") else phone
    return [phone, bare] if phone.startswith("+") else [phone, f"+{bare}"]


class PostgresCallerLanguages:
    """:class:`~hotline.core.ports.CallerLanguages` on ``citizens``."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def preferred_language(self, phone: str) -> str | None:
        spellings = phone_spellings(phone)
        if not spellings:
            return None
        language: str | None = await self._pool.fetchval(
            """SELECT preferred_language FROM citizens
               WHERE phone = ANY($1::text[]) AND preferred_language IS NOT NULL
               ORDER BY updated_at DESC LIMIT 1""", spellings)
        return language

    async def remember_language(self, phone: str, language: str) -> None:
        spellings = phone_spellings(phone)
        if not spellings:
            return
        async with self._pool.acquire() as conn, conn.transaction():
            updated = await conn.execute(
                """UPDATE citizens SET preferred_language = $2, updated_at = now()
                   WHERE phone = ANY($1::text[])""", spellings, language)
            if updated == "UPDATE 0":
                # A first-time caller becomes a citizen known by their number.
                await conn.execute(
                    """INSERT INTO citizens (phone, preferred_language) VALUES ($1, $2)
                       ON CONFLICT (phone) DO UPDATE
                       SET preferred_language = EXCLUDED.preferred_language,
                           updated_at = now()""", spellings[0], language)


class PostgresSurveySink:
    """:class:`~hotline.core.ports.SurveySink` on ``calls``."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def record_survey(
        self, asterisk_server: str, uniqueid: str, score: int, operator_interface: str
    ) -> bool:
        # The newest call of that uniqueid: Asterisk's sequence restarts with it.
        result = await self._pool.execute(
            """UPDATE calls SET survey_score = $3, updated_at = now()
               WHERE id = (SELECT id FROM calls WHERE asterisk_server = $1 AND uniqueid = $2
                           ORDER BY started_at DESC LIMIT 1)""",
            asterisk_server, uniqueid, score)
        return bool(result == "UPDATE 1")


class PhoneAppealLookup:
    """:class:`~hotline.core.appeals.AppealLookup` that tries both spellings of
    the calling number on the appeals service's own lookup."""

    def __init__(self, appeals: AppealLookup) -> None:
        self._appeals = appeals

    async def open_appeals_of_phone(self, phone: str, *, limit: int = 5) -> list[AppealSummary]:
        found: dict[int, AppealSummary] = {}
        for spelling in phone_spellings(phone):
            for appeal in await self._appeals.open_appeals_of_phone(spelling, limit=limit):
                found.setdefault(appeal.id, appeal)
        newest = sorted(found.values(), key=lambda a: (a.created_at, a.id), reverse=True)
        return newest[:limit]

    async def appeal_for_caller(self, number: str, phone: str) -> AppealSummary | None:
        for spelling in phone_spellings(phone):
            appeal = await self._appeals.appeal_for_caller(number, spelling)
            if appeal is not None:
                return appeal
        return None
