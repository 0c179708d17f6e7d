"""The external CRM (issue 10): appeal events pushed over HTTP through the outbox,
the CRM's status updates applied back, and reconciliation of both sides.

The CRM's API as we speak it (``Authorization: Bearer <key>`` on every call):

- ``POST {url}/appeals/{number}/events`` — one appeal event, JSON ``{"event_id",
  "topic", "number", "status", "version", "at", "appeal"}`` with header
  ``Idempotency-Key`` (a repeated key is answered with the first event's id);
  200/201/202 ``{"id"}``; 429 and 5xx and timeouts temporary, other 4xx permanent.
- ``GET {url}/appeals?since=<iso>`` — ``[{"number", "status", "updated_at"}]``.

Every appeal event is seen by the CRM router, old ones included: the relay marks an
event done once its routers ran, so a router added later would miss what came
before. :func:`backfill` (run by the relay process at start, under the fan-out's
lock, before the relay fans out anything) turns every event already fanned out past
``crm_cursor`` into its CRM message (same idempotency key as the router's, so an
event the router already took inserts nothing) and moves the cursor. Messages of
one appeal share an order key: the CRM gets them in event order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp
import asyncpg

from crm_sync.appeals import store
from crm_sync.outbox.model import (
    Event,
    NewMessage,
    Outgoing,
    Router,
    TemporaryFailure,
)
from crm_sync.outbox.providers import HttpProvider
from crm_sync.outbox.relay import FAN_OUT_LOCK
from hotline.core.logs import get_logger

log = get_logger("crm_sync.outbox.crm")

PROVIDER = "crm"
#: Written by :func:`reconcile` to push an appeal's current state again.
RESYNC_TOPIC = "appeal.crm_resync"
#: Every topic the appeals service writes, and the resync.
TOPICS = ("appeal.created", "appeal.status_changed", "appeal.updated",
          "appeal.citizen_attached", "appeal.comment_added", "appeal.attachment_added",
          RESYNC_TOPIC)


def message_of(event_id: int, topic: str, key: str,
               payload: dict[str, Any]) -> NewMessage | None:
    """None for an event of no appeal: skipped and logged, never failing the fan-out
    (the citizens' router runs in the same savepoint)."""
    number = str(payload.get("number") or "")
    if not number:
        log.error("crm_event_without_appeal", event_key=key, topic=topic)
        return None
    # Citizens' ids and contacts stay in the case store.
    appeal = {k: v for k, v in payload.items() if k not in ("citizen_ids", "text")}
    body = {"event_id": key, "topic": topic, "number": number,
            "status": payload.get("status"), "version": payload.get("version"),
            "at": payload.get("at"), "appeal": appeal}
    return NewMessage(PROVIDER, f"{key}:crm", f"crm:appeal:{number}", number,
                      json.dumps(body, ensure_ascii=False, sort_keys=True),
                      meta={"event_id": event_id, "topic": topic})


def crm_router() -> Router:
    async def route(conn: asyncpg.Connection, event: Event, now: datetime) -> list[NewMessage]:
        message = message_of(event.id, event.topic, event.key, event.payload)
        return [message] if message is not None else []

    return route


async def backfill(pool: asyncpg.Pool, *, batch: int = 1000) -> int:
    """CRM messages for the appeal events fanned out without the CRM router; the
    number of messages inserted. Idempotent; serialised with the relay's fan-out."""
    inserted = 0
    while True:
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", FAN_OUT_LOCK)
            cursor = await conn.fetchval("SELECT last_event_id FROM crm_cursor FOR UPDATE")
            rows = await conn.fetch(
                """SELECT id, topic, key, payload FROM outbox
                   WHERE id > $1 AND topic = ANY($2::text[]) AND delivered_at IS NOT NULL
                   ORDER BY id LIMIT $3""", cursor, list(TOPICS), batch)
            if not rows:
                return inserted
            messages = [(r["id"], m) for r in rows
                        if (m := message_of(r["id"], r["topic"], r["key"], r["payload"]))
                        is not None]
            result = await conn.fetch(
                """INSERT INTO outbox_messages (event_id, idempotency_key, provider, order_key,
                       recipient, body, meta)
                   SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[],
                                        $5::text[], $6::text[], $7::jsonb[])
                   ON CONFLICT (idempotency_key) DO NOTHING RETURNING id""",
                [e for e, _ in messages], [m.key for _, m in messages],
                [m.provider for _, m in messages], [m.order_key for _, m in messages],
                [m.recipient for _, m in messages], [m.body for _, m in messages],
                [m.meta for _, m in messages])
            inserted += len(result)
            await conn.execute("UPDATE crm_cursor SET last_event_id = $1, updated_at = now()",
                               rows[-1]["id"])
            log.info("crm_backfill", events=len(rows), inserted=len(result),
                     through=rows[-1]["id"])


class CrmClient(HttpProvider):
    """The CRM's HTTP API: the relay's provider (``send``) and the listing."""

    def __init__(self, url: str, api_key: str, *, name: str = PROVIDER,
                 timeout: float = 10.0) -> None:
        super().__init__(url, api_key, name=name, timeout=timeout)

    async def send(self, message: Outgoing) -> str:
        headers = {**self._headers(message), "Content-Type": "application/json"}
        return await self._post_for_id(
            "crm", f"{self.url}/appeals/{message.recipient}/events",
            f"crm refused appeal {message.recipient}",
            data=message.body.encode(), headers=headers)

    async def list_appeals(self, since: datetime) -> list[dict[str, Any]]:
        """Raises :class:`TemporaryFailure` when the CRM cannot be read."""
        try:
            async with self._client().get(
                    f"{self.url}/appeals", params={"since": since.isoformat()},
                    headers={"Authorization": f"Bearer {self._key}"}) as response:
                if response.status != 200:
                    raise TemporaryFailure(f"crm list: HTTP {response.status}")
                data = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise TemporaryFailure(f"crm list: {type(exc).__name__}: {exc}") from None
        if not isinstance(data, list):
            raise TemporaryFailure("crm list: a JSON list expected")
        return [d for d in data if isinstance(d, dict)]


# --- reconciliation -------------------------------------------------------------------


@dataclass(frozen=True)
class Drift:
    number: str
    kind: str  # missing (not at the CRM), status (differs), unknown (only at the CRM)
    ours: str | None
    theirs: str | None
    action: str = "none"  # repushed, none


@dataclass
class Reconciliation:
    compared: int = 0
    drift: list[Drift] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"compared": self.compared,
                "drift": [d.__dict__ for d in self.drift]}


