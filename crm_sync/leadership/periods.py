"""Periods of the dashboard, pure: parsing and checking them (a clear 400 for a
bad one), and cutting one into what the roll-ups answer (whole months, single
days) and what is read live (from the roll-ups' watermark on)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hotline.core.errors import InvalidInput

CITY_TZ = ZoneInfo("Europe/Kyiv")


@dataclass(frozen=True)
class Period:
    """Kyiv days ``first`` .. ``last``, both included."""

    first: date
    last: date

    @property
    def end(self) -> date:
        """The day after the last (exclusive end)."""
        return self.last + timedelta(days=1)

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    def start_ts(self) -> datetime:
        return city_midnight(self.first)

    def end_ts(self) -> datetime:
        return city_midnight(self.end)


def city_midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), CITY_TZ)


def city_today(now: datetime) -> date:
    return now.astimezone(CITY_TZ).date()


def _parse_day(value: str, field: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"{field} must be a date YYYY-MM-DD, got {value[:40]!r}",
                           details={"field": field}) from None


def parse_period(
    raw_from: str | None, raw_to: str | None, *, today: date, max_days: int
) -> Period:
    """From the query's ``from``/``to``; the default is this year up to today."""
    first = _parse_day(raw_from, "from") if raw_from else date(today.year, 1, 1)
    last = _parse_day(raw_to, "to") if raw_to else today
    if last < first:
        raise InvalidInput(f"the period ends ({last}) before it starts ({first})",
                           details={"field": "to"})
    period = Period(first, last)
    if period.days > max_days:
        raise InvalidInput(
            f"the period has {period.days} days; at most {max_days} are allowed",
            details={"field": "from", "max_days": max_days})
    if first.year < 2000 or last.year > today.year + 1:
        raise InvalidInput("the period must lie between 2000 and next year",
                           details={"field": "from"})
    return period


def parse_year(raw: str | None, *, today: date) -> int:
    if not raw:
        return today.year
    if not raw.isdigit() or not 2000 <= int(raw) <= today.year:
        raise InvalidInput(f"year must be from 2000 to {today.year}, got {raw[:20]!r}",
                           details={"field": "year"})
    return int(raw)


def month_start(day: date) -> date:
    return day.replace(day=1)


def next_month(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


@dataclass(frozen=True)
class Split:
    """Whole months ``[months_from, months_to)`` from month roll-ups, day ranges
    from day roll-ups, and ``[live_from, live_to)`` from the source table (days)."""

    months_from: date
    months_to: date
    day_ranges: tuple[tuple[date, date], ...]
    live_from: date | None
    live_to: date | None


def split_period(period: Period, watermark: date | None) -> Split:
    """``watermark``: the roll-ups hold the days before it (None: nothing rolled up)."""
    rolled_to = period.first if watermark is None else max(period.first,
                                                           min(period.end, watermark))
    live = (rolled_to, period.end) if rolled_to < period.end else (None, None)
    first_whole = period.first if period.first.day == 1 else next_month(period.first)
    last_whole = month_start(rolled_to)
    if first_whole < last_whole:
        ranges = tuple(r for r in ((period.first, first_whole), (last_whole, rolled_to))
                       if r[0] < r[1])
        return Split(first_whole, last_whole, ranges, *live)
    ranges = ((period.first, rolled_to),) if period.first < rolled_to else ()
    return Split(period.first, period.first, ranges, *live)
