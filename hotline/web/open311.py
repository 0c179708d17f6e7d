"""Open311 GeoReport v2: the intake of the web site, the mobile app, the Facebook
bot and the government contact centre (issue 7), under ``/open311/v2/``.

- ``GET services.{json,xml}``, ``GET services/{code}.{json,xml}``: the taxonomy's
  categories (sphere → issue), in Ukrainian, or in English with ``locale=en``;
- ``POST requests.{json,xml}``: a new appeal through :class:`AppealsService`;
- ``GET requests.{json,xml}``, ``GET requests/{id}.{json,xml}``,
  ``GET tokens/{token}.{json,xml}``: appeals as service requests (``id`` is the
  appeal's number; the token of a request is its number, as requests are
  created synchronously).

Clients are servers, not browsers: every call but the service list needs an
``api_key`` (``hotline apikey add CHANNEL``); the key's channel is recorded on
the appeal. No cookie is read here (these routes are public in the role table),
so :mod:`hotline.web.guard` spares them the CSRF token; it still refuses other
sites' browsers by Origin.

A retried POST creates nothing new when it carries the same ``Idempotency-Key``
header (per channel), or, without one, the same ``device_id`` and the same fields.

Every error is the standard's list of ``code`` + ``description``, in the format
the path asks for, with that HTTP status.
"""

from __future__ import annotations

import hashlib
import json
import urllib.parse
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from crm_sync.appeals import AppealFilter, Cursor, NewAppeal, NewAttachment
from crm_sync.open311_keys import ApiKey, key_for
from hotline.core.appeals import OPEN_STATUSES, Actor, ActorKind, AppealNotFound, AppealStatus
from hotline.core.errors import HotlineError
from hotline.core.logs import get_logger
from hotline.web.common import APPEALS, POOL, Handler, Route
from hotline.web.open311_format import (
    FORMATS,
    JSON_TYPE,
    JURISDICTION_ID,
    LOCALES,
    XML_TYPE,
    Open311Problem,
    Service,
    Submitted,
    appeal_text,
    attributes_for,
    check_attributes,
    created_json,
    definition_json,
    errors_json,
    errors_xml,
    read_submission,
    request_json,
    service_json,
    to_xml,
    token_json,
)

PREFIX = "/open311/v2"
IDEMPOTENCY_HEADER = "Idempotency-Key"
MAX_IDEMPOTENCY_KEY = 150
MAX_IDS = 200
DEFAULT_PAGE = 100
MAX_PAGE = 500
#: Without dates or ids, ``GET requests`` looks this far back (the specification's 90 days).
DEFAULT_WINDOW = timedelta(days=90)
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")

log = get_logger("hotline.web.open311")


# --- answering -------------------------------------------------------------------------


def _format(request: web.Request) -> str:
    fmt = request.match_info.get("format", "")
    if fmt not in FORMATS:
        raise Open311Problem(404, f"format: .json or .xml, not .{fmt[:10]}")
    return fmt


def _answer(fmt: str, data: Any, root: str, item: str | None, status: int = 200
            ) -> web.Response:
    if fmt == "xml":
        rows = data if isinstance(data, list) else [data]
        return web.Response(body=to_xml(root, item, rows), status=status,
                            content_type=XML_TYPE, charset="utf-8")
    return web.Response(text=json.dumps(data, ensure_ascii=False), status=status,
                        content_type=JSON_TYPE)


def _problem_answer(request: web.Request, problem: Open311Problem) -> web.Response:
    fmt = request.match_info.get("format", "json")
    if fmt == "xml":
        return web.Response(body=errors_xml(problem.status, problem.errors),
                            status=problem.status, content_type=XML_TYPE, charset="utf-8")
    return web.Response(text=json.dumps(errors_json(problem.status, problem.errors),
                                        ensure_ascii=False),
                        status=problem.status, content_type=JSON_TYPE)


def by_method(methods: Mapping[str, Handler]) -> Handler:
    """One path's handlers by method: any other method gets 405 in the standard's
    error form. The table stays readable as ``.methods`` (the OpenAPI test reads it)."""

    async def dispatch(request: web.Request) -> web.StreamResponse:
        handler = methods.get(request.method)
        try:
            if handler is None:
                raise Open311Problem(405, f"method {request.method} not allowed here; "
                                          f"use {', '.join(methods)}")
            _format(request)
            return await handler(request)
        except Open311Problem as problem:
            response = _problem_answer(request, problem)
            if problem.status == 405:
                response.headers["Allow"] = ", ".join(methods)
            return response
        except web.HTTPRequestEntityTooLarge:
            return _problem_answer(request, Open311Problem(413, "the body is too large"))
        except HotlineError as error:
            return _problem_answer(request, Open311Problem(error.http_status, error.message))

    setattr(dispatch, "methods", dict(methods))  # noqa: B010 (a function's attribute)
    return dispatch


