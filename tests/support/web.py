"""Helpers for tests of the web pages: people, calls, queue names, signing in
through the form as a browser does (its CSRF token included)."""

from __future__ import annotations

import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp
import asyncpg

from crm_sync.people import upsert_operator
from hotline.core.records import CallOutcome, CallRecord

PASSWORD = "s3cret-passw0rd"
#: The key the test apps sign sessions and CSRF tokens with.
SESSION_KEY = secrets.token_bytes(32)
_CSRF_FIELD = re.compile(r'<input type="hidden" name="csrf" value="([0-9a-f]{64})">')


def csrf_in(page: str) -> str:
    """The CSRF token of the (first) form on a page."""
    match = _CSRF_FIELD.search(page)
    assert match, f"no CSRF field in the page: {page[:300]}"
    return match.group(1)


async def form_token(client: Any) -> str:
    """The CSRF token of the sign-in form of an aiohttp ``TestClient`` (whose cookie
    jar keeps the cookie the token goes with)."""
    page = await client.get("/login")
    return csrf_in(await page.text())


async def sign_in_session(
    http: aiohttp.ClientSession, base_url: str, login: str, password: str,
    **kwargs: Any,
) -> aiohttp.ClientResponse:
    """Open the sign-in form, then submit it, as a browser would (``http`` keeps cookies)."""
    async with http.get(f"{base_url}/login") as page:
        token = csrf_in(await page.text())
    return await http.post(
        f"{base_url}/login", data={"login": login, "password": password, "csrf": token},
        **kwargs,
    )


@dataclass(frozen=True)
class User:
    login: str
    password: str
    display_name: str
    role: str


async def add_user(pool: asyncpg.Pool, role: str, display_name: str = "") -> User:
    user = User(f"{role}_{uuid.uuid4().hex[:8]}", PASSWORD, display_name or f"Test {role}", role)
    await upsert_operator(pool, user.login, user.display_name, user.role, user.password)
    return user


def make_call(tag: str, started_at: datetime, **changes: Any) -> CallRecord:
    uniqueid = f"{started_at.timestamp():.0f}.{uuid.uuid4().hex[:6]}"
    record = CallRecord(
        call_key=f"webtest:{tag}:{uniqueid}", asterisk_server="webtest", uniqueid=uniqueid,
        linkedid=uniqueid, channel="PJSIP/trunk-00000001", started_at=started_at,
        caller_number="+380671234567", caller_name="Олена Ґудзь-Їжакевич", language="uk",
        outcome=CallOutcome.ANSWERED, queue="housing", wait_seconds=12, talk_seconds=95,
        operator_name="Оператор 101", ivr_choice="1",
    )
    for name, value in changes.items():
        setattr(record, name, value)
    return record


def unique_queue(label: str) -> str:
    return f"q_{label}_{uuid.uuid4().hex[:8]}"


async def sign_in_form(client: Any, user: User) -> str:
    """Sign an aiohttp ``TestClient`` in through the real form, as a browser does;
    returns the CSRF token that goes with the new session (for API changes)."""
    token = csrf_in(await (await client.get("/login")).text())
    response = await client.post("/login", data={"login": user.login, "password": user.password,
                                                 "csrf": token}, allow_redirects=False)
    assert response.status == 302, await response.text()
    return csrf_in(await (await client.get("/login")).text())
