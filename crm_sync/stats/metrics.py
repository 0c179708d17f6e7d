"""The arithmetic of the reports, pure (sums in, figures out).

Definitions (Asterisk's ``app_queue`` where it has one; ``../shared/DESIGN.md``):

- offered: every stay of a caller in a queue (an ENTERQUEUE) except short
  abandons (hung up before ``short_abandon`` seconds of waiting);
- SL: answered within the queue's ``servicelevel`` ÷ answered (app_queue's
  callscompletedinsl ÷ callscompleted); SL2: (answered within + abandoned
  within) ÷ (answered + abandoned), abandons counted as app_queue counts them,
  short ones included (app_queue knows no short abandon);
- ASA: mean wait of answered calls; longest wait: over offered calls;
- AHT: (talk + wrap-up) ÷ answered; abandon rate: abandoned ÷ offered;
- occupancy: handling time ÷ (handling + available time).

A figure whose divisor is zero is ``None`` (shown as "—"), never 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hotline.core.errors import InvalidInput

CITY_TZ = ZoneInfo("Europe/Kyiv")
GRANULARITIES = ("halfhour", "hour", "day", "week", "month")
#: The longest period a queue report covers (the history kept is ten years).
MAX_PERIOD_DAYS = 3700
#: The operators' report reads half-hours per operator and raw state changes: a
#: quarter at most (a year of a Kyiv-sized centre is ~4 million operator half-hours).
MAX_DETAIL_DAYS = 92


def percent(part: int, whole: int) -> float | None:
    return round(100 * part / whole, 1) if whole else None


def ratio(part: float, whole: float, digits: int = 1) -> float | None:
    return round(part / whole, digits) if whole else None


def service_levels(
    answered: int, answered_within: int, abandoned: int, abandoned_within: int
) -> tuple[float | None, float | None]:
    """(SL, SL2) in percent."""
    return (
        percent(answered_within, answered),
        percent(answered_within + abandoned_within, answered + abandoned),
    )


@dataclass
class QueueTotals:
    """Sums over any set of half-hours (a row of ``stats_queue_halfhour`` or many)."""

    offered: int = 0
    answered: int = 0
    abandoned: int = 0
    short_abandoned: int = 0
    timed_out: int = 0
    callbacks: int = 0
    answered_within: int = 0
    abandoned_within: int = 0
    wait_answered: int = 0
    max_wait: int = 0
    talk: int = 0
    wrap: int = 0

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> QueueTotals:
        return cls(**{f.name: int(row[f.name] or 0) for f in fields(cls)})

    def add(self, other: QueueTotals) -> None:
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            setattr(self, f.name, max(mine, theirs) if f.name == "max_wait" else mine + theirs)


def queue_figures(t: QueueTotals) -> dict[str, Any]:
    """The report's columns for one queue and one period."""
    sl, sl2 = service_levels(t.answered, t.answered_within,
                             t.abandoned + t.short_abandoned, t.abandoned_within)
    return {
        "offered": t.offered,
        "answered": t.answered,
        "abandoned": t.abandoned,
        "short_abandoned": t.short_abandoned,
        "timed_out": t.timed_out,
        "callbacks": t.callbacks,
        "service_level": sl,
        "service_level2": sl2,
        "asa": ratio(t.wait_answered, t.answered),
        "longest_wait": t.max_wait if t.offered else None,
        "aht": ratio(t.talk + t.wrap, t.answered),
        "abandon_rate": percent(t.abandoned, t.offered),
    }


def occupancy(handling_seconds: float, available_seconds: float) -> float | None:
    return percent(round(handling_seconds), round(handling_seconds + available_seconds))


@dataclass(frozen=True)
class Period:
    """[since, until) in the city's time; ``until`` is exclusive."""

    since: datetime
    until: datetime
    granularity: str = "day"

    @property
    def days(self) -> float:
        return (self.until - self.since).total_seconds() / 86400


def _parse_day(name: str, value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"{name} must be a date (YYYY-MM-DD) or a time",
                           details={"field": name}) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=CITY_TZ)
    return parsed


