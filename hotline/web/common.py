"""What the web modules share: application keys, route declarations, templates, JSON."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from functools import cache
from html import escape
from importlib import resources
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from aiohttp import web

from crm_sync.appeals import AppealsService
from crm_sync.people import PasswordChecker
from hotline.core.errors import HotlineError, InvalidInput
from hotline.core.people import Principal
from hotline.web.options import WebOptions
from hotline.web.sessions import Session, SessionStore

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

POOL = web.AppKey("pool", asyncpg.Pool)
REDIS = web.AppKey("redis", aioredis.Redis)
SESSIONS = web.AppKey("sessions", SessionStore)
OPTIONS = web.AppKey("options", WebOptions)
PASSWORDS = web.AppKey("passwords", PasswordChecker)
APPEALS = web.AppKey("appeals", AppealsService)
#: Signs CSRF tokens (derived from the session key, never the key itself).
CSRF_KEY = web.AppKey("csrf_key", bytes)
ROUTE_ROLES: web.AppKey[dict[str, tuple[str, ...]]] = web.AppKey("route_roles", dict)
#: Where the middleware leaves who is signed in (``web.RequestKey`` since aiohttp 3.13).
PRINCIPAL: Any = (
    web.RequestKey("principal", Principal) if hasattr(web, "RequestKey") else "principal"
)
SESSION: Any = web.RequestKey("session", Session) if hasattr(web, "RequestKey") else "session"


@dataclass(frozen=True)
class Route:
    """One route of a web module; ``roles`` None means public on purpose."""

    method: str
    path: str
    handler: Handler
    roles: Sequence[str] | None


def principal(request: web.Request) -> Principal:
    who: Principal = request[PRINCIPAL]
    return who


def session(request: web.Request) -> Session:
    current: Session = request[SESSION]
    return current


def is_api(request: web.Request) -> bool:
    return request.path.startswith(("/api/", "/ws/"))


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object, or one clear 400 (bad JSON, bad UTF-8, not an object)."""
    try:
        body = json.loads(await request.text())
    except ValueError:  # UnicodeDecodeError is one too
        raise InvalidInput("the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object")
    return body


@cache
def template(name: str) -> str:
    """A page template shipped as package data (``{{name}}`` placeholders)."""
    return resources.files("hotline.web").joinpath("templates", name).read_text("utf-8")


def render(template_name: str, **values: str) -> str:
    """The template with each ``{{key}}`` replaced by its value, HTML-escaped."""
    text = template(template_name)
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", escape(value))
    return text


def html_response(
    text: str, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", headers=headers)


def dumps(obj: Any) -> str:
    return json.dumps(obj, default=_json_default, ensure_ascii=False)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return float(value)
    return str(value)


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=dumps)


def error_response(error: HotlineError) -> web.Response:
    """The JSON answer for an error of the tree: ``{"error": id, "message": …}``."""
    return _with_retry_after(json_response(error.to_json(), status=error.http_status), error)


def error_page(error: HotlineError) -> web.Response:
    """The same error as a page, for a person in a browser."""
    page = render("error.html", title=_TITLES.get(error.http_status, "Error"),
                  text=error.message)
    return _with_retry_after(html_response(page, status=error.http_status), error)


_TITLES = {400: "Bad request", 403: "Forbidden", 404: "Not found", 429: "Too many attempts",
           503: "Service unavailable"}


def _with_retry_after(response: web.Response, error: HotlineError) -> web.Response:
    retry_after = getattr(error, "retry_after", None)
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response
