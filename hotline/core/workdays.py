"""Working days: weekends, Kyiv's public holidays, due dates.

Pure arithmetic over dates. The calendar is built from the parsed
``config/holidays.toml`` (:func:`calendar_from_config`); reading the file is
the caller's business. The IVR's opening hours can use the same calendar.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from hotline.core.errors import ConfigError

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MOVABLE_FEASTS = ("easter", "trinity")
#: A due date means "by the end of that working day" in the city's time.
END_OF_DAY = time(23, 59, 59)
_MAX_SCAN_DAYS = 3660  # ten years without a working day means a broken calendar


def orthodox_easter(year: int) -> date:
    """Easter Sunday of the Orthodox church (Julian computus, Meeus), in the
    Gregorian calendar. Valid 1900–2099, where the calendars are 13 days apart."""
    if not 1900 <= year <= 2099:
        raise ValueError(f"year {year}: only 1900–2099 are supported")
    a, b, c = year % 4, year % 7, year % 19
    d = (19 * c + 15) % 30
    e = (2 * a + 4 * b - d + 34) % 7
    month, day = divmod(d + e + 114, 31)
    return date(year, month, day + 1) + timedelta(days=13)


@dataclass(frozen=True)
class Holiday:
    name: str
    month_day: tuple[int, int] | None = None  # fixed date, every year
    movable: str | None = None  # "easter" / "trinity"

    def in_year(self, year: int) -> date:
        if self.month_day is not None:
            return date(year, *self.month_day)
        easter = orthodox_easter(year)
        return easter if self.movable == "easter" else easter + timedelta(days=49)


@dataclass
class WorkingCalendar:
    """Which days are working days. ``extra_working_days`` (a Saturday worked in
    exchange for a bridge day) win over everything; ``extra_days_off`` over
    weekdays."""

    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("Europe/Kyiv"))
    weekend: frozenset[int] = frozenset({5, 6})  # date.weekday(): Saturday, Sunday
    holidays: tuple[Holiday, ...] = ()
    observe_holidays: bool = True
    move_weekend_holidays: bool = True
    extra_days_off: frozenset[date] = frozenset()
    extra_working_days: frozenset[date] = frozenset()
    _days_off: dict[int, frozenset[date]] = field(default_factory=dict, repr=False)

    def holidays_of(self, year: int) -> frozenset[date]:
        """The public days off of ``year``, a weekend holiday moved to the next
        working day when the calendar says so (Labour Code, art. 67)."""
        cached = self._days_off.get(year)
        if cached is not None:
            return cached
        days: set[date] = set()
        if self.observe_holidays:
            base = {h.in_year(year) for h in self.holidays}
            days |= base
            for day in sorted(base):
                if self.move_weekend_holidays and day.weekday() in self.weekend:
                    moved = day + timedelta(days=1)
                    while moved.weekday() in self.weekend or moved in days:
                        moved += timedelta(days=1)
                    days.add(moved)
        result = frozenset(days)
        self._days_off[year] = result
        return result

    def is_working_day(self, day: date) -> bool:
        if day in self.extra_working_days:
            return True
        if day in self.extra_days_off or day.weekday() in self.weekend:
            return False
        # a moved day off can fall into the next year (a holiday on 31 December)
        return day not in self.holidays_of(day.year) and day not in self.holidays_of(day.year - 1)

    def next_working_day(self, day: date) -> date:
        """``day`` itself if it is a working day, else the first one after it."""
        for _ in range(_MAX_SCAN_DAYS):
            if self.is_working_day(day):
                return day
            day += timedelta(days=1)
        raise ConfigError("working calendar: no working day in ten years")

    def add_working_days(self, start: date, days: int) -> date:
        """The ``days``-th working day after ``start`` (``start`` itself not counted);
        0 gives ``start`` if it is a working day, else the next one."""
        if days < 0:
            raise ValueError("days must not be negative")
        day = self.next_working_day(start) if days == 0 else start
        for _ in range(days):
            day = self.next_working_day(day + timedelta(days=1))
        return day

    def working_days_between(self, start: date, end: date) -> int:
        """Working days in (start, end]: how many a wait from ``start`` to ``end`` took."""
        count, day = 0, start
        while day < end:
            day += timedelta(days=1)
            if self.is_working_day(day):
                count += 1
        return count

    def local_date(self, moment: datetime) -> date:
        if moment.tzinfo is None:
            raise ValueError("an aware datetime is required")
        return moment.astimezone(self.timezone).date()

    def end_of(self, day: date) -> datetime:
        return datetime.combine(day, END_OF_DAY, tzinfo=self.timezone)

    def due_at(self, start: datetime, working_days: int) -> datetime:
        """The end of the ``working_days``-th working day after the day of ``start``
        (in the city's time): registered on a Friday with 1 working day → Monday."""
        return self.end_of(self.add_working_days(self.local_date(start), working_days))

    def shift_due(self, due: datetime, paused_from: datetime, paused_to: datetime) -> datetime:
        """``due`` moved later by the working days spent waiting for the citizen."""
        lost = self.working_days_between(self.local_date(paused_from), self.local_date(paused_to))
        if lost == 0:
            return due
        return self.end_of(self.add_working_days(self.local_date(due), lost))


def _dates(values: Iterable[Any], key: str) -> frozenset[date]:
    out = set()
    for value in values:
        if isinstance(value, datetime) or not isinstance(value, date | str):
            raise ConfigError(f"{key}: expected dates like 2026-01-02, got {value!r}")
        try:
            out.add(value if isinstance(value, date) else date.fromisoformat(value))
        except ValueError:
            raise ConfigError(f"{key}: expected dates like 2026-01-02, got {value!r}") from None
    return frozenset(out)


def _holiday(entry: Any, index: int, source: str) -> Holiday:
    where = f"{source}: holidays[{index}]"
    if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
        raise ConfigError(f"{where}: expected a table with a name and a date or a feast")
    name, when, feast = entry["name"], entry.get("date"), entry.get("movable")
    if (when is None) == (feast is None):
        raise ConfigError(f"{where} ({name}): give exactly one of date = \"MM-DD\" or movable")
    if feast is not None:
        if feast not in MOVABLE_FEASTS:
            raise ConfigError(f"{where} ({name}): movable must be one of {MOVABLE_FEASTS}")
        return Holiday(name, movable=str(feast))
    try:
        month, day = (int(part) for part in str(when).split("-"))
        date(2024, month, day)  # a leap year: 02-29 is a valid fixed date
    except ValueError:
        raise ConfigError(f"{where} ({name}): date must be \"MM-DD\", got {when!r}") from None
    return Holiday(name, month_day=(month, day))


def calendar_from_config(data: Mapping[str, Any], source: str = "holidays.toml") -> WorkingCalendar:
    """A calendar from the parsed holidays file; a bad value is a :class:`ConfigError`
    naming the file and the key."""
    known = {"timezone", "weekend", "observe_public_holidays", "move_weekend_holidays",
             "holidays", "extra_days_off", "extra_working_days"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{source}: unknown key {unknown[0]!r}")
    try:
        timezone = ZoneInfo(str(data.get("timezone", "Europe/Kyiv")))
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{source}: timezone: unknown zone {data.get('timezone')!r}") from None
    weekend = set()
    for name in data.get("weekend", ["saturday", "sunday"]):
        if name not in WEEKDAYS:
            raise ConfigError(f"{source}: weekend: expected day names like 'sunday', got {name!r}")
        weekend.add(WEEKDAYS.index(name))
    if len(weekend) == 7:
        raise ConfigError(f"{source}: weekend: at least one day must be a working day")
    flags = {}
    for key in ("observe_public_holidays", "move_weekend_holidays"):
        value = data.get(key, True)
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: {key}: expected true or false, got {value!r}")
        flags[key] = value
    entries = data.get("holidays", [])
    if not isinstance(entries, list):
        raise ConfigError(f"{source}: holidays: expected a list of tables")
    return WorkingCalendar(
        timezone=timezone,
        weekend=frozenset(weekend),
        holidays=tuple(_holiday(e, i, source) for i, e in enumerate(entries)),
        observe_holidays=flags["observe_public_holidays"],
        move_weekend_holidays=flags["move_weekend_holidays"],
        extra_days_off=_dates(data.get("extra_days_off", []), f"{source}: extra_days_off"),
        extra_working_days=_dates(
            data.get("extra_working_days", []), f"{source}: extra_working_days"
        ),
    )
