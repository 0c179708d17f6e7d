"""The appeals' configuration files: ``appeals.toml`` (lifecycle), ``holidays.toml``
(working days) and ``routing.toml`` (executors and rules).

Every mistake is a :class:`~hotline.core.errors.ConfigError` naming the file and
the key, e.g. ``routing.toml: rules[2].executor: unknown executor 'zhek_9'``.
Codes of categories and districts are checked against the case store when the
rules are loaded into it (:mod:`crm_sync.appeals.routing_admin`).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crm_sync.appeals.addresses import normalise_address
from hotline.core.errors import ConfigError
from hotline.core.problems import Problem
from hotline.core.workdays import WorkingCalendar, calendar_from_config

APPEALS_FILE, HOLIDAYS_FILE, ROUTING_FILE = "appeals.toml", "holidays.toml", "routing.toml"

EXECUTOR_KINDS = ("district_admin", "housing_office", "utility", "city_department")


@dataclass(frozen=True)
class AppealsSettings:
    reopen_days: int = 30
    duplicate_radius_m: float = 50.0
    due_soon_hours: int = 24
    default_sla_working_days: int = 10
    sla: Mapping[str, int] = field(default_factory=dict)  # category code → working days


@dataclass(frozen=True)
class ExecutorSpec:
    code: str
    name: str
    name_uk: str
    kind: str
    district: str | None = None


@dataclass(frozen=True)
class AreaSpec:
    lat: float
    lon: float
    radius_m: float


@dataclass(frozen=True)
class RuleSpec:
    """One ``[[rules]]`` table: it becomes a rule per (category, district) pair."""

    name: str
    executor: str
    categories: tuple[str, ...] = ()  # empty: any
    districts: tuple[str, ...] = ()  # empty: any
    streets: tuple[str, ...] = ()  # normalised
    area: AreaSpec | None = None
    priority: int = 100


@dataclass(frozen=True)
class RoutingConfig:
    executors: tuple[ExecutorSpec, ...] = ()
    rules: tuple[RuleSpec, ...] = ()
    fallback_executor: str | None = None


@dataclass(frozen=True)
class AppealsConfig:
    settings: AppealsSettings
    calendar: WorkingCalendar
    routing: RoutingConfig


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path.name}: not valid TOML ({exc})") from None


def _unknown_keys(data: Mapping[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}")


def _int(data: Mapping[str, Any], key: str, default: int, where: str, lo: int, hi: int) -> int:
    value = data.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ConfigError(f"{where}: {key}: expected an integer {lo}–{hi}, got {value!r}")
    return value


def _number(value: Any, where: str, lo: float, hi: float) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not lo <= value <= hi:
        raise ConfigError(f"{where}: expected a number {lo:g}–{hi:g}, got {value!r}")
    return float(value)


def _text(data: Mapping[str, Any], key: str, where: str, *, required: bool = True) -> str:
    value = data.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: {key}: expected a non-empty string, got {value!r}")
    return value.strip()


def _codes(data: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}: {key}: expected a list of codes, got {value!r}")
    return tuple(value)


def parse_appeals_settings(
    data: Mapping[str, Any], source: str = "appeals.toml"
) -> AppealsSettings:
    _unknown_keys(data, {"reopen_days", "duplicate_radius_m", "due_soon_hours",
                         "default_sla_working_days", "sla"}, source)
    sla_table = data.get("sla", {})
    if not isinstance(sla_table, dict):
        raise ConfigError(f"{source}: sla: expected a table of category = working days")
    sla = {code: _int(sla_table, code, 0, f"{source}: sla", 1, 365) for code in sla_table}
    return AppealsSettings(
        reopen_days=_int(data, "reopen_days", 30, source, 0, 3650),
        duplicate_radius_m=_number(data.get("duplicate_radius_m", 50), f"{source}: "
                                   "duplicate_radius_m", 0, 10_000),
        due_soon_hours=_int(data, "due_soon_hours", 24, source, 1, 24 * 365),
        default_sla_working_days=_int(data, "default_sla_working_days", 10, source, 1, 365),
        sla=sla,
    )


def parse_routing_config(data: Mapping[str, Any], source: str = "routing.toml") -> RoutingConfig:
    _unknown_keys(data, {"fallback", "executors", "rules"}, source)
    executors: list[ExecutorSpec] = []
    seen: set[str] = set()
    for i, entry in enumerate(data.get("executors", [])):
        where = f"{source}: executors[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a table")
        _unknown_keys(entry, {"code", "name", "name_uk", "kind", "district"}, where)
        code = _text(entry, "code", where)
        if code in seen:
            raise ConfigError(f"{where}: code: {code!r} appears twice")
        seen.add(code)
        kind = _text(entry, "kind", where)
        if kind not in EXECUTOR_KINDS:
            raise ConfigError(f"{where}: kind: expected one of {', '.join(EXECUTOR_KINDS)}, "
                              f"got {kind!r}")
        district = entry.get("district")
        if district is not None and not isinstance(district, str):
            raise ConfigError(f"{where}: district: expected a district code")
        executors.append(ExecutorSpec(code, _text(entry, "name", where),
                                      _text(entry, "name_uk", where, required=False) or "",
                                      kind, district))
    rules: list[RuleSpec] = []
    for i, entry in enumerate(data.get("rules", [])):
        where = f"{source}: rules[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a table")
        _unknown_keys(entry, {"name", "executor", "categories", "districts", "streets", "area",
                              "priority"}, where)
        area = None
        if "area" in entry:
            raw = entry["area"]
            if not isinstance(raw, dict) or set(raw) != {"lat", "lon", "radius_m"}:
                raise ConfigError(f"{where}: area: expected {{ lat, lon, radius_m }}")
            area = AreaSpec(_number(raw["lat"], f"{where}: area.lat", -90, 90),
                            _number(raw["lon"], f"{where}: area.lon", -180, 180),
                            _number(raw["radius_m"], f"{where}: area.radius_m", 1, 100_000))
        streets = tuple(normalise_address(s) for s in _codes(entry, "streets", where))
        if any(not s for s in streets):
            raise ConfigError(f"{where}: streets: a street is empty once normalised")
        rules.append(RuleSpec(
            name=_text(entry, "name", where, required=False),
            executor=_text(entry, "executor", where),
            categories=_codes(entry, "categories", where),
            districts=_codes(entry, "districts", where),
            streets=streets,
            area=area,
            priority=_int(entry, "priority", 100, where, 0, 1_000_000),
        ))
    fallback = data.get("fallback", {})
    if not isinstance(fallback, dict):
        raise ConfigError(f"{source}: fallback: expected a table with executor = \"code\"")
    _unknown_keys(fallback, {"executor"}, f"{source}: fallback")
    fallback_executor = (
        _text(fallback, "executor", f"{source}: fallback") if "executor" in fallback else None
    )
    return RoutingConfig(tuple(executors), tuple(rules), fallback_executor)


def load_appeals_config(config_dir: Path) -> AppealsConfig:
    """The three files of ``config_dir``; the routing file may be absent (no rules
    beyond the taxonomy seed, no fallback)."""
    routing_path = config_dir / ROUTING_FILE
    return AppealsConfig(
        settings=parse_appeals_settings(_read(config_dir / APPEALS_FILE)),
        calendar=calendar_from_config(_read(config_dir / HOLIDAYS_FILE)),
        routing=(parse_routing_config(_read(routing_path)) if routing_path.exists()
                 else RoutingConfig()),
    )


def check_appeals_config(
    config_dir: Path,
    *,
    categories: set[str] | None = None,
    districts: set[str] | None = None,
    executors: set[str] | None = None,
) -> list[Problem]:
    """``hotline check-config``'s part: each file parses, and the codes it names
    exist (the taxonomy's categories, districts and executors, when given)."""
    problems: list[Problem] = []
    parsed: dict[str, Any] = {}
    for name, parse in ((APPEALS_FILE, parse_appeals_settings),
                        (HOLIDAYS_FILE, calendar_from_config),
                        (ROUTING_FILE, parse_routing_config)):
        if name == ROUTING_FILE and not (config_dir / name).exists():
            continue
        try:
            parsed[name] = parse(_read(config_dir / name))
        except ConfigError as exc:
            reason = exc.message.removeprefix(f"{name}: ").removeprefix(f"{config_dir / name}: ")
            problems.append(Problem(name, "", reason))
    settings, routing = parsed.get(APPEALS_FILE), parsed.get(ROUTING_FILE)
    if categories is not None and settings is not None:
        problems += [Problem(APPEALS_FILE, f"sla.{code}", "unknown category")
                     for code in settings.sla if code not in categories]
    if routing is None:
        return problems
    known_executors = None if executors is None else executors | {
        e.code for e in routing.executors}
    for e in routing.executors:
        if districts is not None and e.district is not None and e.district not in districts:
            problems.append(Problem(ROUTING_FILE, f"executors.{e.code}.district",
                                    f"unknown district {e.district!r}"))
    for i, rule in enumerate(routing.rules):
        if known_executors is not None and rule.executor not in known_executors:
            problems.append(Problem(ROUTING_FILE, f"rules[{i}].executor",
                                    f"unknown executor {rule.executor!r}"))
        for code in rule.categories:
            if categories is not None and code not in categories:
                problems.append(Problem(ROUTING_FILE, f"rules[{i}].categories",
                                        f"unknown category {code!r}"))
        for code in rule.districts:
            if districts is not None and code not in districts:
                problems.append(Problem(ROUTING_FILE, f"rules[{i}].districts",
                                        f"unknown district {code!r}"))
    fallback = routing.fallback_executor
    if known_executors is not None and fallback is not None and fallback not in known_executors:
        problems.append(Problem(ROUTING_FILE, "fallback.executor",
                                f"unknown executor {fallback!r}"))
    return problems
