"""Step of the ``ivr`` route: an appeal's status by phone.

Before the menu, a caller whose number has open appeals hears how many and the
latest one: "У вас два відкриті звернення. Останнє — щодо відсутності гарячої
води — у роботі. Виконавець — … Термін виконання — до п'ятого грудня." From the
menu (or during the greeting and announcements), ``[status] digit`` asks for an
appeal number and reads that appeal. Appeals are read through
:class:`~hotline.core.ports.AppealLookup`, which returns an appeal only to a
phone that is one of its citizens': someone else's appeal and an unknown number
get the same "not found" (no hint that the number exists), and a caller without
a number is never looked up. A failing or slow lookup plays
``unavailable_prompt`` (by number) or nothing (before the menu), and the call
goes on to the menu.

Numbers and dates are composed from recorded prompts by :mod:`ivr.speech`.
The appeal number keyed is its digits after ``1551-<year>-`` (this year), or
the year and those digits (e.g. ``2025000123``).

Journal steps (``ivr_steps.step``, detail in brackets):
- ``status.open`` (``count``, ``appeal``, ``status``, ``prompts``: what is said) —
  open appeals announced (written as it starts);
- ``status.skip`` (``digit``) — the caller pressed a key during the announcement;
- ``status.lookup_failed`` (``during``: open / number, ``error``);
- ``status.enter`` (``attempt``, ``digits_count``, ``timed_out``) — number asked;
- ``status.read`` (``appeal``, ``status``, ``prompts``) — the caller's own appeal read;
- ``status.not_found`` (``digits_count``) — no such appeal for this phone (or none at all);
- ``status.timeout`` (``attempt``) — nothing keyed;
- ``status.exit`` (``reason``: read / not_found / no_input / unavailable / anonymous).
Appeal numbers are recorded, never the caller's number.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from hotline.core.appeals import OPEN_STATUSES, AppealSummary
from hotline.core.ports import AppealLookup
from ivr import speech
from ivr.flows.journal import Recorder
from ivr.flows.language import caller_phone
from ivr.menu import StatusConfig
from ivr.server import AgiSession

KYIV = ZoneInfo("Europe/Kyiv")
CATEGORY_PROMPT = speech.CATEGORY
EXECUTOR_PROMPT = speech.EXECUTOR


def appeal_number_from_digits(digits: str, year: int) -> str | None:
    """``"123"`` → ``"1551-<year>-000123"``; ``"2025000123"`` → ``"1551-2025-000123"``."""
    if not digits.isdigit():
        return None
    match = re.fullmatch(r"(20\d\d)(\d{6,})", digits)
    if match is not None:
        year, digits = int(match[1]), match[2]
    serial = int(digits)
    if serial == 0:
        return None
    return f"1551-{year}-{serial:06d}"


def appeal_words(
    appeal: AppealSummary, lang: str, today: date, *, about: str = "latest_about",
    speakable: frozenset[str] | None = None,
) -> list[str]:
    """The prompts that tell ``appeal``: what about, its status, executor, due date.
    ``speakable``: the category and executor names that have prompts (None: all);
    a name without one is left out rather than played as a missing file."""

    def has(name: str) -> bool:
        return speakable is None or name in speakable

    category = f"{CATEGORY_PROMPT}{appeal.category_code}"
    if has(category):
        words = [f"{speech.STATUS}{about}", category]
    else:
        words = [f"{speech.STATUS}{about.replace('_about', '')}"]
    words.append(speech.status_prompt(appeal.status))
    executor = f"{EXECUTOR_PROMPT}{appeal.executor_code}"
    if appeal.executor_code and has(executor):
        words += [f"{speech.STATUS}executor", executor]
    if appeal.due_at is not None and appeal.status in OPEN_STATUSES:
        due = appeal.due_at.astimezone(KYIV).date()
        try:
            date_words = speech.speak_date(due, lang, year=due.year != today.year)
        except speech.SpeechError:  # a year we cannot say: the rest is still worth hearing
            date_words = speech.speak_date(due, lang)
        words += [f"{speech.STATUS}due", *date_words]
    return words


def open_appeals_words(
    appeals: list[AppealSummary], lang: str, today: date,
    speakable: frozenset[str] | None = None,
) -> list[str]:
    """"You have two open appeals. The latest, about …" (newest first in ``appeals``)."""
    n = len(appeals)
    return [f"{speech.STATUS}you_have", *speech.speak_number(n, lang, "n"),
            speech.open_appeals_prompt(n, lang),
            *appeal_words(appeals[0], lang, today, speakable=speakable)]


def kyiv_today() -> date:
    return datetime.now(UTC).astimezone(KYIV).date()


class AppealStatusStep:
    def __init__(
        self, config: StatusConfig, lookup: AppealLookup | None, record: Recorder, log: Any,
        *, today: Callable[[], date] = kyiv_today, speakable: frozenset[str] | None = None,
    ) -> None:
        self.config = config
        self._speakable = speakable
        self._lookup = lookup
        self._record = record
        self._log = log
        self._today = today

    async def _play(self, session: AgiSession, words: list[str], escape_digits: str) -> str:
        for word in words:
            pressed = await session.stream_file(word, escape_digits)
            if pressed:
                return pressed
        return ""

    async def announce_open(self, session: AgiSession, lang: str, escape_digits: str) -> str:
        """Tell a caller with open appeals about them; returns a digit pressed meanwhile."""
        phone = caller_phone(session)
        if not phone or self._lookup is None:
            return ""
        try:
            async with asyncio.timeout(self.config.lookup_timeout_ms / 1000):
                appeals = await self._lookup.open_appeals_of_phone(phone)
        except Exception as exc:  # the menu must follow, whatever the case store does
            self._log.warning("ivr_status_lookup_failed", during="open", error=repr(exc))
            await self._record("status.lookup_failed", during="open", error=type(exc).__name__)
            return ""
        if not appeals:
            return ""
        latest = appeals[0]
        words = open_appeals_words(appeals, lang, self._today(), self._speakable)
        # Journaled before it plays: a caller who hangs up meanwhile was still told.
        await self._record("status.open", count=len(appeals), appeal=latest.number,
                           status=latest.status.value, prompts=words)
        pressed = await self._play(session, words, escape_digits)
        if pressed:
            await self._record("status.skip", digit=pressed)
        return pressed

    async def by_number(self, session: AgiSession, lang: str) -> str:
        """The caller keys an appeal number; read it if it is theirs. Returns the
        exit reason (also journaled as ``status.exit``)."""
        phone = caller_phone(session)
        reason = "no_input"
        for attempt in range(1, self.config.max_attempts + 1):
            digits, timed_out = await session.get_data(
                self.config.enter_prompt, self.config.timeout_ms, self.config.max_digits)
            await self._record("status.enter", attempt=attempt, digits_count=len(digits),
                               timed_out=timed_out)
            if not digits:
                await self._record("status.timeout", attempt=attempt)
                continue
            reason = await self._read(session, lang, phone, digits)
            break
        await self._record("status.exit", reason=reason)
        return reason

    async def _read(self, session: AgiSession, lang: str, phone: str, digits: str) -> str:
        today = self._today()
        number = appeal_number_from_digits(digits, today.year)
        appeal: AppealSummary | None = None
        if not phone:
            # Nobody to check the appeal against: never read it.
            await session.stream_file(self.config.not_found_prompt)
            await self._record("status.not_found", digits_count=len(digits))
            return "anonymous"
        if number is not None and self._lookup is not None:
            try:
                async with asyncio.timeout(self.config.lookup_timeout_ms / 1000):
                    appeal = await self._lookup.appeal_for_caller(number, phone)
            except Exception as exc:
                self._log.warning("ivr_status_lookup_failed", during="number", error=repr(exc))
                await self._record("status.lookup_failed", during="number",
                                   error=type(exc).__name__)
                await session.stream_file(self.config.unavailable_prompt)
                return "unavailable"
        elif self._lookup is None:
            await session.stream_file(self.config.unavailable_prompt)
            return "unavailable"
        if appeal is None:
            await session.stream_file(self.config.not_found_prompt)
            await self._record("status.not_found", digits_count=len(digits))
            return "not_found"
        words = appeal_words(appeal, lang, today, about="appeal_about",
                             speakable=self._speakable)
        await self._play(session, words, "")
        await self._record("status.read", appeal=appeal.number, status=appeal.status.value,
                           prompts=words)
        return "read"
