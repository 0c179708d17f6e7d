"""Schema migrations: numbered SQL files applied in order, once.

``NNNN_name.sql`` files in ``crm_sync/migrations`` are applied in version order,
each in its own transaction together with its row in ``schema_migrations``.
The whole run holds a PostgreSQL advisory lock, so several processes starting
at once (two service instances, a deploy job) serialise: the first applies,
the others wait and then find nothing to do. An applied file whose content
changed is an error — migrations are immutable, add a new one instead.

Run from a shell: ``python -m crm_sync.migrate [DSN]`` (default ``$DATABASE_URL``).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from crm_sync.db import DatabaseUnavailable, connect
from hotline.core.errors import HotlineError
from hotline.core.logs import configure_logging, get_logger

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
#: Key of the session advisory lock held for the whole run ("1551" + "0001").
LOCK_KEY = 1551_0001
_FILE_NAME = re.compile(r"(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    checksum   text NOT NULL
)
"""


class MigrationError(HotlineError):
    error_id = "migration_error"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str  # file name without .sql, e.g. 0001_schema_v1
    sql: str
    checksum: str  # sha256 of the file's bytes


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    migrations: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.fullmatch(path.name)
        if match is None:
            raise MigrationError(f"migration file name must look like 0001_name.sql: {path.name}")
        version = int(match["version"])
        if version in migrations:
            raise MigrationError(
                f"two migrations with version {version}: {migrations[version].name}, {path.stem}"
            )
        data = path.read_bytes()
        migrations[version] = Migration(
            version, path.stem, data.decode("utf-8"), hashlib.sha256(data).hexdigest()
        )
    return [migrations[v] for v in sorted(migrations)]


async def migrate(
    target: str | asyncpg.Pool | asyncpg.Connection, *, directory: Path = MIGRATIONS_DIR
) -> list[str]:
    """Apply the pending migrations; return the names applied (empty if none)."""
    migrations = load_migrations(directory)
    if isinstance(target, asyncpg.Connection):
        return await _migrate(target, migrations)
    if isinstance(target, asyncpg.Pool):
        async with target.acquire() as conn:
            return await _migrate(conn, migrations)
    conn = await connect(target)
    try:
        return await _migrate(conn, migrations)
    finally:
        await conn.close()


async def _migrate(conn: asyncpg.Connection, migrations: list[Migration]) -> list[str]:
    log = get_logger("crm_sync.migrate")
    await conn.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
    try:
        await conn.execute(_CREATE_TABLE)
        rows = await conn.fetch("SELECT version, name, checksum FROM schema_migrations")
        applied = {row["version"]: row for row in rows}
        for migration in migrations:
            row = applied.get(migration.version)
            if row is not None and row["checksum"] != migration.checksum:
                raise MigrationError(
                    f"migration {row['name']} was applied with checksum {row['checksum'][:12]}… "
                    f"but {migration.name}.sql now has {migration.checksum[:12]}…; applied "
                    "migrations must not change — restore the file and add a new migration"
                )
        unknown = sorted(set(applied) - {m.version for m in migrations})
        if unknown:
            log.warning("schema_newer_than_code", unknown_versions=unknown)
        done: list[str] = []
        for migration in migrations:
            if migration.version in applied:
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    migration.version, migration.name, migration.checksum,
                )
            log.info("migration_applied", migration=migration.name)
            done.append(migration.name)
        return done
    finally:
        if not conn.is_closed():
            await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    dsn = args[0] if args else os.environ.get("DATABASE_URL", "")
    if not dsn:
        print("usage: python -m crm_sync.migrate DSN  (or set DATABASE_URL)", file=sys.stderr)
        return 2
    configure_logging()
    try:
        applied = asyncio.run(migrate(dsn))
    except (DatabaseUnavailable, MigrationError) as exc:
        print(f"migrate: {exc}", file=sys.stderr)
        return 1
    print("\n".join(applied) if applied else "nothing to apply")
    return 0


if __name__ == "__main__":
    sys.exit(main())
