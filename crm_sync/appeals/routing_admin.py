"""Routing rules in the case store: loaded from ``config/routing.toml`` and
``config/appeals.toml`` (by ``hotline migrate``), and edited by an admin.

Ownership decides who may overwrite a rule (``routing_rules.source``):
``seed`` rules come from the taxonomy, ``config`` rules from the file (a load
replaces them and switches off those no longer in the file), ``admin`` rules
were created or edited by a person and a load never touches them. Rules are
never deleted, only switched off: routing decisions keep pointing at them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from crm_sync.appeals import store
from crm_sync.appeals.addresses import normalise_address
from crm_sync.appeals.config import AppealsSettings, AreaSpec, RoutingConfig
from crm_sync.appeals.routing import RoutingDecision, RoutingQuery, RoutingRule, choose
from hotline.core.appeals import Actor, ActorKind
from hotline.core.errors import ConfigError, Forbidden, InvalidInput, NotFound
from hotline.core.logs import get_logger

log = get_logger("crm_sync.appeals.routing_admin")


async def _codes(conn: asyncpg.Connection, table: str) -> dict[str, int]:
    return {r["code"]: r["id"] for r in await conn.fetch(f"SELECT id, code FROM {table}")}


async def load_routing_config(
    target: asyncpg.Pool | asyncpg.Connection,
    routing: RoutingConfig,
    settings: AppealsSettings | None = None,
) -> dict[str, int]:
    """Upsert the file's executors and rules, the fallback, and the categories'
    SLA, in one transaction; safe to run again. Returns counts."""
    if isinstance(target, asyncpg.Pool):
        async with target.acquire() as conn:
            return await _load(conn, routing, settings)
    return await _load(target, routing, settings)


async def _load(
    conn: asyncpg.Connection, routing: RoutingConfig, settings: AppealsSettings | None
) -> dict[str, int]:
    async with conn.transaction():
        # two `hotline migrate` at once: the second waits, then finds nothing to change
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('routing-config-load'))")
        districts = await _codes(conn, "districts")
        categories = await _codes(conn, "categories")
        for spec in routing.executors:
            if spec.district is not None and spec.district not in districts:
                raise ConfigError(f"routing.toml: executor {spec.code}: unknown district "
                                  f"{spec.district!r}")
            await conn.execute(
                """INSERT INTO executors (code, name, name_uk, kind, district_id)
                   VALUES ($1, $2, $3, $4, $5)
                   ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name,
                       name_uk = EXCLUDED.name_uk, kind = EXCLUDED.kind,
                       district_id = EXCLUDED.district_id""",
                spec.code, spec.name, spec.name_uk or None, spec.kind,
                districts.get(spec.district) if spec.district else None)
        executors = await _codes(conn, "executors")
        wanted: list[tuple[Any, ...]] = []
        for i, rule in enumerate(routing.rules):
            where = f"routing.toml: rules[{i}]"
            if rule.executor not in executors:
                raise ConfigError(f"{where}.executor: unknown executor {rule.executor!r}")
            for code in rule.categories:
                if code not in categories:
                    raise ConfigError(f"{where}.categories: unknown category {code!r}")
            for code in rule.districts:
                if code not in districts:
                    raise ConfigError(f"{where}.districts: unknown district {code!r}")
            area = rule.area or AreaSpec(0, 0, 0)
            for category in rule.categories or (None,):
                for district in rule.districts or (None,):
                    wanted.append((
                        categories[category] if category else None,
                        districts[district] if district else None,
                        executors[rule.executor], rule.priority, rule.name,
                        list(rule.streets), area.lat if rule.area else None,
                        area.lon if rule.area else None,
                        area.radius_m if rule.area else None,
                    ))
        if routing.fallback_executor is not None:
            if routing.fallback_executor not in executors:
                raise ConfigError(f"routing.toml: fallback.executor: unknown executor "
                                  f"{routing.fallback_executor!r}")
        keys = {(w[0], w[1], w[2]) for w in wanted}
        if len(keys) != len(wanted):
            raise ConfigError("routing.toml: two rules give the same executor the same "
                              "category and district; merge them")
        # the file's rules from a previous load that are gone from it now
        await conn.execute(
            """UPDATE routing_rules SET active = false, updated_at = now(),
                   updated_by = 'config'
               WHERE source = 'config' AND active AND NOT fallback
                 AND NOT EXISTS (
                     SELECT 1 FROM unnest($1::int[], $2::int[], $3::int[]) AS k (c, d, e)
                     WHERE k.c IS NOT DISTINCT FROM routing_rules.category_id
                       AND k.d IS NOT DISTINCT FROM routing_rules.district_id
                       AND k.e = routing_rules.executor_id)""",
            [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys])
        await conn.executemany(
            """INSERT INTO routing_rules (category_id, district_id, executor_id, priority, name,
                   address_prefixes, area_lat, area_lon, area_radius_m, source, updated_by)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'config', 'config')
               ON CONFLICT (category_id, district_id, executor_id) DO UPDATE SET
                   priority = EXCLUDED.priority, name = EXCLUDED.name,
                   address_prefixes = EXCLUDED.address_prefixes, area_lat = EXCLUDED.area_lat,
                   area_lon = EXCLUDED.area_lon, area_radius_m = EXCLUDED.area_radius_m,
                   active = true, fallback = false, source = 'config', updated_at = now(),
                   updated_by = 'config'
               WHERE routing_rules.source <> 'admin'""",
            wanted)
        fallback = 0
        if routing.fallback_executor is not None:
            fallback = await _set_fallback(conn, executors[routing.fallback_executor], "config",
                                           source="config")
        sla = 0
        if settings is not None:
            for code in settings.sla:
                if code not in categories:
                    raise ConfigError(f"appeals.toml: sla: unknown category {code!r}")
            await conn.execute("UPDATE categories SET sla_working_days = NULL")
            for code, days in settings.sla.items():
                await conn.execute(
                    "UPDATE categories SET sla_working_days = $2 WHERE code = $1", code, days)
            sla = len(settings.sla)
    counts = {"executors": len(routing.executors), "routing_rules": len(wanted),
              "fallback": fallback, "category_sla": sla}
    log.info("routing_config_loaded", **counts)
    return counts


async def _set_fallback(
    conn: asyncpg.Connection, executor_id: int, by: str, *, source: str
) -> int:
    current = await conn.fetchrow(
        "SELECT id, executor_id, source FROM routing_rules WHERE fallback AND active")
    if current is not None and current["executor_id"] == executor_id:
        return 1
    if current is not None and source == "config" and current["source"] == "admin":
        return 0  # an admin chose the fallback; the file does not override them
    await conn.execute(
        """UPDATE routing_rules SET active = false, updated_at = now(), updated_by = $1
           WHERE fallback AND active""", by)
    await conn.execute(
        """INSERT INTO routing_rules (category_id, district_id, executor_id, priority, name,
               fallback, source, updated_by)
           VALUES (NULL, NULL, $1, 1000000, 'fallback', true, $2, $3)
           ON CONFLICT (category_id, district_id, executor_id) DO UPDATE SET
               fallback = true, active = true, priority = 1000000, name = 'fallback',
               address_prefixes = '{}', area_lat = NULL, area_lon = NULL, area_radius_m = NULL,
               source = EXCLUDED.source, updated_at = now(), updated_by = EXCLUDED.updated_by""",
        executor_id, source, by)
    return 1


@dataclass(frozen=True)
class RuleRow:
    id: int
    executor_code: str
    category_code: str | None
    district_code: str | None
    priority: int
    name: str
    address_prefixes: tuple[str, ...]
    area: tuple[float, float, float] | None
    fallback: bool
    active: bool
    source: str
    updated_by: str


_ADMINS = frozenset({ActorKind.ADMIN, ActorKind.SUPERVISOR})


class RoutingAdmin:
    """What the admin page does with routing rules; every change is the admin's
    from then on (``source = 'admin'``) and names who made it."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @staticmethod
    def _check(actor: Actor) -> None:
        if actor.kind not in _ADMINS:
            raise Forbidden("routing rules are edited by admins and supervisors")

    async def list_rules(self, *, category: str | None = None, district: str | None = None,
                         include_inactive: bool = False) -> list[RuleRow]:
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                """SELECT r.id, e.code AS executor_code, c.code AS category_code,
                          d.code AS district_code, r.priority, r.name, r.address_prefixes,
                          r.area_lat, r.area_lon, r.area_radius_m, r.fallback, r.active,
                          r.source, r.updated_by
                   FROM routing_rules r JOIN executors e ON e.id = r.executor_id
                   LEFT JOIN categories c ON c.id = r.category_id
                   LEFT JOIN districts d ON d.id = r.district_id
                   WHERE ($1::text IS NULL OR c.code = $1 OR r.category_id IS NULL)
                     AND ($2::text IS NULL OR d.code = $2 OR r.district_id IS NULL)
                     AND ($3 OR r.active)
                   ORDER BY r.fallback, r.priority, r.id""",
                category, district, include_inactive)
        return [
            RuleRow(r["id"], r["executor_code"], r["category_code"], r["district_code"],
                    r["priority"], r["name"], tuple(r["address_prefixes"]),
                    (r["area_lat"], r["area_lon"], r["area_radius_m"])
                    if r["area_lat"] is not None else None,
                    r["fallback"], r["active"], r["source"], r["updated_by"])
            for r in rows
        ]

    async def save_rule(
        self, actor: Actor, *, executor: str, category: str | None, district: str | None,
        priority: int, name: str = "", streets: Sequence[str] = (),
        area: tuple[float, float, float] | None = None,
    ) -> int:
        """Create the rule for (category, district, executor) or change it; returns its id."""
        self._check(actor)
        if not 0 <= priority <= 1_000_000:
            raise InvalidInput("priority: 0 to 1000000", details={"field": "priority"})
        prefixes = [normalise_address(s) for s in streets]
        if any(not p for p in prefixes):
            raise InvalidInput("streets: a street is empty", details={"field": "streets"})
        if area is not None and not (-90 <= area[0] <= 90 and -180 <= area[1] <= 180
                                     and 0 < area[2] <= 100_000):
            raise InvalidInput("area: latitude, longitude and a radius of 1 m to 100 km",
                               details={"field": "area"})
        async with self._pool.acquire() as conn, conn.transaction():
            ids = await self._resolve(conn, executor, category, district)
            rule_id: int = await conn.fetchval(
                """INSERT INTO routing_rules (category_id, district_id, executor_id, priority,
                       name, address_prefixes, area_lat, area_lon, area_radius_m, source,
                       updated_by)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'admin', $10)
                   ON CONFLICT (category_id, district_id, executor_id) DO UPDATE SET
                       priority = EXCLUDED.priority, name = EXCLUDED.name,
                       address_prefixes = EXCLUDED.address_prefixes,
                       area_lat = EXCLUDED.area_lat, area_lon = EXCLUDED.area_lon,
                       area_radius_m = EXCLUDED.area_radius_m, active = true, fallback = false,
                       source = 'admin', updated_at = now(), updated_by = EXCLUDED.updated_by
                   RETURNING id""",
                *ids, priority, name, prefixes, *(area or (None, None, None)), actor.label)
        log.info("routing_rule_saved", rule=rule_id, executor=executor, category=category,
                 district=district, priority=priority, actor=actor.label)
        return rule_id

    async def deactivate_rule(self, actor: Actor, rule_id: int) -> None:
        self._check(actor)
        async with self._pool.acquire() as conn:
            done = await conn.fetchval(
                """UPDATE routing_rules SET active = false, source = 'admin', updated_at = now(),
                       updated_by = $2 WHERE id = $1 AND NOT fallback RETURNING id""",
                rule_id, actor.label)
        if done is None:
            raise NotFound(f"routing rule {rule_id} not found (or it is the fallback: "
                           "set another fallback instead)")
        log.info("routing_rule_deactivated", rule=rule_id, actor=actor.label)

    async def set_fallback(self, actor: Actor, executor: str) -> None:
        self._check(actor)
        async with self._pool.acquire() as conn, conn.transaction():
            executor_id = await conn.fetchval(
                "SELECT id FROM executors WHERE code = $1 AND active", executor)
            if executor_id is None:
                raise InvalidInput(f"executor: unknown or inactive code {executor!r}",
                                   details={"field": "executor"})
            await _set_fallback(conn, executor_id, actor.label, source="admin")
        log.info("routing_fallback_set", executor=executor, actor=actor.label)

    async def explain(
        self, *, category: str, district: str | None = None, address: str = "",
        point: tuple[float, float] | None = None,
    ) -> RoutingDecision:
        """Where an appeal like this would go today, and why (a dry run)."""
        async with self._pool.acquire() as conn:
            ids = await self._resolve(conn, None, category, district)
            assert ids[0] is not None
            rules: Sequence[RoutingRule] = await store.rules_for(conn, ids[0], ids[1])
        return choose(rules, RoutingQuery(ids[0], ids[1], normalise_address(address), point))

    @staticmethod
    async def _resolve(
        conn: asyncpg.Connection, executor: str | None, category: str | None,
        district: str | None,
    ) -> tuple[int | None, int | None, int | None]:
        category_id = district_id = executor_id = None
        if category is not None:
            category_id = await conn.fetchval("SELECT id FROM categories WHERE code = $1",
                                              category)
            if category_id is None:
                raise InvalidInput(f"category: unknown code {category!r}",
                                   details={"field": "category"})
        if district is not None:
            district_id = await conn.fetchval("SELECT id FROM districts WHERE code = $1",
                                              district)
            if district_id is None:
                raise InvalidInput(f"district: unknown code {district!r}",
                                   details={"field": "district"})
        if executor is not None:
            executor_id = await conn.fetchval(
                "SELECT id FROM executors WHERE code = $1 AND active", executor)
            if executor_id is None:
                raise InvalidInput(f"executor: unknown or inactive code {executor!r}",
                                   details={"field": "executor"})
        return category_id, district_id, executor_id
