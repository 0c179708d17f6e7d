"""The SMS gateway's webhooks and the citizens' opt-out link.

- ``POST /webhooks/sms/delivery`` — a delivery report ``{"id", "status": delivered|failed,
  "detail"}``; ``POST /webhooks/sms/inbound`` — a citizen's reply ``{"from", "text"}``
  (an opt-out keyword opts them out). Both are signed by the gateway: header
  ``X-Hotline-Signature: sha256=<hex HMAC-SHA256 of the raw body>`` under the shared
  secret (``<state dir>/secrets/relay.toml``); a report seen before changes nothing.
- ``GET|POST /notifications/opt-out?c=<citizen>&t=<token>`` — the link in every
  message: GET shows a button (so a mail scanner that follows links unsubscribes
  nobody), POST opts out; the token is an HMAC of the citizen id.

Public on purpose (``roles`` None), each with its own authentication; no cookie is
read, so the CSRF check does not apply (``guard.API_KEY_ROUTES``).
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from crm_sync.notifications.optout import OPT_OUT_PATH, OptOutLinks, opt_out, opt_out_phone
from crm_sync.outbox.admin import apply_report
from hotline.core.errors import HotlineError, InvalidInput, UnavailableError
from hotline.core.logs import get_logger
from hotline.core.privacy import mask_phone
from hotline.web.common import POOL, Handler, Route, error_response, json_response

DELIVERY_PATH = "/webhooks/sms/delivery"
INBOUND_PATH = "/webhooks/sms/inbound"
SIGNATURE_HEADER = "X-Hotline-Signature"
MAX_BODY = 16 * 1024
log = get_logger("hotline.web.delivery_reports")


@dataclass(frozen=True)
class Notifications:
    secret: bytes
    links: OptOutLinks
    opt_out_keywords: frozenset[str]


NOTIFICATIONS = web.AppKey("notifications", Notifications)


class SignatureInvalid(HotlineError):
    error_id = "signature_invalid"
    http_status = 401


def sign(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def _config(request: web.Request) -> Notifications:
    config = request.app.get(NOTIFICATIONS)
    if config is None:
        raise UnavailableError("notifications are not configured in this process")
    return config


async def _signed_json(request: web.Request) -> dict[str, Any]:
    config = _config(request)
    body = await request.content.read(MAX_BODY + 1)
    if len(body) > MAX_BODY:
        raise InvalidInput("body: over 16 KiB")
    given = request.headers.get(SIGNATURE_HEADER, "")
    if not hmac.compare_digest(given, sign(config.secret, body)):
        log.warning("webhook_signature_refused", path=request.path)
        raise SignatureInvalid("the signature does not match")
    try:
        data = json.loads(body)
    except ValueError:
        raise InvalidInput("body: JSON expected") from None
    if not isinstance(data, dict):
        raise InvalidInput("body: a JSON object expected")
    return data


def _json_errors(handler: Handler) -> Handler:
    """The gateway is a program: its errors are JSON, not the pages people get."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except HotlineError as error:
            return error_response(error)

    return wrapped


async def delivery_report(request: web.Request) -> web.Response:
    data = await _signed_json(request)
    message_id, status = str(data.get("id") or ""), data.get("status")
    if not message_id or status not in ("delivered", "failed"):
        raise InvalidInput("id and status (delivered or failed) required")
    detail = data.get("detail")
    result = await apply_report(request.app[POOL], "sms", message_id[:200], str(status),
                                datetime.now(UTC), str(detail)[:500] if detail else None)
    log.info("delivery_report", provider_id=message_id[:200], status=status, result=result)
    return json_response({"result": result})


async def inbound(request: web.Request) -> web.Response:
    data = await _signed_json(request)
    phone, text = str(data.get("from") or ""), str(data.get("text") or "")
    if not phone:
        raise InvalidInput("from: required")
    config = _config(request)
    if text.strip().strip(".!").upper() not in config.opt_out_keywords:
        return json_response({"result": "ignored"})
    citizen = await opt_out_phone(request.app[POOL], phone[:32], "reply", datetime.now(UTC))
    log.info("opt_out_by_reply", phone=mask_phone(phone), known=citizen is not None)
    return json_response({"result": "opted_out" if citizen is not None else "unknown"})


def _page(text: str, form: str = "") -> web.Response:
    body = (f"<!doctype html><html lang=\"uk\"><head><meta charset=\"utf-8\">"
            f"<title>1551</title></head><body><p>{html.escape(text)}</p>{form}</body></html>")
    return web.Response(text=body, content_type="text/html")


async def opt_out_link(request: web.Request) -> web.Response:
    config = _config(request)
    raw, token = request.query.get("c", ""), request.query.get("t", "")
    if not raw.isdigit() or not config.links.valid(int(raw), token):
        raise InvalidInput("this link is not valid")
    if request.method == "GET":
        action = html.escape(f"{OPT_OUT_PATH}?c={raw}&t={token}")
        return _page("Відписатися від повідомлень 1551? / Unsubscribe from 1551 messages?",
                     f'<form method="post" action="{action}"><button>Так / Yes</button></form>')
    await opt_out(request.app[POOL], int(raw), "link", datetime.now(UTC))
    return _page("Ви відписалися від повідомлень 1551. / You are unsubscribed.")


ROUTES = [
    Route("POST", DELIVERY_PATH, _json_errors(delivery_report), None),
    Route("POST", INBOUND_PATH, _json_errors(inbound), None),
    Route("GET", OPT_OUT_PATH, opt_out_link, None),
    Route("POST", OPT_OUT_PATH, opt_out_link, None),
]
