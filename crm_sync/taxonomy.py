"""The appeal taxonomy (sphere → category), Kyiv's districts, their
administrations as executors, and the default routing — seeded from the 2017
figures in ``config/seed/``.

Decisions the seed does not make for us:
- every top issue belongs to one sphere: water, heating, lifts, entrance
  lighting and the cleaning of territories to housing and utilities; asphalt
  to transport and infrastructure; "billing, subsidy accruals" to social
  security (subsidies are granted by the social protection departments);
- district columns (English) are matched to the rating's Ukrainian
  administration names by transliteration (Kyiv's official 2010 rules);
- calls about a sphere go to queue ``housing``/``transport``/``social`` or
  ``general``.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import asyncpg

SEED_DIR = Path(__file__).resolve().parents[1] / "config" / "seed"

SPHERE_CODES = {
    "Housing and utilities": "housing",
    "Transport and infrastructure": "transport",
    "Social security": "social",
    "Healthcare": "healthcare",
    "Small architectural forms (kiosks)": "kiosks",
    "Trade and consumer services": "trade",
    "Communications and IT": "communications",
    "Law enforcement": "law_enforcement",
    "Pensions": "pensions",
    "Education and science": "education",
}
SPHERE_QUEUES = {"housing": "housing", "transport": "transport", "social": "social"}
DEFAULT_QUEUE = "general"

#: issue_en → (stable category code, sphere code)
ISSUES = {
    "No hot water": ("no_hot_water", "housing"),
    "Passenger lift out of order": ("passenger_lift_out_of_order", "housing"),
    "No lighting in the entrance hall": ("no_entrance_lighting", "housing"),
    "Freight lift out of order": ("freight_lift_out_of_order", "housing"),
    "Hot water temperature unsatisfactory": ("hot_water_temperature", "housing"),
    "No cold water": ("no_cold_water", "housing"),
    "Heating temperature unsatisfactory": ("heating_temperature", "housing"),
    "Laying and repair of asphalt": ("asphalt_repair", "transport"),
    "Billing, subsidy accruals": ("billing_subsidies", "social"),
    "Cleaning and sanitary state of territories": ("territory_cleaning", "housing"),
}

_NON_DISTRICT_COLUMNS = {"issue_uk", "issue_en", "total"}
_TRANSLIT = {
    "а": "a", "б": "b", "в": "v", "г": "h", "ґ": "g", "д": "d", "е": "e", "є": "ie",
    "ж": "zh", "з": "z", "и": "y", "і": "i", "ї": "i", "й": "i", "к": "k", "л": "l",
    "м": "m", "н": "n", "о": "o", "п": "p", "р": "r", "с": "s", "т": "t", "у": "u",
    "ф": "f", "х": "kh", "ц": "ts", "ч": "ch", "ш": "sh", "щ": "shch", "ь": "", "ю": "iu",
    "я": "ia", "'": "", "’": "", "ʼ": "",
}


@dataclass(frozen=True)
class Sphere:
    code: str
    name_uk: str
    name_en: str
    share_percent: Decimal
    queue: str


@dataclass(frozen=True)
class Category:
    code: str
    name_uk: str
    name_en: str
    sphere_code: str
    default_queue: str


@dataclass(frozen=True)
class District:
    code: str  # holosiivskyi
    name_en: str  # Holosiivskyi
    name_uk: str  # Голосіївський
    admin_name_uk: str  # Голосіївська (as the rating names the administration)


@dataclass(frozen=True)
class Executor:
    code: str
    name: str
    name_uk: str
    kind: str
    district_code: str | None


@dataclass(frozen=True)
class Taxonomy:
    spheres: list[Sphere]
    categories: list[Category]
    districts: list[District]
    executors: list[Executor]


def transliterate(text: str) -> str:
    return "".join(_TRANSLIT.get(ch, ch) for ch in text.lower())


def _stem(latin: str) -> str:
    """``holosiivska`` / ``holosiivskyi`` → ``holosiivsk``."""
    return re.sub(r"(yi|a)$", "", latin.lower())


def match_districts(columns: list[str], admin_names_uk: list[str]) -> dict[str, str]:
    """Map each English district column to its Ukrainian administration name."""
    by_stem = {_stem(transliterate(name)): name for name in admin_names_uk}
    matched: dict[str, str] = {}
    for column in columns:
        name_uk = by_stem.get(_stem(column))
        if name_uk is None:
            raise ValueError(f"no Ukrainian name found for district {column!r}")
        matched[column] = name_uk
    return matched


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def load_taxonomy(seed_dir: Path = SEED_DIR) -> Taxonomy:
    spheres = []
    for row in _read_csv(seed_dir / "spheres_2017.csv"):
        code = SPHERE_CODES.get(row["sphere_en"])
        if code is None:
            raise ValueError(f"sphere {row['sphere_en']!r} has no code in SPHERE_CODES")
        queue = SPHERE_QUEUES.get(code, DEFAULT_QUEUE)
        spheres.append(
            Sphere(code, row["sphere_uk"], row["sphere_en"], Decimal(row["share_percent"]), queue)
        )
    queue_of = {s.code: s.queue for s in spheres}

    issue_rows = _read_csv(seed_dir / "top_issues_by_district_2017.csv")
    categories = []
    for row in issue_rows:
        if row["issue_en"] not in ISSUES:
            raise ValueError(f"issue {row['issue_en']!r} has no code/sphere in taxonomy.ISSUES")
        code, sphere_code = ISSUES[row["issue_en"]]
        categories.append(
            Category(code, row["issue_uk"], row["issue_en"], sphere_code, queue_of[sphere_code])
        )

    columns = [c for c in issue_rows[0] if c not in _NON_DISTRICT_COLUMNS] if issue_rows else []
    ratings = _read_csv(seed_dir / "district_admin_rating_2017.csv")
    admin_names = [r["district_admin_uk"] for r in ratings]
    matched = match_districts(columns, admin_names)
    districts = [
        District(col.lower(), col, re.sub(r"ька$", "ький", matched[col]), matched[col])
        for col in columns
    ]
    executors = [
        Executor(
            code=f"rda_{d.code}",
            name=f"{d.name_en} district state administration",
            name_uk=f"{d.admin_name_uk} районна в місті Києві державна адміністрація",
            kind="district_admin",
            district_code=d.code,
        )
        for d in districts
    ]
    return Taxonomy(spheres, categories, districts, executors)


async def seed_taxonomy(
    target: asyncpg.Pool | asyncpg.Connection, taxonomy: Taxonomy | None = None
) -> dict[str, int]:
    """Upsert spheres, categories, districts, executors and the default routing
    (category + district → that district's administration) in one transaction.
    Safe to run again: codes are the keys, names are refreshed. Returns counts."""
    tax = taxonomy or load_taxonomy()
    if isinstance(target, asyncpg.Pool):
        async with target.acquire() as conn:
            return await _seed(conn, tax)
    return await _seed(target, tax)


async def _seed(conn: asyncpg.Connection, tax: Taxonomy) -> dict[str, int]:
    async with conn.transaction():
        sphere_ids: dict[str, int] = {}
        for s in tax.spheres:
            sphere_ids[s.code] = await conn.fetchval(
                """INSERT INTO spheres (code, name_uk, name_en, share_percent)
                   VALUES ($1, $2, $3, $4)
                   ON CONFLICT (code) DO UPDATE SET name_uk = EXCLUDED.name_uk,
                       name_en = EXCLUDED.name_en, share_percent = EXCLUDED.share_percent
                   RETURNING id""",
                s.code, s.name_uk, s.name_en, s.share_percent,
            )
        category_ids: dict[str, int] = {}
        for c in tax.categories:
            category_ids[c.code] = await conn.fetchval(
                """INSERT INTO categories (code, name_uk, name_en, sphere_id, default_queue)
                   VALUES ($1, $2, $3, $4, $5)
                   ON CONFLICT (code) DO UPDATE SET name_uk = EXCLUDED.name_uk,
                       name_en = EXCLUDED.name_en, sphere_id = EXCLUDED.sphere_id,
                       default_queue = EXCLUDED.default_queue
                   RETURNING id""",
                c.code, c.name_uk, c.name_en, sphere_ids[c.sphere_code], c.default_queue,
            )
        district_ids: dict[str, int] = {}
        for d in tax.districts:
            district_ids[d.code] = await conn.fetchval(
                """INSERT INTO districts (code, name_en, name_uk) VALUES ($1, $2, $3)
                   ON CONFLICT (code) DO UPDATE SET name_en = EXCLUDED.name_en,
                       name_uk = EXCLUDED.name_uk
                   RETURNING id""",
                d.code, d.name_en, d.name_uk,
            )
        executor_ids: dict[str, int] = {}
        for e in tax.executors:
            executor_ids[e.code] = await conn.fetchval(
                """INSERT INTO executors (code, name, name_uk, kind, district_id)
                   VALUES ($1, $2, $3, $4, $5)
                   ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name,
                       name_uk = EXCLUDED.name_uk, kind = EXCLUDED.kind,
                       district_id = EXCLUDED.district_id
                   RETURNING id""",
                e.code, e.name, e.name_uk, e.kind,
                district_ids[e.district_code] if e.district_code else None,
            )
        rules = [
            (category_ids[c.code], district_ids[e.district_code], executor_ids[e.code], 100)
            for c in tax.categories
            for e in tax.executors
            if e.kind == "district_admin" and e.district_code
        ]
        await conn.executemany(
            """INSERT INTO routing_rules (category_id, district_id, executor_id, priority)
               VALUES ($1, $2, $3, $4)
               ON CONFLICT (category_id, district_id, executor_id) DO NOTHING""",
            rules,
        )
    return {
        "spheres": len(sphere_ids),
        "categories": len(category_ids),
        "districts": len(district_ids),
        "executors": len(executor_ids),
        "routing_rules": len(rules),
    }
