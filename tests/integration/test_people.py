"""Password hashing, Redis sessions and sign-in against the real PostgreSQL and Redis."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from crm_sync.people import (
    PersonError,
    authenticate,
    hash_password,
    upsert_operator,
    verify_password,
)
from hotline.core.people import Principal
from hotline.web.sessions import SESSION_TTL_SECONDS, SessionStore

PASSWORD = "correct horse battery"


def unique_login(prefix: str = "user") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@pytest_asyncio.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url, socket_connect_timeout=3)
    yield client
    await client.aclose()


# --- scrypt -----------------------------------------------------------------------


def test_hash_then_verify() -> None:
    stored = hash_password(PASSWORD)
    assert stored.startswith("scrypt$16384$8$1$")
    assert PASSWORD not in stored
    assert verify_password(PASSWORD, stored)


def test_wrong_password_fails() -> None:
    stored = hash_password(PASSWORD)
    assert not verify_password(PASSWORD + "!", stored)
    assert not verify_password("", stored)
    assert not verify_password(PASSWORD.upper(), stored)


def test_two_hashes_of_one_password_differ_and_both_verify() -> None:
    first, second = hash_password(PASSWORD), hash_password(PASSWORD)
    assert first != second
    assert first.split("$")[4] != second.split("$")[4]  # the salt
    assert verify_password(PASSWORD, first) and verify_password(PASSWORD, second)


def _replace_part(stored: str, index: int, value: str) -> str:
    parts = stored.split("$")
    parts[index] = value
    return "$".join(parts)


def _flip_first_byte(b64: str) -> str:
    raw = bytearray(base64.b64decode(b64))
    raw[0] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def test_tampered_digest_or_salt_fails() -> None:
    stored = hash_password(PASSWORD)
    parts = stored.split("$")
    assert not verify_password(PASSWORD, _replace_part(stored, 5, _flip_first_byte(parts[5])))
    assert not verify_password(PASSWORD, _replace_part(stored, 4, _flip_first_byte(parts[4])))
    assert not verify_password(PASSWORD, _replace_part(stored, 1, "8192"))  # other cost


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "scrypt",
        "plain-text-password",
        "bcrypt$16384$8$1$c2FsdA==$ZGlnZXN0",
        "scrypt$16384$8$1$not base64!$ZGlnZXN0",
        "scrypt$16384$8$1$c2FsdA==$",  # empty digest
        "scrypt$1000$8$1$c2FsdA==$ZGlnZXN0",  # n not a power of two
        "scrypt$sixteen$8$1$c2FsdA==$ZGlnZXN0",
        "scrypt$1099511627776$8$1$c2FsdA==$ZGlnZXN0",  # would need a terabyte
    ],
)
def test_malformed_stored_hash_is_a_failure_not_an_error(stored: str) -> None:
    assert verify_password(PASSWORD, stored) is False


def test_empty_password_cannot_be_hashed() -> None:
    with pytest.raises(ValueError, match="empty"):
        hash_password("")


# --- sessions in Redis ------------------------------------------------------------


async def test_session_create_get_delete(redis_client: aioredis.Redis) -> None:
    sessions = SessionStore(redis_client)
    who = Principal(unique_login(), "Олена Ґудзь", "supervisor")
    token = await sessions.create(who)
    assert len(token) >= 40
    assert await sessions.get(token) == who
    assert await sessions.get(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    await sessions.delete(token)
    assert await sessions.get(token) is None


async def test_sessions_are_distinct_per_sign_in(redis_client: aioredis.Redis) -> None:
    sessions = SessionStore(redis_client)
    who = Principal(unique_login(), "Supervisor", "supervisor")
    first, second = await sessions.create(who), await sessions.create(who)
    assert first != second
    await sessions.delete(first)
    assert await sessions.get(first) is None
    assert await sessions.get(second) == who
    await sessions.delete(second)


async def test_token_is_not_stored_in_clear(redis_client: aioredis.Redis) -> None:
    sessions = SessionStore(redis_client)
    who = Principal(unique_login(), "Supervisor", "supervisor")
    token = await sessions.create(who)
    try:
        keys = [key async for key in redis_client.scan_iter(match="hotline:session:*")]
        assert keys, "the session was not written to Redis"
        assert not any(token.encode() in key for key in keys)
        for key in keys:
            value = await redis_client.get(key)
            assert value is None or token.encode() not in value
        ours = [k for k in keys if json.loads(await redis_client.get(k) or b"{}").get("login")
                == who.login]
        assert len(ours) == 1
        ttl = await redis_client.ttl(ours[0])
        assert 0 < ttl <= SESSION_TTL_SECONDS
    finally:
        await sessions.delete(token)


async def test_session_ttl_is_the_store_ttl(redis_client: aioredis.Redis) -> None:
    sessions = SessionStore(redis_client, ttl=1)
    token = await sessions.create(Principal(unique_login(), "Temp", "operator"))
    key = SessionStore._key(token)
    assert 0 < await redis_client.ttl(key) <= 1


@pytest.mark.parametrize("token", ["", "x" * 101, "no-such-session"])
async def test_unknown_or_absurd_tokens_have_no_session(
    redis_client: aioredis.Redis, token: str
) -> None:
    sessions = SessionStore(redis_client)
    assert await sessions.get(token) is None
    await sessions.delete(token)  # harmless


async def test_corrupt_session_payload_means_signed_out(redis_client: aioredis.Redis) -> None:
    sessions = SessionStore(redis_client)
    token = "forged-" + uuid.uuid4().hex
    key = SessionStore._key(token)
    for payload in ("not json", json.dumps({"login": "x"}), json.dumps([1, 2])):
        await redis_client.set(key, payload, ex=60)
        assert await sessions.get(token) is None
    await redis_client.delete(key)


# --- operators in PostgreSQL ------------------------------------------------------


async def test_authenticate_right_password(pg_pool: asyncpg.Pool) -> None:
    login = unique_login("sup")
    await upsert_operator(pg_pool, login, "Черговий супервізор", "supervisor", PASSWORD)
    who = await authenticate(pg_pool, login, PASSWORD)
    assert who == Principal(login, "Черговий супервізор", "supervisor")
    stored = await pg_pool.fetchval("SELECT password_hash FROM operators WHERE login = $1", login)
    assert stored.startswith("scrypt$") and PASSWORD not in stored


async def test_authenticate_wrong_password_and_unknown_login(pg_pool: asyncpg.Pool) -> None:
    login = unique_login("sup")
    await upsert_operator(pg_pool, login, "Supervisor", "supervisor", PASSWORD)
    assert await authenticate(pg_pool, login, PASSWORD + "x") is None
    assert await authenticate(pg_pool, login, "") is None
    assert await authenticate(pg_pool, unique_login("ghost"), PASSWORD) is None
    assert await authenticate(pg_pool, login.upper(), PASSWORD) is None


async def test_inactive_user_cannot_sign_in_until_reset(pg_pool: asyncpg.Pool) -> None:
    login = unique_login("op")
    await upsert_operator(pg_pool, login, "Operator", "operator", PASSWORD)
    await pg_pool.execute("UPDATE operators SET active = false WHERE login = $1", login)
    assert await authenticate(pg_pool, login, PASSWORD) is None
    # upsert is the documented "reset": new password and role, active again
    await upsert_operator(pg_pool, login, "Operator", "supervisor", "another password")
    assert await authenticate(pg_pool, login, PASSWORD) is None
    who = await authenticate(pg_pool, login, "another password")
    assert who is not None and who.role == "supervisor"


async def test_user_without_password_cannot_sign_in(pg_pool: asyncpg.Pool) -> None:
    login = unique_login("nopw")
    await pg_pool.execute(
        "INSERT INTO operators (login, display_name, role) VALUES ($1, 'No password', 'operator')",
        login,
    )
    assert await authenticate(pg_pool, login, PASSWORD) is None
    assert await authenticate(pg_pool, login, "") is None


async def test_upsert_keeps_interface_when_not_given(pg_pool: asyncpg.Pool) -> None:
    login = unique_login("op")
    interface = f"Local/{uuid.uuid4().hex[:6]}@hotline-operators/n"
    await upsert_operator(pg_pool, login, "Operator", "operator", PASSWORD, interface)
    await upsert_operator(pg_pool, login, "Operator Renamed", "operator", PASSWORD)
    row = await pg_pool.fetchrow(
        "SELECT display_name, queue_interface FROM operators WHERE login = $1", login
    )
    assert row is not None
    assert (row["display_name"], row["queue_interface"]) == ("Operator Renamed", interface)


@pytest.mark.parametrize(
    ("login", "name", "role", "password", "field"),
    [
        ("ok.login", "Name", "root", PASSWORD, "role"),
        ("ok.login", "Name", "", PASSWORD, "role"),
        ("", "Name", "operator", PASSWORD, "login"),
        ("has space", "Name", "operator", PASSWORD, "login"),
        ("slash/login", "Name", "operator", PASSWORD, "login"),
        ("nul\x00login", "Name", "operator", PASSWORD, "login"),
        ("x" * 65, "Name", "operator", PASSWORD, "login"),
        ("ok.login", "  ", "operator", PASSWORD, "display_name"),
        ("ok.login", "Name", "operator", "short", "password"),
        ("ok.login", "Name", "operator", "x" * 1025, "password"),
    ],
)
async def test_upsert_operator_rejects_bad_input(
    pg_pool: asyncpg.Pool, login: str, name: str, role: str, password: str, field: str
) -> None:
    before = await pg_pool.fetchval("SELECT count(*) FROM operators")
    with pytest.raises(PersonError, match=f"^{field}:"):
        await upsert_operator(pg_pool, login, name, role, password)
    assert await pg_pool.fetchval("SELECT count(*) FROM operators") == before


async def test_upsert_operator_accepts_cyrillic_and_punctuated_logins(
    pg_pool: asyncpg.Pool,
) -> None:
    login = f"олена.ґудзь-{uuid.uuid4().hex[:6]}_1"
    await upsert_operator(pg_pool, login, "Олена", "executor", PASSWORD)
    who = await authenticate(pg_pool, login, PASSWORD)
    assert who is not None and who.role == "executor"
