"""The queue catalogue (queues.toml): one list of queues, every problem named by its key."""

from __future__ import annotations

import re

import pytest

from hotline.core.queues import (
    CatalogueError,
    check_catalogue,
    dialplan_globals,
    parse_catalogue,
    queues_conf,
)
from tests.support.paths import CONFIG_DIR

SHIPPED = (CONFIG_DIR / "queues.toml").read_text(encoding="utf-8")

MINIMAL = """
catch_all = "main"
[queues.housing]
digit = "1"
sphere = "housing"
label_uk = "Житло"
label_en = "Housing"
[queues.main]
digit = "0"
label_uk = "Інше"
label_en = "Other"
"""


def problems(text: str) -> list[tuple[str, str]]:
    """(key, reason) of each problem."""
    _, found = check_catalogue(text)
    assert all(p.file == "queues.toml" for p in found)
    return [(p.key, p.reason) for p in found]


def keys(text: str) -> list[str]:
    return [key for key, _ in problems(text)]


def test_shipped_catalogue() -> None:
    catalogue = parse_catalogue(SHIPPED)
    assert catalogue.names == ("housing", "transport", "social", "main")
    assert catalogue.catch_all == "main"
    assert {d: q.name for d, q in catalogue.by_digit().items()} == {
        "1": "housing", "2": "transport", "3": "social", "0": "main"}
    assert {q.service_level for q in catalogue.queues.values()} == {20}
    assert [q.overflow for q in catalogue.queues.values()] == ["main", "main", "main", None]


def test_spheres_without_a_queue_go_to_the_catch_all() -> None:
    catalogue = parse_catalogue(SHIPPED)
    assert catalogue.queue_for_sphere("housing") == "housing"
    assert catalogue.queue_for_sphere("pensions") == "main"


def test_defaults_and_per_queue_settings() -> None:
    text = MINIMAL.replace('catch_all = "main"', 'catch_all = "main"\n[defaults]\nstrategy = '
                           '"leastrecent"\nring_timeout = 20')
    text += "service_level = 30\n"  # main's own
    catalogue = parse_catalogue(text)
    housing, main = catalogue.queues["housing"], catalogue.queues["main"]
    assert (housing.strategy, housing.ring_timeout, housing.service_level) == (
        "leastrecent", 20, 20)
    assert main.service_level == 30
    assert housing.overflow == "main" and main.overflow is None  # the catch-all by default


@pytest.mark.parametrize(
    ("change", "key", "reason"),
    [
        (('digit = "0"', 'digit = "1"'), "queues.main.digit", "duplicate digit '1'"),
        (('digit = "0"', 'digit = "12"'), "queues.main.digit", "0-9, * or #"),
        (("[queues.main]", "[queues.general]\n[queues.main]"), "queues.general", "reserved"),
        (("[queues.main]", "[queues.Main-Q]\n[queues.main]"), "queues.Main-Q", "lowercase"),
        (('sphere = "housing"', 'sphere = "housing"\noverflow = "nowhere"'),
         "queues.housing.overflow", "unknown queue 'nowhere'"),
        (('sphere = "housing"', 'sphere = "housing"\noverflow = "housing"'),
         "queues.housing.overflow", "circle"),
        (('label_en = "Other"', 'label_en = "Other"\noverflow = "housing"'),
         "queues.main.overflow", "the catch-all queue is the last stop"),
        (('catch_all = "main"', 'catch_all = "general"'), "catch_all", "one of the queues"),
        (('sphere = "housing"', 'sphere = "housing"\nstrategy = "roundrobin"'),
         "queues.housing.strategy", "rrmemory"),
        (('sphere = "housing"', 'sphere = "housing"\nring_timeout = true'),
         "queues.housing.ring_timeout", "integer"),
        (('sphere = "housing"', 'sphere = "housing"\nservicelevel = 20'),
         "queues.housing.servicelevel", "unknown key"),
        (('label_uk = "Інше"', 'label_uk = ""'), "queues.main.label_uk", "non-empty"),
        (('digit = "0"', 'digit = "0"\nsphere = "housing"'), "queues.main.sphere",
         "sphere 'housing' already has queue 'housing'"),
        (('catch_all = "main"', 'catch_all = "main"\nqueue = "x"'), "queue", "unknown key"),
    ],
)
def test_each_problem_names_its_key(change: tuple[str, str], key: str, reason: str) -> None:
    found = problems(MINIMAL.replace(*change))
    assert [k for k, _ in found] == [key], found
    assert reason in found[0][1]


def test_overflow_circle_is_reported_once() -> None:
    text = MINIMAL + """
[queues.a]
overflow = "b"
[queues.b]
overflow = "a"
"""
    assert problems(text) == [("queues.a.overflow", "overflow goes round in a circle: a -> b -> a")]


def test_integer_digit_is_accepted_and_a_queue_without_digit_is_overflow_only() -> None:
    text = MINIMAL.replace('digit = "1"', "digit = 1") + '[queues.night]\noverflow = "housing"\n'
    catalogue = parse_catalogue(text)
    assert catalogue.queues["housing"].digit == "1"
    assert catalogue.queues["night"].digit is None
    assert set(catalogue.by_digit()) == {"1", "0"}


def test_unreadable_catalogue_is_one_problem() -> None:
    assert keys("catch_all = ") == [""]
    assert keys('catch_all = "main"\n') == ["queues"]
    with pytest.raises(CatalogueError) as err:
        parse_catalogue(MINIMAL.replace('digit = "0"', 'digit = "1"'))
    assert str(err.value).startswith("queues.toml: queues.main.digit: duplicate digit")


def test_queues_conf_has_every_queue_with_its_settings() -> None:
    text = queues_conf(parse_catalogue(SHIPPED))
    sections = re.findall(r"^\[([a-z]+)\]\(hotline-queue\)$", text, re.MULTILINE)
    assert sections == ["housing", "transport", "social", "main"]
    assert text.count("servicelevel = 20\n") == 4
    assert text.count("strategy = rrmemory\n") == 4
    assert "; IVR digit 1, sphere housing, overflow main" in text


def test_dialplan_globals_carry_the_overflow_chain() -> None:
    text = MINIMAL + '[queues.night]\noverflow = "housing"\n'
    lines = dialplan_globals(parse_catalogue(text), "main").splitlines()
    assert lines == [
        "HOTLINE_DEFAULT_QUEUE = main",
        "HOTLINE_CATCH_ALL = main",
        "HOTLINE_OVERFLOW_housing = main",
        "HOTLINE_OVERFLOW_night = housing",
    ]
