"""The OpenAPI 3 document of the whole HTTP API, served at ``/openapi.json``
(public on purpose: it describes routes, never data). A test compares its paths
and methods with the application's route table, so a route cannot be added
without being described here."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from hotline.web import (
    announcements,
    call_panel,
    campaigns,
    dashboard,
    desk,
    executor,
    informing,
    outbox_admin,
    reports,
    routing_admin,
)
from hotline.web.common import Route, json_response

OPENAPI_PATH = "/openapi.json"
STATIC_DOC_PATH = "/static/{filename}"
_FMT = {"name": "format", "in": "path", "required": True,
        "schema": {"type": "string", "enum": ["json", "xml"]}}
_KEY = {"name": "api_key", "in": "query", "required": True, "schema": {"type": "string"},
        "description": "the channel's key (`hotline apikey add CHANNEL`)"}
_JURISDICTION = {"name": "jurisdiction_id", "in": "query", "required": False,
                 "schema": {"type": "string", "enum": ["kyiv.ua"]}}
_LOCALE = {"name": "locale", "in": "query", "required": False,
           "schema": {"type": "string", "enum": ["uk", "en"], "default": "uk"}}


def _text(description: str, content_type: str = "text/html") -> dict[str, Any]:
    return {"description": description, "content": {content_type: {"schema": {"type": "string"}}}}


def _json(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": schema or {"type": "object"}}}}


def _open311(description: str, ref: str) -> dict[str, Any]:
    return {"description": description, "content": {
        "application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}},
        "text/xml": {"schema": {"type": "string"},
                     "example": "see the GeoReport v2 specification's XML form"}}}


_OPEN311_ERRORS = {
    str(code): _open311(text, "Open311Errors") for code, text in (
        (400, "invalid input (the list names every problem)"),
        (403, "api_key missing, unknown or revoked"),
        (404, "no such service, request, token or format; another jurisdiction_id"),
        (405, "method not allowed"), (413, "body over 64 KiB"),
        (415, "Content-Type not accepted"), (422, "Idempotency-Key reused for another request"),
    )
}
_SESSION: list[dict[str, list[str]]] = [{"session": []}]
_SIGN_IN = {"401": _json("not signed in (API) / redirect to /login (pages)"),
            "403": _json("not allowed for this role")}
_STR = {"type": "string"}
_NSTR = {"type": ["string", "null"]}


def _service_request() -> dict[str, Any]:
    props: dict[str, Any] = {name: _NSTR for name in (
        "status_notes", "agency_responsible", "service_notice", "expected_datetime", "address",
        "address_id", "zipcode", "media_url")}
    props.update({name: _STR for name in (
        "service_request_id", "service_name", "service_code", "description",
        "requested_datetime", "updated_datetime")})
    props["status"] = {"type": "string", "enum": ["open", "closed"]}
    props["lat"] = props["long"] = {"type": ["number", "null"]}
    return {"type": "object", "properties": props}


SCHEMAS: dict[str, Any] = {
    "Open311Errors": {"type": "array", "items": {"type": "object", "properties": {
        "code": {"type": "integer"}, "description": _STR}}},
    "Services": {"type": "array", "items": {"type": "object", "properties": {
        "service_code": _STR, "service_name": _STR, "description": _STR,
        "metadata": {"type": "boolean"}, "type": {"type": "string", "enum": ["realtime"]},
        "keywords": _STR, "group": _STR}}},
    "ServiceDefinition": {"type": "object", "properties": {
        "service_code": _STR,
        "attributes": {"type": "array", "items": {"type": "object", "properties": {
            "variable": {"type": "boolean"}, "code": _STR, "datatype": {"type": "string", "enum": [
                "string", "number", "datetime", "text", "singlevaluelist", "multivaluelist"]},
            "required": {"type": "boolean"}, "datatype_description": _NSTR,
            "order": {"type": "integer"}, "description": _STR,
            "values": {"type": "array", "items": {"type": "object", "properties": {
                "key": _STR, "name": _STR}}}}}}}},
    "ServiceRequests": {"type": "array", "items": _service_request()},
    "Created": {"type": "array", "items": {"type": "object", "properties": {
        "service_request_id": _STR, "token": _STR, "service_notice": _NSTR,
        "account_id": _NSTR}}},
    "Tokens": {"type": "array", "items": {"type": "object", "properties": {
        "service_request_id": _STR, "token": _STR}}},
    "Error": {"type": "object", "properties": {"error": _STR, "message": _STR,
                                               "details": {"type": "object"}}},
}

_POST_FIELDS: dict[str, Any] = {
    "api_key": _STR, "jurisdiction_id": _STR, "service_code": _STR,
    "lat": {"type": "number"}, "long": {"type": "number"}, "address_string": _STR,
    "address_id": _STR, "email": _STR, "device_id": _STR, "account_id": _STR,
    "first_name": _STR, "last_name": _STR, "phone": _STR,
    "description": {"type": "string", "maxLength": 4000}, "media_url": _STR,
}
_POST_BODY = {"type": "object", "required": ["api_key", "service_code"],
              "properties": _POST_FIELDS,
              "additionalProperties": {"type": "string",
                                       "description": "attribute[CODE]: an answer"}}


def _crm_paths() -> dict[str, Any]:
    """The external CRM's status webhook (``hotline.web.crm_webhook``)."""
    signed = [{"name": "X-Hotline-Signature", "in": "header", "required": True,
               "schema": _STR, "description": "sha256=<hex HMAC-SHA256 of the raw body>"}]
    return {"/webhooks/crm/status": {"post": {
        "summary": "external CRM: a status update (idempotent by update_id)",
        "parameters": signed,
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["update_id", "number", "status"],
            "properties": {"update_id": _STR, "number": _STR, "status": _STR,
                           "reason": _STR}}}}},
        "responses": {"200": _json("applied, unchanged or duplicate"),
                      "400": _json("invalid body"), "401": _json("signature does not match"),
                      "404": _json("appeal not found"),
                      "409": _json("transition not allowed"),
                      "503": _json("not configured, or the same update being applied")}}}}


