from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path

import asyncpg
import pytest

from crm_sync.db import connect, create_pool
from crm_sync.migrate import LOCK_KEY, MIGRATIONS_DIR, MigrationError, load_migrations, migrate
from tests.support.databases import MakeDatabase
from tests.support.paths import REPO_ROOT

EXPECTED_TABLES = {
    "schema_migrations", "calls", "queue_attempts", "ivr_steps", "operators",
    "operator_state_changes", "citizens", "spheres", "categories", "districts", "executors",
    "routing_rules", "appeals", "appeal_history", "outbox",
}


async def _tables(conn: asyncpg.Connection) -> set[str]:
    rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return {row["tablename"] for row in rows}


async def _versions(conn: asyncpg.Connection) -> list[int]:
    rows = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
    return [row["version"] for row in rows]


async def _wait_for_lock_waiters(conn: asyncpg.Connection, count: int) -> None:
    """Until ``count`` sessions wait for the migration lock (so the race really happens)."""
    for _ in range(300):
        waiting = await conn.fetchval(
            """SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
               AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
               AND objid = $1""",
            LOCK_KEY,
        )
        if waiting >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{count} migrations never waited for the lock")


async def test_fresh_database_migrates_and_second_run_is_noop(make_database: MakeDatabase) -> None:
    url = await make_database("fresh")
    names = [m.name for m in load_migrations()]
    assert names[0] == "0001_schema_v1"
    assert await migrate(url) == names
    assert await migrate(url) == []
    conn = await connect(url)
    try:
        assert EXPECTED_TABLES <= await _tables(conn)
        assert await _versions(conn) == [m.version for m in load_migrations()]
        number = await conn.fetchval("SELECT next_appeal_number()")
        assert number.startswith("1551-") and len(number.split("-")[2]) == 6
    finally:
        await conn.close()


async def test_two_pools_migrating_at_once_apply_each_version_once(
    make_database: MakeDatabase,
) -> None:
    url = await make_database("race")
    holder = await connect(url)
    pool_a, pool_b = await create_pool(url), await create_pool(url)
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
        runs = [asyncio.create_task(migrate(pool)) for pool in (pool_a, pool_b)]
        await _wait_for_lock_waiters(holder, 2)
        await holder.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
        results = await asyncio.gather(*runs)
        assert sorted(len(r) for r in results) == [0, len(load_migrations())]
        assert await _versions(holder) == [m.version for m in load_migrations()]
        assert EXPECTED_TABLES <= await _tables(holder)
    finally:
        await holder.close()
        await pool_a.close()
        await pool_b.close()


async def test_two_processes_migrating_at_once_apply_each_version_once(
    make_database: MakeDatabase,
) -> None:
    url = await make_database("procs")
    holder = await connect(url)
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
        procs = [
            await asyncio.create_subprocess_exec(
                sys.executable, "-m", "crm_sync.migrate", url, cwd=REPO_ROOT,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )
            for _ in range(2)
        ]
        await _wait_for_lock_waiters(holder, 2)
        await holder.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
        outputs = [await asyncio.wait_for(p.communicate(), 60) for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outputs
        stdout = sorted(out.decode().strip() for out, _ in outputs)
        assert stdout == sorted(
            ["nothing to apply", "\n".join(m.name for m in load_migrations())]
        )
        assert await _versions(holder) == [m.version for m in load_migrations()]
    finally:
        await holder.close()


async def test_changed_checksum_is_an_error_and_new_files_apply(
    make_database: MakeDatabase, tmp_path: Path
) -> None:
    url = await make_database("checksum")
    directory = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, directory)
    assert await migrate(url, directory=directory)

    (directory / "0900_extra.sql").write_text("CREATE TABLE extra (id int);\n")
    assert await migrate(url, directory=directory) == ["0900_extra"]

    first = directory / "0001_schema_v1.sql"
    first.write_text(first.read_text() + "\n-- edited after release\n")
    with pytest.raises(MigrationError, match=r"0001_schema_v1.*must not change"):
        await migrate(url, directory=directory)


async def test_failed_migration_rolls_back_and_releases_the_lock(
    make_database: MakeDatabase, tmp_path: Path
) -> None:
    url = await make_database("broken")
    directory = tmp_path / "migrations"
    directory.mkdir()
    (directory / "0001_ok.sql").write_text("CREATE TABLE ok (id int);")
    (directory / "0002_broken.sql").write_text("CREATE TABLE half (id int); SELECT nonsense;")
    with pytest.raises(asyncpg.PostgresError):
        await migrate(url, directory=directory)
    conn = await connect(url)
    try:
        assert await _versions(conn) == [1]
        assert "half" not in await _tables(conn)
        assert await conn.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_KEY)
    finally:
        await conn.close()


def test_bad_file_names_are_rejected(tmp_path: Path) -> None:
    (tmp_path / "1_oops.sql").write_text("")
    with pytest.raises(MigrationError, match=r"0001_name\.sql"):
        load_migrations(tmp_path)
