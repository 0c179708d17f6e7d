"""Demo data for the dashboard: the seed's 2017 figures (``hotline demo-data
load-seed``), and the taxonomy both it and the ten-year history need beyond the
seed's top ten: the housing rating's categories, one "other" category per
sphere, and housing offices (ЖЕД, numbered as the seed numbers them: the
district's place in the alphabet, then two digits).

What the seed gives, loaded as it is published:
- appeals of 2017: exactly the top-10 issues × district matrix, and per sphere
  as many as its share asks (of 250,000; the "other" category of each sphere
  takes the rest), spread over the year;
- the district administrations' counts n1..n6 (as the measures of
  ``[seed_columns]``) and their published K1..K5 and rating;
- the housing offices of ``seed/housing_offices_2017.csv`` (transcribed from the
  presentation): complaints per component, and the published places.
Loading again replaces the 2017 demo figures and appeals (intake key ``seed2017``).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path

import asyncpg

from crm_sync.leadership.config import LeadershipConfig
from crm_sync.leadership.ratings import read_seed_rating
from crm_sync.leadership.rollups import BULK_TIMEOUT, refresh_rollups
from crm_sync.taxonomy import ISSUES, ISSUES_FILE, Taxonomy, load_taxonomy, seed_taxonomy

HOUSING_SEED_FILE = "seed/housing_offices_2017.csv"
SEED_YEAR = 2017
#: Appeals of 2017 the demo spreads over the spheres by their shares: enough that
#: each sphere holds its top issues (social security: 8,776 of 3.6 %).
SEED_APPEALS = 250_000
SEED_INTAKE = "seed2017"
#: Columns of housing_offices_2017.csv: per component its complaints and place.
HOUSING_COMPONENT_COLUMNS = {
    "staircase_cleaning": ("staircase_complaints", "staircase_place"),
    "yard_cleaning": ("yard_complaints", "yard_place"),
    "common_lighting": ("lighting_complaints", "lighting_place"),
    "rude_behaviour": ("rude_complaints", "rude_place"),
}


def other_category(sphere: str) -> str:
    return f"{sphere}_other"


async def ensure_taxonomy(
    pool: asyncpg.Pool, config_dir: Path, config: LeadershipConfig
) -> Taxonomy:
    """The seed's taxonomy, the extra categories and one "other" per sphere."""
    taxonomy = load_taxonomy(config_dir)
    await seed_taxonomy(pool, taxonomy)
    queue_of = {s.code: s.queue for s in taxonomy.spheres}
    rows = [(e.code, e.name_uk, e.name_en, e.sphere) for e in config.extra_categories]
    rows += [(other_category(s.code), f"{s.name_uk}: інше", f"{s.name_en}: other", s.code)
             for s in taxonomy.spheres]
    await pool.executemany(
        """INSERT INTO categories (code, name_uk, name_en, sphere_id, default_queue)
           SELECT $1, $2, $3, id, $5 FROM spheres WHERE code = $4
           ON CONFLICT (code) DO UPDATE SET name_uk = EXCLUDED.name_uk,
               name_en = EXCLUDED.name_en""",
        [(*row, queue_of[row[3]]) for row in rows])
    return taxonomy


def district_order(config_dir: Path) -> list[str]:
    """District codes in the seed's column order (Ukrainian alphabetical: the
    first digit of a ЖЕД's number)."""
    with (config_dir / ISSUES_FILE).open(encoding="utf-8", newline="") as f:
        header = next(csv.reader(f))
    return [c.lower() for c in header if c not in ("issue_uk", "issue_en", "total")]


