"""People who sign in (operators, supervisors, admins, executors, leadership):
their accounts in the case store and their password hashes.

Passwords are hashed with scrypt (stdlib, memory-hard) and a per-user salt.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

import asyncpg

from hotline.core.errors import InvalidInput
from hotline.core.people import ROLES, Principal

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
) -> None:
    """Create the person or reset their password and role."""
    if role not in ROLES:
        raise PersonError(f"role: expected one of {', '.join(ROLES)}, got {role!r}")
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
        password_hash = hash_password(password)
    except UnicodeEncodeError:
        raise PersonError("password: not valid text") from None
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
