"""Helpers for tests of the web pages: people, calls, queue names."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from crm_sync.people import upsert_operator
from hotline.core.records import CallOutcome, CallRecord

PASSWORD = "s3cret-passw0rd"



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
