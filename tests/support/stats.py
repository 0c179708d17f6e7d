"""A few days of calls for the reports' page and API tests: two queues, two
operators with pauses, IVR steps — written through the real call store."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import asyncpg

from crm_sync.call_store import PostgresCallStore, PostgresIvrJournal
from crm_sync.stats.metrics import CITY_TZ
from hotline.core.records import CallOutcome, CallRecord, IvrStep, QueueAttempt

OPERATORS = ("Local/201@ops/n", "Local/202@ops/n")
QUEUES = ("housing", "transport")


async def write_sample_days(pool: asyncpg.Pool, first: date, days: int = 3) -> int:
    """``days`` city days from ``first``: calls at 09:00–11:00 each day (answered,
    abandoned, timed out), shifts with a lunch pause, IVR steps. Returns the calls."""
    store = PostgresCallStore(pool)
    journal = PostgresIvrJournal(pool)
    n = 0
    for d in range(days):
        start = datetime.combine(first + timedelta(days=d), time(9), CITY_TZ).astimezone(UTC)
        for op in OPERATORS:
            for minutes, state, reason in ((-60, "logged_in", None), (-60, "available", None),
                                           (60, "paused", "lunch"), (90, "available", None),
                                           (180, "logged_out", None)):
                await pool.execute(
                    "INSERT INTO operator_state_changes (interface, at, state, reason, queue) "
                    "VALUES ($1, $2, $3, $4, NULL)",
                    op, start + timedelta(minutes=minutes), state, reason)
        for i in range(6 + d):
            n += 1
            at = start + timedelta(minutes=20 * i)
            queue = QUEUES[i % 2]
            op = OPERATORS[i % 2]
            outcome, kind = [(CallOutcome.ANSWERED, "answered"),
                             (CallOutcome.ABANDONED, "abandoned"),
                             (CallOutcome.TIMEOUT, "timeout")][0 if i < 4 else i % 3]
            uid = f"{int(at.timestamp())}.{n}"
            answered = kind == "answered"
            await store.save_call(CallRecord(
                call_key=f"sample:{uid}", asterisk_server="sample", uniqueid=uid, linkedid=uid,
                channel=f"Local/1551@in-{n}", started_at=at, outcome=outcome, queue=queue,
                operator_interface=op if answered else None,
                attempts=[QueueAttempt(
                    queue=queue, entered_at=at + timedelta(seconds=15), outcome=kind,
                    wait_seconds=5 + 7 * i, talk_seconds=60 + 10 * i if answered else None,
                    operator_interface=op if answered else None,
                    operator_name=f"Оператор {op[6:9]}" if answered else None)]))
            steps: tuple[tuple[str, dict[str, Any]], ...] = (
                    ("greeting", {"pressed": ""}), ("menu", {"attempt": 1}),
                    ("choice", {"digit": str(1 + i % 2), "queue": queue, "attempt": 1}),
                    ("route", {"queue": queue}))
            for k, (step, detail) in enumerate(steps):
                await journal.record_step(IvrStep("sample", uid, at + timedelta(seconds=k),
                                                  step, detail))
    return n
