"""The ``hotline`` command's failure modes: one clear line and a non-zero exit,
never a traceback — a malformed setting, a database that is not there, an AMI
that refuses the login. Run as real subprocesses, as a person would run them."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from crm_sync.migrate import migrate
from crm_sync.people import verify_password
from hotline.core.people import ROLES
from tests.support.cli import assert_one_error_line, run_hotline
from tests.support.fake_ami_server import FakeAmiServer

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_malformed_setting_on_command_line() -> None:
    code, _, err = await run_hotline("--set", "ami.port=abc", "config")
    assert code == 2
    assert_one_error_line(err, "ami.port", "expected an integer", "'abc'")


async def test_malformed_setting_in_environment() -> None:
    code, _, err = await run_hotline("config", env={"HOTLINE_WEB_PORT": "70000"})
    assert code == 2
    assert_one_error_line(err, "web.port", "0-65535")


async def test_malformed_config_file(tmp_path: Path) -> None:
    bad = tmp_path / "hotline.toml"
    bad.write_text("[ami]\nport = \n")
    code, _, err = await run_hotline("--config", str(bad), "config")
    assert code == 2
    assert_one_error_line(err, "not valid TOML")


async def test_secret_in_config_file_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "hotline.toml"
    cfg.write_text('[ami]\nsecret = "hunter2"\n')
    code, _, err = await run_hotline("--config", str(cfg), "config")
    assert code == 2
    line = assert_one_error_line(err, "ami.secret", "HOTLINE_AMI_SECRET")
    assert "hunter2" not in line


async def test_config_prints_settings_without_secrets() -> None:
    code, out, _ = await run_hotline(
        "config",
        env={"HOTLINE_AMI_SECRET": "topsecret", "DATABASE_URL": "postgresql://u:pw@db/x"},
    )
    assert code == 0
    assert '"port": 15038' in out
    assert "topsecret" not in out and "pw@" not in out


async def test_database_not_there() -> None:
    code, _, err = await run_hotline(
        "migrate",
        env={"DATABASE_URL": "postgresql://hotline:pa55word@127.0.0.1:1/hotline",
             "REDIS_URL": "redis://127.0.0.1:1/0"},
    )
    assert code == 2
    line = assert_one_error_line(err, "database", "127.0.0.1:1")
    assert "pa55word" not in line


async def test_ami_refuses_login(pg_url: str, redis_url: str) -> None:
    ami = FakeAmiServer(username="hotline", secret="the-right-one")
    port = await ami.start()
    try:
        code, _, err = await run_hotline(
            "run", "--role", "ami",
            env={
                "DATABASE_URL": pg_url,
                "REDIS_URL": redis_url,
                "HOTLINE_AMI_PORT": str(port),
                "HOTLINE_AMI_SECRET": "a-wrong-one",
            },
        )
    finally:
        await ami.stop()
    assert code == 2
    line = assert_one_error_line(err, "login")
    assert "a-wrong-one" not in line


async def test_ami_not_listening(pg_url: str, redis_url: str) -> None:
    code, _, err = await run_hotline(
        "run", "--role", "ami",
        env={"DATABASE_URL": pg_url, "REDIS_URL": redis_url,
             "HOTLINE_AMI_PORT": "1", "HOTLINE_AMI_SECRET": "x"},
    )
    assert code == 2
    assert_one_error_line(err, "127.0.0.1:1")


async def test_two_migrates_at_once_leave_one_schema(make_database: Any) -> None:
    url = await make_database("cli_migrate")
    env = {"DATABASE_URL": url, "REDIS_URL": "redis://127.0.0.1:1/0"}
    (code1, out1, err1), (code2, out2, err2) = await asyncio.gather(
        run_hotline("migrate", env=env), run_hotline("migrate", env=env)
    )
    assert (code1, code2) == (0, 0), err1 + err2
    # exactly one of them applied the schema; the other found it up to date
    assert sorted(["0001_schema_v1" in out1, "0001_schema_v1" in out2]) == [False, True]
    conn = await asyncpg.connect(url)
    try:
        versions = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
        assert [r["version"] for r in versions] == sorted({r["version"] for r in versions})
        assert await conn.fetchval("SELECT count(*) FROM spheres") == 10
        assert await conn.fetchval("SELECT count(*) FROM districts") == 10
    finally:
        await conn.close()


async def test_user_add_for_every_people_role(make_database: Any) -> None:
    """`hotline user add LOGIN --role R` once wrote R into the process roles and
    failed with "service.roles: expected some of agi, ami, web"."""
    url = await make_database("cli_users")
    await migrate(url)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("INSERT INTO executors (code, name, kind) "
                           "VALUES ('rda_test', 'Test RDA', 'district_admin')")
    finally:
        await conn.close()
    for role in ROLES:
        password = f"pw-{role}-0123"
        extra = ("--executor", "rda_test") if role == "executor" else ()
        code, out, err = await run_hotline(
            "user", "add", f"u_{role}", "--role", role, "--name", f"Name {role}", *extra,
            env={"DATABASE_URL": url, "HOTLINE_NEW_PASSWORD": password},
        )
        assert code == 0, err
        assert f"user u_{role} ({role}) saved" in out
        assert "service.roles" not in err
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT login, role, password_hash, active FROM operators")
    finally:
        await conn.close()
    by_login = {r["login"]: r for r in rows}
    for role in ROLES:
        row = by_login[f"u_{role}"]
        assert (row["role"], row["active"]) == (role, True)
        assert verify_password(f"pw-{role}-0123", row["password_hash"])


async def test_an_executors_user_needs_a_real_organisation(make_database: Any) -> None:
    url = await make_database("cli_executor")
    env = {"DATABASE_URL": url, "HOTLINE_NEW_PASSWORD": "long-enough-password"}
    code, _, err = await run_hotline("user", "add", "olena", "--role", "executor", env=env)
    assert code == 2
    assert_one_error_line(err, "--executor CODE is required")
    code, _, err = await run_hotline(
        "user", "add", "olena", "--role", "executor", "--executor", "rda_nowhere", env=env)
    assert code == 2
    assert_one_error_line(err, "executor: no active executor organisation", "'rda_nowhere'")
    conn = await asyncpg.connect(url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM operators") == 0
    finally:
        await conn.close()


async def test_user_add_with_a_wrong_role_is_one_clear_line(make_database: Any) -> None:
    url = await make_database("cli_bad_role")
    code, _, err = await run_hotline(
        "user", "add", "mallory", "--role", "agi",
        env={"DATABASE_URL": url, "HOTLINE_NEW_PASSWORD": "long-enough-password"},
    )
    assert code == 2
    assert_one_error_line(err, "role", "'agi'", *ROLES)
    conn = await asyncpg.connect(url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM operators") == 0
    finally:
        await conn.close()


async def test_config_hides_mirror_credentials() -> None:
    code, out, _ = await run_hotline(
        "config", env={"HOTLINE_ASTERISK_MIRROR": "https://deb:hunter2@mirror.example/debian"}
    )
    assert code == 0
    assert "hunter2" not in out and "deb:" not in out
    assert '"mirror": "https://***@mirror.example/debian"' in out


async def test_url_password_in_the_config_file_is_one_clear_line(tmp_path: Path) -> None:
    cfg = tmp_path / "hotline.toml"
    cfg.write_text('[redis]\nurl = "unix://:s3cret-pw@/run/hotline/redis.sock"\n')
    code, _, err = await run_hotline("--config", str(cfg), "config")
    assert code == 2
    line = assert_one_error_line(err, "redis.url", "REDIS_URL")
    assert "s3cret-pw" not in line


async def test_nan_timeout_is_one_clear_line() -> None:
    code, _, err = await run_hotline("config", env={"HOTLINE_AMI_PING_INTERVAL": "nan"})
    assert code == 2
    assert_one_error_line(err, "ami.ping_interval", "finite")
