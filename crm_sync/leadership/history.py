"""Ten years of appeals for the scale test, generated inside PostgreSQL.

One ``INSERT … SELECT generate_series`` per month: nothing crosses the wire but
the month's plan (how many, and the weighted choices as arrays). The mix follows
the seed: spheres by their 2017 shares, the top-10 issues and districts by the
2017 matrix, the housing rating's components to ten housing offices per
district, the rest to the district's administration; more in the heating
season, growing over the years. Appeals older than their resolution are
settled (about 9 % after their due time, 4 % rejected, 2 % reopened once) and
closed a month later; recent ones are open. The roll-ups are refreshed at the
end. No appeal history rows: the dashboard does not read them.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import asyncpg

from crm_sync.appeals.config import load_appeals_config
from crm_sync.leadership.config import CHECKOUT_CONFIG_DIR, load_leadership_config
from crm_sync.leadership.demo import (
    district_order,
    ensure_housing_offices,
    ensure_taxonomy,
    other_category,
)
from crm_sync.leadership.periods import city_midnight, city_today, month_start, next_month
from crm_sync.leadership.rollups import BULK_TIMEOUT, refresh_rollups
from crm_sync.taxonomy import ISSUES, ISSUES_FILE
from hotline.core.logs import get_logger

#: Appeals a year on average (Kyiv's 1551: about a million in 2017).
PER_YEAR = 1_000_000
OFFICES_PER_DISTRICT = 10
#: Share of all appeals for the housing rating's categories the seed's top ten lack.
EXTRA_SHARES = {"staircase_cleaning": 0.02, "rude_behaviour": 0.004}
CHANNELS = (("phone", 0.60), ("web", 0.20), ("mobile", 0.12), ("facebook", 0.03),
            ("gov_contact_centre", 0.05))
#: Heating season (October to April) brings more appeals.
MONTH_WEIGHT = {1: 1.3, 2: 1.2, 3: 1.1, 4: 1.0, 5: 0.85, 6: 0.8, 7: 0.8, 8: 0.8, 9: 0.9,
                10: 1.2, 11: 1.3, 12: 1.35}

log = get_logger("crm_sync.leadership.history")


@dataclass(frozen=True)
class Plan:
    """Weighted choices: thresholds (cumulative, from 0) and what each picks."""

    cumulative: list[float]
    category: list[int]
    district: list[int]
    executor: list[int]
    sla_days: list[float]


async def _plan(pool: asyncpg.Pool, config_dir: Path) -> Plan:
    config = load_leadership_config(config_dir)
    await ensure_taxonomy(pool, config_dir, config)
    order = district_order(config_dir)
    numbers = [(d + 1) * 100 + i for d in range(len(order))
               for i in range(1, OFFICES_PER_DISTRICT + 1)]
    offices = await ensure_housing_offices(pool, config_dir, numbers)
    sla = load_appeals_config(config_dir).settings
    cats = {r["code"]: (r["id"], r["sphere"]) for r in await pool.fetch(
        "SELECT c.id, c.code, s.code AS sphere FROM categories c JOIN spheres s "
        "ON s.id = c.sphere_id")}
    districts = {r["code"]: r["id"] for r in await pool.fetch("SELECT id, code FROM districts")}
    admins = {r["district_id"]: r["id"] for r in await pool.fetch(
        "SELECT id, district_id FROM executors WHERE kind = 'district_admin'")}
    shares = {r["code"]: float(r["share_percent"]) / 100 for r in await pool.fetch(
        "SELECT code, share_percent FROM spheres WHERE share_percent IS NOT NULL")}
    with (config_dir / ISSUES_FILE).open(encoding="utf-8", newline="") as f:
        matrix = list(csv.DictReader(f))
    column_of = {c.lower(): c for c in matrix[0]}
    district_total = {d: sum(int(r[column_of[d]]) for r in matrix) for d in order}
    all_total = sum(district_total.values())
    housing_cats = {c for comp in config.components for c in comp.categories}
    weights: dict[str, dict[str, float]] = {}  # category → district → share of all
    left = dict(shares)
    for row in matrix:
        code, sphere = ISSUES[row["issue_en"]]
        weights[code] = {d: int(row[column_of[d]]) / 1_000_000 for d in order}
        left[sphere] -= sum(weights[code].values())
    for code, share in EXTRA_SHARES.items():
        if code in cats:
            weights[code] = {d: share * district_total[d] / all_total for d in order}
            left[cats[code][1]] -= share
    for sphere, share in left.items():
        weights[other_category(sphere)] = {d: max(share, 0.0) * district_total[d] / all_total
                                           for d in order}
    cumulative, category, district, executor, sla_days = [], [], [], [], []
    acc = 0.0
    for code, by_district in weights.items():
        days = sla.sla.get(code, sla.default_sla_working_days) * 7 / 5
        for d, w in by_district.items():
            if w <= 0:
                continue
            district_id = districts[d]
            if code in housing_cats:
                first = (order.index(d) + 1) * 100
                targets = [offices[first + i] for i in range(1, OFFICES_PER_DISTRICT + 1)]
                skew = [1.0 + 0.15 * i for i in range(len(targets))]  # some offices worse
                parts = [w * s / sum(skew) for s in skew]
            else:
                targets, parts = [admins[district_id]], [w]
            for target, part in zip(targets, parts, strict=True):
                cumulative.append(acc)
                acc += part
                category.append(cats[code][0])
                district.append(district_id)
                executor.append(target)
                sla_days.append(days)
    return Plan([c / acc for c in cumulative], category, district, executor, sla_days)


def monthly_counts(first: date, months: int, total: int) -> list[tuple[date, int]]:
    """``total`` over ``months`` months from ``first``: seasonal, growing 60 % to 100 %."""
    starts, raw = [], []
    month = first
    for i in range(months):
        starts.append(month)
        raw.append(MONTH_WEIGHT[month.month] * (0.6 + 0.4 * i / max(months - 1, 1)))
        month = next_month(month)
    scale = total / sum(raw)
    counts = [int(r * scale) for r in raw]
    counts[-1] += total - sum(counts)
    return list(zip(starts, counts, strict=True))


_INSERT = """
WITH g AS MATERIALIZED (
    SELECT $1::timestamptz + random() * ($2::timestamptz - $1::timestamptz) AS created_at,
           width_bucket(random(), $3::float8[]) AS k,
           random() AS r_channel, random() AS r_status, random() AS r_resolve,
           random() AS r_reopen
      FROM generate_series(1, $4::int)
), p AS (
    SELECT g.*, ($5::int[])[k] AS category_id, ($6::int[])[k] AS district_id,
           ($7::int[])[k] AS executor_id,
           g.created_at + ($8::float8[])[k] * interval '1 day' AS due_at,
           g.created_at + interval '1 hour'
               + ($8::float8[])[k] * 1.15 * power(r_resolve, 1.5) * interval '1 day' AS settle
      FROM g
), s AS (
    SELECT p.*,
           CASE WHEN settle > now() THEN (CASE WHEN r_status < 0.5 THEN 'in_progress'
                                               WHEN r_status < 0.8 THEN 'accepted'
                                               ELSE 'routed' END)
                WHEN r_status < 0.04 THEN 'rejected'
                WHEN settle + interval '30 days' < now() THEN 'closed'
                ELSE 'done' END AS status
      FROM p
)
INSERT INTO appeals (number, channel, category_id, district_id, executor_id, status, due_at,
                     created_at, updated_at, status_changed_at, settled_at, closed_at,
                     reopen_count)