# --- reading the request -----------------------------------------------------------------


def _locale(request: web.Request) -> str:
    asked = request.query.get("locale", "")
    if asked:
        lang = asked.split("-")[0].split("_")[0].lower()
        if lang not in LOCALES:
            raise Open311Problem(400, f"locale: one of {', '.join(LOCALES)}")
        return lang
    for part in request.headers.get("Accept-Language", "").split(","):
        lang = part.split(";")[0].strip().split("-")[0].lower()
        if lang in LOCALES:
            return lang
    return "uk"


def _check_jurisdiction(value: str | None) -> None:
    if value is not None and value.strip() not in ("", JURISDICTION_ID):
        raise Open311Problem(404, f"jurisdiction_id: this endpoint serves {JURISDICTION_ID!r}")


async def _api_key(request: web.Request, given: str | None) -> ApiKey:
    key = await key_for(request.app[POOL], (given or "").strip())
    if key is None:
        log.info("open311_key_refused", path=request.path, given=bool(given))
        raise Open311Problem(403, "api_key: missing, unknown or revoked")
    return key


def _actor(key: ApiKey) -> Actor:
    return Actor(ActorKind.SYSTEM, f"open311:{key.channel.value}:key{key.id}")


async def _fields(request: web.Request) -> dict[str, list[str]]:
    """The POST body as lists of strings per field: a form (as the specification
    says), or a JSON object; anything else is 415, a broken body 400."""
    ctype = request.content_type
    if ctype not in (*FORM_TYPES, "application/json"):
        raise Open311Problem(415, f"Content-Type: {ctype or 'none'} is not accepted; send "
                                  "application/x-www-form-urlencoded (or multipart/form-data, "
                                  "or application/json)")
    fields: dict[str, list[str]] = {}
    if ctype == "multipart/form-data":
        try:
            form = await request.post()
        except (ValueError, LookupError, HttpProcessingError):
            raise Open311Problem(400, "the form could not be read") from None
        for name, value in form.items():
            if not isinstance(value, str):
                raise Open311Problem(400, f"{name[:80]}: files are not accepted; "
                                          "send media_url")
            fields.setdefault(name, []).append(value)
        return fields
    raw = await request.read()
    try:
        text = raw.decode(request.charset or "utf-8")
    except (UnicodeDecodeError, LookupError):
        raise Open311Problem(400, "the body is not valid text in its charset") from None
    if ctype == "application/json":
        return _json_fields(text)
    try:
        pairs = urllib.parse.parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text),
                                       errors="strict", max_num_fields=200)
    except (ValueError, UnicodeDecodeError):
        raise Open311Problem(400, "the body is not a well-formed form") from None
    for name, value in pairs:
        fields.setdefault(name, []).append(value)
    return fields


def _json_fields(text: str) -> dict[str, list[str]]:
    try:
        data = json.loads(text)
    except ValueError:
        raise Open311Problem(400, "the body is not well-formed JSON") from None
    if not isinstance(data, dict):
        raise Open311Problem(400, "the body must be a JSON object of the form's fields")
    fields: dict[str, list[str]] = {}

    def scalar(name: str, value: Any) -> str:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise Open311Problem(400, f"{name[:80]}: a string or a number")
        return str(value)

    for name, value in data.items():
        if name == "attribute" and isinstance(value, dict):
            for code, answer in value.items():
                answers = answer if isinstance(answer, list) else [answer]
                fields[f"attribute[{code}]"] = [scalar(f"attribute[{code}]", a) for a in answers]
        elif value is not None:
            fields[name] = [scalar(name, value)]
    return fields


# --- services ------------------------------------------------------------------------------


