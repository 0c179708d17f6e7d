"""District notices before the menu; opening hours and the callback offer before
the queue (issue 9). Used by the main menu (:mod:`ivr.flows.main_menu`).

Everything the IVR learns here comes through ports (:mod:`hotline.core.ports`),
each bounded by ``lookup_timeout``: a slow or broken case store costs the
caller no notice and no offer, never silence or a dropped call.
"""

from __future__ import annotations

import asyncio
import tomllib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from hotline.core.callflow import (
    CALLFLOW_FILE,
    CallflowConfig,
    HoursOverride,
    check_callflow_text,
    estimate_wait,
    is_open,
    pick_override,
)
from hotline.core.errors import ConfigError
from hotline.core.ports import CallbackBook, HoursOverrideSource, NoticeSource, QueueLoadSource
from hotline.core.records import CallbackRequest, Notice
from hotline.core.workdays import WorkingCalendar, calendar_from_config
from ivr.menu import IvrConfigError, read_config_file
from ivr.server import AgiSession

#: Journal writer of the calling flow: ``record(step, **detail)``.
Record = Callable[..., Awaitable[None]]
T = TypeVar("T")

#: What :meth:`Callflow.before_queue` tells the dialplan (channel variable IVR_EXIT).
EXIT_CALLBACK = "callback"
EXIT_CLOSED = "closed"


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Callflow:
    config: CallflowConfig
    calendar: WorkingCalendar
    notices: NoticeSource
    loads: QueueLoadSource
    overrides: HoursOverrideSource
    callbacks: CallbackBook
    server_id: str
    lookup_timeout: float = 1.0
    clock: Callable[[], datetime] = field(default=_now)

    async def _ask(self, session: AgiSession, what: str, call: Awaitable[T], default: T) -> T:
        try:
            async with asyncio.timeout(self.lookup_timeout):
                return await call
        except Exception as exc:  # the caller is served without it
            session.log.warning("ivr_lookup_failed", what=what, error=repr(exc))
            return default

    async def play_notices(self, session: AgiSession, record: Record) -> tuple[bool, bool]:
        """Play the caller's district notices: ``(heard one, pressed skip to operator)``."""
        found: list[Notice] = await self._ask(
            session, "notices", self.notices.notices_for(session.env.callerid, self.clock()), [])
        if not found:
            return False, False
        settings = self.config.notices
        sounds = [settings.intro, *(n.sound for n in found), settings.skip_prompt]
        pressed = ""
        for sound in sounds:
            pressed = await session.stream_file(sound, settings.skip_digit)
            if pressed:
                break
        skipped = pressed == settings.skip_digit
        await record("notice", ids=[n.id for n in found], kinds=[n.kind for n in found],
                     skipped=skipped)
        session.log.info("ivr_notice_played", notices=[n.id for n in found], skipped=skipped)
        return True, skipped

    async def before_queue(
        self, session: AgiSession, queue: str, arrived_at: datetime, record: Record
    ) -> str | None:
        """Hours and the callback offer: :data:`EXIT_CALLBACK` (booked), :data:`EXIT_CLOSED`
        (closed, no callback wanted) or None (go on to the queue)."""
        overrides: Mapping[str, HoursOverride] = await self._ask(
            session, "hours_overrides", self.overrides.hours_overrides(), {})
        override = pick_override(overrides, queue)
        open_now = is_open(self.config.hours_of(queue), self.calendar, self.clock(), override)
        await record("hours", queue=queue, open=open_now,
                     override=override.mode if override is not None else None)
        callback = self.config.callback
        if not open_now:
            await session.stream_file(self.config.closed_prompt)
            if callback.enabled and await self._offer(session, queue, "closed", record):
                return await self._book(session, queue, "closed", arrived_at, record)
            session.log.info("ivr_queue_closed", queue=queue)
            return EXIT_CLOSED
        if not callback.enabled:
            return None
        load = await self._ask(session, "queue_load", self.loads.queue_load(queue), None)
        wait = estimate_wait(load, callback.default_handle_seconds)
        await record("wait_estimate", queue=queue, seconds=wait,
                     threshold=callback.threshold_seconds)
        if wait is None or wait <= callback.threshold_seconds:
            return None
        if await self._offer(session, queue, "wait", record):
            return await self._book(session, queue, "wait", arrived_at, record)
        return None

    async def _offer(self, session: AgiSession, queue: str, reason: str, record: Record) -> bool:
        cb = self.config.callback
        digits, _ = await session.get_data(cb.offer_prompt, cb.offer_timeout_ms, 1)
        accepted = digits == cb.accept_digit
        await record("callback_offer", queue=queue, reason=reason, accepted=accepted)
        return accepted

    async def _book(
        self, session: AgiSession, queue: str, reason: str, arrived_at: datetime, record: Record
    ) -> str | None:
        number = session.env.callerid
        if not number or not number.lstrip("+").isdigit():
            # Nobody to call back: the caller waits as everyone else does.
            await record("callback_refused", queue=queue, why="no_number")
            return None if reason == "wait" else EXIT_CLOSED
        request = CallbackRequest(self.server_id, session.env.uniqueid, queue, number, reason,
                                  arrived_at, self.config.callback.max_attempts)
        missing: Any = None
        request_id = await self._ask(session, "book_callback",
                                     self.callbacks.book_callback(request), missing)
        if request_id is None:
            await record("callback_refused", queue=queue, why="store_unavailable")
            return None if reason == "wait" else EXIT_CLOSED
        await session.stream_file(self.config.callback.booked_prompt)
        await record("callback_booked", queue=queue, request_id=request_id, reason=reason)
        session.log.info("ivr_callback_booked", queue=queue, request_id=request_id, reason=reason)
        return EXIT_CALLBACK


HOLIDAYS_FILE = "holidays.toml"


def load_callflow(
    config_dir: Path, queues: tuple[str, ...]
) -> tuple[CallflowConfig, WorkingCalendar]:
    """``callflow.toml`` and the city's calendar (``holidays.toml``) of ``config_dir``;
    :class:`~ivr.menu.IvrConfigError` names every problem."""
    text, problems = read_config_file(config_dir, CALLFLOW_FILE)
    config = None
    if text is not None:
        config, problems = check_callflow_text(text, queues)
    if problems or config is None:
        raise IvrConfigError(problems, where=str(config_dir))
    return config, load_calendar(config_dir)


def load_calendar(config_dir: Path) -> WorkingCalendar:
    path = config_dir / HOLIDAYS_FILE
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read ({exc})") from None
    return calendar_from_config(data, HOLIDAYS_FILE)
