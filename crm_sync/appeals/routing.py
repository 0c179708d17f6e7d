"""Choosing the executor for an appeal (pure).

A rule says: appeals of this category (or any), in this district (or any),
optionally only at these streets or within this circle, go to this executor,
with a priority (lower wins). Among the rules that match, the lowest priority
wins; at equal priority the more specific rule (a place, then a district, then
a category) wins, then the older rule. Executors that declined the appeal as
"not theirs" are skipped. When nothing is left, the fallback executor (the
dispatcher) gets it. Every decision says why, in words an admin can read.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from crm_sync.appeals.addresses import address_has_prefix, distance_m


@dataclass(frozen=True)
class Area:
    latitude: float
    longitude: float
    radius_m: float

    def contains(self, point: tuple[float, float]) -> bool:
        return distance_m(self.latitude, self.longitude, *point) <= self.radius_m


@dataclass(frozen=True)
class RoutingRule:
    id: int
    executor_id: int
    executor_code: str
    priority: int
    category_id: int | None = None  # None: any category
    district_id: int | None = None  # None: any district
    address_prefixes: tuple[str, ...] = ()  # normalised; with ``area``: either one matches
    area: Area | None = None
    fallback: bool = False
    name: str = ""
    category_code: str | None = None  # for the reason text only
    district_code: str | None = None

    @property
    def has_place(self) -> bool:
        return bool(self.address_prefixes) or self.area is not None

    def specificity(self) -> int:
        return (4 if self.has_place else 0) + (2 if self.district_id is not None else 0) + (
            1 if self.category_id is not None else 0
        )

    def describe(self) -> str:
        parts = [f"category {self.category_code or self.category_id or 'any'}",
                 f"district {self.district_code or self.district_id or 'any'}"]
        if self.address_prefixes:
            parts.append("streets " + ", ".join(repr(p) for p in self.address_prefixes))
        if self.area is not None:
            parts.append(f"within {self.area.radius_m:g} m of "
                         f"{self.area.latitude:.5f},{self.area.longitude:.5f}")
        label = f" {self.name!r}" if self.name else ""
        return (f"rule #{self.id}{label} → {self.executor_code} "
                f"({'; '.join(parts)}; priority {self.priority})")


@dataclass(frozen=True)
class RoutingQuery:
    category_id: int
    district_id: int | None
    address_norm: str = ""
    point: tuple[float, float] | None = None
    declined: frozenset[int] = frozenset()  # executors that said "not ours"


@dataclass(frozen=True)
class RoutingDecision:
    rule: RoutingRule | None
    reason: str
    declined_skipped: tuple[str, ...] = ()  # codes of matching executors skipped
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def executor_id(self) -> int | None:
        return self.rule.executor_id if self.rule else None


def place_matches(rule: RoutingRule, query: RoutingQuery) -> bool:
    if not rule.has_place:
        return True
    if any(address_has_prefix(query.address_norm, p) for p in rule.address_prefixes):
        return True
    return rule.area is not None and query.point is not None and rule.area.contains(query.point)


def matches(rule: RoutingRule, query: RoutingQuery) -> bool:
    if rule.fallback:
        return False
    if rule.category_id is not None and rule.category_id != query.category_id:
        return False
    if rule.district_id is not None and rule.district_id != query.district_id:
        return False
    return place_matches(rule, query)


def _order(rule: RoutingRule) -> tuple[int, int, int]:
    return (rule.priority, -rule.specificity(), rule.id)


def choose(rules: Iterable[RoutingRule], query: RoutingQuery) -> RoutingDecision:
    """The rule that routes this appeal, or the fallback, or none; with the reason."""
    rules = list(rules)
    candidates = sorted((r for r in rules if matches(r, query)), key=_order)
    skipped: list[str] = []
    for rule in candidates:
        if rule.executor_id in query.declined:
            if rule.executor_code not in skipped:
                skipped.append(rule.executor_code)
            continue
        why = f"matched {rule.describe()}"
        if skipped:
            why += f"; skipped {', '.join(skipped)} (declined as not theirs)"
        return RoutingDecision(rule, why, tuple(skipped),
                               {"rule_id": rule.id, "matched": len(candidates)})
    fallbacks = sorted((r for r in rules if r.fallback), key=lambda r: r.id)
    if candidates:
        situation = f"every matching executor declined ({', '.join(skipped)})"
    else:
        situation = "no rule matches the category and district"
    for rule in fallbacks:
        if rule.executor_id in query.declined:
            continue
        return RoutingDecision(rule, f"{situation}: fallback executor {rule.executor_code}",
                               tuple(skipped), {"rule_id": rule.id, "fallback": True})
    return RoutingDecision(None, f"{situation}, and no fallback executor is left",
                           tuple(skipped), {})
