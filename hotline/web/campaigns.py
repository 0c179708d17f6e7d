"""District campaigns over HTTP (JSON API, :mod:`crm_sync.campaigns`).

Supervisors and admins write, preview, approve (never their own), follow and cancel
campaigns; operators also register a caller's subscription (a confirmation SMS
follows). Changes carry the CSRF token of ``GET /api/campaigns`` (``csrf``) in the
``X-CSRF-Token`` header. ``/subscriptions/confirm?s=&t=`` is the signed link of the
confirmation SMS: GET shows a button (a link previewer confirms nothing), the
form's POST confirms, with the page's CSRF token like every form of ours.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from crm_sync.campaigns import CONFIRM_PATH, Campaigns, CampaignsConfig, ConfirmLinks
from hotline.core.errors import InvalidInput, UnavailableError
from hotline.core.people import ADMIN, OPERATOR, SUPERVISOR
from hotline.web.common import POOL, Route, json_body, json_response, principal
from hotline.web.delivery_reports import NOTIFICATIONS
from hotline.web.guard import CSRF_FIELD, csrf_token

#: Set by the composition root (``hotline.app``) from ``config/campaigns.toml``.
CAMPAIGNS_CONFIG = web.AppKey("campaigns_config", CampaignsConfig)
EDITORS = (SUPERVISOR, ADMIN)
_BASE = "/api/campaigns"
_SUBSCRIPTIONS = "/api/subscriptions"


def _service(request: web.Request) -> Campaigns:
    config = request.app.get(CAMPAIGNS_CONFIG)
    if config is None:
        raise UnavailableError("campaigns are not configured in this process")
    return Campaigns(request.app[POOL], config)


def _id(request: web.Request) -> int:
    raw = request.match_info["campaign_id"]
    if not raw.isdigit() or len(raw) > 18:
        raise InvalidInput("campaign_id: a number", details={"field": "campaign_id"})
    return int(raw)


async def list_campaigns(request: web.Request) -> web.Response:
    service = _service(request)
    topics = {t.code: {"uk": t.uk, "en": t.en, "urgent": t.urgent}
              for t in service.config.topics.values()}
    return json_response({"campaigns": await service.list_campaigns(), "topics": topics,
                          "csrf": csrf_token(request)})


async def create(request: web.Request) -> web.Response:
    service = _service(request)
    campaign_id = await service.create(principal(request).login, await json_body(request))
    return json_response(await service.get(campaign_id), status=201)


async def show(request: web.Request) -> web.Response:
    return json_response(await _service(request).get(_id(request)))


async def approve(request: web.Request) -> web.Response:
    service = _service(request)
    campaign_id = _id(request)
    await service.approve(campaign_id, principal(request).login, datetime.now(UTC))
    return json_response(await service.get(campaign_id))


async def cancel(request: web.Request) -> web.Response:
    service = _service(request)
    campaign_id = _id(request)
    await service.cancel(campaign_id, principal(request).login, datetime.now(UTC))
    return json_response(await service.get(campaign_id))


async def subscribe(request: web.Request) -> web.Response:
    body = await json_body(request)
    fields = {name: body.get(name) for name in ("phone", "district", "topic")}
    for name, value in fields.items():
        if not isinstance(value, str) or not value or len(value) > 100:
            raise InvalidInput(f"{name}: required", details={"field": name})
    language = body.get("language", "uk")
    result = await _service(request).subscribe(
        str(fields["phone"]), str(fields["district"]), str(fields["topic"]),
        language if isinstance(language, str) else "", datetime.now(UTC))
    return json_response(result, status=201)


def _page(text: str, form: str = "") -> web.Response:
    body = (f"<!doctype html><html lang=\"uk\"><head><meta charset=\"utf-8\">"
            f"<title>1551</title></head><body><p>{html.escape(text)}</p>{form}</body></html>")
    return web.Response(text=body, content_type="text/html")


async def confirm_link(request: web.Request) -> web.Response:
    notifications = request.app.get(NOTIFICATIONS)
    if notifications is None:
        raise UnavailableError("notifications are not configured in this process")
    links = ConfirmLinks(notifications.secret, notifications.links.public_url)
    raw, token = request.query.get("s", ""), request.query.get("t", "")
    if not raw.isdigit() or len(raw) > 18 or not links.valid(int(raw), token):
        raise InvalidInput("this link is not valid")
    if request.method == "GET":
        action = html.escape(f"{CONFIRM_PATH}?s={raw}&t={token}")
        csrf = html.escape(csrf_token(request))
        return _page("Підтвердити підписку на повідомлення 1551? / Confirm your 1551 "
                     "subscription?",
                     f'<form method="post" action="{action}"><input type="hidden" '
                     f'name="{CSRF_FIELD}" value="{csrf}"><button>Так / Yes</button></form>')
    if not await _service(request).confirm(int(raw), datetime.now(UTC)):
        raise InvalidInput("this link is not valid")
    return _page("Підписку підтверджено. / Your subscription is confirmed.")


_JSON = {"application/json": {"schema": {"type": "object"}}}
_SESSION: list[dict[str, list[str]]] = [{"session": []}]
_ERRORS = {
    "400": {"description": "invalid input (the message names the field)"},
    "401": {"description": "not signed in"},
    "403": {"description": "not allowed (role, CSRF, Origin, or approving one's own campaign)"},
    "404": {"description": "no such campaign"},
    "409": {"description": "the campaign is not in a state that allows this"},
}
_ID = [{"name": "campaign_id", "in": "path", "required": True,
        "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"}}]


def _doc(summary: str, ok: str, **more: Any) -> dict[str, Any]:
    return {"summary": summary, "security": _SESSION, **more,
            "responses": {ok: {"description": summary, "content": _JSON}, **_ERRORS}}


_LINK = [{"name": "s", "in": "query", "required": True, "schema": {"type": "string"}},
         {"name": "t", "in": "query", "required": True, "schema": {"type": "string"}}]
_PAGE = {"200": {"description": "page", "content": {"text/html": {"schema": {
    "type": "string"}}}}, "400": {"description": "invalid link", "content": _JSON}}

#: This module's part of the OpenAPI document (:mod:`hotline.web.openapi`).
OPENAPI_PATHS: dict[str, Any] = {
    _BASE: {
        "get": _doc("campaigns, topics and the CSRF token for changes", "200"),
        "post": _doc("a draft campaign {topic, districts, text_uk, text_en, send_at}; "
                     "answers with its audience (the preview)", "201",
                     requestBody={"required": True, "content": _JSON}),
    },
    _BASE + "/{campaign_id}": {"get": _doc(
        "a campaign, its audience now and its progress (queued/sent/failed/cancelled)",
        "200", parameters=_ID)},
    _BASE + "/{campaign_id}/approve": {"post": _doc(
        "approve (by someone other than the author): the audience is fixed and queued",
        "200", parameters=_ID)},
    _BASE + "/{campaign_id}/cancel": {"post": _doc(
        "cancel: queued messages are cancelled, sent ones stay sent", "200",
        parameters=_ID)},
    _SUBSCRIPTIONS: {"post": _doc(
        "subscribe a citizen {phone, district, topic, language}; a confirmation SMS follows",
        "201", requestBody={"required": True, "content": _JSON})},
    CONFIRM_PATH: {
        "get": {"summary": "the confirmation link: a page with a button",
                "parameters": _LINK, "responses": _PAGE},
        "post": {"summary": "the confirmation link: confirm (the page's form, CSRF token)",
                 "parameters": _LINK, "responses": _PAGE},
    },
}

ROUTES = [
    Route("GET", _BASE, list_campaigns, EDITORS),
    Route("POST", _BASE, create, EDITORS),
    Route("GET", _BASE + "/{campaign_id}", show, EDITORS),
    Route("POST", _BASE + "/{campaign_id}/approve", approve, EDITORS),
    Route("POST", _BASE + "/{campaign_id}/cancel", cancel, EDITORS),
    Route("POST", _SUBSCRIPTIONS, subscribe, (OPERATOR, *EDITORS)),
    Route("GET", CONFIRM_PATH, confirm_link, None),
    Route("POST", CONFIRM_PATH, confirm_link, None),
]
