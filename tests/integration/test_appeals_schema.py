"""The appeals' schema agrees with the code: one status catalogue, numbers that
stay unique, the migration of old rows, and `hotline migrate` loading the routing."""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest_asyncio

from crm_sync.appeals import NewAppeal
from crm_sync.db import connect
from crm_sync.migrate import MIGRATIONS_DIR, migrate
from hotline.core.appeals import TRANSITIONS, AppealStatus, Channel
from tests.support.appeals import OPERATOR, Clock, appeals_case_store, house, make_service
from tests.support.cli import assert_one_error_line, run_hotline
from tests.support.databases import MakeDatabase
from tests.support.paths import CONFIG_DIR


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pool(make_database: MakeDatabase) -> AsyncIterator[asyncpg.Pool]:
    async with appeals_case_store(make_database, "appeals_schema") as p:
        yield p


async def _check_values(pool: asyncpg.Pool, constraint: str) -> set[str]:
    definition = await pool.fetchval(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = $1", constraint)
    assert definition is not None, constraint
    return set(re.findall(r"'([a-z_]+)'::text", definition))


async def test_one_status_catalogue_in_the_schema_the_enum_and_the_table(
    pool: asyncpg.Pool,
) -> None:
    catalogue = {s.value for s in AppealStatus}
    in_table = {t.source.value for t in TRANSITIONS} | {t.target.value for t in TRANSITIONS}
    assert in_table == catalogue
    for constraint in ("appeals_status_check", "appeal_history_from_status_check",
                       "appeal_history_to_status_check"):
        assert await _check_values(pool, constraint) == catalogue, constraint


async def test_numbers_carry_kyivs_year_and_never_repeat(pool: asyncpg.Pool) -> None:
    at = await pool.fetchval(
        "SELECT appeal_number_at($1, 123)", datetime(2026, 12, 31, 21, 59, tzinfo=UTC))
    assert at == "1551-2026-000123"
    # 22:30 UTC on 31 December is already the new year in Kyiv
    assert await pool.fetchval(
        "SELECT appeal_number_at($1, 124)", datetime(2026, 12, 31, 22, 30, tzinfo=UTC)
    ) == "1551-2027-000124"
    assert await pool.fetchval(
        "SELECT appeal_number_at($1, 1234567)", datetime(2027, 6, 1, tzinfo=UTC)
    ) == "1551-2027-1234567"
    # the sequence runs on across years, so the part after the year alone is unique
    service = make_service(pool, Clock())
    late = make_service(pool, Clock(datetime(2027, 1, 1, 9, 0, tzinfo=UTC)))

    def new(i: int) -> NewAppeal:
        return NewAppeal(channel=Channel.PHONE, category="no_hot_water", district="darnytskyi",
                         address=house(), text=f"report {i}")

    results = await asyncio.gather(
        *(service.register(new(i), OPERATOR) for i in range(30)),
        *(late.register(new(i), OPERATOR) for i in range(10)))
    numbers = [r.appeal.number for r in results]
    assert len(set(numbers)) == 40
    assert len({n.split("-")[2] for n in numbers}) == 40
    assert {n[:10] for n in numbers} == {"1551-2026-", "1551-2027-"}
    assert all(re.fullmatch(r"1551-20(26|27)-\d{6,}", n) for n in numbers)


async def test_old_resolved_rows_become_done(make_database: MakeDatabase, tmp_path: Path) -> None:
    url = await make_database("appeals_upgrade")
    only_v1 = tmp_path / "migrations"
    only_v1.mkdir()
    shutil.copy(MIGRATIONS_DIR / "0001_schema_v1.sql", only_v1)
    conn = await connect(url)
    try:
        await migrate(conn, directory=only_v1)
        await conn.execute(
            """INSERT INTO spheres (code, name_uk, name_en) VALUES ('s', 's', 's');
               INSERT INTO categories (code, name_uk, name_en, sphere_id, default_queue)
               VALUES ('c', 'c', 'c', currval('spheres_id_seq'), 'main');
               INSERT INTO appeals (channel, category_id, status)
               VALUES ('phone', currval('categories_id_seq'), 'resolved');""")
        applied = await migrate(conn)
        assert "0004_appeals" in applied
        assert await conn.fetchval("SELECT status FROM appeals") == "done"
    finally:
        await conn.close()


async def test_hotline_migrate_loads_the_routing(make_database: MakeDatabase) -> None:
    url = await make_database("appeals_cli")
    env = {"DATABASE_URL": url, "REDIS_URL": "redis://127.0.0.1:1/0"}
    code, out, err = await run_hotline("migrate", env=env)
    assert code == 0, err
    assert "routing: executors 7, routing_rules 18, fallback 1, category_sla 10" in out
    conn = await connect(url)
    try:
        assert await conn.fetchval(
            """SELECT e.code FROM routing_rules r JOIN executors e ON e.id = r.executor_id
               WHERE r.fallback AND r.active""") == "dispatcher_1551"
        assert await conn.fetchval(
            """SELECT count(*) FROM routing_rules
               WHERE source = 'config' AND active AND NOT fallback""") == 18
        assert await conn.fetchval("SELECT count(*) FROM routing_rules WHERE source = 'seed'") \
            == 100  # the taxonomy's defaults: 10 categories × 10 district administrations
    finally:
        await conn.close()


async def test_a_bad_routing_file_stops_migrate_with_one_line(
    make_database: MakeDatabase, tmp_path: Path
) -> None:
    config = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, config)
    routing = (config / "routing.toml").read_text()
    (config / "routing.toml").write_text(
        routing.replace('executor = "kyivavtodor"', 'executor = "kyivavtodr"'))
    url = await make_database("appeals_cli_bad")
    code, _, err = await run_hotline(
        "migrate", env={"DATABASE_URL": url, "REDIS_URL": "redis://127.0.0.1:1/0",
                        "HOTLINE_SERVICE_CONFIG_DIR": str(config)})
    assert code != 0
    assert_one_error_line(err, "routing.toml", "rules[1].executor", "kyivavtodr")
