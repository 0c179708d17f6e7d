"""``config/leadership.toml``: the period limit, the district administrations'
rating indicators, the housing offices' rating components, and the categories
the latter needs beyond the seed's top ten. Problems are listed one per line
(:func:`check_leadership_config`), as ``hotline check-config`` prints them."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hotline.core.problems import ConfigProblems, Problem

LEADERSHIP_FILE = "leadership.toml"
#: A checkout's config/: the default of tools and tests (the service passes the
#: settings' directory).
CHECKOUT_CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
#: The counts an indicator may divide (see the comments of leadership.toml).
MEASURES = ("received", "due", "overdue", "settled", "reopened", "rejected")
_CODE = re.compile(r"[a-z][a-z0-9_]*")
_INDICATOR_CODE = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


class LeadershipConfigError(ConfigProblems):
    error_id = "leadership_config_invalid"


@dataclass(frozen=True)
class Indicator:
    code: str
    name_en: str
    name_uk: str
    numerator: str | None
    denominator: str | None
    complement: bool
    published_only: bool


@dataclass(frozen=True)
class Component:
    code: str
    name_en: str
    name_uk: str
    categories: tuple[str, ...]


@dataclass(frozen=True)
class ExtraCategory:
    code: str
    sphere: str
    name_en: str
    name_uk: str


@dataclass(frozen=True)
class LeadershipConfig:
    max_period_days: int
    seed_columns: dict[str, str]  # the seed's n1..n6 → measure
    indicators: tuple[Indicator, ...]
    components: tuple[Component, ...]
    extra_categories: tuple[ExtraCategory, ...]


def _text(table: dict[str, Any], key: str, where: str, problems: list[Problem]) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value.strip():
        problems.append(Problem(LEADERSHIP_FILE, f"{where}.{key}", "expected a non-empty string"))
        return ""
    return value


def _tables(data: dict[str, Any], path: tuple[str, ...], problems: list[Problem]
            ) -> list[dict[str, Any]]:
    node: Any = data
    for part in path:
        node = node.get(part, []) if isinstance(node, dict) else None
    if not isinstance(node, list) or not all(isinstance(t, dict) for t in node):
        problems.append(Problem(LEADERSHIP_FILE, ".".join(path), "expected [[tables]]"))
        return []
    return node


def parse_leadership_config(
    text: str, *, categories: set[str] | None = None, spheres: set[str] | None = None
) -> tuple[LeadershipConfig | None, list[Problem]]:
    """The configuration, or None and every problem. Category and sphere codes are
    checked against the taxonomy when it is given."""
    problems: list[Problem] = []
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return None, [Problem(LEADERSHIP_FILE, "", f"not valid TOML: {exc}")]
    max_days = data.get("max_period_days", 3655)
    if not isinstance(max_days, int) or isinstance(max_days, bool) or not 1 <= max_days <= 7400:
        problems.append(Problem(LEADERSHIP_FILE, "max_period_days",
                                "expected a whole number of days from 1 to 7400"))
        max_days = 3655

    seed_columns: dict[str, str] = {}
    raw_columns = data.get("seed_columns", {})
    if not isinstance(raw_columns, dict):
        problems.append(Problem(LEADERSHIP_FILE, "seed_columns", "expected a table"))
        raw_columns = {}
    for column, measure in raw_columns.items():
        if measure not in MEASURES:
            problems.append(Problem(LEADERSHIP_FILE, f"seed_columns.{column}",
                                    f"unknown measure {measure!r} (known: {', '.join(MEASURES)})"))
        else:
            seed_columns[column] = measure

    indicators: list[Indicator] = []
    for i, table in enumerate(_tables(data, ("district_rating", "indicators"), problems)):
        where = f"district_rating.indicators[{i}]"
        code = _text(table, "code", where, problems)
        if code and not _INDICATOR_CODE.fullmatch(code):
            problems.append(Problem(LEADERSHIP_FILE, f"{where}.code",
                                    f"{code!r}: letters, digits and _ only"))
        if code in {x.code for x in indicators}:
            problems.append(Problem(LEADERSHIP_FILE, f"{where}.code", f"{code!r} twice"))
        published_only = table.get("published_only", False) is True
        numerator = table.get("numerator")
        denominator = table.get("denominator")
        if published_only:
            if numerator is not None or denominator is not None:
                problems.append(Problem(LEADERSHIP_FILE, where,
                                        "a published_only indicator has no numerator/denominator"))
            numerator = denominator = None
        else:
            for key, value in (("numerator", numerator), ("denominator", denominator)):
                if value not in MEASURES:
                    problems.append(Problem(
                        LEADERSHIP_FILE, f"{where}.{key}",
                        f"unknown measure {value!r} (known: {', '.join(MEASURES)})"))
            if numerator is not None and numerator == denominator:
                problems.append(Problem(LEADERSHIP_FILE, where,
                                        "numerator and denominator are the same count"))
        complement = table.get("complement", False)
        if not isinstance(complement, bool):
            problems.append(Problem(LEADERSHIP_FILE, f"{where}.complement", "expected true/false"))
            complement = False
        indicators.append(Indicator(
            code, _text(table, "name_en", where, problems),
            _text(table, "name_uk", where, problems),
            numerator if isinstance(numerator, str) else None,
            denominator if isinstance(denominator, str) else None,
            complement, published_only))
    if not indicators:
        problems.append(Problem(LEADERSHIP_FILE, "district_rating.indicators",
                                "the rating needs at least one indicator"))

    extras: list[ExtraCategory] = []
    for i, table in enumerate(_tables(data, ("extra_categories",), problems)):
        where = f"extra_categories[{i}]"
        code = _text(table, "code", where, problems)
        sphere = _text(table, "sphere", where, problems)
        if code and not _CODE.fullmatch(code):
            problems.append(Problem(LEADERSHIP_FILE, f"{where}.code",
                                    f"{code!r}: lowercase letters, digits and _ only"))
        if spheres is not None and sphere and sphere not in spheres:
            problems.append(Problem(LEADERSHIP_FILE, f"{where}.sphere",
                                    f"unknown sphere {sphere!r}"))
        extras.append(ExtraCategory(code, sphere, _text(table, "name_en", where, problems),
                                    _text(table, "name_uk", where, problems)))

    known = None if categories is None else categories | {e.code for e in extras}
    components: list[Component] = []
    for i, table in enumerate(_tables(data, ("housing_rating", "components"), problems)):
        where = f"housing_rating.components[{i}]"
        code = _text(table, "code", where, problems)
        if code in {c.code for c in components}:
            problems.append(Problem(LEADERSHIP_FILE, f"{where}.code", f"{code!r} twice"))
        cats = table.get("categories")
        if not isinstance(cats, list) or not cats or not all(isinstance(c, str) for c in cats):
            problems.append(Problem(LEADERSHIP_FILE, f"{where}.categories",
                                    "expected a non-empty list of category codes"))
            cats = []
        for cat in cats:
            if known is not None and cat not in known:
                problems.append(Problem(LEADERSHIP_FILE, f"{where}.categories",
                                        f"unknown category {cat!r}"))
        components.append(Component(code, _text(table, "name_en", where, problems),
                                    _text(table, "name_uk", where, problems), tuple(cats)))
    if problems:
        return None, problems
    return LeadershipConfig(max_days, seed_columns, tuple(indicators), tuple(components),
                            tuple(extras)), []


def check_leadership_config(
    config_dir: Path, *, categories: set[str] | None = None, spheres: set[str] | None = None
) -> list[Problem]:
    path = config_dir / LEADERSHIP_FILE
    if not path.is_file():
        return [Problem(LEADERSHIP_FILE, "", "missing")]
    return parse_leadership_config(path.read_text("utf-8"), categories=categories,
                                   spheres=spheres)[1]


def load_leadership_config(config_dir: Path) -> LeadershipConfig:
    path = config_dir / LEADERSHIP_FILE
    if not path.is_file():
        raise LeadershipConfigError([Problem(LEADERSHIP_FILE, "", "missing")], str(config_dir))
    config, problems = parse_leadership_config(path.read_text("utf-8"))
    if config is None:
        raise LeadershipConfigError(problems, str(config_dir))
    return config
