"""People who sign in: operators, supervisors, administrators, …"""

from __future__ import annotations

import asyncpg

from cti_bridge.auth import ROLES, Principal, hash_password, verify_password


class OperatorError(ValueError):
    pass


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
    if not login or not login.replace(".", "").replace("-", "").replace("_", "").isalnum():
        raise OperatorError(f"login: letters, digits, '.', '-' and '_' only, got {login!r}")
    if len(password) < 8:
        raise OperatorError("password: at least 8 characters")
    await pool.execute(
        """
        INSERT INTO operators (login, display_name, role, password_hash, queue_interface, active)
        VALUES ($1, $2, $3, $4, $5, true)
        ON CONFLICT (login) DO UPDATE
           SET display_name = EXCLUDED.display_name, role = EXCLUDED.role,
               password_hash = EXCLUDED.password_hash,
               queue_interface = COALESCE(EXCLUDED.queue_interface, operators.queue_interface), active = true
        """,
        login,
        display_name,
        role,
        hash_password(password),
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
    stored = row["password_hash"] if row else _DUMMY_HASH
    if not verify_password(password, stored) or row is None:
        return None
    return Principal(row["login"], row["display_name"], row["role"])


_DUMMY_HASH = hash_password("not-a-real-password")