async def _services(request: web.Request, code: str | None = None) -> list[Service]:
    pool = request.app[POOL]
    rows = await pool.fetch(
        """SELECT c.code, c.name_uk, c.name_en, s.code AS group_code, s.name_uk AS group_uk,
                  s.name_en AS group_en
           FROM categories c JOIN spheres s ON s.id = c.sphere_id
           WHERE $1::text IS NULL OR c.code = $1 ORDER BY s.id, c.id""", code)
    districts = [(r["code"], r["name_uk"], r["name_en"])
                 for r in await pool.fetch("SELECT code, name_uk, name_en FROM districts "
                                           "ORDER BY code")]
    return [Service(r["code"], r["name_uk"], r["name_en"], r["group_uk"], r["group_en"],
                    r["group_code"], attributes_for(r["code"], districts)) for r in rows]


async def get_services(request: web.Request) -> web.Response:
    _check_jurisdiction(request.query.get("jurisdiction_id"))
    locale = _locale(request)
    services = [service_json(s, locale) for s in await _services(request)]
    return _answer(_format(request), services, "services", "service")


async def get_service(request: web.Request) -> web.Response:
    _check_jurisdiction(request.query.get("jurisdiction_id"))
    locale = _locale(request)
    code = request.match_info["code"]
    found = await _services(request, code[:64])
    if not found:
        raise Open311Problem(404, f"service_code: no service {code[:64]!r}")
    return _answer(_format(request), definition_json(found[0], locale),
                   "service_definition", None)


# --- POST requests ------------------------------------------------------------------------


def _first(fields: Mapping[str, list[str]], name: str) -> str | None:
    values = fields.get(name)
    return values[0] if values else None


def _intake_key(request: web.Request, submitted: Submitted) -> str | None:
    header = request.headers.get(IDEMPOTENCY_HEADER)
    if header is not None:
        header = header.strip()
        if not 0 < len(header) <= MAX_IDEMPOTENCY_KEY or not header.isprintable():
            raise Open311Problem(400, f"{IDEMPOTENCY_HEADER}: 1 to {MAX_IDEMPOTENCY_KEY} "
                                      "printable characters")
        return "key:" + header
    if submitted.device_id:
        digest = hashlib.sha256(
            f"{submitted.device_id}\x1e{submitted.fingerprint()}".encode()).hexdigest()
        return "device:" + digest
    return None


async def post_request(request: web.Request) -> web.Response:
    fmt = _format(request)
    fields = await _fields(request)
    key = await _api_key(request, _first(fields, "api_key"))
    _check_jurisdiction(_first(fields, "jurisdiction_id"))
    submitted = read_submission(fields)
    found = await _services(request, submitted.service_code)
    if not found:
        raise Open311Problem(400, f"service_code: no service {submitted.service_code!r}")
    service = found[0]
    problems = check_attributes(service, submitted.attributes)
    if problems:
        raise Open311Problem(400, *problems)
    intake_key = _intake_key(request, submitted)
    district = _first(submitted.attributes, "district")
    name = " ".join(p for p in (submitted.first_name, submitted.last_name) if p)
    new = NewAppeal(
        channel=key.channel, category=service.code, text=appeal_text(service, submitted),
        address=submitted.address, district=district, latitude=submitted.lat,
        longitude=submitted.long, citizen_phone=submitted.phone, citizen_name=name,
        intake_key=intake_key,
        attachments=(NewAttachment(submitted.media_url),) if submitted.media_url else (),
    )
    registered = await request.app[APPEALS].register(new, _actor(key))
    appeal = registered.appeal
    if not registered.created and (appeal.category_code != service.code
                                   or appeal.text != new.text.strip()):
        raise Open311Problem(422, f"{IDEMPOTENCY_HEADER}: already used for another request "
                                  f"({appeal.number})")
    notice = None
    if registered.primary is not None:
        notice = (f"Це звернення вже зареєстроване як {registered.primary.number}; "
                  "вас додано до нього.")
    log.info("open311_request", appeal=appeal.number, channel=key.channel.value,
             key_id=key.id, created=registered.created)
    body = [created_json(appeal.number, notice, submitted.account_id)]
    response = _answer(fmt, body, "service_requests", "request",
                       status=201 if registered.created else 200)
    if not registered.created:
        response.headers["Idempotent-Replayed"] = "true"
    return response


# --- reading requests -----------------------------------------------------------------------


def _when(name: str, text: str | None) -> datetime | None:
    if text is None or not text.strip():
        return None
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise Open311Problem(400, f"{name}: not a w3c date-time: {text[:40]!r}") from None
    if value.tzinfo is None:
        raise Open311Problem(400, f"{name}: give the time zone (e.g. 2026-01-31T00:00:00Z)")
    return value.astimezone(UTC)