def _notification_paths() -> dict[str, Any]:
    """The SMS gateway's webhooks and the opt-out link (``hotline.web.delivery_reports``)."""
    signed = [{"name": "X-Hotline-Signature", "in": "header", "required": True,
               "schema": _STR, "description": "sha256=<hex HMAC-SHA256 of the raw body>"}]
    errors = {"400": _json("invalid body"), "401": _json("signature does not match"),
              "503": _json("notifications not configured")}

    def body(props: dict[str, Any], required: list[str]) -> dict[str, Any]:
        return {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "properties": props, "required": required}}}}

    link = [{"name": "c", "in": "query", "required": True, "schema": _STR},
            {"name": "t", "in": "query", "required": True, "schema": _STR}]
    return {
        "/webhooks/sms/delivery": {"post": {
            "summary": "SMS gateway: a delivery report (idempotent)", "parameters": signed,
            "requestBody": body({"id": _STR, "status": {"type": "string", "enum": [
                "delivered", "failed"]}, "detail": _STR}, ["id", "status"]),
            "responses": {"200": _json("applied, duplicate or pending"), **errors}}},
        "/webhooks/sms/inbound": {"post": {
            "summary": "SMS gateway: a citizen's reply (an opt-out keyword opts out)",
            "parameters": signed, "requestBody": body({"from": _STR, "text": _STR}, ["from"]),
            "responses": {"200": _json("opted_out, unknown or ignored"), **errors}}},
        "/notifications/opt-out": {
            "get": {"summary": "the opt-out link: a confirmation page", "parameters": link,
                    "responses": {"200": _text("page"), "400": _json("invalid link")}},
            "post": {"summary": "the opt-out link: opt out", "parameters": link,
                     "responses": {"200": _text("page"), "400": _json("invalid link")}}},
    }


