"""District notices, opening hours and callbacks: the pure part (issue 9).

The configuration (``config/callflow.toml``) is parsed here into typed records
with every problem named; the estimated wait and the opening-hours decision
are arithmetic over records the adapters fill in (the queue's live load from
AMI, the emergency override from the case store, the calendar from
``holidays.toml``). No I/O.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Any

from hotline.core.problems import Problem
from hotline.core.workdays import WorkingCalendar

CALLFLOW_FILE = "callflow.toml"
#: ``hours_overrides.scope`` of an override that holds for every queue.
ALL_QUEUES = "*"
OVERRIDE_MODES = ("open", "closed")
NOTICE_KINDS = ("water", "heating", "power", "road", "emergency", "other")

_SOUND = re.compile(r"^[A-Za-z0-9_-]+(?:/[A-Za-z0-9_.-]+)*$")
_SPAN = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")
_DIGIT = re.compile(r"^[0-9*#]$")
_Report = Callable[[str, str], None]


@dataclass(frozen=True)
class QueueLoad:
    """A queue's live state as AMI's QueueSummary reports it."""

    queue: str
    logged_in: int
    available: int
    callers: int
    hold_time: int  # seconds, Asterisk's running average of answered calls' waits
    talk_time: int  # seconds, the average talk of answered calls


def estimate_wait(load: QueueLoad | None, default_handle_seconds: int) -> int | None:
    """Seconds a caller joining now would wait, or None when it cannot be told.

    With a free operator and nobody ahead the wait is 0. Otherwise the callers
    ahead (and this one) are shared among the logged-in operators, each taking
    an average handling time (Asterisk's TalkTime, or the configured default
    before any call was answered); Asterisk's own average hold is a floor.
    Nobody logged in: unknown — the dialplan overflows such calls, and no
    callback could be placed for that queue either.
    """
    if load is None or load.logged_in <= 0:
        return None
    if load.available > load.callers:
        return 0
    handle = load.talk_time if load.talk_time > 0 else default_handle_seconds
    share = (load.callers + 1) * handle // load.logged_in
    return max(share, load.hold_time)


def free_operators(load: QueueLoad | None, dialing: int) -> int:
    """Operators a callback may be placed for now: free ones not already promised
    to a caller waiting in the queue or to a callback being dialled."""
    if load is None:
        return 0
    return max(0, load.available - load.callers - dialing)


@dataclass(frozen=True)
class Span:
    start: time
    end: time | None  # None: until midnight ("24:00")

    def covers(self, moment: time) -> bool:
        return self.start <= moment and (self.end is None or moment < self.end)


@dataclass(frozen=True)
class QueueHours:
    working_days: Span | None  # None: closed on working days
    days_off: Span | None  # weekends and Kyiv's public holidays


ALWAYS = QueueHours(Span(time(0), None), Span(time(0), None))


@dataclass(frozen=True)
class HoursOverride:
    """An admin's emergency switch: ``open`` answers whatever the hours say,
    ``closed`` sends every caller to the closed message and the callback offer."""

    scope: str  # a queue name or ALL_QUEUES
    mode: str
    reason: str
    set_by: str
    set_at: datetime


def is_open(
    hours: QueueHours,
    calendar: WorkingCalendar,
    moment: datetime,
    override: HoursOverride | None = None,
) -> bool:
    """Is the queue taking calls at ``moment`` (aware), in the city's time?"""
    if override is not None:
        return override.mode == "open"
    local = moment.astimezone(calendar.timezone)
    span = hours.working_days if calendar.is_working_day(local.date()) else hours.days_off
    return span is not None and span.covers(local.time())


def pick_override(overrides: Mapping[str, HoursOverride], queue: str) -> HoursOverride | None:
    """A queue's own override wins over the one for every queue."""
    return overrides.get(queue) or overrides.get(ALL_QUEUES)


