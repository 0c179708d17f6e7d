"""Password hashing, Redis sessions and sign-in against the real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from crm_sync.people import (
    PasswordCheckBusy,
    PasswordChecker,
    PersonError,
    account_states,
    authenticate,
    check_sign_in,
    deactivate_person,
    find_account,
    hash_password,
    record_sign_in,
    upsert_operator,
    verify_password,
)
from hotline.core.people import Principal
from hotline.web.sessions import KEY_PREFIX, SESSION_TTL_SECONDS, Session, SessionStore, session_id

PASSWORD = "correct horse battery"
KEY = b"k" * 32


def store(redis: aioredis.Redis, ttl: int = SESSION_TTL_SECONDS) -> SessionStore:
    return SessionStore(redis, KEY, ttl)


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
    sessions = store(redis_client)
    who = Principal(unique_login(), "Олена Ґудзь", "supervisor")
    token = await sessions.create(who, 7)
    assert len(token) >= 40
    assert await sessions.get(token) == Session(session_id(token), who, 7)
    assert await sessions.get(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    await sessions.delete(token)
    assert await sessions.get(token) is None


async def test_sessions_are_distinct_per_sign_in(redis_client: aioredis.Redis) -> None:
    sessions = store(redis_client)
    who = Principal(unique_login(), "Supervisor", "supervisor")
    first, second = await sessions.create(who, 0), await sessions.create(who, 0)
    assert first != second
    await sessions.delete(first)
    assert await sessions.get(first) is None
    assert (await sessions.get(second) or pytest.fail("no session")).who == who
    await sessions.delete(second)


async def test_token_is_not_stored_in_clear(redis_client: aioredis.Redis) -> None:
    sessions = store(redis_client)
    who = Principal(unique_login(), "Supervisor", "supervisor")
    token = await sessions.create(who, 0)
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
    sessions = store(redis_client, ttl=1)
    token = await sessions.create(Principal(unique_login(), "Temp", "operator"), 0)
    key = KEY_PREFIX + session_id(token)
    assert 0 < await redis_client.ttl(key) <= 1


@pytest.mark.parametrize("token", ["", "x" * 101, "no-such-session"])
async def test_unknown_or_absurd_tokens_have_no_session(
    redis_client: aioredis.Redis, token: str
) -> None:
    sessions = store(redis_client)
    assert await sessions.get(token) is None
    await sessions.delete(token)  # harmless


async def test_corrupt_session_payload_means_signed_out(redis_client: aioredis.Redis) -> None:
    sessions = store(redis_client)
    token = "forged-" + uuid.uuid4().hex
    key = KEY_PREFIX + session_id(token)
    for payload in ("not json", json.dumps({"login": "x"}), json.dumps([1, 2])):
        await redis_client.set(key, payload, ex=60)
        assert await sessions.get(token) is None
    await redis_client.delete(key)


async def test_session_row_written_by_someone_else_is_refused(
    redis_client: aioredis.Redis,
) -> None:
    """Whoever can write to Redis cannot make a session: the MAC's key is not there."""
    sessions = store(redis_client)
    token = "forged-" + uuid.uuid4().hex
    key = KEY_PREFIX + session_id(token)
    body = {"login": unique_login(), "display_name": "Mallory", "role": "admin", "epoch": 0}
    forgeries = [
        body,  # the shape of the rows before MACs
        {**body, "mac": "0" * 64},
        {**body, "mac": hmac.new(b"x" * 32, json.dumps(body, sort_keys=True).encode(),
                                 hashlib.sha256).hexdigest()},
    ]
    try:
        for forged in forgeries:
            await redis_client.set(key, json.dumps(forged), ex=60)
            assert await sessions.get(token) is None
    finally:
        await redis_client.delete(key)


async def test_session_row_edited_or_moved_is_refused(redis_client: aioredis.Redis) -> None:
    sessions = store(redis_client)
    who = Principal(unique_login(), "Operator", "operator")
    genuine = await sessions.create(who, 0)
    mine = await sessions.create(Principal(unique_login(), "Other", "operator"), 0)
    key, my_key = KEY_PREFIX + session_id(genuine), KEY_PREFIX + session_id(mine)
    raw = await redis_client.get(key)
    assert raw is not None
    try:
        promoted = {**json.loads(raw), "role": "admin"}
        await redis_client.set(key, json.dumps(promoted), ex=60)
        assert await sessions.get(genuine) is None
        # a genuine row copied under a key whose token I hold is not mine either
        await redis_client.set(my_key, raw, ex=60)
        assert await sessions.get(mine) is None
        # another key, another MAC: the same row under its own key is still good
        await redis_client.set(key, raw, ex=60)
        assert (await sessions.get(genuine) or pytest.fail("lost")).who == who
    finally:
        await redis_client.delete(key, my_key)


async def test_sessions_read_many_at_once(redis_client: aioredis.Redis) -> None:
    sessions = store(redis_client)
    who = Principal(unique_login(), "Supervisor", "supervisor")
    token = await sessions.create(who, 3)
    found = await sessions.get_many([session_id(token), session_id("gone")])
    assert found == {session_id(token): Session(session_id(token), who, 3),
                     session_id("gone"): None}
    await sessions.delete(token)


