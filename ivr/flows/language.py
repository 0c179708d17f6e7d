"""Step of the ``ivr`` route: the caller's language, Ukrainian or English.

The channel speaks the language the citizen chose on an earlier call
(``citizens.preferred_language`` by the calling number, through the
:class:`~hotline.core.ports.CallerLanguages` port), else ``[language] default``
of ``ivr.toml``. After the greeting the other language is offered in its own
words ("For English, press 9" to a Ukrainian channel); the switch digit also
works during the greeting and the menu. A choice is remembered for the next call.
A lookup that fails or is slow only means the default language: never silence.

Journal steps (``ivr_steps.step``, detail in brackets):
- ``language.start`` (``language``, ``source``: remembered / default /
  lookup_failed / anonymous) — the language the call starts in;
- ``language.offer`` (``offered``, ``pressed``) — the other language offered;
- ``language.choice`` (``language``, ``from``, ``remembered``: bool) — switched.
"""

from __future__ import annotations

import asyncio
from typing import Any

from hotline.core.ports import CallerLanguages
from ivr.flows.journal import Recorder
from ivr.menu import LANGUAGES, LanguageConfig
from ivr.server import AgiSession

LANGUAGE_VARIABLE = "CHANNEL(language)"


def caller_phone(session: AgiSession) -> str:
    """The calling number, or "" when there is none to trust (withheld, unknown)."""
    number = session.env.callerid.strip()
    if not number or number.lower() in {"unknown", "anonymous", "private", "restricted"}:
        return ""
    return number


class LanguageStep:
    def __init__(
        self, config: LanguageConfig, languages: CallerLanguages | None, record: Recorder,
        log: Any,
    ) -> None:
        self.config = config
        self._languages = languages
        self._record = record
        self._log = log
        self.current = config.default

    async def start(self, session: AgiSession) -> str:
        """Set the channel to the remembered (or default) language."""
        phone = caller_phone(session)
        language, source = self.config.default, "default"
        if not phone:
            source = "anonymous"
        elif self._languages is not None:
            try:
                async with asyncio.timeout(self.config.lookup_timeout_ms / 1000):
                    remembered = await self._languages.preferred_language(phone)
            except Exception as exc:  # the database is down or slow: default language
                self._log.warning("ivr_language_lookup_failed", error=repr(exc))
                source = "lookup_failed"
            else:
                if remembered in LANGUAGES:
                    language, source = str(remembered), "remembered"
        if language != session.env.language:
            await session.set_variable(LANGUAGE_VARIABLE, language)
        self.current = language
        await self._record("language.start", language=language, source=source)
        return language

    async def offer(self, session: AgiSession, escape_digits: str) -> str:
        """Offer the other language in its own words; returns the digit pressed."""
        other = self.config.other(self.current)
        await session.set_variable(LANGUAGE_VARIABLE, other)
        try:
            pressed = await session.stream_file(self.config.offer_prompt, escape_digits)
        finally:
            if not session.hung_up:
                await session.set_variable(LANGUAGE_VARIABLE, self.current)
        await self._record("language.offer", offered=other, pressed=pressed)
        return pressed

    async def switch(self, session: AgiSession) -> str:
        """The caller pressed the switch digit: speak the other language from now
        on and remember it for their next call."""
        previous, self.current = self.current, self.config.other(self.current)
        await session.set_variable(LANGUAGE_VARIABLE, self.current)
        remembered = False
        phone = caller_phone(session)
        if phone and self._languages is not None:
            try:
                async with asyncio.timeout(self.config.lookup_timeout_ms / 1000):
                    await self._languages.remember_language(phone, self.current)
                remembered = True
            except Exception as exc:  # next time they choose again; now they are served
                self._log.warning("ivr_language_remember_failed", error=repr(exc))
        await self._record("language.choice", language=self.current, remembered=remembered,
                           **{"from": previous})
        self._log.info("ivr_language_chosen", language=self.current, remembered=remembered)
        return self.current
