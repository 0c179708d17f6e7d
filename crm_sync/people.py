"""People who sign in (operators, supervisors, admins, executors, leadership):
their accounts in the case store, their password hashes, and the sign-in audit.

Passwords are hashed with scrypt (stdlib, memory-hard) and a per-user salt. scrypt
takes ~50 ms of CPU: it runs in :class:`PasswordChecker`'s few threads (hashlib
releases the GIL), never on the event loop.

Each person has a ``session_epoch``: it is bumped whenever their access changes
(a reset or role change by :func:`upsert_operator`, :func:`deactivate_person`), and
a session made under an older epoch is void.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import asyncpg

from hotline.core.errors import InvalidInput, UnavailableError
from hotline.core.people import EXECUTOR, ROLES, Principal

_N, _R, _P = 2**14, 8, 1


def hash_password(password: str) -> str:
    if not password:
        raise ValueError("password must not be empty")
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    salt_b64, digest_b64 = base64.b64encode(salt).decode(), base64.b64encode(digest).decode()
    return f"scrypt${_N}${_R}${_P}${salt_b64}${digest_b64}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt_b64, digest_b64 = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest_b64, validate=True)
        digest = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt_b64, validate=True),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
        )
    except (ValueError, TypeError, MemoryError):  # malformed, or parameters out of range
        return False
    return hmac.compare_digest(digest, expected)


MAX_LOGIN = 64
MAX_PASSWORD = 1024
_LOGIN_RE = re.compile(rf"[\w.-]{{1,{MAX_LOGIN}}}")


class PersonError(InvalidInput):
    """An account cannot be saved as given; the message names the field."""

    error_id = "person_invalid"


def is_valid_login(login: str) -> bool:
    """1 to :data:`MAX_LOGIN` letters, digits, '.', '-' and '_'."""
    return _LOGIN_RE.fullmatch(login) is not None


async def upsert_operator(
    pool: asyncpg.Pool,
    login: str,
    display_name: str,
    role: str,
    password: str,
    interface: str | None = None,
    executor: str | int | None = None,
) -> None:
    """Create the person or reset their password and role. An executor's user belongs
    to an organisation (``executor``: its code or id; without one the portal shows
    them nothing); nobody else has one."""
    if role not in ROLES:
        raise PersonError(f"role: expected one of {', '.join(ROLES)}, got {role!r}")
    if executor is not None and role != EXECUTOR:
        raise PersonError(f"executor: only an executor's user has an organisation, not a {role}")
    if not is_valid_login(login):
        raise PersonError(
            f"login: 1 to {MAX_LOGIN} letters, digits, '.', '-' and '_' only, got {login!r}"
        )
    if not display_name.strip():
        raise PersonError("display_name: must not be empty")
    if len(password) < 8:
        raise PersonError("password: at least 8 characters")
    if len(password) > MAX_PASSWORD:
        raise PersonError(f"password: at most {MAX_PASSWORD} characters")
    try:
        password_hash = await asyncio.to_thread(hash_password, password)
    except UnicodeEncodeError:
        raise PersonError("password: not valid text") from None
    executor_id = await _executor_id(pool, executor) if executor is not None else None
    # A reset (new password, maybe a new role or organisation) ends the sessions made before it.
    await pool.execute(
        """
        INSERT INTO operators (login, display_name, role, password_hash, queue_interface, active,
                               executor_id)
        VALUES ($1, $2, $3, $4, $5, true, $6)
        ON CONFLICT (login) DO UPDATE
           SET display_name = EXCLUDED.display_name, role = EXCLUDED.role,
               password_hash = EXCLUDED.password_hash,
               queue_interface = COALESCE(EXCLUDED.queue_interface, operators.queue_interface),
               executor_id = EXCLUDED.executor_id,
               active = true, session_epoch = operators.session_epoch + 1
        """,
        login,
        display_name,
        role,
        password_hash,
        interface,
        executor_id,
    )


async def _executor_id(pool: asyncpg.Pool, executor: str | int) -> int:
    """The id of an active executor organisation given by code or id."""
    text = str(executor).strip()
    row_id: int | None = await pool.fetchval(
        "SELECT id FROM executors WHERE active AND (code = $1 OR id = $2::int)",
        text, int(text) if text.isdigit() and len(text) < 10 else None,
    )
    if row_id is None:
        raise PersonError(f"executor: no active executor organisation {text!r}")
    return row_id


async def executor_of(pool: asyncpg.Pool, login: str) -> int | None:
    """The organisation of an active executor's user, read on every request so that a
    move to another organisation takes effect at once (None: not an executor's user)."""
    value: int | None = await pool.fetchval(
        "SELECT executor_id FROM operators WHERE login = $1 AND active AND role = 'executor'",
        login,
    )
    return value


async def deactivate_person(pool: asyncpg.Pool, login: str) -> bool:
    """They can no longer sign in, and their open sessions end; False if no such login."""
    changed = await pool.fetchval(
        "UPDATE operators SET active = false, session_epoch = session_epoch + 1 "
        "WHERE login = $1 RETURNING id",
        login,
    )
    return changed is not None


@dataclass(frozen=True)
class Account:
    """A person as sign-in sees them."""

    id: int
    login: str
    display_name: str
    role: str
    active: bool
    session_epoch: int
    password_hash: str | None

    @property
    def principal(self) -> Principal:
        return Principal(self.login, self.display_name, self.role)


@dataclass(frozen=True)
class AccountState:
    """What decides whether a session still holds."""

    active: bool
    session_epoch: int


async def find_account(pool: asyncpg.Pool, login: str) -> Account | None:
    row = await pool.fetchrow(
        "SELECT id, login, display_name, role, active, session_epoch, password_hash "
        "FROM operators WHERE login = $1",
        login,
    )
    return Account(**dict(row.items())) if row is not None else None


async def account_states(pool: asyncpg.Pool, logins: Iterable[str]) -> dict[str, AccountState]:
    """The current state of each of ``logins`` that exists (one indexed query)."""
    rows = await pool.fetch(
        "SELECT login, active, session_epoch FROM operators WHERE login = ANY($1::text[])",
        list(set(logins)),
    )
    return {row["login"]: AccountState(row["active"], row["session_epoch"]) for row in rows}


class PasswordCheckBusy(UnavailableError):
    """Every scrypt worker is busy and the waiting line is full: try again shortly."""

    error_id = "sign_in_busy"
    retry_after = 1


class PasswordChecker:
    """scrypt in a small pool of threads, with a cap on checks waiting for one.

    A storm of sign-ins then costs the event loop nothing, and what exceeds
    ``workers + max_waiting`` is refused at once (:class:`PasswordCheckBusy`)
    instead of queueing for minutes. :meth:`reserve` takes a place before the
    caller looks anything up, so a refused sign-in costs no database query either.
    """

    def __init__(self, workers: int | None = None, max_waiting: int = 16) -> None:
        # One core left to the event loop: it serves every other request meanwhile.
        workers = workers or max(1, (os.cpu_count() or 2) // 2)
        if workers < 1 or max_waiting < 0:
            raise ValueError("workers must be positive and max_waiting not negative")
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="scrypt")
        self._capacity = workers + max_waiting
        self._in_use = 0

    @property
    def in_use(self) -> int:
        """Checks reserved, running or waiting for a thread."""
        return self._in_use

    def reserve(self) -> PasswordCheck:
        """A place for one check, or :class:`PasswordCheckBusy` at once."""
        if self._in_use >= self._capacity:
            raise PasswordCheckBusy("too many sign-ins at once; try again in a moment")
        self._in_use += 1
        return PasswordCheck(self)

    async def verify(self, password: str, stored: str) -> bool:
        with self.reserve() as check:
            return await check.verify(password, stored)

    def _run(self, password: str, stored: str) -> asyncio.Future[bool]:
        return asyncio.get_running_loop().run_in_executor(
            self._executor, verify_password, password, stored
        )

    def _release(self, _future: Any = None) -> None:
        self._in_use -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class PasswordCheck:
    """One reserved place in a :class:`PasswordChecker`; given back when its scrypt
    is done, or on leaving the ``with`` block if it never ran."""

    def __init__(self, checker: PasswordChecker) -> None:
        self._checker = checker
        self._held = True

    async def verify(self, password: str, stored: str) -> bool:
        if not self._held:
            raise RuntimeError("a password check is used once")
        self._held = False
        future = self._checker._run(password, stored)
        # Given back when the thread is done, not when a cancelled caller stops
        # waiting: the cap counts the threads' work, which a disconnect does not stop.
        future.add_done_callback(self._checker._release)
        return await asyncio.shield(future)

    def __enter__(self) -> PasswordCheck:
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._held:
            self._held = False
            self._checker._release()


@dataclass(frozen=True)
class SignInCheck:
    """The outcome of a login and password: ``account`` is the person the login
    names (None for an unknown login); ``reason`` is for the audit, not the user."""

    account: Account | None
    ok: bool
    reason: str  # ok, unknown_login, no_password, wrong_password, inactive


async def check_sign_in(
    pool: asyncpg.Pool, checker: PasswordChecker, login: str, password: str
) -> SignInCheck:
    with checker.reserve() as check:
        account = await find_account(pool, login)
        stored = account.password_hash if account is not None else None
        # Verify against a dummy hash when there is nothing to verify against, so
        # that timing does not tell which logins exist.
        right = await check.verify(password, stored or _DUMMY_HASH)
    if account is None:
        return SignInCheck(None, False, "unknown_login")
    if not stored:  # e.g. created from the AMI side
        return SignInCheck(account, False, "no_password")
    if not right:
        return SignInCheck(account, False, "wrong_password")
    if not account.active:
        return SignInCheck(account, False, "inactive")
    return SignInCheck(account, True, "ok")


SIGN_IN_OUTCOMES = ("success", "failure", "refused")


async def record_sign_in(
    pool: asyncpg.Pool, *, account: Account | None, address: str | None, outcome: str,
    reason: str,
) -> None:
    """One row of the sign-in audit; a stranger's typed login is never stored."""
    if outcome not in SIGN_IN_OUTCOMES:
        raise ValueError(f"outcome: expected one of {SIGN_IN_OUTCOMES}, got {outcome!r}")
    await pool.execute(
        "INSERT INTO sign_in_audit (operator_id, login, client_address, outcome, reason) "
        "VALUES ($1, $2, $3, $4, $5)",
        account.id if account is not None else None,
        account.login if account is not None else None,
        address,
        outcome,
        reason,
    )


async def authenticate(pool: asyncpg.Pool, login: str, password: str) -> Principal | None:
    """Who the login and password name, if they are right and the person is active
    (scrypt in the default thread pool; the web uses :func:`check_sign_in`)."""
    account = await find_account(pool, login)
    stored = account.password_hash if account is not None else None
    right = await asyncio.to_thread(verify_password, password, stored or _DUMMY_HASH)
    if account is None or not stored or not right or not account.active:
        return None
    return account.principal


_DUMMY_HASH = hash_password("not-a-real-password")