SELECT appeal_number_at(created_at, nextval('appeal_number_seq')),
       CASE WHEN r_channel < $9 THEN 'phone' WHEN r_channel < $10 THEN 'web'
            WHEN r_channel < $11 THEN 'mobile' WHEN r_channel < $12 THEN 'facebook'
            ELSE 'gov_contact_centre' END,
       category_id, district_id, executor_id, status, due_at, created_at,
       least(now(), greatest(created_at, settle)), least(now(), greatest(created_at, settle)),
       CASE WHEN status IN ('done', 'rejected', 'closed') THEN settle END,
       CASE WHEN status = 'closed' THEN settle + interval '30 days' END,
       CASE WHEN status IN ('done', 'closed') AND r_reopen < 0.02 THEN 1 ELSE 0 END
  FROM s
"""


async def generate_appeals(
    pool: asyncpg.Pool, *, years: int, progress: Callable[[int, int], None],
    per_year: int = PER_YEAR, config_dir: Path = CHECKOUT_CONFIG_DIR, now: datetime | None = None,
) -> int:
    """``years`` years of appeals up to now, ``years × per_year`` in all (fewer in the
    first years, more in the last), then the dashboard's roll-ups;
    ``progress(done, total)`` before the first month and after each. Returns how
    many appeals were written."""
    if not 1 <= years <= 20:
        raise ValueError("years must be from 1 to 20")
    now = now or datetime.now(UTC)
    plan = await _plan(pool, config_dir)
    today = city_today(now)
    first = month_start(today.replace(year=today.year - years))
    months = (today.year - first.year) * 12 + today.month - first.month + 1
    total = years * per_year * months // (years * 12 + 1)
    channel_cuts = []
    acc = 0.0
    for _, share in CHANNELS[:-1]:
        acc += share
        channel_cuts.append(acc)
    done = 0
    progress(0, total)
    rng = random.Random(1551)
    async with pool.acquire() as conn:
        await conn.execute(f"SELECT setseed({rng.random() - 0.5})")
        for start, count in monthly_counts(first, months, total):
            end = min(city_midnight(next_month(start)), now)
            begin = city_midnight(start)
            if count and end > begin:
                await conn.execute(_INSERT, begin, end, plan.cumulative, count, plan.category,
                                   plan.district, plan.executor, plan.sla_days, *channel_cuts,
                                   timeout=BULK_TIMEOUT)
            done += count
            progress(done, total)
            log.debug("leadership_history_month", month=str(start), appeals=count)
    await refresh_rollups(pool, now=now)
    log.info("leadership_history_generated", appeals=done, years=years,
             since=str(first), until=(now - timedelta(0)).isoformat())
    return done
