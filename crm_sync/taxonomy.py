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
- the queue of a sphere's categories is the catalogue's (``queues.toml``): the
  queue with that sphere, or the catch-all queue.

Everything is read from the config directory given (``seed/`` and
``queues.toml``); a problem is reported naming the file, the line or key, and
the reason (:func:`check_taxonomy`).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import asyncpg

from hotline.core.problems import ConfigProblems, Problem
from hotline.core.queues import CATALOGUE_FILE, QueueCatalogue, check_catalogue

SPHERES_FILE = "seed/spheres_2017.csv"
ISSUES_FILE = "seed/top_issues_by_district_2017.csv"
RATING_FILE = "seed/district_admin_rating_2017.csv"

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


class TaxonomyError(ConfigProblems):
    error_id = "taxonomy_invalid"


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


def _read_csv(config_dir: Path, name: str, problems: list[Problem]) -> list[dict[str, str]]:
    try:
        with (config_dir / name).open(encoding="utf-8", newline="") as fh:
            return list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        problems.append(Problem(name, "", f"cannot read: {reason}"))
        return []


def _columns(rows: list[dict[str, str]], name: str, wanted: set[str],
             problems: list[Problem]) -> bool:
    missing = wanted - set(rows[0]) if rows else set()
    for column in sorted(missing):
        problems.append(Problem(name, column, "missing column"))
    return bool(rows) and not missing


def load_taxonomy(config_dir: Path) -> Taxonomy:
    """The taxonomy of ``config_dir``, or :class:`TaxonomyError` naming every problem."""
    problems: list[Problem] = []
    catalogue = None
    try:
        text = (config_dir / CATALOGUE_FILE).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(Problem(CATALOGUE_FILE, "", f"cannot read: {exc}"))
    else:
        catalogue, problems = check_catalogue(text)
    taxonomy = None
    if catalogue is not None:
        taxonomy, more = check_taxonomy(config_dir, catalogue)
        problems += more
    if problems or taxonomy is None:
        raise TaxonomyError(problems, where=str(config_dir))
    return taxonomy


def check_taxonomy(
    config_dir: Path, catalogue: QueueCatalogue
) -> tuple[Taxonomy | None, list[Problem]]:
    """The taxonomy from the seed files, queues from the catalogue, and every problem."""
    problems: list[Problem] = []
    known = set(SPHERE_CODES.values())
    for q in catalogue.queues.values():
        if q.sphere is not None and q.sphere not in known:
            problems.append(Problem(
                CATALOGUE_FILE, f"queues.{q.name}.sphere",
                f"unknown sphere {q.sphere!r} (the taxonomy has {', '.join(sorted(known))})",
            ))

    spheres = []
    rows = _read_csv(config_dir, SPHERES_FILE, problems)
    if _columns(rows, SPHERES_FILE, {"sphere_uk", "sphere_en", "share_percent"}, problems):
        for line, row in enumerate(rows, start=2):
            code = SPHERE_CODES.get(row["sphere_en"])
            if code is None:
                problems.append(Problem(SPHERES_FILE, f"line {line}: sphere_en",
                                        f"{row['sphere_en']!r} has no code in SPHERE_CODES"))
                continue
            try:
                share = Decimal(row["share_percent"])
            except ArithmeticError:
                problems.append(Problem(SPHERES_FILE, f"line {line}: share_percent",
                                        f"expected a number, got {row['share_percent']!r}"))
                continue
            queue = catalogue.queue_for_sphere(code)
            spheres.append(Sphere(code, row["sphere_uk"], row["sphere_en"], share, queue))

    categories = []
    issue_rows = _read_csv(config_dir, ISSUES_FILE, problems)
    if _columns(issue_rows, ISSUES_FILE, {"issue_uk", "issue_en"}, problems):
        for line, row in enumerate(issue_rows, start=2):
            if row["issue_en"] not in ISSUES:
                problems.append(Problem(ISSUES_FILE, f"line {line}: issue_en",
                                        f"{row['issue_en']!r} has no code/sphere in "
                                        "taxonomy.ISSUES"))
                continue
            code, sphere_code = ISSUES[row["issue_en"]]
            queue = catalogue.queue_for_sphere(sphere_code)
            if queue not in catalogue.queues:  # the catalogue's catch_all is broken
                problems.append(Problem(ISSUES_FILE, f"line {line}: issue_en",
                                        f"category {code!r} points at unknown queue {queue!r}"))
            categories.append(Category(code, row["issue_uk"], row["issue_en"], sphere_code, queue))

    columns = [c for c in issue_rows[0] if c not in _NON_DISTRICT_COLUMNS] if issue_rows else []
    ratings = _read_csv(config_dir, RATING_FILE, problems)
    districts = []
    if _columns(ratings, RATING_FILE, {"district_admin_uk"}, problems):
        admin_names = [r["district_admin_uk"] for r in ratings]
        try:
            matched = match_districts(columns, admin_names)
        except ValueError as exc:
            problems.append(Problem(ISSUES_FILE, "district columns", str(exc)))
        else:
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
    if problems:
        return None, problems
    return Taxonomy(spheres, categories, districts, executors), []


async def seed_taxonomy(
    target: asyncpg.Pool | asyncpg.Connection, tax: Taxonomy
) -> dict[str, int]:
    """Upsert spheres, categories, districts, executors and the default routing
    (category + district → that district's administration) in one transaction.
    Safe to run again: codes are the keys, names and default queues are
    refreshed. Returns counts."""
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
