"""The external CRM's status updates (issue 10).

``POST /webhooks/crm/status`` — ``{"update_id", "number", "status", "reason"}``,
signed by the CRM: header ``X-Hotline-Signature: sha256=<hex HMAC-SHA256 of the raw
body>`` under the CRM's shared secret (``crm.webhook_secret``). The change goes
through :class:`~crm_sync.appeals.service.AppealsService` as the actor
``supervisor:crm``, so the lifecycle rules, the history and the outbox hold; an
illegal transition is refused with the error form (409) and logged. Idempotent by
``update_id``: an update seen before changes nothing and is answered
``duplicate`` with the first result.

Public on purpose (``roles`` None), authenticated by its signature; no cookie is
read, so the CSRF check does not apply (``guard.API_KEY_ROUTES``).
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg
from aiohttp import web

from hotline.core.appeals import Actor, ActorKind, AppealNotFound, AppealStatus, Channel
from hotline.core.errors import HotlineError, InvalidInput, UnavailableError
from hotline.core.logs import get_logger
from hotline.web.common import APPEALS, POOL, Route, error_response, json_response
from hotline.web.delivery_reports import SIGNATURE_HEADER, SignatureInvalid, sign

STATUS_PATH = "/webhooks/crm/status"
PENDING_TAKEOVER = timedelta(minutes=2)
MAX_BODY = 16 * 1024
CRM_ACTOR = Actor(ActorKind.SUPERVISOR, "crm")
log = get_logger("hotline.web.crm_webhook")


@dataclass(frozen=True)
class CrmWebhook:
    secret: bytes


CRM_WEBHOOK = web.AppKey("crm_webhook", CrmWebhook)


class UpdateInProgress(UnavailableError):
    """The same update, delivered twice at once: the CRM retries, the first applies."""

    error_id = "crm_update_in_progress"


async def _signed_json(request: web.Request) -> dict[str, Any]:
    config = request.app.get(CRM_WEBHOOK)
    if config is None or not config.secret:
        raise UnavailableError("the CRM webhook is not configured in this process")
    body = await request.content.read(MAX_BODY + 1)
    if len(body) > MAX_BODY:
        raise InvalidInput("body: over 16 KiB")
    if not hmac.compare_digest(request.headers.get(SIGNATURE_HEADER, ""),
                               sign(config.secret, body)):
        log.warning("crm_webhook_signature_refused", path=request.path)
        raise SignatureInvalid("the signature does not match")
    try:
        data = json.loads(body)
    except ValueError:
        raise InvalidInput("body: JSON expected") from None
    if not isinstance(data, dict):
        raise InvalidInput("body: a JSON object expected")
    return data


async def _record(pool: asyncpg.Pool, update_id: str, result: str, detail: str | None) -> None:
    await pool.execute("UPDATE crm_updates SET result = $2, detail = $3 WHERE update_id = $1",
                       update_id, result, detail)


async def status_update(request: web.Request) -> web.Response:
    try:
        return await _status_update(request)
    except HotlineError as error:
        return error_response(error)


async def _status_update(request: web.Request) -> web.Response:
    data = await _signed_json(request)
    update_id = str(data.get("update_id") or "")[:200]
    number = str(data.get("number") or "")[:64]
    try:
        target = AppealStatus(str(data.get("status")))
    except ValueError:
        raise InvalidInput("status: not an appeal status", details={"field": "status"}) from None
    if not update_id or not number:
        raise InvalidInput("update_id and number required")
    reason = str(data["reason"])[:2000] if data.get("reason") else None
    pool = request.app[POOL]
    # Claimed before applying: of two deliveries of one update at once, one applies.
    # A claim left pending by a process that died is taken over after a while (the
    # status check below makes an update applied meanwhile "unchanged").
    if await pool.fetchval(
            """INSERT INTO crm_updates (update_id, number, status) VALUES ($1, $2, $3)
               ON CONFLICT (update_id) DO UPDATE SET received_at = now()
               WHERE crm_updates.result = 'pending'
                 AND crm_updates.received_at < now() - $4::interval
               RETURNING 1""",
            update_id, number, target.value, PENDING_TAKEOVER) is None:
        first = await pool.fetchval("SELECT result FROM crm_updates WHERE update_id = $1",
                                    update_id)
        log.info("crm_update_duplicate", update=update_id, appeal=number, first=first)
        if first == "pending":
            raise UpdateInProgress("this update is being applied; try again later")
        return json_response({"result": "duplicate", "first": first})
    try:
        async with pool.acquire() as conn:
            row = await conn.fetchrow("SELECT id, status FROM appeals WHERE number = $1",
                                      number)
        if row is None:
            await _record(pool, update_id, "unknown", None)
            raise AppealNotFound(f"appeal {number}: not found")
        if row["status"] == target.value:
            await _record(pool, update_id, "unchanged", None)
            return json_response({"result": "unchanged"})
        try:
            appeal = await request.app[APPEALS].change_status(
                row["id"], target, CRM_ACTOR, channel=Channel.SYSTEM, reason=reason)
        except HotlineError as error:
            await _record(pool, update_id, "refused", f"{error.error_id}: {error.message}"[:500])
            log.warning("crm_update_refused", update=update_id, appeal=number,
                        from_status=row["status"], to_status=target.value,
                        error=error.error_id)
            raise
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        # Not applied: forget the claim so the CRM's retry is applied.
        await pool.execute("DELETE FROM crm_updates WHERE update_id = $1 AND result = 'pending'",
                           update_id)
        raise
    await _record(pool, update_id, "applied", None)
    log.info("crm_update_applied", update=update_id, appeal=number,
             from_status=row["status"], to_status=appeal.status.value)
    return json_response({"result": "applied", "status": appeal.status.value,
                          "version": appeal.version})


ROUTES = [Route("POST", STATUS_PATH, status_update, None)]