async def ensure_housing_offices(
    pool: asyncpg.Pool, config_dir: Path, numbers: Sequence[int]
) -> dict[int, int]:
    """Housing offices by number (e.g. 101: the first district's first); their ids."""
    order = district_order(config_dir)
    taxonomy = load_taxonomy(config_dir)
    names = {d.code: d.name_uk for d in taxonomy.districts}
    rows = []
    for number in numbers:
        district = order[number // 100 - 1]
        uk = names[district]
        adjective = uk[:-2] + "ий" if uk.endswith("ий") else uk
        rows.append((f"zhed_{number}", f"Housing office {number}", f"{adjective} ЖЕД - {number}",
                     district))
    ids: dict[int, int] = {}
    async with pool.acquire() as conn:
        for number, row in zip(numbers, rows, strict=True):
            ids[number] = await conn.fetchval(
                """INSERT INTO executors (code, name, name_uk, kind, district_id)
                   SELECT $1, $2, $3, 'housing_office', id FROM districts WHERE code = $4
                   ON CONFLICT (code) DO UPDATE SET name_uk = EXCLUDED.name_uk
                   RETURNING id""", *row)
    return ids


@dataclass(frozen=True)
class HousingSeedRow:
    number: int
    name_uk: str
    complaints: dict[str, int]
    places: dict[str, int]
    overall_place: int


def read_housing_seed(config_dir: Path) -> list[HousingSeedRow]:
    with (config_dir / HOUSING_SEED_FILE).open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    return [
        HousingSeedRow(
            int(row["number"]), row["office_uk"],
            {c: int(row[cols[0]]) for c, cols in HOUSING_COMPONENT_COLUMNS.items()},
            {c: int(row[cols[1]]) for c, cols in HOUSING_COMPONENT_COLUMNS.items()},
            int(row["overall_place"]),
        )
        for row in rows
    ]


def sphere_counts(shares: dict[str, Decimal], total: int) -> dict[str, int]:
    """Appeals per sphere such that each count's share of the sum rounds to its
    published share (one decimal), the published shares summing to 100.1 % as
    rounded figures do: the excess is taken evenly off every sphere."""
    excess = (sum(shares.values(), Decimal(0)) - 100) / len(shares)
    counts = {s: int((share - excess) * total / 100) for s, share in shares.items()}
    largest = max(counts, key=lambda s: counts[s])
    counts[largest] += total - sum(counts.values())
    return counts


async def load_seed(
    pool: asyncpg.Pool, config_dir: Path, config: LeadershipConfig
) -> dict[str, int]:
    """Load the seed's 2017 figures (again: replaced). Returns what was loaded."""
    await ensure_taxonomy(pool, config_dir, config)
    housing = read_housing_seed(config_dir)
    office_ids = await ensure_housing_offices(pool, config_dir, [h.number for h in housing])
    categories = {r["code"]: (r["id"], r["sphere"]) for r in await pool.fetch(
        "SELECT c.id, c.code, s.code AS sphere FROM categories c JOIN spheres s "
        "ON s.id = c.sphere_id")}
    districts = {r["code"]: r["id"] for r in await pool.fetch("SELECT id, code FROM districts")}
    admins = {r["district_id"]: r["id"] for r in await pool.fetch(
        "SELECT id, district_id FROM executors WHERE kind = 'district_admin'")}
    shares = {r["code"]: r["share_percent"] for r in await pool.fetch(
        "SELECT code, share_percent FROM spheres WHERE share_percent IS NOT NULL")}
    plan: list[tuple[int, int | None, int | None, int]] = []  # category, district, executor, n
    per_sphere = sphere_counts(shares, SEED_APPEALS)
    with (config_dir / ISSUES_FILE).open(encoding="utf-8", newline="") as f:
        matrix = list(csv.DictReader(f))
    order = district_order(config_dir)
    for row in matrix:
        code, sphere = ISSUES[row["issue_en"]]
        for column in row:
            if column.lower() in order:
                n = int(row[column])
                district_id = districts[column.lower()]
                plan.append((categories[code][0], district_id, admins.get(district_id), n))
                per_sphere[sphere] -= n
    for sphere, left in per_sphere.items():
        if left < 0:
            raise ValueError(f"sphere {sphere}: its top issues exceed its share")
        plan.append((categories[other_category(sphere)][0], None, None, left))
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("DELETE FROM appeals WHERE intake_key LIKE $1", SEED_INTAKE + ":%",
                           timeout=BULK_TIMEOUT)
        await conn.execute(
            """
            INSERT INTO appeals (number, channel, category_id, district_id, executor_id, status,
                                 created_at, updated_at, status_changed_at, closed_at,
                                 settled_at, due_at, intake_key)
            SELECT appeal_number_at(t, nextval('appeal_number_seq')),
                   (ARRAY['phone', 'phone', 'phone', 'web', 'mobile', 'facebook',
                          'gov_contact_centre'])[1 + (k % 7)],
                   p.category_id, p.district_id, p.executor_id, 'closed', t, t, t, t, t,
                   t + interval '5 days', $1 || ':' || p.i || ':' || k
              FROM unnest($2::int[], $3::int[], $4::int[], $5::int[])
                       WITH ORDINALITY AS p(category_id, district_id, executor_id, n, i),
                   generate_series(1, p.n) AS k,
                   LATERAL (SELECT timestamptz '2017-01-01 08:00+02'
                                   + ((k * 7919 + p.i * 104729) % 365) * interval '1 day'
                                   + ((k * 31) % 720) * interval '1 minute' AS t) AS ts
            """,
            SEED_INTAKE, [p[0] for p in plan], [p[1] for p in plan],
            [p[2] for p in plan], [p[3] for p in plan], timeout=BULK_TIMEOUT)
        await conn.execute("DELETE FROM leadership_figures WHERE year = $1", SEED_YEAR)
        await conn.execute("DELETE FROM leadership_published WHERE year = $1", SEED_YEAR)
        admins_by_uk = {r["admin_uk"]: r["id"] for r in await conn.fetch(
            """SELECT e.id, split_part(e.name_uk, ' ', 1) AS admin_uk FROM executors e
                WHERE e.kind = 'district_admin'""")}
        figures: list[tuple[int, int, str, int]] = []
        published: list[tuple[int, int, str, Decimal]] = []
        for seed_row in read_seed_rating(config_dir):
            executor = admins_by_uk[seed_row.admin_name_uk]
            for column, value in seed_row.counts.items():
                if column in config.seed_columns:
                    figures.append((SEED_YEAR, executor, config.seed_columns[column], value))
            for code, percent in seed_row.indicators.items():
                published.append((SEED_YEAR, executor, code, percent))
            published.append((SEED_YEAR, executor, "rating", seed_row.rating))
        for h in housing:
            executor = office_ids[h.number]
            for component, value in h.complaints.items():
                figures.append((SEED_YEAR, executor, f"complaints:{component}", value))
            for component, rank in h.places.items():
                published.append((SEED_YEAR, executor, f"place:{component}", Decimal(rank)))
            published.append((SEED_YEAR, executor, "place:overall", Decimal(h.overall_place)))
        await conn.executemany(
            "INSERT INTO leadership_figures (year, executor_id, measure, value) "
            "VALUES ($1, $2, $3, $4)", figures)
        await conn.executemany(
            "INSERT INTO leadership_published (year, executor_id, key, value) "
            "VALUES ($1, $2, $3, $4)", published)
        # the 2017 roll-ups are rebuilt from the appeals just written
        await conn.execute("DELETE FROM leadership_watermarks WHERE name = 'appeals'")
    await refresh_rollups(pool)
    return {"appeals": SEED_APPEALS, "figures": len(figures), "published": len(published),
            "housing_offices": len(housing)}


def seed_days() -> tuple[date, date]:
    return date(SEED_YEAR, 1, 1), date(SEED_YEAR, 12, 31)