async def reconcile(pool: asyncpg.Pool, client: CrmClient, since: datetime,
                    *, fix: bool = True, now: datetime) -> Reconciliation:
    """Compare our appeals changed since ``since`` with the CRM's list and report the
    drift. The case store is the system of record: a fix re-pushes our current state
    (a ``appeal.crm_resync`` outbox event, delivered by the relay in order after the
    appeal's other events); the CRM's own changes come in through the webhook, which
    applies them under the lifecycle rules, so a CRM status we do not hold is never
    copied over ours here. An appeal only the CRM knows is reported, not touched."""
    theirs = {str(d.get("number")): d for d in await client.list_appeals(since)}
    rows = await pool.fetch(
        "SELECT id, number, status, version FROM appeals WHERE updated_at >= $1 ORDER BY id",
        since)
    report = Reconciliation(compared=len(rows))
    ours = {r["number"]: r for r in rows}
    for row in rows:
        their = theirs.get(row["number"])
        if their is None:
            drift = Drift(row["number"], "missing", row["status"], None)
        elif their.get("status") != row["status"]:
            drift = Drift(row["number"], "status", row["status"], str(their.get("status")))
        else:
            continue
        if fix:
            await _resync(pool, row["id"], row["version"], now)
            drift = Drift(drift.number, drift.kind, drift.ours, drift.theirs, "repushed")
        report.drift.append(drift)
        log.warning("crm_drift", appeal=drift.number, kind=drift.kind, ours=drift.ours,
                    theirs=drift.theirs, action=drift.action)
    for number, their in sorted(theirs.items()):
        if number not in ours and not await pool.fetchval(
                "SELECT 1 FROM appeals WHERE number = $1", number):
            report.drift.append(Drift(number, "unknown", None, str(their.get("status"))))
            log.warning("crm_drift", appeal=number, kind="unknown",
                        theirs=their.get("status"))
    log.info("crm_reconciled", since=since.isoformat(), compared=report.compared,
             drift=len(report.drift))
    return report


async def _resync(pool: asyncpg.Pool, appeal_id: int, version: int, now: datetime) -> None:
    async with pool.acquire() as conn, conn.transaction():
        row = await store.fetch_appeal_row(conn, appeal_id)
        if row is None:
            return
        payload = store.payload_of(store.appeal_from_row(row))
        payload["at"] = now.isoformat()
        # One resync per appeal version: reconciling twice before the relay ran
        # pushes it once.
        await conn.execute(
            """INSERT INTO outbox (topic, key, payload, created_at, available_at)
               VALUES ($1, $2, $3, $4, $4) ON CONFLICT (key) DO NOTHING""",
            RESYNC_TOPIC, f"crm-resync:{payload['number']}:v{version}", payload, now)