def test_session_key_must_be_long_enough(redis_client: aioredis.Redis) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        SessionStore(redis_client, b"short")


# --- scrypt off the event loop ----------------------------------------------------


async def test_password_check_runs_in_a_thread_and_refuses_beyond_its_capacity() -> None:
    checker = PasswordChecker(workers=1, max_waiting=1)
    stored = await asyncio.to_thread(hash_password, PASSWORD)
    try:
        first = asyncio.create_task(checker.verify(PASSWORD, stored))
        second = asyncio.create_task(checker.verify("wrong", stored))
        await asyncio.sleep(0)  # both started; scrypt takes tens of milliseconds
        # The loop runs while the hashes are computed: they are not on it.
        assert checker.in_use == 2 and not first.done()
        with pytest.raises(PasswordCheckBusy) as busy:
            await checker.verify(PASSWORD, stored)
        assert busy.value.http_status == 503 and busy.value.retry_after == 1
        assert await first is True and await second is False
        assert checker.in_use == 0
        assert await checker.verify(PASSWORD, stored) is True  # room again
    finally:
        checker.close()


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


async def test_sign_in_check_tells_the_audit_why(pg_pool: asyncpg.Pool) -> None:
    checker = PasswordChecker()
    login = unique_login("sup")
    await upsert_operator(pg_pool, login, "Supervisor", "supervisor", PASSWORD)
    nopw = unique_login("nopw")
    await pg_pool.execute(
        "INSERT INTO operators (login, display_name, role) VALUES ($1, 'x', 'operator')", nopw
    )
    try:
        ok = await check_sign_in(pg_pool, checker, login, PASSWORD)
        assert ok.ok and ok.reason == "ok" and ok.account is not None
        assert ok.account.principal == Principal(login, "Supervisor", "supervisor")
        assert (await check_sign_in(pg_pool, checker, login, "nope")).reason == "wrong_password"
        unknown = await check_sign_in(pg_pool, checker, unique_login("ghost"), PASSWORD)
        assert (unknown.ok, unknown.account, unknown.reason) == (False, None, "unknown_login")
        assert (await check_sign_in(pg_pool, checker, nopw, PASSWORD)).reason == "no_password"
        await deactivate_person(pg_pool, login)
        inactive = await check_sign_in(pg_pool, checker, login, PASSWORD)
        assert (inactive.ok, inactive.reason) == (False, "inactive")
    finally:
        checker.close()


async def test_access_changes_bump_the_session_epoch(pg_pool: asyncpg.Pool) -> None:
    login = unique_login("op")
    await upsert_operator(pg_pool, login, "Operator", "operator", PASSWORD)
    account = await find_account(pg_pool, login)
    assert account is not None and account.active
    epochs = [account.session_epoch]
    await upsert_operator(pg_pool, login, "Operator", "supervisor", PASSWORD)  # promoted
    epochs.append((await account_states(pg_pool, [login]))[login].session_epoch)
    assert await deactivate_person(pg_pool, login) is True
    state = (await account_states(pg_pool, [login, unique_login("ghost")]))
    assert list(state) == [login] and state[login].active is False
    epochs.append(state[login].session_epoch)
    assert epochs == sorted(set(epochs)), "every change moves the epoch forward"
    assert await authenticate(pg_pool, login, PASSWORD) is None
    assert await deactivate_person(pg_pool, unique_login("ghost")) is False


async def test_sign_in_audit_keeps_known_logins_only(pg_pool: asyncpg.Pool) -> None:
    login = unique_login("sup")
    await upsert_operator(pg_pool, login, "Supervisor", "supervisor", PASSWORD)
    account = await find_account(pg_pool, login)
    address = f"198.51.100.{uuid.uuid4().int % 250 + 1}"
    await record_sign_in(pg_pool, account=account, address=address, outcome="success",
                         reason="ok")
    await record_sign_in(pg_pool, account=None, address=address, outcome="failure",
                         reason="unknown_login")
    rows = await pg_pool.fetch(
        "SELECT operator_id, login, outcome, reason FROM sign_in_audit "
        "WHERE client_address = $1 ORDER BY id", address,
    )
    assert account is not None
    assert [tuple(r.values()) for r in rows] == [
        (account.id, login, "success", "ok"), (None, None, "failure", "unknown_login"),
    ]
    with pytest.raises(ValueError, match="outcome"):
        await record_sign_in(pg_pool, account=None, address=None, outcome="maybe", reason="x")


async def test_cli_user_deactivate(pg_pool: asyncpg.Pool, pg_url: str) -> None:
    login = unique_login("op")
    await upsert_operator(pg_pool, login, "Operator", "operator", PASSWORD)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")}
    env.update(DATABASE_URL=pg_url)
    for who, expected_code, expected_text in [
        (login, 0, f"user {login} deactivated"), (unique_login("ghost"), 2, "no such user"),
    ]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hotline.cli", "user", "deactivate", who, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == expected_code, err.decode()
        assert expected_text in (out + err).decode()
    assert (await account_states(pg_pool, [login]))[login].active is False