def parse_period(
    since: str | None, until: str | None, granularity: str | None = None, *,
    today: date, max_days: int = MAX_PERIOD_DAYS,
) -> Period:
    """A report's period from query parameters: dates are the city's days and
    ``until`` a date is inclusive (the whole day); times are widened to whole
    half-hours. Defaults: today."""
    gran = granularity or "day"
    if gran not in GRANULARITIES:
        raise InvalidInput(f"granularity must be one of {', '.join(GRANULARITIES)}",
                           details={"field": "granularity"})
    start = _parse_day("since", since) if since else datetime.combine(today, time(), CITY_TZ)
    if until:
        end = _parse_day("until", until)
        if len(until) <= 10:  # a date: up to the end of that day
            end = datetime.combine(end.date() + timedelta(days=1), time(), CITY_TZ)
    else:
        end = datetime.combine(today + timedelta(days=1), time(), CITY_TZ)
    start, end = to_slot(start), to_slot(end, up=True)
    if end <= start:
        raise InvalidInput("until must be after since", details={"field": "until"})
    if (end - start) > timedelta(days=max_days):
        raise InvalidInput(f"the period is longer than {max_days} days",
                           details={"field": "since", "max_days": max_days})
    return Period(start, end, gran)


def to_slot(at: datetime, *, up: bool = False) -> datetime:
    """``at`` to a half-hour boundary (the rollups' resolution), down or up."""
    floor = at.replace(minute=at.minute - at.minute % 30, second=0, microsecond=0)
    return floor + timedelta(minutes=30) if up and floor < at else floor


def bucket_start(slot: datetime, granularity: str) -> datetime:
    """The bucket of a half-hour slot, in the city's calendar (weeks start on Monday)."""
    local = slot.astimezone(CITY_TZ)
    if granularity == "halfhour":
        return local
    if granularity == "hour":
        return local.replace(minute=0, second=0, microsecond=0)
    day = datetime.combine(local.date(), time(), CITY_TZ)
    if granularity == "day":
        return day
    if granularity == "week":
        return day - timedelta(days=local.weekday())
    return day.replace(day=1)


def bucket_label(start: datetime, granularity: str) -> str:
    if granularity in ("halfhour", "hour"):
        return start.strftime("%Y-%m-%d %H:%M")
    if granularity == "month":
        return start.strftime("%Y-%m")
    if granularity == "week":
        return f"{start:%Y-%m-%d} (W{start.isocalendar().week:02d})"
    return start.strftime("%Y-%m-%d")


def buckets(period: Period) -> list[datetime]:
    """Every bucket of the period, empty ones too (a chart shows the gaps)."""
    out: list[datetime] = []
    current = bucket_start(period.since.astimezone(UTC), period.granularity)
    while current < period.until:
        out.append(current)
        current = _next_bucket(current, period.granularity)
    return out


def _next_bucket(start: datetime, granularity: str) -> datetime:
    if granularity == "halfhour":
        return (start.astimezone(UTC) + timedelta(minutes=30)).astimezone(CITY_TZ)
    if granularity == "hour":
        return (start.astimezone(UTC) + timedelta(hours=1)).astimezone(CITY_TZ)
    local_day = start.date()
    if granularity == "day":
        nxt = local_day + timedelta(days=1)
    elif granularity == "week":
        nxt = local_day + timedelta(days=7)
    else:
        nxt = (local_day.replace(day=28) + timedelta(days=4)).replace(day=1)
    return datetime.combine(nxt, time(), CITY_TZ)


def sum_by_bucket(
    rows: Iterable[Mapping[str, Any]], granularity: str
) -> dict[tuple[str, datetime], QueueTotals]:
    """(queue, bucket's start in UTC) → totals, from rows with ``queue`` and ``slot``
    (UTC keys: the hour repeated when summer time ends is two buckets)."""
    out: dict[tuple[str, datetime], QueueTotals] = {}
    for row in rows:
        key = (str(row["queue"]), bucket_start(row["slot"], granularity).astimezone(UTC))
        totals = QueueTotals.of(row)
        if key in out:
            out[key].add(totals)
        else:
            out[key] = totals
    return out
