"""The leadership dashboard's pure parts: the seed's 2017 district administrations'
rating reproduced, the housing rating's places, leadership.toml's checks, the
periods (a bad one is a 400), and the SVG charts."""

from __future__ import annotations

import re
import shutil
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from crm_sync.leadership.config import load_leadership_config, parse_leadership_config
from crm_sync.leadership.demo import read_housing_seed, sphere_counts
from crm_sync.leadership.periods import Period, parse_period, parse_year, split_period
from crm_sync.leadership.ratings import (
    competition_ranks,
    district_rating,
    housing_rating,
    product_bounds,
    product_percent,
    ratio_percent,
    read_seed_rating,
)
from hotline.checks import check_config
from hotline.core.errors import InvalidInput
from hotline.web import charts
from tests.support.paths import CONFIG_DIR

SEED = read_seed_rating(CONFIG_DIR)


def test_the_seed_has_ten_administrations() -> None:
    assert len(SEED) == 10
    assert len({r.admin_name_uk for r in SEED}) == 10


@pytest.mark.parametrize("row", SEED, ids=lambda r: r.admin_name_uk)
def test_product_of_the_five_published_indicators_is_the_published_rating(row) -> None:  # type: ignore[no-untyped-def]
    # The published rating is the product of the UNROUNDED indicators: the
    # product of the published (rounded to 0.01) ones must lie within what
    # their rounding allows, and round to it where the rounding cannot matter.
    published = [row.indicators[f"K{i}"] for i in range(1, 6)]
    low, high = product_bounds(published)
    assert low - Decimal("0.005") <= row.rating <= high + Decimal("0.005"), (low, high)
    assert abs(product_percent(published) - row.rating) <= Decimal("0.01")


@pytest.mark.parametrize("row", SEED, ids=lambda r: r.admin_name_uk)
def test_k2_is_one_minus_n5_over_n4_exactly(row) -> None:  # type: ignore[no-untyped-def]
    assert ratio_percent(row.counts["n5"], row.counts["n4"], complement=True) \
        == row.indicators["K2"]


@pytest.mark.parametrize("row", SEED, ids=lambda r: r.admin_name_uk)
def test_k1_is_about_one_minus_n3_over_n2(row) -> None:  # type: ignore[no-untyped-def]
    k1 = ratio_percent(row.counts["n3"], row.counts["n2"], complement=True)
    assert k1 is not None and abs(k1 - row.indicators["K1"]) <= Decimal("0.01")


@pytest.mark.parametrize("row", SEED, ids=lambda r: r.admin_name_uk)
def test_rating_code_from_the_seed_counts_reproduces_the_published_rating(row) -> None:  # type: ignore[no-untyped-def]
    config = load_leadership_config(CONFIG_DIR)
    counts = {config.seed_columns[c]: v for c, v in row.counts.items()}
    published = {k: v for k, v in row.indicators.items() if k in ("K3", "K4", "K5")}
    rating = district_rating(1, row.admin_name_uk, config.indicators, counts, published)
    by_code = {v.code: v for v in rating.indicators}
    assert by_code["K2"].source == "counts" and by_code["K2"].percent == row.indicators["K2"]
    assert by_code["K1"].source == "counts"
    assert {by_code[k].source for k in ("K3", "K4", "K5")} == {"published"}
    assert rating.rating is not None
    # K1 and K2 exact from counts, K3..K5 as published: within the published precision
    assert abs(rating.rating - row.rating) <= Decimal("0.01")


def test_the_seed_ranking_is_the_order_of_the_ratings() -> None:
    ratings = [r.rating for r in SEED]
    assert ratings == sorted(ratings, reverse=True)


def test_competition_ranks_share_places_and_skip() -> None:
    assert competition_ranks([0, 1, 0, 2, 1], descending=False) == [1, 3, 1, 5, 3]
    assert competition_ranks([Decimal("9.5"), Decimal(80)], descending=True) == [2, 1]


def test_housing_rating_places_per_component_and_overall() -> None:
    rows = housing_rating([
        (1, "ЖЕД - 101", {"stairs": 7, "rude": 0}),
        (2, "ЖЕД - 102", {"stairs": 14, "rude": 2}),
        (3, "ЖЕД - 103", {"stairs": 7, "rude": 1}),
        (4, "ЖЕД - 104", {"stairs": 2, "rude": 5}),
    ], ["stairs", "rude"])
    by_id = {r.executor_id: r for r in rows}
    assert by_id[1].places == {"stairs": 2, "rude": 1}
    assert by_id[3].places == {"stairs": 2, "rude": 2}
    assert by_id[4].places == {"stairs": 1, "rude": 4}
    assert by_id[2].places == {"stairs": 4, "rude": 3}
    # sums of places: 3, 4, 5, 7
    assert [r.executor_id for r in rows] == [1, 3, 4, 2]
    assert [r.place for r in rows] == [1, 2, 3, 4]
    assert by_id[2].total == 16


def test_housing_seed_rude_places_follow_the_counts() -> None:
    # Of the published places only rude behaviour's are by the raw counts (the others
    # are normalised by what the seed lacks); ours must order those the same way.
    seed = read_housing_seed(CONFIG_DIR)
    assert len(seed) == 21
    ours = housing_rating([(h.number, h.name_uk, h.complaints) for h in seed],
                          ["rude_behaviour"])
    place = {r.executor_id: r.places["rude_behaviour"] for r in ours}
    for a in seed:
        for b in seed:
            if a.places["rude_behaviour"] < b.places["rude_behaviour"]:
                assert place[a.number] < place[b.number]