def document() -> dict[str, Any]:
    o311 = "/open311/v2"
    get_requests_params = [_FMT, _KEY, _JURISDICTION, _LOCALE] + [
        {"name": n, "in": "query", "required": False, "schema": _STR, "description": d}
        for n, d in (
            ("service_request_id", "comma-separated appeal numbers"),
            ("service_code", "comma-separated service codes"),
            ("start_date", "w3c date-time with a zone (default: 90 days ago)"),
            ("end_date", "w3c date-time with a zone"),
            ("status", "open, closed, or open,closed"),
            ("page_size", "1 to 500, default 100"),
            ("after", "the cursor of the next page (also in the Link header)"))]
    return {
        "openapi": "3.1.0",
        "info": {"title": "Hotline 1551", "version": "1",
                 "description": "The hotline's web pages, supervisors' APIs, operations "
                                "endpoints and the Open311 GeoReport v2 intake."},
        "components": {
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": "hotline_session"},
                "api_key": {"type": "apiKey", "in": "query", "name": "api_key"},
                "metrics_token": {"type": "http", "scheme": "bearer"},
            },
            "schemas": SCHEMAS,
        },
        "paths": {
            "/": {"get": {"summary": "home: the wallboard or a note for the role",
                          "security": _SESSION, "responses": {"200": _text("page"),
                                                              "302": {"description": "redirect"}}}},
            "/login": {
                "get": {"summary": "the sign-in page", "responses": {"200": _text("page")}},
                "post": {"summary": "sign in (form: login, password, csrf)",
                         "requestBody": {"content": {"application/x-www-form-urlencoded": {
                             "schema": {"type": "object", "properties": {
                                 "login": _STR, "password": _STR, "csrf": _STR}}}}},
                         "responses": {"302": {"description": "signed in"},
                                       "401": _text("wrong login or password"),
                                       "429": _text("too many failures (Retry-After)")}},
            },
            "/logout": {"post": {"summary": "sign out (CSRF token required)",
                                 "security": _SESSION,
                                 "responses": {"302": {"description": "to /login"}}}},
            "/wallboard": {"get": {"summary": "the supervisors' wallboard", "security": _SESSION,
                                   "responses": {"200": _text("page"), **_SIGN_IN}}},
            "/api/calls/recent": {"get": {
                "summary": "recent calls, numbers masked", "security": _SESSION,
                "parameters": [{"name": "limit", "in": "query", "schema": {
                    "type": "integer", "minimum": 1, "maximum": 500, "default": 50}}],
                "responses": {"200": _json("calls"), **_SIGN_IN}}},
            "/api/stats/today": {"get": {"summary": "today's figures per queue (Kyiv's day)",
                                         "security": _SESSION,
                                         "responses": {"200": _json("figures"), **_SIGN_IN}}},
            "/api/queues": {"get": {"summary": "queues now", "security": _SESSION,
                                    "responses": {"200": _json("queues"), **_SIGN_IN}}},
            "/ws/live": {"get": {"summary": "the live feed (websocket; Origin checked)",
                                 "security": _SESSION,
                                 "responses": {"101": {"description": "switching protocols"},
                                               **_SIGN_IN}}},
            "/healthz": {"get": {"summary": "the database and Redis answer",
                                 "responses": {"200": _json("ok"), "503": _json("down")}}},
            "/readyz": {"get": {"summary": "every part of this process is ready",
                                "responses": {"200": _json("ready"), "503": _json("not ready")}}},
            "/metrics": {"get": {"summary": "Prometheus text (allow-list or bearer token)",
                                 "security": [{}, {"metrics_token": []}],
                                 "responses": {"200": _text("metrics", "text/plain"),
                                               "401": _json("token required"),
                                               "403": _json("address not allowed")}}},
            STATIC_DOC_PATH: {"get": {"summary": "CSS and JS of the pages",
                                      "parameters": [{"name": "filename", "in": "path",
                                                      "required": True, "schema": _STR}],
                                      "responses": {"200": _text("file", "text/css"),
                                                    "404": {"description": "no such file"}}}},
            OPENAPI_PATH: {"get": {"summary": "this document",
                                   "responses": {"200": _json("OpenAPI 3")}}},
            f"{o311}/services.{{format}}": {"get": {
                "summary": "Open311: the services (taxonomy: sphere → issue)",
                "parameters": [_FMT, _JURISDICTION, _LOCALE],
                "responses": {"200": _open311("services", "Services"), **_OPEN311_ERRORS}}},
            f"{o311}/services/{{code}}.{{format}}": {"get": {
                "summary": "Open311: a service's definition with its attributes",
                "parameters": [{"name": "code", "in": "path", "required": True, "schema": _STR},
                               _FMT, _JURISDICTION, _LOCALE],
                "responses": {"200": _open311("definition", "ServiceDefinition"),
                              **_OPEN311_ERRORS}}},
            f"{o311}/requests.{{format}}": {
                "get": {"summary": "Open311: service requests (appeals), newest first",
                        "security": [{"api_key": []}], "parameters": get_requests_params,
                        "responses": {"200": _open311("requests", "ServiceRequests"),
                                      **_OPEN311_ERRORS}},
                "post": {"summary": "Open311: report a problem (creates an appeal)",
                         "security": [{"api_key": []}],
                         "parameters": [_FMT, {"name": "Idempotency-Key", "in": "header",
                                               "required": False, "schema": _STR}],
                         "requestBody": {"required": True, "content": {
                             "application/x-www-form-urlencoded": {"schema": _POST_BODY},
                             "multipart/form-data": {"schema": _POST_BODY},
                             "application/json": {"schema": _POST_BODY}}},
                         "responses": {"201": _open311("created", "Created"),
                                       "200": _open311("a retry: the same request", "Created"),
                                       **_OPEN311_ERRORS}},
            },
            f"{o311}/requests/{{id}}.{{format}}": {"get": {
                "summary": "Open311: one service request by its id (the appeal's number)",
                "security": [{"api_key": []}],
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": _STR},
                               _FMT, _KEY, _JURISDICTION, _LOCALE],
                "responses": {"200": _open311("the request", "ServiceRequests"),
                              **_OPEN311_ERRORS}}},
            f"{o311}/tokens/{{token}}.{{format}}": {"get": {
                "summary": "Open311: the request id of a token",
                "security": [{"api_key": []}],
                "parameters": [{"name": "token", "in": "path", "required": True,
                                "schema": _STR}, _FMT, _KEY, _JURISDICTION],
                "responses": {"200": _open311("the id", "Tokens"), **_OPEN311_ERRORS}}},
            **executor.OPENAPI_PATHS,
            **routing_admin.OPENAPI_PATHS,
            **outbox_admin.OPENAPI_PATHS,
            **_notification_paths(),
            **_crm_paths(),
            **campaigns.OPENAPI_PATHS,
            **informing.OPENAPI_PATHS,
            **dashboard.OPENAPI_PATHS,
            **announcements.OPENAPI_PATHS,
            **call_panel.OPENAPI_PATHS,
            **reports.OPENAPI_PATHS,
            **desk.OPENAPI_PATHS,
        },
    }


def app_operations(app: web.Application) -> set[tuple[str, str]]:
    """(method, path) of every route the application answers, as the document names
    them (HEAD that aiohttp adds to GET routes left out)."""
    out: set[tuple[str, str]] = set()
    for route in app.router.routes():
        resource = route.resource
        if resource is None:
            continue
        path = resource.canonical
        if isinstance(resource, web.StaticResource):
            path = STATIC_DOC_PATH
        methods = getattr(route.handler, "methods", None)
        if route.method == "*" and methods is not None:
            out |= {(m, path) for m in methods}
        elif route.method != "HEAD":
            out.add((route.method, path))
    return out


def documented_operations(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in doc["paths"].items() for method in item}


async def openapi_json(request: web.Request) -> web.Response:
    response = json_response(document())
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


ROUTES = [Route("GET", OPENAPI_PATH, openapi_json, None)]