@dataclass(frozen=True)
class NoticeSettings:
    intro: str  # played before the first notice
    skip_digit: str  # pressed during a notice: straight to an operator
    skip_prompt: str


@dataclass(frozen=True)
class CallbackSettings:
    enabled: bool
    threshold_seconds: int  # offer a callback when the estimated wait is above this
    default_handle_seconds: int
    offer_prompt: str
    accept_digit: str
    offer_timeout_ms: int
    booked_prompt: str
    max_attempts: int
    retry_seconds: int
    ring_seconds: int
    dial: str  # Originate's Channel, "{number}" replaced by the citizen's number
    poll_seconds: float


@dataclass(frozen=True)
class CallflowConfig:
    notices: NoticeSettings
    callback: CallbackSettings
    closed_prompt: str
    default_hours: QueueHours
    hours: Mapping[str, QueueHours] = field(default_factory=dict)

    def hours_of(self, queue: str) -> QueueHours:
        return self.hours.get(queue, self.default_hours)

    def prompts(self) -> dict[str, str]:
        """Every sound these flows play, by the key of ``callflow.toml`` naming it."""
        return {
            "notices.intro": self.notices.intro,
            "notices.skip_prompt": self.notices.skip_prompt,
            "callback.offer_prompt": self.callback.offer_prompt,
            "callback.booked_prompt": self.callback.booked_prompt,
            "hours.closed_prompt": self.closed_prompt,
        }


def check_callflow_text(
    text: str, queues: tuple[str, ...]
) -> tuple[CallflowConfig | None, list[Problem]]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return None, [Problem(CALLFLOW_FILE, "", f"not valid TOML: {exc}")]
    return check_callflow(data, queues)


def check_callflow(
    data: Mapping[str, Any], queues: tuple[str, ...]
) -> tuple[CallflowConfig | None, list[Problem]]:
    """The configuration and every problem of ``callflow.toml``; ``queues``: the
    catalogue's queue names (hours may only name those)."""
    problems: list[Problem] = []

    def bad(key: str, reason: str) -> None:
        problems.append(Problem(CALLFLOW_FILE, key, reason))

    _unknown(data, "", {"notices", "callback", "hours"}, bad)
    notices = _table(data, "notices", bad)
    callback = _table(data, "callback", bad)
    hours = _table(data, "hours", bad)
    _unknown(notices, "notices.", {"intro", "skip_digit", "skip_prompt"}, bad)
    _unknown(callback, "callback.", {
        "enabled", "threshold_seconds", "default_handle_seconds", "offer_prompt",
        "accept_digit", "offer_timeout_ms", "booked_prompt", "max_attempts", "retry_seconds",
        "ring_seconds", "dial", "poll_seconds"}, bad)
    _unknown(hours, "hours.", {"closed_prompt", "default", "queues"}, bad)

    notice = NoticeSettings(
        intro=_sound(notices, "notices.intro", bad),
        skip_digit=_digit(notices, "notices.skip_digit", bad),
        skip_prompt=_sound(notices, "notices.skip_prompt", bad),
    )
    enabled = callback.get("enabled", True)
    if not isinstance(enabled, bool):
        bad("callback.enabled", "expected true or false")
        enabled = False
    dial = callback.get("dial", "")
    if not isinstance(dial, str) or dial.count("{number}") != 1 or "," in dial:
        bad("callback.dial", "expected a channel with one {number}, e.g. "
                             "'PJSIP/{number}@citizens-trunk'")
        dial = ""
    poll = callback.get("poll_seconds", 2)
    if not isinstance(poll, int | float) or isinstance(poll, bool) or not 0.2 <= poll <= 60:
        bad("callback.poll_seconds", "expected seconds from 0.2 to 60")
        poll = 2
    cb = CallbackSettings(
        enabled=enabled,
        threshold_seconds=_int(callback, "callback.threshold_seconds", 0, 7200, bad),
        default_handle_seconds=_int(callback, "callback.default_handle_seconds", 10, 3600, bad),
        offer_prompt=_sound(callback, "callback.offer_prompt", bad),
        accept_digit=_digit(callback, "callback.accept_digit", bad),
        offer_timeout_ms=_int(callback, "callback.offer_timeout_ms", 500, 30_000, bad),
        booked_prompt=_sound(callback, "callback.booked_prompt", bad),
        max_attempts=_int(callback, "callback.max_attempts", 1, 10, bad),
        retry_seconds=_int(callback, "callback.retry_seconds", 1, 86_400, bad),
        ring_seconds=_int(callback, "callback.ring_seconds", 5, 120, bad),
        dial=dial,
        poll_seconds=float(poll),
    )
    default = _hours(_table(hours, "default", bad, "hours."), "hours.default", bad)
    per_queue: dict[str, QueueHours] = {}
    for name, table in _table(hours, "queues", bad, "hours.").items():
        key = f"hours.queues.{name}"
        if name not in queues:
            bad(key, f"unknown queue {name!r} (queues.toml has {', '.join(queues)})")
        elif not isinstance(table, Mapping):
            bad(key, "expected a table")
        else:
            per_queue[name] = _hours(table, key, bad)
    closed_prompt = _sound(hours, "hours.closed_prompt", bad)
    if problems:
        return None, problems
    return CallflowConfig(notice, cb, closed_prompt, default, per_queue), []


