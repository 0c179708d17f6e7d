"""The outbox for people: supervisors and admins inspect messages and replay dead
letters; operators record a citizen's notification choices on their word.
Changes carry the CSRF token in ``X-CSRF-Token`` (from any page's token, or
``GET /api/admin/outbox``'s ``csrf``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from crm_sync.citizen_preferences import preferences, set_preferences
from crm_sync.outbox.admin import list_messages, replay
from hotline.core.errors import InvalidInput, NotFound
from hotline.core.logs import get_logger
from hotline.core.people import ADMIN, OPERATOR, SUPERVISOR
from hotline.core.privacy import mask_phone
from hotline.web.common import POOL, Route, json_body, json_response, principal
from hotline.web.guard import csrf_token

log = get_logger("hotline.web.outbox_admin")
ADMINS = (SUPERVISOR, ADMIN)
STAFF = (OPERATOR, SUPERVISOR, ADMIN)
_BASE = "/api/admin/outbox"


def _number(request: web.Request, name: str) -> int:
    raw = request.match_info[name]
    if not raw.isdigit() or len(raw) > 18:
        raise InvalidInput(f"{name}: a number", details={"field": name})
    return int(raw)


def _shown(message: dict[str, Any]) -> dict[str, Any]:
    recipient = message["recipient"] or ""
    # An e-mail's local part is personal too: keep its first letter and the domain.
    local, at, domain = recipient.partition("@")
    message["recipient"] = f"{local[:1]}***@{domain}" if at else mask_phone(recipient)
    return message


async def list_outbox(request: web.Request) -> web.Response:
    try:
        limit = min(max(int(request.query.get("limit", "100")), 1), 500)
    except ValueError:
        raise InvalidInput("limit: an integer", details={"field": "limit"}) from None
    messages = await list_messages(request.app[POOL], dead=request.query.get("dead") == "1",
                                   limit=limit)
    return json_response({"messages": [_shown(m) for m in messages],
                          "csrf": csrf_token(request)})


async def replay_one(request: web.Request) -> web.Response:
    message_id = _number(request, "message_id")
    if not await replay(request.app[POOL], message_id, datetime.now(UTC)):
        raise NotFound(f"message {message_id} is not dead or failed")
    log.info("outbox_replayed", message=message_id, by=principal(request).login)
    return json_response({"replayed": 1})


async def replay_dead(request: web.Request) -> web.Response:
    count = await replay(request.app[POOL], None, datetime.now(UTC))
    log.info("outbox_replayed_dead", count=count, by=principal(request).login)
    return json_response({"replayed": count})


async def get_preferences(request: web.Request) -> web.Response:
    return json_response(await preferences(request.app[POOL], _number(request, "citizen_id")))


async def put_preferences(request: web.Request) -> web.Response:
    body = await json_body(request)
    consent = body.get("consent")
    if not isinstance(consent, bool):
        raise InvalidInput("consent: true or false", details={"field": "consent"})
    fields = {name: body.get(name) for name in ("language", "channel", "email")}
    for name, value in fields.items():
        if value is not None and not isinstance(value, str):
            raise InvalidInput(f"{name}: text", details={"field": name})
    citizen_id = _number(request, "citizen_id")
    saved = await set_preferences(
        request.app[POOL], citizen_id, language=fields["language"] or "uk",
        channel=fields["channel"] or "sms", email=fields["email"] or None,
        consent=consent, at=datetime.now(UTC))
    log.info("citizen_preferences_saved", citizen=citizen_id, consent=consent,
             channel=saved["notify_channel"], by=principal(request).login)
    return json_response(saved)


_JSON = {"application/json": {"schema": {"type": "object"}}}
_SESSION: list[dict[str, list[str]]] = [{"session": []}]
_ERRORS = {"400": {"description": "invalid input (the message names the field)"},
           "401": {"description": "not signed in"},
           "403": {"description": "not allowed for this role; CSRF or Origin refused"},
           "404": {"description": "no such message or citizen"}}


def _doc(summary: str, **more: Any) -> dict[str, Any]:
    return {"summary": summary, "security": _SESSION, **more,
            "responses": {"200": {"description": summary, "content": _JSON}, **_ERRORS}}


def _id(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True,
            "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"}}


#: This module's part of the OpenAPI document (:mod:`hotline.web.openapi`).
OPENAPI_PATHS: dict[str, Any] = {
    _BASE: {"get": _doc("messages, newest first (dead=1: dead letters), numbers masked")},
    _BASE + "/{message_id}/replay": {"post": _doc(
        "a dead or failed message back to the queue, same idempotency key",
        parameters=[_id("message_id")])},
    _BASE + "/replay-dead": {"post": _doc("every dead letter back to the queue")},
    "/api/citizens/{citizen_id}/preferences": {
        "get": _doc("a citizen's notification choices", parameters=[_id("citizen_id")]),
        "put": _doc("record the citizen's choices (language, channel, e-mail, consent)",
                    parameters=[_id("citizen_id")],
                    requestBody={"required": True, "content": _JSON}),
    },
}

ROUTES = [
    Route("GET", _BASE, list_outbox, ADMINS),
    Route("POST", _BASE + "/{message_id}/replay", replay_one, ADMINS),
    Route("POST", _BASE + "/replay-dead", replay_dead, ADMINS),
    Route("GET", "/api/citizens/{citizen_id}/preferences", get_preferences, STAFF),
    Route("PUT", "/api/citizens/{citizen_id}/preferences", put_preferences, STAFF),
]
