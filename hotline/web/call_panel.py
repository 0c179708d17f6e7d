"""The operator's in-call panel, ``/desk/call/{uniqueid}`` (issue 8), and the
knowledge base's admin page ``/desk/knowledge``.

The desk page (``/desk``) embeds the panel in an ``<iframe>`` while a call is up;
the panel works on its own from the call's uniqueid. It is the one page that our
own pages may frame (``guard.FRAMEABLE_ROUTES``: ``frame-ancestors 'self'``,
``X-Frame-Options: SAMEORIGIN``); every other page stays unframeable.

What the page does, each through a JSON API below ``/api/desk/`` (changes carry
the page's CSRF token in ``X-CSRF-Token``): file an appeal from the call through
:class:`~crm_sync.appeals.AppealsService` (``crm_sync.desk.intake``), search the
taxonomy (typo-tolerant), the streets (district from the address), the knowledge
base and the directory of city services, record the article used and the call's
disposition. Operators, supervisors and admins use it; admins edit articles.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from crm_sync.desk import knowledge
from crm_sync.desk.calls import (
    PanelCall,
    call_context,
    find_call,
    parse_disposition,
    set_article,
    set_disposition,
)
from crm_sync.desk.config import DeskConfig
from crm_sync.desk.intake import file_appeal
from crm_sync.desk.search import search_taxonomy
from hotline.core.appeals import Actor, ActorKind
from hotline.core.errors import InvalidInput, UnavailableError
from hotline.core.people import ADMIN, OPERATOR, SUPERVISOR
from hotline.web.common import (
    APPEALS,
    POOL,
    Route,
    html_response,
    json_body,
    json_response,
    principal,
    render,
)
from hotline.web.guard import csrf_token

#: Set by the composition root (``hotline.app``) from ``config/desk.toml``.
DESK_CONFIG = web.AppKey("desk_config", DeskConfig)
DESK = (OPERATOR, SUPERVISOR, ADMIN)
EDITORS = (ADMIN,)
PANEL_PATH = "/desk/call/{uniqueid}"
_API = "/api/desk"
_CALL = _API + "/calls/{uniqueid}"
_ARTICLES = "/api/admin/kb/articles"
_KINDS = {OPERATOR: ActorKind.OPERATOR, SUPERVISOR: ActorKind.SUPERVISOR, ADMIN: ActorKind.ADMIN}
_MAX_ID_DIGITS = 18


def _config(request: web.Request) -> DeskConfig:
    config = request.app.get(DESK_CONFIG)
    if config is None:
        raise UnavailableError("the in-call panel is not configured in this process")
    return config


def _actor(request: web.Request) -> Actor:
    who = principal(request)
    return Actor(_KINDS[who.role], who.login)


async def _call(request: web.Request) -> PanelCall:
    return await find_call(request.app[POOL], request.match_info["uniqueid"])


def _id(value: Any, name: str) -> int:
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(text, str) or not text.isdigit() or len(text) > _MAX_ID_DIGITS:
        raise InvalidInput(f"{name}: a number", details={"field": name})
    return int(text)


def _call_json(call: PanelCall) -> dict[str, Any]:
    return {
        "uniqueid": call.uniqueid, "caller_number": call.caller_number,
        "caller_name": call.caller_name, "language": call.language,
        "started_at": call.started_at, "answered_at": call.answered_at,
        "ended_at": call.ended_at, "ivr_choice": call.ivr_choice, "queue": call.queue,
        "outcome": call.outcome, "operator_name": call.operator_name,
        "disposition": call.disposition, "kb_article_id": call.kb_article_id,
    }


# --- pages -----------------------------------------------------------------------


async def panel_page(request: web.Request) -> web.Response:
    call = await _call(request)  # an unknown call is the 404 page (frameable here too)
    html = render("call_panel.html", uniqueid=call.uniqueid, csrf=csrf_token(request),
                  name=principal(request).display_name)
    return html_response(html, headers={"Cache-Control": "no-store"})


async def knowledge_page(request: web.Request) -> web.Response:
    html = render("knowledge_admin.html", csrf=csrf_token(request),
                  name=principal(request).display_name)
    return html_response(html, headers={"Cache-Control": "no-store"})


# --- the call --------------------------------------------------------------------


async def call_info(request: web.Request) -> web.Response:
    config = _config(request)
    pool = request.app[POOL]
    call = await _call(request)
    districts = await pool.fetch("SELECT code, name_uk FROM districts ORDER BY name_uk")
    spheres = await pool.fetch(
        "SELECT code, name_uk FROM spheres ORDER BY share_percent DESC NULLS LAST, name_uk")
    context = await call_context(pool, call)
    return json_response({
        "call": _call_json(call), **context,
        "queue_spheres": context.pop("spheres"),
        "spheres": [dict(r) for r in spheres],
        "districts": [dict(r) for r in districts],
        "dispositions": [{"code": k, "label": v} for k, v in config.dispositions.items()],
        "csrf": csrf_token(request),
    })


async def create_appeal(request: web.Request) -> web.Response:
    config = _config(request)
    service = request.app.get(APPEALS)
    if service is None:
        raise UnavailableError("the appeals service is not running in this process")
    call = await _call(request)
    registered, form = await file_appeal(
        request.app[POOL], service, config, call, await json_body(request), _actor(request),
        datetime.now(UTC))
    appeal = registered.appeal
    return json_response({
        "created": registered.created,
        "appeal": {
            "id": appeal.id, "number": appeal.number, "status": appeal.status.value,
            "category": appeal.category_code, "category_name": appeal.category_name_uk,
            "district": appeal.district_code, "address": appeal.address,
            "executor": appeal.executor_code,
            "executor_name": appeal.executor_name_uk or appeal.executor_name,
            "due_at": appeal.due_at,
        },
        "duplicate_of": registered.primary.number if registered.primary else None,
        "district_resolved": form.district_resolved,
    }, status=201 if registered.created else 200)


async def record_disposition(request: web.Request) -> web.Response:
    call = await _call(request)
    disposition = parse_disposition((await json_body(request)).get("disposition"))
    await set_disposition(request.app[POOL], call, disposition, principal(request).login)
    return json_response({"disposition": disposition.value,
                          "label": _config(request).dispositions.get(disposition.value, "")})


async def record_article(request: web.Request) -> web.Response:
    call = await _call(request)
    article_id = _id((await json_body(request)).get("article_id"), "article_id")
    await set_article(request.app[POOL], call, article_id, principal(request).login)
    return json_response({"kb_article_id": article_id})


# --- searches --------------------------------------------------------------------


def _limit(request: web.Request, default: int) -> int:
    raw = request.query.get("limit", "")
    if not raw:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= 100:
        raise InvalidInput("limit: 1 to 100", details={"field": "limit"})
    return int(raw)


async def taxonomy(request: web.Request) -> web.Response:
    issues = await search_taxonomy(
        request.app[POOL], request.query.get("q", ""), _config(request).keywords,
        sphere=request.query.get("sphere") or None, limit=_limit(request, 10))
    return json_response({"issues": issues})


async def streets(request: web.Request) -> web.Response:
    config = _config(request)
    text = request.query.get("q", "")
    if len(text) > 500:
        raise InvalidInput("q: at most 500 characters", details={"field": "q"})
    street = config.district_of(text)
    return json_response({
        "streets": [{"name": s.name, "district": s.district}
                    for s in config.find_streets(text, _limit(request, 10))],
        "district": street.district if street else None,
        "street": street.name if street else None,
    })


async def kb_search(request: web.Request) -> web.Response:
    articles = await knowledge.search_articles(
        request.app[POOL], request.query.get("q", ""),
        category=request.query.get("category") or None, limit=_limit(request, 20))
    return json_response({"articles": articles})


async def kb_article(request: web.Request) -> web.Response:
    article_id = _id(request.match_info["article_id"], "article_id")
    return json_response({"article": await knowledge.get_article(request.app[POOL], article_id)})


async def directory(request: web.Request) -> web.Response:
    text = request.query.get("q", "")
    if len(text) > 200:
        raise InvalidInput("q: at most 200 characters", details={"field": "q"})
    found = _config(request).search_directory(text, _limit(request, 20))
    return json_response({"services": [s.as_json() for s in found]})


# --- the knowledge base's admin API -------------------------------------------------


async def admin_list(request: web.Request) -> web.Response:
    pool = request.app[POOL]
    articles = await knowledge.search_articles(
        pool, request.query.get("q", ""), category=request.query.get("category") or None,
        limit=_limit(request, 100), include_inactive=True)
    categories = await pool.fetch("SELECT code, name_uk FROM categories ORDER BY name_uk")
    return json_response({"articles": articles, "categories": [dict(r) for r in categories],
                          "csrf": csrf_token(request)})


async def admin_get(request: web.Request) -> web.Response:
    article_id = _id(request.match_info["article_id"], "article_id")
    article = await knowledge.get_article(request.app[POOL], article_id, include_inactive=True)
    return json_response({"article": article})


async def admin_create(request: web.Request) -> web.Response:
    fields = knowledge.check_fields(await json_body(request))
    article = await knowledge.create_article(request.app[POOL], fields, principal(request).login)
    return json_response({"article": article}, status=201)


async def admin_update(request: web.Request) -> web.Response:
    article_id = _id(request.match_info["article_id"], "article_id")
    body = await json_body(request)
    version = body.pop("version", None)
    fields = knowledge.check_fields(body)
    article = await knowledge.update_article(
        request.app[POOL], article_id, fields, principal(request).login,
        expected_version=_id(version, "version") if version is not None else None)
    return json_response({"article": article})


# --- routes and their description -------------------------------------------------

_SESSION: list[dict[str, list[str]]] = [{"session": []}]
_UID = {"name": "uniqueid", "in": "path", "required": True,
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,150}$"},
        "description": "the caller channel's Asterisk uniqueid"}
_ARTICLE_ID = {"name": "article_id", "in": "path", "required": True,
               "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"}}


def _q(*names: str) -> list[dict[str, Any]]:
    return [{"name": n, "in": "query", "required": False, "schema": {"type": "string"}}
            for n in names]


def _json(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"type": "object"}}}}


def _doc(summary: str, ok: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {"summary": summary, "security": _SESSION, **more, "responses": {
        **ok, "400": _json("invalid input: details.fields names each bad field"),
        "401": _json("not signed in (API) / redirect to /login (pages)"),
        "403": _json("not allowed for this role; CSRF or Origin refused"),
        "404": _json("no such call or article")}}


def _body_doc(props: dict[str, str], required: list[str]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": required,
        "properties": {k: {"type": "string", "description": v} for k, v in props.items()}}}}}


_ARTICLE_BODY = _body_doc({"title": "up to 200 characters", "body": "the text",
                           "keywords": "words callers use", "category": "a category code",
                           "active": "boolean", "version": "(update) the version edited"},
                          ["title", "body"])

#: This module's part of the OpenAPI document (:mod:`hotline.web.openapi`).
OPENAPI_PATHS: dict[str, Any] = {
    PANEL_PATH: {"get": _doc("the in-call panel (frameable by our own pages only)",
                             {"200": {"description": "page"}}, parameters=[_UID])},
    "/desk/knowledge": {"get": _doc("the knowledge base's admin page (admins)",
                                    {"200": {"description": "page"}})},
    _CALL: {"get": _doc("the call, its citizen, spheres of its queue, its appeals, districts, "
                        "dispositions and the CSRF token", {"200": _json("the call")},
                        parameters=[_UID])},
    _CALL + "/appeal": {"post": _doc(
        "file an appeal from the call (appeals service: routed, linked to call and citizen)",
        {"201": _json("the appeal: number, executor"),
         "200": _json("the same form_id again: the same appeal")},
        parameters=[_UID], requestBody=_body_doc({
            "category": "category code", "address": "the problem's address",
            "district": "district code (default: resolved from the address)",
            "text": "the problem", "phone": "the citizen's number", "name": "the citizen's name",
            "email": "e-mail", "notify_channel": "sms, email or none",
            "consent": "boolean: the citizen agrees to be notified",
            "form_id": "the form's id: a retry gives the same appeal"},
            ["category", "address", "text", "phone"]))},
    _CALL + "/disposition": {"post": _doc(
        "record the call's disposition", {"200": _json("recorded")}, parameters=[_UID],
        requestBody=_body_doc({"disposition": "appeal_created, consultation, transferred, "
                                              "dropped or abusive"}, ["disposition"]))},
    _CALL + "/article": {"post": _doc(
        "record the knowledge-base article the answer came from", {"200": _json("recorded")},
        parameters=[_UID], requestBody=_body_doc({"article_id": "an active article's id"},
                                                 ["article_id"]))},
    _API + "/taxonomy": {"get": _doc("issues (sphere → issue) matching q, typo-tolerant",
                                     {"200": _json("issues")},
                                     parameters=_q("q", "sphere", "limit"))},
    _API + "/streets": {"get": _doc("streets matching q, and the district of q as an address",
                                    {"200": _json("streets")}, parameters=_q("q", "limit"))},
    _API + "/kb": {"get": _doc("knowledge-base articles matching q (Ukrainian full text)",
                               {"200": _json("articles")},
                               parameters=_q("q", "category", "limit"))},
    _API + "/kb/{article_id}": {"get": _doc("one active article", {"200": _json("article")},
                                            parameters=[_ARTICLE_ID])},
    _API + "/directory": {"get": _doc("the phone directory of city services",
                                      {"200": _json("services")}, parameters=_q("q", "limit"))},
    _ARTICLES: {
        "get": _doc("articles, inactive ones too, categories and the CSRF token (admins)",
                    {"200": _json("articles")}, parameters=_q("q", "category", "limit")),
        "post": _doc("a new article (admins)", {"201": _json("the article")},
                     requestBody=_ARTICLE_BODY)},
    _ARTICLES + "/{article_id}": {
        "get": _doc("one article (admins)", {"200": _json("the article")},
                    parameters=[_ARTICLE_ID]),
        "post": _doc("edit an article (admins; a stale version is a 409)",
                     {"200": _json("the article"), "409": _json("changed meanwhile")},
                     parameters=[_ARTICLE_ID], requestBody=_ARTICLE_BODY)},
}

ROUTES = [
    Route("GET", PANEL_PATH, panel_page, DESK),
    Route("GET", "/desk/knowledge", knowledge_page, EDITORS),
    Route("GET", _CALL, call_info, DESK),
    Route("POST", _CALL + "/appeal", create_appeal, DESK),
    Route("POST", _CALL + "/disposition", record_disposition, DESK),
    Route("POST", _CALL + "/article", record_article, DESK),
    Route("GET", _API + "/taxonomy", taxonomy, DESK),
    Route("GET", _API + "/streets", streets, DESK),
    Route("GET", _API + "/kb", kb_search, DESK),
    Route("GET", _API + "/kb/{article_id}", kb_article, DESK),
    Route("GET", _API + "/directory", directory, DESK),
    Route("GET", _ARTICLES, admin_list, EDITORS),
    Route("POST", _ARTICLES, admin_create, EDITORS),
    Route("GET", _ARTICLES + "/{article_id}", admin_get, EDITORS),
    Route("POST", _ARTICLES + "/{article_id}", admin_update, EDITORS),
]
