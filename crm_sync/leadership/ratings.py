"""The ratings' arithmetic, pure: the district administrations' rating (a product
of indicator ratios) and the housing offices' rating (places per component and
overall), plus reading the seed's 2017 table.

Percentages are rounded half up to two decimals, as the seed publishes them, and
the rating is the product of the indicators as exact as we have them (a ratio
of counts unrounded, a published value as published). The seed's final ratings
are the products of unrounded indicators: the product of its rounded ones is
within their rounding of each (:func:`product_bounds`), not always equal."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

from crm_sync.leadership.config import Indicator

HUNDRED = Decimal(100)
CENT = Decimal("0.01")
SEED_RATING_FILE = "seed/district_admin_rating_2017.csv"
SEED_COUNT_COLUMNS = ("n1", "n2", "n3", "n4", "n5", "n6")
SEED_INDICATOR_COLUMNS = ("k1_percent", "k2_percent", "k3_percent", "k4_percent", "k5_percent")


def round_percent(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def exact_percent(numerator: int, denominator: int, *, complement: bool) -> Decimal | None:
    """``numerator/denominator`` (or one minus it) in percent, unrounded; None when
    the denominator is zero."""
    if denominator <= 0:
        return None
    ratio = Decimal(numerator) / Decimal(denominator)
    return (1 - ratio if complement else ratio) * HUNDRED


def ratio_percent(numerator: int, denominator: int, *, complement: bool) -> Decimal | None:
    """:func:`exact_percent`, rounded as the seed publishes it."""
    exact = exact_percent(numerator, denominator, complement=complement)
    return None if exact is None else round_percent(exact)


def product_percent(percents: Sequence[Decimal]) -> Decimal | None:
    """The product of percentages, in percent, rounded; None for none."""
    if not percents:
        return None
    product = Decimal(1)
    for p in percents:
        product *= p / HUNDRED
    return round_percent(product * HUNDRED)


def product_bounds(percents: Sequence[Decimal], half_unit: Decimal = Decimal("0.005")
                   ) -> tuple[Decimal, Decimal]:
    """The least and greatest product (percent) of values published rounded to
    ``half_unit`` each side."""
    low, high = Decimal(1), Decimal(1)
    for p in percents:
        low *= (p - half_unit) / HUNDRED
        high *= (p + half_unit) / HUNDRED
    return low * HUNDRED, high * HUNDRED


@dataclass(frozen=True)
class IndicatorValue:
    code: str
    exact: Decimal | None
    source: str  # "counts" | "published" | "missing"

    @property
    def percent(self) -> Decimal | None:
        return None if self.exact is None else round_percent(self.exact)


@dataclass(frozen=True)
class DistrictRating:
    executor_id: int
    name: str
    counts: dict[str, int]
    indicators: tuple[IndicatorValue, ...]
    rating: Decimal | None
    published_rating: Decimal | None
    place: int = 0


def indicator_values(
    indicators: Sequence[Indicator], counts: Mapping[str, int],
    published: Mapping[str, Decimal],
) -> tuple[IndicatorValue, ...]:
    """Each indicator from its counts when they are there, else the published value."""
    out = []
    for ind in indicators:
        value: Decimal | None = None
        if ind.numerator and ind.denominator and ind.denominator in counts \
                and ind.numerator in counts:
            value = exact_percent(counts[ind.numerator], counts[ind.denominator],
                                  complement=ind.complement)
        if value is not None:
            out.append(IndicatorValue(ind.code, value, "counts"))
        elif ind.code in published:
            out.append(IndicatorValue(ind.code, published[ind.code], "published"))
        else:
            out.append(IndicatorValue(ind.code, None, "missing"))
    return tuple(out)


def district_rating(
    executor_id: int, name: str, indicators: Sequence[Indicator], counts: Mapping[str, int],
    published: Mapping[str, Decimal],
) -> DistrictRating:
    """One administration: its indicators and their product (over those that have
    a value; None when none has)."""
    values = indicator_values(indicators, counts, published)
    present = [v.exact for v in values if v.exact is not None]
    return DistrictRating(executor_id, name, dict(counts), values, product_percent(present),
                          published.get("rating"))


def competition_ranks(values: Sequence[Decimal | int], *, descending: bool) -> list[int]:
    """"1224" ranking: equal values share the best place, the next place skips."""
    def key(v: Decimal | int) -> Decimal:
        return -Decimal(v) if descending else Decimal(v)
    ordered = sorted(key(v) for v in values)
    first: dict[Decimal, int] = {}
    for i, v in enumerate(ordered, start=1):
        first.setdefault(v, i)
    return [first[key(v)] for v in values]


def place_districts(ratings: Sequence[DistrictRating]) -> list[DistrictRating]:
    """Best first (a higher product is better; no rating is last)."""
    scored = [r.rating if r.rating is not None else Decimal(-1) for r in ratings]
    places = competition_ranks(scored, descending=True)
    placed = [DistrictRating(r.executor_id, r.name, r.counts, r.indicators, r.rating,
                             r.published_rating, p) for r, p in zip(ratings, places, strict=True)]
    return sorted(placed, key=lambda r: (r.place, r.name))


@dataclass(frozen=True)
class HousingRow:
    executor_id: int
    name: str
    complaints: dict[str, int]  # component code → complaints
    places: dict[str, int]  # component code → place
    total: int
    place: int


def housing_rating(
    offices: Sequence[tuple[int, str, Mapping[str, int]]], components: Sequence[str]
) -> list[HousingRow]:
    """Offices as (id, name, complaints per component). A place per component
    (fewer complaints: a better place; equal counts share it), and an overall
    place by the sum of the component places (ties broken by fewer complaints
    in all, then share the place). Best first."""
    places: dict[str, list[int]] = {
        c: competition_ranks([o[2].get(c, 0) for o in offices], descending=False)
        for c in components
    }
    sums = [sum(places[c][i] for c in components) for i in range(len(offices))]
    totals = [sum(o[2].get(c, 0) for c in components) for o in offices]
    # one sortable number: the sum of places first, total complaints second
    keys = [s * 10**12 + t for s, t in zip(sums, totals, strict=True)]
    overall = competition_ranks(keys, descending=False)
    rows = [
        HousingRow(o[0], o[1], {c: o[2].get(c, 0) for c in components},
                   {c: places[c][i] for c in components}, totals[i], overall[i])
        for i, o in enumerate(offices)
    ]
    return sorted(rows, key=lambda r: (r.place, r.name))


@dataclass(frozen=True)
class SeedDistrictRow:
    admin_name_uk: str
    counts: dict[str, int]  # n1..n6
    indicators: dict[str, Decimal]  # K1..K5, percent as published
    rating: Decimal


def read_seed_rating(config_dir: Path) -> list[SeedDistrictRow]:
    """The seed's 2017 district administrations' table."""
    with (config_dir / SEED_RATING_FILE).open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    out = []
    for row in rows:
        out.append(SeedDistrictRow(
            row["district_admin_uk"],
            {c: int(row[c]) for c in SEED_COUNT_COLUMNS},
            {f"K{i}": Decimal(row[col]) for i, col in enumerate(SEED_INDICATOR_COLUMNS, start=1)},
            Decimal(row["rating_percent"]),
        ))
    return out
