"""Connecting to the case store: pools with JSON codecs and errors people can read."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit, urlunsplit

import asyncpg

from hotline.core.errors import UnavailableError

CONNECT_TIMEOUT = 5.0


class DatabaseUnavailable(UnavailableError):
    """The case store cannot be reached. The message is one line, names the
    host or socket and database, and never contains the password."""

    error_id = "database_unavailable"


def describe_dsn(dsn: str) -> str:
    """``user@host:port/db`` or ``user@socket:/dir/db`` — safe to log (no password)."""
    parts = urlsplit(dsn)
    query = parse_qs(parts.query)
    user = parts.username or query.get("user", [""])[0]
    database = parts.path.lstrip("/") or query.get("dbname", [""])[0] or user
    socket_dir = next((h for h in query.get("host", []) if h.startswith("/")), None)
    if socket_dir is not None:
        where = f"socket:{socket_dir}"
    else:
        host = parts.hostname or query.get("host", ["localhost"])[0]
        port = parts.port or query.get("port", ["5432"])[0]
        where = f"{host}:{port}"
    return f"{user + '@' if user else ''}{where}/{database}"


def dsn_with_database(dsn: str, database: str) -> str:
    """The same server and credentials, another database."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + database))


def _one_line_error(dsn: str, exc: BaseException) -> DatabaseUnavailable:
    reason = " ".join(str(exc).split()) or type(exc).__name__
    password = urlsplit(dsn).password
    if password:
        reason = reason.replace(password, "***")
    return DatabaseUnavailable(f"database unavailable at {describe_dsn(dsn)}: {reason}")


async def init_connection(conn: asyncpg.Connection) -> None:
    """JSON and JSONB as Python objects; Cyrillic kept as is."""
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name,
            encoder=lambda value: json.dumps(value, ensure_ascii=False),
            decoder=json.loads,
            schema="pg_catalog",
        )


async def create_pool(
    dsn: str, *, min_size: int = 1, max_size: int = 10, command_timeout: float = 30.0
) -> asyncpg.Pool:
    """A pool whose connections decode JSON/JSONB; :class:`DatabaseUnavailable`
    when the first connection cannot be made."""
    try:
        pool: asyncpg.Pool = await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            timeout=CONNECT_TIMEOUT,
            command_timeout=command_timeout,
            init=init_connection,
        )
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise _one_line_error(dsn, exc) from None
    return pool


async def connect(dsn: str) -> asyncpg.Connection:
    """One connection (for migrations and admin work), same codecs and errors as the pool."""
    try:
        conn: asyncpg.Connection = await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise _one_line_error(dsn, exc) from None
    await init_connection(conn)
    return conn


async def ensure_database(admin_dsn: str, database: str) -> str:
    """Create ``database`` on the server of ``admin_dsn`` if missing; return its DSN."""
    conn = await connect(admin_dsn)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
        if not exists:
            await conn.execute(f"CREATE DATABASE {_quote_ident(database)}")
    finally:
        await conn.close()
    return dsn_with_database(admin_dsn, database)


async def drop_database(admin_dsn: str, database: str) -> None:
    conn = await connect(admin_dsn)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {_quote_ident(database)} WITH (FORCE)")
    finally:
        await conn.close()


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'

