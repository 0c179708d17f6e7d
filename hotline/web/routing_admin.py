"""Routing rules, edited by admins and supervisors (JSON API).

The rules come from ``config/routing.toml`` (loaded by ``hotline migrate``);
what a person changes here becomes theirs (``source = 'admin'``) and a later
load of the file never overwrites it. Every change is logged with who made it.
Browsers send the CSRF token of ``GET /api/admin/routing/rules`` (``csrf``) in
the ``X-CSRF-Token`` header with each change.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aiohttp import web

from crm_sync.appeals.routing_admin import RoutingAdmin
from hotline.core.appeals import Actor, ActorKind
from hotline.core.errors import InvalidInput
from hotline.core.people import ADMIN, SUPERVISOR
from hotline.web.common import POOL, Route, json_body, json_response, principal
from hotline.web.guard import csrf_token

EDITORS = (ADMIN, SUPERVISOR)
_BASE = "/api/admin/routing"


def _admin(request: web.Request) -> RoutingAdmin:
    return RoutingAdmin(request.app[POOL])


def _actor(request: web.Request) -> Actor:
    who = principal(request)
    return Actor(ActorKind(who.role), who.login)


def _text(body: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        if required:
            raise InvalidInput(f"{name}: required", details={"field": name})
        return None
    if not isinstance(value, str) or len(value) > 200:
        raise InvalidInput(f"{name}: text of up to 200 characters", details={"field": name})
    return value


def _area(body: dict[str, Any]) -> tuple[float, float, float] | None:
    area = body.get("area")
    if area is None:
        return None
    try:
        lat, lon, radius = (float(area[k]) for k in ("lat", "lon", "radius_m"))
    except (TypeError, KeyError, ValueError):
        raise InvalidInput("area: {lat, lon, radius_m} numbers",
                           details={"field": "area"}) from None
    return lat, lon, radius


async def list_rules(request: web.Request) -> web.Response:
    rules = await _admin(request).list_rules(
        category=request.query.get("category") or None,
        district=request.query.get("district") or None,
        include_inactive=request.query.get("inactive") == "1",
    )
    return json_response({"rules": [asdict(rule) for rule in rules],
                          "csrf": csrf_token(request)})


async def save_rule(request: web.Request) -> web.Response:
    body = await json_body(request)
    priority = body.get("priority", 100)
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise InvalidInput("priority: an integer", details={"field": "priority"})
    streets = body.get("streets", [])
    if not isinstance(streets, list) or not all(isinstance(s, str) for s in streets):
        raise InvalidInput("streets: a list of street names", details={"field": "streets"})
    executor = _text(body, "executor", required=True)
    assert executor is not None
    rule_id = await _admin(request).save_rule(
        _actor(request), executor=executor, category=_text(body, "category"),
        district=_text(body, "district"), priority=priority, name=_text(body, "name") or "",
        streets=streets, area=_area(body),
    )
    return json_response({"id": rule_id}, status=201)


async def deactivate_rule(request: web.Request) -> web.Response:
    raw = request.match_info["rule_id"]
    if not raw.isdigit() or len(raw) > 18:
        raise InvalidInput("rule_id: a number", details={"field": "rule_id"})
    await _admin(request).deactivate_rule(_actor(request), int(raw))
    return json_response({"id": int(raw), "active": False})


async def set_fallback(request: web.Request) -> web.Response:
    executor = _text(await json_body(request), "executor", required=True)
    assert executor is not None
    await _admin(request).set_fallback(_actor(request), executor)
    return json_response({"fallback": executor})


async def explain(request: web.Request) -> web.Response:
    category = request.query.get("category", "")
    if not category:
        raise InvalidInput("category: required", details={"field": "category"})
    decision = await _admin(request).explain(
        category=category, district=request.query.get("district") or None,
        address=request.query.get("address", "")[:200],
    )
    return json_response({"decision": asdict(decision)})


_JSON = {"application/json": {"schema": {"type": "object"}}}
_SESSION: list[dict[str, list[str]]] = [{"session": []}]
_ERRORS = {
    "400": {"description": "invalid input (the message names the field)"},
    "401": {"description": "not signed in"},
    "403": {"description": "not an admin or supervisor; CSRF or Origin refused"},
    "404": {"description": "no such rule (or it is the fallback)"},
}


def _doc(summary: str, ok: str, **more: Any) -> dict[str, Any]:
    return {"summary": summary, "security": _SESSION, **more,
            "responses": {ok: {"description": summary, "content": _JSON}, **_ERRORS}}


#: This module's part of the OpenAPI document (:mod:`hotline.web.openapi`).
OPENAPI_PATHS: dict[str, Any] = {
    _BASE + "/rules": {
        "get": _doc("routing rules (and the CSRF token for changes)", "200"),
        "post": _doc("create or change the rule for (category, district, executor)", "201",
                     requestBody={"required": True, "content": _JSON}),
    },
    _BASE + "/rules/{rule_id}/deactivate": {"post": _doc(
        "switch a rule off (rules are never deleted)", "200",
        parameters=[{"name": "rule_id", "in": "path", "required": True,
                     "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"}}])},
    _BASE + "/fallback": {"post": _doc(
        "the executor that takes what no rule matches", "200",
        requestBody={"required": True, "content": _JSON})},
    _BASE + "/explain": {"get": _doc(
        "where an appeal like this would go today, and why (a dry run)", "200")},
}

ROUTES = [
    Route("GET", _BASE + "/rules", list_rules, EDITORS),
    Route("POST", _BASE + "/rules", save_rule, EDITORS),
    Route("POST", _BASE + "/rules/{rule_id}/deactivate", deactivate_rule, EDITORS),
    Route("POST", _BASE + "/fallback", set_fallback, EDITORS),
    Route("GET", _BASE + "/explain", explain, EDITORS),
]