def test_sphere_counts_give_the_published_shares() -> None:
    shares = {"housing": Decimal("83.4"), "transport": Decimal("5.8"), "social": Decimal("3.6"),
              "health": Decimal("1.6"), "kiosks": Decimal("1.3"), "trade": Decimal("1.1"),
              "it": Decimal("1.1"), "police": Decimal("0.8"), "pensions": Decimal("0.8"),
              "education": Decimal("0.6")}
    counts = sphere_counts(shares, 250_000)
    assert sum(counts.values()) == 250_000
    for sphere, share in shares.items():
        assert (Decimal(100 * counts[sphere]) / 250_000).quantize(Decimal("0.1")) == share


def test_shipped_leadership_config_is_valid() -> None:
    config = load_leadership_config(CONFIG_DIR)
    assert [i.code for i in config.indicators] == ["K1", "K2", "K3", "K4", "K5"]
    assert [c.code for c in config.components] == [
        "staircase_cleaning", "yard_cleaning", "common_lighting", "rude_behaviour"]


def test_leadership_config_problems_are_listed() -> None:
    text = """
max_period_days = 0
[seed_columns]
n1 = "calls"
[[district_rating.indicators]]
code = "K1"
name_en = "x"
name_uk = "x"
numerator = "overdue"
denominator = "nothing"
[[district_rating.indicators]]
code = "K1"
name_en = "y"
name_uk = "y"
published_only = true
[[housing_rating.components]]
code = "stairs"
name_en = "Stairs"
name_uk = "Сходи"
categories = ["no_such_category"]
"""
    config, problems = parse_leadership_config(text, categories={"no_hot_water"},
                                               spheres={"housing"})
    assert config is None
    keys = [p.key for p in problems]
    assert "max_period_days" in keys
    assert "seed_columns.n1" in keys
    assert "district_rating.indicators[0].denominator" in keys
    assert "district_rating.indicators[1].code" in keys  # twice
    assert "housing_rating.components[0].categories" in keys


TODAY = date(2026, 11, 30)


def test_period_defaults_to_this_year_up_to_today() -> None:
    assert parse_period(None, None, today=TODAY, max_days=3655) == Period(date(2026, 1, 1), TODAY)


@pytest.mark.parametrize(("start", "end", "field"), [
    ("2026-05-01", "2026-04-01", "to"),  # reversed
    ("2006-01-01", "2026-01-01", "from"),  # twenty years
    ("yesterday", None, "from"),
    (None, "2026-13-01", "to"),
])
def test_bad_periods_are_invalid_input(start: str | None, end: str | None, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_period(start, end, today=TODAY, max_days=3655)
    assert caught.value.http_status == 400
    assert caught.value.details["field"] == field


def test_ten_years_are_allowed() -> None:
    assert parse_period("2016-12-01", "2026-11-30", today=TODAY, max_days=3655).days == 3652


@pytest.mark.parametrize("raw", ["1999", "2027", "20x6", "-1"])
def test_bad_years_are_invalid_input(raw: str) -> None:
    with pytest.raises(InvalidInput):
        parse_year(raw, today=TODAY)


def test_split_uses_whole_months_days_and_the_live_rest() -> None:
    split = split_period(Period(date(2025, 3, 15), date(2026, 11, 30)), date(2026, 11, 30))
    assert (split.months_from, split.months_to) == (date(2025, 4, 1), date(2026, 11, 1))
    assert split.day_ranges == ((date(2025, 3, 15), date(2025, 4, 1)),
                                (date(2026, 11, 1), date(2026, 11, 30)))
    assert (split.live_from, split.live_to) == (date(2026, 11, 30), date(2026, 12, 1))


def test_split_without_rollups_reads_everything_live() -> None:
    split = split_period(Period(date(2026, 1, 1), date(2026, 1, 31)), None)
    assert split.day_ranges == () and split.months_from == split.months_to
    assert (split.live_from, split.live_to) == (date(2026, 1, 1), date(2026, 2, 1))


def test_split_of_a_closed_period_reads_nothing_live() -> None:
    split = split_period(Period(date(2017, 1, 1), date(2017, 12, 31)), date(2026, 11, 30))
    assert (split.months_from, split.months_to) == (date(2017, 1, 1), date(2018, 1, 1))
    assert split.day_ranges == () and split.live_from is None


def test_charts_have_one_mark_per_value_and_no_inline_style() -> None:
    labels = [f"2026-{m:02d}" for m in range(1, 13)]
    values = [float(v) for v in range(12)]
    svg = charts.bar_chart("m", "Calls <per> month", labels, values)
    assert svg.count('class="bar"') == 12
    assert "Calls &lt;per&gt; month" in svg and "<per>" not in svg
    line = charts.line_chart("d", "Days", labels, values)
    assert line.count('class="point"') == 12 and "<polyline" in line
    hbar = charts.hbar_chart("h", "Spheres", ["a", "b"], [83.4, 5.8], suffix=" %")
    assert hbar.count('class="bar"') == 2 and "83.4 %" in hbar
    for text in (svg, line, hbar):
        assert "style=" not in text and "<script" not in text
        assert re.search(r'viewBox="0 0 \d+ \d+"', text)


def test_check_config_names_leadership_problems(tmp_path: Path) -> None:
    config = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, config)
    path = config / "leadership.toml"
    text = path.read_text("utf-8")
    text = text.replace('numerator = "reopened"', 'numerator = "reopend"', 1)
    text = text.replace('categories = ["territory_cleaning"]', 'categories = ["yard"]', 1)
    path.write_text(text, "utf-8")
    lines = [p.line() for p in check_config(config, asterisk_etc=None)]
    assert lines == [
        f"{path}: district_rating.indicators[1].numerator: unknown measure 'reopend' "
        "(known: received, due, overdue, settled, reopened, rejected)",
        f"{path}: housing_rating.components[1].categories: unknown category 'yard'",
    ]
