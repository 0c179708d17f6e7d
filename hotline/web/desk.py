"""The operator desk (``/desk``): presence in the queues, the screen-pop, call control.

Nothing here talks to Asterisk: every action becomes a
:class:`~hotline.core.desk.DeskCommand` sent through the command port to the
process that runs the ``ami`` role, and the page shows that process's answer
(Asterisk's words when it refused). The phone acted on is resolved here from the
case store after the rights are checked: an operator acts only on their own
phone, supervisors and admins on anyone's. The screen-pop reaches the page on a
*personal* websocket (``/ws/desk``), which gets only its person's own channel.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from crm_sync.desk.operators import DeskOperator, desk_operator
from hotline.core.desk import (
    CALL_ACTIONS,
    CALLBACK,
    PAUSE,
    PRESENCE_ACTIONS,
    STATUS,
    TRANSFER_OPERATOR,
    TRANSFER_QUEUE,
    AsteriskRefused,
    DeskCommand,
    DeskCommandPort,
    DeskConfig,
    DeskUnavailable,
    is_dialable,
    pop_key,
)
from hotline.core.errors import Forbidden, InvalidInput, NotFound, UnavailableError
from hotline.core.logs import get_logger
from hotline.core.people import ADMIN, OPERATOR, SUPERVISOR
from hotline.web.common import (
    POOL,
    REDIS,
    Route,
    html_response,
    json_body,
    json_response,
    principal,
    render,
    session,
)
from hotline.web.guard import csrf_token
from hotline.web.live import HUB

#: Who may open the desk; only supervisors and admins act on someone else's phone.
DESK_ROLES = (OPERATOR, SUPERVISOR, ADMIN)
MANAGERS = (SUPERVISOR, ADMIN)

log = get_logger("hotline.web.desk")


@dataclass(frozen=True)
class DeskSettings:
    config: DeskConfig
    #: The catalogue's queues, in its order: name → label (transfer targets).
    queues: dict[str, str] = field(default_factory=dict)


DESK_SETTINGS = web.AppKey("desk_settings", DeskSettings)
DESK_COMMANDS: web.AppKey[DeskCommandPort] = web.AppKey("desk_commands")


def configure(app: web.Application, settings: DeskSettings, commands: DeskCommandPort) -> None:
    app[DESK_SETTINGS] = settings
    app[DESK_COMMANDS] = commands


def _settings(request: web.Request) -> DeskSettings:
    settings = request.app.get(DESK_SETTINGS)
    if settings is None:
        raise UnavailableError("the desk is not configured in this process")
    return settings


async def _send(request: web.Request, command: DeskCommand) -> dict[str, Any]:
    commands = request.app.get(DESK_COMMANDS)
    if commands is None:
        raise DeskUnavailable("the desk's command link is not configured in this process")
    reply = await commands.send(command)
    if not reply.ok:
        log.info("desk_refused", action=command.action, login=command.login,
                 by=principal(request).login, error=reply.error)
        if reply.error == InvalidInput.error_id:
            raise InvalidInput(reply.message)
        cause = {"cause": reply.error} if reply.error else None
        raise AsteriskRefused(reply.message, details=cause)
    return {"ok": True, "message": reply.message, "data": reply.data}


async def _body(request: web.Request) -> dict[str, str]:
    data = await json_body(request)
    if not all(isinstance(v, str) for v in data.values()):
        raise InvalidInput("the body must be a JSON object of strings")
    return data


async def _operator(request: web.Request, login: str) -> DeskOperator:
    """The phone ``login`` sits at, if the signed-in person may act on it."""
    me = principal(request)
    login = login or me.login
    if login != me.login and me.role not in MANAGERS:
        log.warning("desk_forbidden", login=me.login, target=login, path=request.path)
        raise Forbidden("an operator acts only on their own phone")
    operator = await desk_operator(request.app[POOL], login)
    if operator is None:
        raise NotFound(f"{login!r} has no desk (an active operator account)")
    return operator


def _command(operator: DeskOperator, action: str, **more: Any) -> DeskCommand:
    return DeskCommand(action=action, login=operator.login, interface=operator.interface,
                       member_name=operator.display_name, **more)


# --- the page and its data ------------------------------------------------------------


async def desk_page(request: web.Request) -> web.Response:
    who = principal(request)
    page = render("desk.html", name=who.display_name, login=who.login, role=who.role,
                  csrf=csrf_token(request))
    # The guard lets this page frame our own origin (the in-call panel), nothing else.
    return html_response(page, headers={"Cache-Control": "no-store"})


async def api_state(request: web.Request) -> web.Response:
    """The operator's phone, skills and states in the queues as Asterisk reports them
    now (QueueStatus), the pause reasons and transfer queues, and their current pop."""
    settings = _settings(request)
    operator = await _operator(request, request.query.get("operator", ""))
    members: list[dict[str, Any]] | None = None
    telephony = ""
    try:
        members = (await _send(request, _command(operator, STATUS)))["data"].get("members", [])
    except (DeskUnavailable, AsteriskRefused) as exc:
        telephony = exc.message
    pop = None
    if operator.login == principal(request).login:  # a pop is only ever its own operator's
        raw = await request.app[REDIS].get(pop_key(operator.login))
        pop = json.loads(raw) if raw else None
    return json_response({
        "operator": {"login": operator.login, "name": operator.display_name,
                     "interface": operator.interface,
                     "skills": [{"queue": s.queue, "penalty": s.penalty}
                                for s in operator.skills]},
        "members": members, "telephony": telephony,
        "pause_reasons": [{"code": r.code, "label": r.label}
                          for r in settings.config.pause_reasons],
        "queues": [{"queue": q, "label": label} for q, label in settings.queues.items()],
        "pop": pop,
    })


async def api_presence(request: web.Request) -> web.Response:
    """Log in (QueueAdd to the queues of one's skills), pause with a reason, ready,
    log out (QueueRemove)."""
    settings = _settings(request)
    body = await _body(request)
    action = body.get("action", "")
    if action not in PRESENCE_ACTIONS:
        raise InvalidInput(f"action: one of {', '.join(PRESENCE_ACTIONS)}",
                           details={"field": "action"})
    reason = body.get("reason", "")
    if action == PAUSE and reason not in settings.config.reason_codes:
        raise InvalidInput(f"reason: one of {', '.join(settings.config.reason_codes)}",
                           details={"field": "reason"})
    operator = await _operator(request, body.get("operator", ""))
    skills = tuple(s for s in operator.skills if not settings.queues or s.queue in settings.queues)
    result = await _send(request, _command(operator, action, skills=skills, reason=reason))
    log.info("desk_presence", action=action, login=operator.login,
             by=principal(request).login, reason=reason or None)
    return json_response(result)


async def api_call(request: web.Request) -> web.Response:
    """Hang up, transfer to a queue or an operator, call a citizen back."""
    settings = _settings(request)
    body = await _body(request)
    action = body.get("action", "")
    if action not in CALL_ACTIONS:
        raise InvalidInput(f"action: one of {', '.join(CALL_ACTIONS)}",
                           details={"field": "action"})
    operator = await _operator(request, body.get("operator", ""))
    more: dict[str, Any] = {}
    if action == TRANSFER_QUEUE:
        queue = body.get("queue", "")
        if queue not in settings.queues:
            raise InvalidInput(f"queue: one of {', '.join(settings.queues)}",
                               details={"field": "queue"})
        more["queue"] = queue
    elif action == TRANSFER_OPERATOR:
        target = await desk_operator(request.app[POOL], body.get("target", ""))
        if target is None or target.login == operator.login:
            raise InvalidInput("target: another operator's login", details={"field": "target"})
        more["target_interface"] = target.interface
    elif action == CALLBACK:
        number = body.get("number", "").replace(" ", "")
        if not is_dialable(number):
            raise InvalidInput("number: digits, with an optional leading +",
                               details={"field": "number"})
        more["number"] = number
    result = await _send(request, _command(operator, action, **more))
    log.info("desk_call_control", action=action, login=operator.login,
             by=principal(request).login)
    return json_response(result)


async def ws_desk(request: web.Request) -> web.WebSocketResponse:
    """The signed-in person's own channel (their pop, member states, results); the
    current pop first, so that a page that reconnects shows it at once."""
    current = session(request)
    login = current.who.login
    redis = request.app[REDIS]

    async def greeting() -> list[str]:
        raw = await redis.get(pop_key(login))
        if not raw:
            return []
        return [raw.decode() if isinstance(raw, bytes) else str(raw)]

    return await request.app[HUB].serve(request, login, current.sid, personal=True,
                                        greeting=greeting)


ROUTES = [
    Route("GET", "/desk", desk_page, DESK_ROLES),
    Route("GET", "/api/desk/state", api_state, DESK_ROLES),
    Route("POST", "/api/desk/presence", api_presence, DESK_ROLES),
    Route("POST", "/api/desk/call", api_call, DESK_ROLES),
    Route("GET", "/ws/desk", ws_desk, DESK_ROLES),
]

_OBJ = {"type": "object"}
_RESULT = {"description": "what the ami role did",
           "content": {"application/json": {"schema": _OBJ}}}
_ERRORS = {
    "400": {"description": "invalid input"},
    "401": {"description": "not signed in"},
    "403": {"description": "not your phone (operators act only on their own), or CSRF"},
    "404": {"description": "no such operator"},
    "409": {"description": "Asterisk refused; the message is its reason"},
    "503": {"description": "the ami role is not running or did not answer in time"},
}
_SESSION: list[dict[str, list[str]]] = [{"session": []}]


def _post(summary: str, fields: dict[str, Any]) -> dict[str, Any]:
    return {"post": {
        "summary": summary, "security": _SESSION,
        "parameters": [{"name": "X-CSRF-Token", "in": "header", "required": True,
                        "schema": {"type": "string"}}],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["action"], "properties": fields}}}},
        "responses": {"200": _RESULT, **_ERRORS}}}


OPENAPI_PATHS: dict[str, Any] = {
    "/desk": {"get": {"summary": "the operator desk (page)", "security": _SESSION,
                      "responses": {"200": {"description": "the page"}}}},
    "/api/desk/state": {"get": {
        "summary": "the operator's phone, skills, queue states (Asterisk's QueueStatus), "
                   "pause reasons, transfer queues and current screen-pop",
        "security": _SESSION,
        "parameters": [{"name": "operator", "in": "query", "required": False,
                        "schema": {"type": "string"},
                        "description": "another operator's login (supervisors, admins)"}],
        "responses": {"200": _RESULT, **_ERRORS}}},
    "/api/desk/presence": _post("log in to the queues of one's skills, pause, ready, log out", {
        "action": {"type": "string", "enum": list(PRESENCE_ACTIONS)},
        "reason": {"type": "string", "description": "a pause reason code (presence.toml)"},
        "operator": {"type": "string", "description": "supervisors, admins: whose phone"}}),
    "/api/desk/call": _post("hang up, transfer, call a citizen back", {
        "action": {"type": "string", "enum": list(CALL_ACTIONS)},
        "queue": {"type": "string"}, "target": {"type": "string"},
        "number": {"type": "string"}, "operator": {"type": "string"}}),
    "/ws/desk": {"get": {"summary": "websocket: the signed-in person's screen-pops, queue "
                                    "states and action results",
                         "security": _SESSION,
                         "responses": {"101": {"description": "switching protocols"}}}},
}
