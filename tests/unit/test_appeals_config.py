"""The appeals' configuration files: the shipped ones parse, a mistake names its key."""

from __future__ import annotations

from typing import Any

import pytest

from crm_sync.appeals.config import (
    load_appeals_config,
    parse_appeals_settings,
    parse_routing_config,
)
from crm_sync.taxonomy import load_taxonomy
from hotline.core.errors import ConfigError
from tests.support.paths import CONFIG_DIR


def test_the_shipped_files_parse_and_name_known_codes() -> None:
    config = load_appeals_config(CONFIG_DIR)
    tax = load_taxonomy(CONFIG_DIR)
    categories = {c.code for c in tax.categories}
    districts = {d.code for d in tax.districts}
    executors = {e.code for e in tax.executors} | {e.code for e in config.routing.executors}
    assert set(config.settings.sla) <= categories
    assert config.routing.fallback_executor in executors
    for rule in config.routing.rules:
        assert rule.executor in executors
        assert set(rule.categories) <= categories and set(rule.districts) <= districts
    assert any(r.streets for r in config.routing.rules)
    assert any(r.area for r in config.routing.rules)
    assert config.settings.reopen_days > 0


@pytest.mark.parametrize(("data", "message"), [
    ({"reopen_days": -1}, "appeals.toml: reopen_days"),
    ({"sla": {"no_hot_water": 0}}, "appeals.toml: sla: no_hot_water"),
    ({"sla": {"no_hot_water": "3"}}, "appeals.toml: sla: no_hot_water"),
    ({"duplicate_radius_m": "far"}, "duplicate_radius_m"),
    ({"reopen_dayz": 3}, "unknown key 'reopen_dayz'"),
])
def test_bad_settings_name_the_key(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_appeals_settings(data)


@pytest.mark.parametrize(("data", "message"), [
    ({"executors": [{"code": "x", "name": "X", "kind": "shop"}]}, r"executors\[0\]: kind"),
    ({"executors": [{"code": "x", "name": "X", "kind": "utility"},
                    {"code": "x", "name": "Y", "kind": "utility"}]}, "appears twice"),
    ({"rules": [{"categories": ["a"]}]}, r"rules\[0\]: executor"),
    ({"rules": [{"executor": "x", "area": {"lat": 50}}]}, r"rules\[0\]: area"),
    ({"rules": [{"executor": "x", "priority": -5}]}, r"rules\[0\]: priority"),
    ({"rules": [{"executor": "x", "streets": [", ,"]}]}, "empty once normalised"),
    ({"fallback": {"executr": "x"}}, "unknown key 'executr'"),
])
def test_bad_routing_names_the_key(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_routing_config(data)


def test_streets_are_kept_normalised() -> None:
    config = parse_routing_config({"rules": [{"executor": "x", "streets": ["Хрещатик вул."]}]})
    assert config.rules[0].streets == ("вулиця хрещатик",)
