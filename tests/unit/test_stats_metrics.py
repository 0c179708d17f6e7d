"""The reports' arithmetic: Erlang C against published values, Asterisk's SL /
SL2, the period a report may cover, the city's calendar buckets."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from crm_sync.stats import erlang
from crm_sync.stats.metrics import (
    CITY_TZ,
    QueueTotals,
    bucket_start,
    buckets,
    parse_period,
    queue_figures,
)
from hotline.core.errors import InvalidInput

TODAY = date(2026, 11, 30)


# Erlang C tables (e.g. Cooper, "Introduction to Queueing Theory", table of C(N, A)):
# A = 10 erlangs → P_W for 11..15 agents.
@pytest.mark.parametrize(("agents", "pw"), [(11, 0.6821), (12, 0.4494), (13, 0.2853),
                                            (14, 0.1741), (15, 0.1020)])
def test_erlang_c_wait_probability_matches_tables(agents: int, pw: float) -> None:
    assert round(erlang.wait_probability(agents, 10.0), 4) == pw


def test_erlang_c_design_brief_example() -> None:
    # 360 calls in 30 min, AHT 240 s, 55 agents: A = 48, P_W ≈ 23.9 %, SL(15 s) ≈ 84.6 %,
    # ASA ≈ 8.2 s (../shared/DESIGN.md).
    load = erlang.offered_load(360, 1800, 240)
    assert load == 48.0
    assert round(erlang.wait_probability(55, load), 3) == 0.239
    assert round(erlang.service_level(55, load, 240, 15), 3) == 0.846
    asa = erlang.average_speed_of_answer(55, load, 240)
    assert asa is not None and round(asa, 1) == 8.2


def test_agents_needed_is_the_fewest_meeting_the_target() -> None:
    # 100 calls in 30 min, AHT 180 s, 80 % in 20 s: 14 agents (13 give 80 % not).
    staffing = erlang.agents_needed(100, 1800, 180, 0.8, 20)
    assert staffing.load == 10.0 and staffing.agents == 14
    assert erlang.service_level(13, 10.0, 180, 20) < 0.8 <= staffing.service_level


def test_erlang_c_unstable_and_empty_queues() -> None:
    assert erlang.wait_probability(10, 10.0) == 1.0
    assert erlang.average_speed_of_answer(9, 10.0, 180) is None
    assert erlang.service_level(5, 10.0, 180, 20) == 0.0
    assert erlang.agents_needed(0, 1800, 180, 0.8, 20).agents == 0
    # no overflow with hundreds of agents (factorials would)
    assert 0 < erlang.wait_probability(600, 580.0) < 1


def test_asterisk_service_levels_and_rates() -> None:
    t = QueueTotals(offered=9, answered=6, abandoned=2, short_abandoned=1, timed_out=1,
                    answered_within=3, abandoned_within=2, wait_answered=90, max_wait=70,
                    talk=1200, wrap=60)
    figures = queue_figures(t)
    assert figures["service_level"] == 50.0  # 3 ÷ 6
    assert figures["service_level2"] == round(100 * 5 / 9, 1)  # (3 + 2) ÷ (6 + 2 + 1)
    assert figures["asa"] == 15.0 and figures["aht"] == 210.0
    assert figures["abandon_rate"] == round(100 * 2 / 9, 1)
    empty = queue_figures(QueueTotals())
    assert empty["service_level"] is None and empty["asa"] is None
    assert empty["longest_wait"] is None


def test_period_defaults_and_inclusive_until() -> None:
    p = parse_period("2026-11-01", "2026-11-30", "week", today=TODAY)
    assert p.since == datetime(2026, 11, 1, tzinfo=CITY_TZ)
    assert p.until == datetime(2026, 12, 1, tzinfo=CITY_TZ)
    today = parse_period(None, None, None, today=TODAY)
    assert today.days == 1 and today.granularity == "day"


@pytest.mark.parametrize(("since", "until", "gran", "field"), [
    ("2026-11-30", "2026-11-01", "day", "until"),  # reversed
    ("2006-01-01", "2026-01-01", "month", "since"),  # 20 years
    ("yesterday", None, "day", "since"),
    ("2026-11-01", None, "fortnight", "granularity"),
])
def test_bad_periods_are_refused_with_the_field(
    since: str, until: str | None, gran: str, field: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_period(since, until, gran, today=TODAY)
    assert refused.value.http_status == 400
    assert refused.value.details["field"] == field


def test_buckets_follow_the_city_calendar_across_dst() -> None:
    # Kyiv leaves summer time on 2026-10-25: that day has 25 hours.
    p = parse_period("2026-10-25", "2026-10-25", "hour", today=TODAY)
    assert len(buckets(p)) == 25
    assert len(buckets(parse_period("2026-01-01", "2026-12-31", "month", today=TODAY))) == 12
    weeks = buckets(parse_period("2026-11-01", "2026-11-30", "week", today=TODAY))
    assert weeks[0].date() == date(2026, 10, 26) and all(w.weekday() == 0 for w in weeks)
    # 22:30 UTC on 31 Oct is 00:30 on 1 Nov in Kyiv: November's bucket
    slot = datetime(2026, 10, 31, 22, 30, tzinfo=UTC)
    assert bucket_start(slot, "month") == datetime(2026, 11, 1, tzinfo=CITY_TZ)


def test_times_widen_to_whole_half_hours() -> None:
    # the rollups' resolution: a report from 10:25 to 10:40 covers 10:00–11:00
    p = parse_period("2026-11-30T10:25", "2026-11-30T10:40:10", "halfhour", today=TODAY)
    assert (p.since.hour, p.since.minute) == (10, 0)
    assert (p.until.hour, p.until.minute) == (11, 0)