def _unknown(table: Mapping[str, Any], prefix: str, known: set[str], bad: _Report) -> None:
    for key in table:
        if key not in known:
            bad(f"{prefix}{key}", f"unknown key (expected {', '.join(sorted(known))})")


def _table(data: Mapping[str, Any], key: str, bad: _Report, prefix: str = "") -> Mapping[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, Mapping):
        bad(f"{prefix}{key}", "expected a table")
        return {}
    return value


def _sound(table: Mapping[str, Any], key: str, bad: _Report) -> str:
    value = table.get(key.rsplit(".", 1)[-1])
    if not isinstance(value, str) or not _SOUND.match(value) or ".." in value:
        bad(key, "expected a sound name like 'hotline/closed'")
        return ""
    return value


def _digit(table: Mapping[str, Any], key: str, bad: _Report) -> str:
    value = table.get(key.rsplit(".", 1)[-1])
    if not isinstance(value, str) or not _DIGIT.match(value):
        bad(key, "expected one key of the phone: 0-9, * or #")
        return ""
    return value


def _int(table: Mapping[str, Any], key: str, low: int, high: int, bad: _Report) -> int:
    value = table.get(key.rsplit(".", 1)[-1])
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        bad(key, f"expected an integer from {low} to {high}")
        return low
    return value


def _hours(table: Mapping[str, Any], key: str, bad: _Report) -> QueueHours:
    _unknown(table, f"{key}.", {"working_days", "days_off"}, bad)
    return QueueHours(
        working_days=_span(table.get("working_days", "00:00-24:00"), f"{key}.working_days", bad),
        days_off=_span(table.get("days_off", "00:00-24:00"), f"{key}.days_off", bad),
    )


def parse_span(text: str) -> Span | None:
    """``"08:00-20:00"`` → a span; ``""`` (closed) → None; ValueError otherwise."""
    if text == "":
        return None
    match = _SPAN.match(text)
    if match is None:
        raise ValueError(text)
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    start = time(h1, m1)
    if (h2, m2) == (24, 0):
        return Span(start, None)
    end = time(h2, m2)
    if end <= start:
        raise ValueError(text)
    return Span(start, end)


def _span(value: Any, key: str, bad: _Report) -> Span | None:
    try:
        if not isinstance(value, str):
            raise ValueError(value)
        return parse_span(value)
    except ValueError:
        bad(key, "expected \"HH:MM-HH:MM\" in Kyiv time (end after start, "
                 "\"24:00\" for midnight), or \"\" for closed")
        return None
