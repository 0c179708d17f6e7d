"""Choosing an executor (crm_sync.appeals.routing) and comparing addresses (pure)."""

from __future__ import annotations

import pytest

from crm_sync.appeals.addresses import (
    address_has_prefix,
    check_point,
    distance_m,
    normalise_address,
)
from crm_sync.appeals.routing import Area, RoutingQuery, RoutingRule, choose
from hotline.core.errors import InvalidInput

HOT_WATER, LIFT = 1, 2
HOLOSIIV, OBOLON = 10, 11
RDA_H, RDA_O, TEPLO, ZHEK, LAVRA, DISPATCHER = 100, 101, 102, 103, 104, 105

RULES = [
    RoutingRule(1, RDA_H, "rda_holosiivskyi", 100, HOT_WATER, HOLOSIIV),
    RoutingRule(2, RDA_H, "rda_holosiivskyi", 100, LIFT, HOLOSIIV),
    RoutingRule(3, RDA_O, "rda_obolonskyi", 100, LIFT, OBOLON),
    RoutingRule(4, TEPLO, "kyivteploenergo", 90, HOT_WATER, None, name="heat"),
    RoutingRule(5, ZHEK, "zhek_1", 50, LIFT, HOLOSIIV,
                address_prefixes=(normalise_address("вул. Васильківська"),)),
    RoutingRule(6, LAVRA, "zhek_lavra", 50, LIFT, HOLOSIIV,
                area=Area(50.4347, 30.5571, 800)),
    RoutingRule(7, DISPATCHER, "dispatcher_1551", 1_000_000, fallback=True),
]


def q(category: int, district: int | None, address: str = "",
      point: tuple[float, float] | None = None, declined: frozenset[int] = frozenset(),
      ) -> RoutingQuery:
    return RoutingQuery(category, district, normalise_address(address), point, declined)


def test_lower_priority_wins_over_the_district_administration() -> None:
    decision = choose(RULES, q(HOT_WATER, HOLOSIIV))
    assert decision.executor_id == TEPLO
    assert "rule #4 'heat'" in decision.reason and "priority 90" in decision.reason


def test_a_street_rule_applies_only_on_its_streets() -> None:
    assert choose(RULES, q(LIFT, HOLOSIIV, "Васильківська вул., 12, кв. 3")).executor_id == ZHEK
    assert choose(RULES, q(LIFT, HOLOSIIV, "вул. Васильківська-Нова 1")).executor_id == RDA_H
    assert choose(RULES, q(LIFT, HOLOSIIV, "вул. Ломоносова 5")).executor_id == RDA_H
    assert "streets 'вулиця васильківська'" in choose(
        RULES, q(LIFT, HOLOSIIV, "вул. Васильківська 1")).reason


def test_an_area_rule_applies_within_its_circle() -> None:
    near = (50.4350, 30.5580)
    far = (50.4500, 30.5200)
    assert choose(RULES, q(LIFT, HOLOSIIV, point=near)).executor_id == LAVRA
    assert choose(RULES, q(LIFT, HOLOSIIV, point=far)).executor_id == RDA_H


def test_at_equal_priority_the_more_specific_rule_wins() -> None:
    rules = [RoutingRule(1, 1, "any_district", 100, LIFT, None),
             RoutingRule(2, 2, "this_district", 100, LIFT, HOLOSIIV),
             RoutingRule(3, 3, "any_category", 100, None, HOLOSIIV)]
    assert choose(rules, q(LIFT, HOLOSIIV)).executor_id == 2
    assert choose(rules, q(HOT_WATER, HOLOSIIV)).executor_id == 3
    assert choose(rules, q(LIFT, OBOLON)).executor_id == 1


def test_declined_executors_are_skipped_then_the_fallback_then_nobody() -> None:
    first = choose(RULES, q(LIFT, HOLOSIIV, "вул. Васильківська 1"))
    assert first.executor_id == ZHEK
    second = choose(RULES, q(LIFT, HOLOSIIV, "вул. Васильківська 1", declined=frozenset({ZHEK})))
    assert second.executor_id == RDA_H
    assert second.declined_skipped == ("zhek_1",) and "skipped zhek_1" in second.reason
    third = choose(RULES, q(LIFT, HOLOSIIV, "вул. Васильківська 1",
                            declined=frozenset({ZHEK, RDA_H})))
    assert third.executor_id == DISPATCHER
    assert "every matching executor declined" in third.reason
    assert "fallback executor dispatcher_1551" in third.reason
    none = choose(RULES, q(LIFT, HOLOSIIV, declined=frozenset({RDA_H, DISPATCHER})))
    assert none.rule is None and "no fallback executor is left" in none.reason


def test_no_rule_for_the_district_goes_to_the_fallback() -> None:
    decision = choose(RULES, q(LIFT, None))
    assert decision.executor_id == DISPATCHER
    assert decision.reason.startswith("no rule matches")
    assert choose([r for r in RULES if not r.fallback], q(LIFT, None)).rule is None


@pytest.mark.parametrize(("a", "b"), [
    ("вул. Хрещатик, 22, кв. 5", "вулиця  Хрещатик 22"),
    ("Хрещатик вул., 22", "м. Київ, вул. Хрещатик, буд. 22"),
    ("вул. Дегтярівська, 21-А", "вулиця Дегтярівська 21 а"),
    ("просп. Героїв Дніпра 3", "проспект героїв дніпра, 3, оф. 12"),
    ("вул. Лук’яненка 1", "вул. Лук'яненка 1"),
])
def test_one_address_written_two_ways_is_one_key(a: str, b: str) -> None:
    assert normalise_address(a) == normalise_address(b) != ""


def test_different_buildings_are_different_keys() -> None:
    assert normalise_address("вул. Хрещатик 22") != normalise_address("вул. Хрещатик 2")
    assert normalise_address("вул. Хрещатик 22") != normalise_address("пров. Хрещатий 22")
    assert normalise_address("") == normalise_address(" , ") == ""


def test_prefixes_match_at_word_boundaries() -> None:
    assert address_has_prefix("вулиця хрещатик 22", "вулиця хрещатик")
    assert not address_has_prefix("вулиця хрещатикова 22", "вулиця хрещатик")
    assert not address_has_prefix("вулиця хрещатик 22", "")


def test_distance_and_points() -> None:
    # Maidan Nezalezhnosti to the Golden Gate: about 650 m
    assert 550 < distance_m(50.4501, 30.5234, 50.4488, 30.5133) < 800
    assert check_point(None, None) is None
    with pytest.raises(InvalidInput, match="longitude: required"):
        check_point(50.45, None)
    with pytest.raises(InvalidInput, match="latitude: expected a number"):
        check_point(95.0, 30.0)
