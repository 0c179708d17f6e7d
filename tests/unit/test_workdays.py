"""Working-day arithmetic: weekends, Kyiv's holidays, due dates (hotline.core.workdays)."""

from __future__ import annotations

import tomllib
from datetime import UTC, date, datetime
from typing import Any

import pytest

from hotline.core.errors import ConfigError
from hotline.core.workdays import WorkingCalendar, calendar_from_config, orthodox_easter
from tests.support.paths import CONFIG_DIR


def shipped() -> WorkingCalendar:
    with (CONFIG_DIR / "holidays.toml").open("rb") as fh:
        return calendar_from_config(tomllib.load(fh))


def d(text: str) -> date:
    return date.fromisoformat(text)


@pytest.mark.parametrize(("year", "easter"), [
    (2016, "2016-05-01"), (2021, "2021-05-02"), (2024, "2024-05-05"),
    (2025, "2025-04-20"), (2026, "2026-04-12"), (2027, "2027-05-02"),
])
def test_orthodox_easter(year: int, easter: str) -> None:
    assert orthodox_easter(year) == d(easter)


def test_weekends_are_skipped() -> None:
    cal = WorkingCalendar(holidays=())
    assert cal.add_working_days(d("2026-02-06"), 1) == d("2026-02-09")  # Fri → Mon
    assert cal.add_working_days(d("2026-02-07"), 1) == d("2026-02-09")  # Sat → Mon
    assert cal.add_working_days(d("2026-02-02"), 5) == d("2026-02-09")  # Mon + 5 → next Mon
    assert cal.add_working_days(d("2026-02-07"), 0) == d("2026-02-09")
    assert cal.add_working_days(d("2026-02-04"), 0) == d("2026-02-04")
    assert cal.working_days_between(d("2026-02-06"), d("2026-02-09")) == 1


def test_kyiv_holidays_and_their_weekend_transfer() -> None:
    cal = shipped()
    days_off = cal.holidays_of(2026)
    # Independence Day on a Monday; 8 March on a Sunday moves to Monday 9 March;
    # Easter (12 April) and Trinity (31 May) are Sundays, their Mondays are off.
    assert {d("2026-08-24"), d("2026-03-08"), d("2026-03-09"), d("2026-04-13"),
            d("2026-06-01"), d("2026-12-25")} <= days_off
    assert cal.add_working_days(d("2026-08-21"), 1) == d("2026-08-25")
    assert cal.add_working_days(d("2026-03-06"), 1) == d("2026-03-10")
    assert cal.add_working_days(d("2026-04-10"), 3) == d("2026-04-16")
    # Christmas 2027 is a Saturday: Monday 27 December is off
    assert cal.add_working_days(d("2027-12-24"), 1) == d("2027-12-28")
    assert cal.working_days_between(d("2026-12-24"), d("2027-01-04")) == 5  # 28–31 Dec, 4 Jan


def test_martial_law_switch_makes_holidays_working_days() -> None:
    data = tomllib.loads((CONFIG_DIR / "holidays.toml").read_text())
    cal = calendar_from_config({**data, "observe_public_holidays": False})
    assert cal.is_working_day(d("2026-08-24"))
    assert cal.add_working_days(d("2026-08-21"), 1) == d("2026-08-24")


def test_one_off_days_off_and_worked_saturdays() -> None:
    cal = calendar_from_config({
        "holidays": [], "extra_days_off": ["2026-05-04"], "extra_working_days": ["2026-05-09"],
    })
    assert not cal.is_working_day(d("2026-05-04"))
    assert cal.is_working_day(d("2026-05-09"))  # a Saturday
    assert cal.add_working_days(d("2026-05-08"), 1) == d("2026-05-09")
    assert cal.add_working_days(d("2026-05-01"), 1) == d("2026-05-05")


def test_a_holiday_moved_into_the_next_year() -> None:
    cal = calendar_from_config({"holidays": [{"name": "Eve", "date": "12-31"}]})
    assert d("2028-12-31").weekday() == 6  # Sunday
    assert not cal.is_working_day(d("2029-01-01"))
    assert cal.is_working_day(d("2029-01-02"))


def test_due_at_is_the_end_of_the_working_day_in_kyiv() -> None:
    cal = shipped()
    # Thursday 22:30 UTC is already Friday 00:30 in Kyiv: one working day after Friday
    due = cal.due_at(datetime(2026, 2, 5, 22, 30, tzinfo=UTC), 1)
    assert due.isoformat() == "2026-02-09T23:59:59+02:00"
    due = cal.due_at(datetime(2026, 2, 5, 12, 0, tzinfo=UTC), 1)
    assert due.isoformat() == "2026-02-06T23:59:59+02:00"
    # registered on a Saturday: the first working day after it
    due = cal.due_at(datetime(2026, 2, 7, 12, 0, tzinfo=UTC), 1)
    assert due.isoformat() == "2026-02-09T23:59:59+02:00"
    summer = cal.due_at(datetime(2026, 7, 14, 9, 0, tzinfo=UTC), 1)  # 15 July is off
    assert summer.isoformat() == "2026-07-16T23:59:59+03:00"
    with pytest.raises(ValueError, match="aware"):
        cal.due_at(datetime(2026, 2, 6), 1)


def test_waiting_for_the_citizen_moves_the_due_date() -> None:
    cal = shipped()
    due = cal.due_at(datetime(2026, 2, 2, 9, 0, tzinfo=UTC), 3)  # Thu 5 Feb
    # asked on Wednesday, answered next Monday: Thu, Fri, Mon were lost
    moved = cal.shift_due(due, datetime(2026, 2, 4, 9, tzinfo=UTC),
                          datetime(2026, 2, 9, 9, tzinfo=UTC))
    assert moved.date() == d("2026-02-10")
    same_day = cal.shift_due(due, datetime(2026, 2, 4, 9, tzinfo=UTC),
                             datetime(2026, 2, 4, 15, tzinfo=UTC))
    assert same_day == due


@pytest.mark.parametrize(("data", "message"), [
    ({"weekend": ["caturday"]}, "weekend"),
    ({"holidays": [{"name": "X", "date": "13-01"}]}, r"holidays\[0\] \(X\): date"),
    ({"holidays": [{"name": "X", "movable": "pentecost"}]}, "movable"),
    ({"holidays": [{"name": "X"}]}, "exactly one"),
    ({"extra_days_off": ["tomorrow"]}, "extra_days_off"),
    ({"observe_public_holidays": "yes"}, "observe_public_holidays"),
    ({"timezone": "Europe/Atlantis"}, "timezone"),
    ({"holyday": []}, "unknown key 'holyday'"),
])
def test_a_bad_calendar_names_the_key(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        calendar_from_config(data)
