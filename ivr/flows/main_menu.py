"""Route ``ivr``: the hotline's main menu.

Plays the greeting, asks for one digit up to ``max_attempts`` times and leaves
the choice in channel variables for the dialplan, which then runs
``Queue(${HOTLINE_QUEUE})``:

- ``IVR_CHOICE``: the digit pressed, empty when the default queue was taken
- ``HOTLINE_QUEUE``: the queue name from ``config/ivr.toml``
- ``IVR_SOURCE``: ``fastagi`` (the fallback script writes ``fallback``)

Before the menu: the caller's language (:mod:`ivr.flows.language`) and their
open appeals (:mod:`ivr.flows.appeal_status`); in the menu, the language's
switch digit and the status digit (an appeal by its number) besides the queues.

Journal steps (``ivr_steps.step``): ``greeting``, ``menu`` (``attempt``),
``choice`` (``digit``, ``queue``, ``attempt``), ``invalid``, ``timeout``,
``route`` (``queue``, ``choice``, ``reason``), ``hangup`` (``during``),
``error``; those of the language and status steps are prefixed ``language.``
and ``status.``. A route's steps of one call share its ``uniqueid``.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from hotline.core.ports import AppealLookup, CallerLanguages, IvrJournal
from hotline.core.records import IvrStep
from ivr.flows.appeal_status import AppealStatusStep
from ivr.flows.callflow import Callflow
from ivr.flows.language import LanguageStep
from ivr.menu import IvrConfig
from ivr.server import AgiHangup, AgiSession, Route

ROUTE_NAME = "ivr"
SOURCE = "fastagi"


def make_main_menu(
    config: IvrConfig,
    journal: IvrJournal,
    server_id: str,
    *,
    journal_timeout: float = 1.0,
    languages: CallerLanguages | None = None,
    appeals: AppealLookup | None = None,
    speakable: frozenset[str] | None = None,
    callflow: Callflow | None = None,
) -> Route:
    """``journal_timeout`` bounds each journal write: with the database down
    the caller must not wait for a connection timeout."""

    switch_digit, status_digit = config.language.switch_digit, config.status.digit
    menu_digits = "".join(sorted(config.options))
    # Callers who know the menu may press during the greeting and announcements.
    greeting_digits = menu_digits + switch_digit + status_digit

    async def main_menu(session: AgiSession) -> None:
        log = session.log.bind(flow=ROUTE_NAME)
        arrived_at = datetime.now(UTC)  # the caller's place in line for a callback
        heard_notice = False

        async def record(step: str, **detail: Any) -> None:
            fact = IvrStep(server_id, session.env.uniqueid, datetime.now(UTC), step, detail)
            try:
                async with asyncio.timeout(journal_timeout):
                    await journal.record_step(fact)
            except Exception as exc:  # the call matters more than its journal
                log.warning("ivr_journal_failed", step=step, error=repr(exc))

        language = LanguageStep(config.language, languages, record, log)
        status = AppealStatusStep(config.status, appeals, record, log, speakable=speakable)
        step = "greeting"
        try:
            await session.answer()
            step = "language"
            await language.start(session)
            step = "greeting"
            # Callers who know the menu may press during the greeting.
            pressed = ""
            for prompt in config.greeting:
                pressed = await session.stream_file(prompt, greeting_digits)
                if pressed:
                    break
            await record("greeting", prompts=list(config.greeting), pressed=pressed)
            step = "language"
            if not pressed:
                pressed = await language.offer(session, greeting_digits)
            if pressed == switch_digit:
                await language.switch(session)
                pressed = ""
            step = "status"
            if not pressed:
                pressed = await status.announce_open(session, language.current,
                                                     menu_digits + status_digit)
            if pressed == status_digit:
                await status.by_number(session, language.current)
                pressed = ""

            choice = ""
            queue = config.default_queue
            early = config.option_for(pressed)
            if early is not None:
                choice, queue = pressed, early.queue
                await record("choice", digit=pressed, queue=queue, attempt=0)
            skipped = False
            if callflow is not None and early is None:
                step = "notice"
                heard_notice, skipped = await callflow.play_notices(session, record)
                if skipped:  # straight to an operator: the default queue, no menu
                    await record("choice", digit="", queue=queue, attempt=0, reason="notice_skip")
            attempt, extras = 0, 0
            while not early and not skipped and attempt < config.max_attempts:
                attempt += 1
                step = "menu"
                digits, timed_out = await session.get_data(config.menu_prompt, config.timeout_ms, 1)
                await record("menu", attempt=attempt)
                # A language switch or a status request is no wrong answer: the
                # menu plays again, within a bound of its own.
                if digits in (switch_digit, status_digit) and extras < config.max_attempts:
                    extras += 1
                    attempt -= 1
                    if digits == switch_digit:
                        step = "language"
                        await language.switch(session)
                    else:
                        step = "status"
                        await status.by_number(session, language.current)
                    continue
                option = config.option_for(digits)
                if option is not None:
                    choice, queue = digits, option.queue
                    await record("choice", digit=digits, queue=queue, attempt=attempt)
                    break
                if not digits:
                    await record("timeout", attempt=attempt, timed_out=timed_out)
                else:
                    await record("invalid", digit=digits, attempt=attempt)
                if attempt < config.max_attempts:
                    await session.stream_file(config.invalid_prompt)

            if callflow is not None:
                step = "hours_callback"
                ivr_exit = await callflow.before_queue(session, queue, arrived_at, record)
                if ivr_exit is not None:
                    # The dialplan hangs up instead of queueing (and the call's
                    # record says "callback" when one was booked).
                    await session.set_variable("IVR_EXIT", ivr_exit)
                    await session.set_variable("IVR_CHOICE", choice)
                    await session.set_variable("HOTLINE_QUEUE", queue)
                    await session.set_variable("IVR_SOURCE", SOURCE)
                    await record("exit", queue=queue, exit=ivr_exit)
                    return
            step = "route"
            await session.set_variable("IVR_CHOICE", choice)
            await session.set_variable("HOTLINE_QUEUE", queue)
            await session.set_variable("IVR_SOURCE", SOURCE)
            reason = "choice" if choice else "default"
            await record("route", queue=queue, choice=choice, reason=reason, source=SOURCE)
            log.info("ivr_routed", queue=queue, choice=choice, reason=reason)
        except AgiHangup as exc:
            log.info("ivr_caller_hung_up", step=step, reason=str(exc))
            await record("hangup", during=step, **({"after_notice": True} if heard_notice else {}))
        except Exception as exc:
            await record("error", during=step, error=type(exc).__name__)
            raise  # the server logs it and closes: the dialplan takes its fallback

    return main_menu
