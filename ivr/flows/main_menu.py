"""Route ``ivr``: the hotline's main menu.

Plays the greeting, asks for one digit up to ``max_attempts`` times and leaves
the choice in channel variables for the dialplan, which then runs
``Queue(${HOTLINE_QUEUE})``:

- ``IVR_CHOICE``: the digit pressed, empty when the default queue was taken
- ``HOTLINE_QUEUE``: the queue name from ``config/ivr.toml``
- ``IVR_SOURCE``: ``fastagi`` (the fallback script writes ``fallback``)
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from hotline.core.ports import IvrJournal
from hotline.core.records import IvrStep
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
) -> Route:
    """``journal_timeout`` bounds each journal write: with the database down
    the caller must not wait for a connection timeout."""

    menu_digits = "".join(sorted(config.options))

    async def main_menu(session: AgiSession) -> None:
        log = session.log.bind(flow=ROUTE_NAME)

        async def record(step: str, **detail: Any) -> None:
            fact = IvrStep(server_id, session.env.uniqueid, datetime.now(UTC), step, detail)
            try:
                async with asyncio.timeout(journal_timeout):
                    await journal.record_step(fact)
            except Exception as exc:  # the call matters more than its journal
                log.warning("ivr_journal_failed", step=step, error=repr(exc))

        step = "greeting"
        try:
            await session.answer()
            # Callers who know the menu may press during the greeting.
            pressed = ""
            for prompt in config.greeting:
                pressed = await session.stream_file(prompt, menu_digits)
                if pressed:
                    break
            await record("greeting", prompts=list(config.greeting), pressed=pressed)

            choice = ""
            queue = config.default_queue
            early = config.option_for(pressed)
            if early is not None:
                choice, queue = pressed, early.queue
                await record("choice", digit=pressed, queue=queue, attempt=0)
            for attempt in range(1, 0 if early else config.max_attempts + 1):
                step = "menu"
                digits, timed_out = await session.get_data(config.menu_prompt, config.timeout_ms, 1)
                await record("menu", attempt=attempt)
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

            step = "route"
            await session.set_variable("IVR_CHOICE", choice)
            await session.set_variable("HOTLINE_QUEUE", queue)
            await session.set_variable("IVR_SOURCE", SOURCE)
            reason = "choice" if choice else "default"
            await record("route", queue=queue, choice=choice, reason=reason, source=SOURCE)
            log.info("ivr_routed", queue=queue, choice=choice, reason=reason)
        except AgiHangup as exc:
            log.info("ivr_caller_hung_up", step=step, reason=str(exc))
            await record("hangup", during=step)
        except Exception as exc:
            await record("error", during=step, error=type(exc).__name__)
            raise  # the server logs it and closes: the dialplan takes its fallback

    return main_menu
