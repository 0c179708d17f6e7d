"""People who sign in: operators, supervisors, administrators, …"""

from __future__ import annotations

import re

import asyncpg

from cti_bridge.auth import ROLES, Principal, hash_password, verify_password

MAX_LOGIN = 64
MAX_PASSWORD = 1024
_LOGIN_RE = re.compile(rf"[\w.-]{{1,{MAX_LOGIN}}}")


class OperatorError(ValueError):
    pass


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
) -> None:
    """Create the person or reset their password and role."""
    if role not in ROLES:
        raise OperatorError(f"role: expected one of {', '.join(ROLES)}, got {role!r}")
    if not is_valid_login(login):
        raise OperatorError(
            f"login: 1 to {MAX_LOGIN} letters, digits, '.', '-' and '_' only, got {login!r}"
        )
    if not display_name.strip():
        raise OperatorError("display_name: must not be empty")
    if len(password) < 8:
        raise OperatorError("password: at least 8 characters")
    if len(password) > MAX_PASSWORD:
        raise OperatorError(f"password: at most {MAX_PASSWORD} characters")
    try:
        password_hash = hash_password(password)
    except UnicodeEncodeError:
        raise OperatorError("password: not valid text") from None
    await pool.execute(
        """
        INSERT INTO operators (login, display_name, role, password_hash, queue_interface, active)
        VALUES ($1, $2, $3, $4, $5, true)
        ON CONFLICT (login) DO UPDATE
           SET display_name = EXCLUDED.display_name, role = EXCLUDED.role,
               password_hash = EXCLUDED.password_hash,
               queue_interface = COALESCE(EXCLUDED.queue_interface, operators.queue_interface),
               active = true
        """,
        login,
        display_name,
        role,
        password_hash,
        interface,
    )


async def authenticate(pool: asyncpg.Pool, login: str, password: str) -> Principal | None:
    row = await pool.fetchrow(
        "SELECT login, display_name, role, password_hash FROM operators "
        "WHERE login = $1 AND active",
        login,
    )
    # Verify against a dummy hash when the login is unknown, so that timing does
    # not tell which logins exist.
    # A person without a password (e.g. created from the AMI side) cannot sign in.
    stored = row["password_hash"] if row is not None else None
    ok = verify_password(password, stored or _DUMMY_HASH)
    if row is None or not stored or not ok:
        return None
    return Principal(row["login"], row["display_name"], row["role"])


_DUMMY_HASH = hash_password("not-a-real-password")