def _list(text: str | None, limit: int, name: str) -> list[str]:
    items = [p.strip() for p in (text or "").split(",") if p.strip()]
    if len(items) > limit:
        raise Open311Problem(400, f"{name}: at most {limit} values")
    return items


async def get_requests(request: web.Request) -> web.Response:
    fmt = _format(request)
    q = request.query
    await _api_key(request, q.get("api_key"))
    _check_jurisdiction(q.get("jurisdiction_id"))
    locale = _locale(request)
    numbers = _list(q.get("service_request_id"), MAX_IDS, "service_request_id")
    codes = _list(q.get("service_code"), 50, "service_code")
    statuses: frozenset[AppealStatus] | None = None
    wanted = set(_list(q.get("status"), 2, "status"))
    if wanted - {"open", "closed"}:
        raise Open311Problem(400, "status: open, closed or open,closed")
    if wanted == {"open"}:
        statuses = frozenset(OPEN_STATUSES)
    elif wanted == {"closed"}:
        statuses = frozenset(AppealStatus) - OPEN_STATUSES
    start, end = _when("start_date", q.get("start_date")), _when("end_date", q.get("end_date"))
    if start is None and not numbers:
        start = (end or datetime.now(UTC)) - DEFAULT_WINDOW
    try:
        size = int(q.get("page_size", DEFAULT_PAGE))
    except ValueError:
        raise Open311Problem(400, "page_size: an integer") from None
    if not 1 <= size <= MAX_PAGE:
        raise Open311Problem(400, f"page_size: 1 to {MAX_PAGE}")
    category_ids: tuple[int, ...] = ()
    if codes:
        rows = await request.app[POOL].fetch(
            "SELECT code, id FROM categories WHERE code = ANY($1::text[])", codes)
        unknown = set(codes) - {r["code"] for r in rows}
        if unknown:
            raise Open311Problem(400, f"service_code: no service {sorted(unknown)[0]!r}")
        category_ids = tuple(r["id"] for r in rows)
    after = Cursor.decode(q["after"]) if q.get("after") else None
    page = await request.app[APPEALS].list_appeals(
        Actor(ActorKind.SYSTEM, "open311:read"),
        AppealFilter(statuses=statuses, category_ids=category_ids, numbers=tuple(numbers),
                     created_from=start, created_to=end),
        after=after, limit=size)
    response = _answer(fmt, [request_json(a, locale) for a in page.items],
                       "service_requests", "request")
    if page.next_cursor is not None:
        token = page.next_cursor.encode()
        query = {k: v for k, v in q.items() if k not in ("after", "api_key")}
        query["after"] = token
        response.headers["Link"] = (f'<{request.path}?{urllib.parse.urlencode(query)}>; '
                                    'rel="next"')
        response.headers["X-Next-Cursor"] = token
    return response


async def _by_number(request: web.Request, number: str) -> Any:
    try:
        return await request.app[APPEALS].get_by_number(
            number[:40], Actor(ActorKind.SYSTEM, "open311:read"))
    except AppealNotFound:
        raise Open311Problem(404, f"service_request_id: no request {number[:40]!r}") from None


async def get_request(request: web.Request) -> web.Response:
    fmt = _format(request)
    await _api_key(request, request.query.get("api_key"))
    _check_jurisdiction(request.query.get("jurisdiction_id"))
    appeal = await _by_number(request, request.match_info["id"])
    return _answer(fmt, [request_json(appeal, _locale(request))], "service_requests", "request")


async def get_token(request: web.Request) -> web.Response:
    fmt = _format(request)
    await _api_key(request, request.query.get("api_key"))
    _check_jurisdiction(request.query.get("jurisdiction_id"))
    token = request.match_info["token"]
    appeal = await _by_number(request, token)
    return _answer(fmt, [token_json(token, appeal.number)], "service_requests", "request")


ROUTES = [
    Route("*", f"{PREFIX}/services.{{format}}", by_method({"GET": get_services}), None),
    Route("*", f"{PREFIX}/services/{{code}}.{{format}}", by_method({"GET": get_service}), None),
    Route("*", f"{PREFIX}/requests.{{format}}",
          by_method({"GET": get_requests, "POST": post_request}), None),
    Route("*", f"{PREFIX}/requests/{{id}}.{{format}}", by_method({"GET": get_request}), None),
    Route("*", f"{PREFIX}/tokens/{{token}}.{{format}}", by_method({"GET": get_token}), None),
]
