from __future__ import annotations

import csv
import shutil
from pathlib import Path

import asyncpg
import pytest

from crm_sync.taxonomy import TaxonomyError, load_taxonomy, match_districts, seed_taxonomy
from ivr.menu import load_catalogue
from tests.support.paths import CONFIG_DIR

QUEUES = set(load_catalogue(CONFIG_DIR).names)


def _csv_rows(name: str) -> list[dict[str, str]]:
    with (CONFIG_DIR / "seed" / name).open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def test_loaded_taxonomy_follows_the_seed() -> None:
    tax = load_taxonomy(CONFIG_DIR)
    assert len(tax.spheres) == 10
    assert len(tax.categories) == len(_csv_rows("top_issues_by_district_2017.csv"))
    # every category and sphere points at a queue of the catalogue
    assert {c.default_queue for c in tax.categories} <= QUEUES
    assert {s.queue for s in tax.spheres} == QUEUES
    assert all(c.code.isascii() and c.code.replace("_", "").isalnum() for c in tax.categories)
    by_en = {c.name_en: c for c in tax.categories}
    assert by_en["No hot water"].default_queue == "housing"
    assert by_en["Passenger lift out of order"].sphere_code == "housing"
    assert by_en["Laying and repair of asphalt"].default_queue == "transport"
    queues = {s.code: s.queue for s in tax.spheres}
    # the catch-all is "main" ("general" is reserved in Asterisk's queues.conf)
    assert queues["housing"] == "housing" and queues["pensions"] == "main"


def test_a_sphere_given_its_own_queue_takes_its_categories(tmp_path: Path) -> None:
    shutil.copytree(CONFIG_DIR, tmp_path, dirs_exist_ok=True)
    text = (tmp_path / "queues.toml").read_text()
    (tmp_path / "queues.toml").write_text(text.replace('sphere = "social"', 'sphere = "pensions"'))
    tax = load_taxonomy(tmp_path)
    queues = {s.code: s.queue for s in tax.spheres}
    assert (queues["pensions"], queues["social"]) == ("social", "main")
    assert {c.code: c.default_queue for c in tax.categories}["billing_subsidies"] == "main"


def test_taxonomy_problems_name_file_and_key(tmp_path: Path) -> None:
    shutil.copytree(CONFIG_DIR, tmp_path, dirs_exist_ok=True)
    text = (tmp_path / "queues.toml").read_text()
    (tmp_path / "queues.toml").write_text(text.replace('sphere = "social"', 'sphere = "socail"'))
    spheres = tmp_path / "seed" / "spheres_2017.csv"
    spheres.write_text(spheres.read_text() + "Космос,Outer space,0.1\n")
    with pytest.raises(TaxonomyError) as err:
        load_taxonomy(tmp_path)
    assert [(p.file, p.key) for p in err.value.problems] == [
        ("queues.toml", "queues.social.sphere"),
        ("seed/spheres_2017.csv", "line 12: sphere_en"),
    ]
    assert "unknown sphere 'socail'" in err.value.problems[0].reason


def test_district_columns_match_ukrainian_names() -> None:
    matched = match_districts(
        ["Solomianskyi", "Darnytskyi", "Sviatoshynskyi", "Shevchenkivskyi"],
        ["Шевченківська", "Солом'янська", "Дарницька", "Святошинська"],
    )
    assert matched == {
        "Solomianskyi": "Солом'янська",
        "Darnytskyi": "Дарницька",
        "Sviatoshynskyi": "Святошинська",
        "Shevchenkivskyi": "Шевченківська",
    }
    districts = {d.code: d for d in load_taxonomy(CONFIG_DIR).districts}
    assert districts["darnytskyi"].name_uk == "Дарницький"
    assert districts["holosiivskyi"].name_uk == "Голосіївський"


async def _counts(pool: asyncpg.Pool) -> dict[str, int]:
    tables = ["spheres", "categories", "districts", "executors", "routing_rules"]
    return {t: await pool.fetchval(f"SELECT count(*) FROM {t}") for t in tables}


async def test_seed_in_database_is_complete_and_idempotent(pg_pool: asyncpg.Pool) -> None:
    tax = load_taxonomy(CONFIG_DIR)
    first = await seed_taxonomy(pg_pool, tax)
    ids_before = await pg_pool.fetch("SELECT id, code FROM categories ORDER BY id")
    second = await seed_taxonomy(pg_pool, tax)
    assert first == second
    assert await pg_pool.fetch("SELECT id, code FROM categories ORDER BY id") == ids_before

    issues = len(_csv_rows("top_issues_by_district_2017.csv"))
    assert await _counts(pg_pool) == {
        "spheres": 10, "categories": issues, "districts": 10, "executors": 10,
        "routing_rules": issues * 10,
    }
    share = await pg_pool.fetchval("SELECT share_percent FROM spheres WHERE code = 'housing'")
    assert float(share) == 83.4
    assert await pg_pool.fetchval(
        "SELECT count(*) FROM categories WHERE default_queue IS NULL OR default_queue = ''"
    ) == 0
    stored = await pg_pool.fetch("SELECT DISTINCT default_queue FROM categories")
    assert {row["default_queue"] for row in stored} <= QUEUES
    hot_water = await pg_pool.fetchrow(
        """SELECT c.default_queue, s.code AS sphere FROM categories c
           JOIN spheres s ON s.id = c.sphere_id WHERE c.name_en = 'No hot water'"""
    )
    assert (hot_water["default_queue"], hot_water["sphere"]) == ("housing", "housing")


async def test_each_district_routes_every_category_to_its_administration(
    pg_pool: asyncpg.Pool,
) -> None:
    await seed_taxonomy(pg_pool, load_taxonomy(CONFIG_DIR))
    rows = await pg_pool.fetch(
        """SELECT d.code AS district, e.district_id = d.id AS own, e.kind, e.name,
                  count(DISTINCT r.category_id) AS categories
           FROM routing_rules r JOIN districts d ON d.id = r.district_id
           JOIN executors e ON e.id = r.executor_id
           GROUP BY d.code, e.district_id, d.id, e.kind, e.name"""
    )
    issues = len(_csv_rows("top_issues_by_district_2017.csv"))
    assert len(rows) == 10
    for row in rows:
        assert row["own"] and row["kind"] == "district_admin"
        assert row["categories"] == issues
        assert row["name"].endswith("district state administration")
    solomianskyi = await pg_pool.fetchrow(
        "SELECT name_uk FROM districts WHERE code = 'solomianskyi'"
    )
    assert solomianskyi["name_uk"] == "Солом'янський"
