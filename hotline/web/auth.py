"""Sign-in, sign-out and the middleware that authenticates and authorises
every route by role (only routes declared public are reachable without a session)."""

from __future__ import annotations

from html import escape

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from crm_sync.people import MAX_LOGIN, MAX_PASSWORD, authenticate, is_valid_login
from hotline.core.errors import Forbidden, HotlineError, NotSignedIn
from hotline.core.logs import get_logger
from hotline.core.people import EVERYONE, WATCHERS, Principal
from hotline.web.common import (
    POOL,
    PRINCIPAL,
    ROUTE_ROLES,
    SESSIONS,
    Handler,
    Route,
    error_response,
    html_response,
    is_api,
    principal,
    render,
)
from hotline.web.sessions import SESSION_TTL_SECONDS

COOKIE = "hotline_session"
log = get_logger("hotline.web.auth")

_FORBIDDEN_TEXT = "This page is not available for your role."
_NOTHING_YET_TEXT = "You are signed in. There is no web page for your role yet."


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Who is signed in, and may they use this route? Errors of the tree become
    JSON answers on the API and pages elsewhere."""
    try:
        return await _authorised(request, handler)
    except HotlineError as error:
        if is_api(request) or error.http_status >= 500:
            return error_response(error)
        raise


async def _authorised(request: web.Request, handler: Handler) -> web.StreamResponse:
    allowed = request.app[ROUTE_ROLES].get(_canonical(request))
    if allowed == ():  # public on purpose
        return await handler(request)
    token = request.cookies.get(COOKIE, "")
    who = await request.app[SESSIONS].get(token)
    if who is None:
        # Also for unknown paths: who is not signed in learns nothing about the routes.
        if is_api(request):
            raise NotSignedIn("sign in first")
        raise web.HTTPFound("/login")
    match_error = request.match_info.http_exception
    if match_error is not None:  # 404 / 405 for a signed-in user, not a misleading 403
        raise match_error
    if allowed is None or who.role not in allowed:
        log.info("web_forbidden", login=who.login, role=who.role, path=request.path)
        if is_api(request):
            raise Forbidden("not allowed for your role")
        raise web.HTTPForbidden(text=message_page("Forbidden", _FORBIDDEN_TEXT, who),
                                content_type="text/html")
    request[PRINCIPAL] = who
    return await handler(request)


def _canonical(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else request.path


def message_page(title: str, text: str, who: Principal) -> str:
    return render("message.html", title=title, text=text,
                  name=f"{who.display_name} ({who.role})")


def _login_page(error: str = "", status: int = 200) -> web.Response:
    page = render("login.html")
    note = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
    return html_response(page.replace("{{error}}", note), status=status)


async def login_page(request: web.Request) -> web.Response:
    return _login_page()


async def login_submit(request: web.Request) -> web.Response:
    try:
        form = await request.post()
    except (ValueError, LookupError, HttpProcessingError):  # bad encoding, charset, multipart
        return _login_page("The sign-in form could not be read; please try again.", 400)
    login_field, password_field = form.get("login", ""), form.get("password", "")
    if not isinstance(login_field, str) or not isinstance(password_field, str):
        return _login_page("Login and password must be text fields.", 400)
    login, password = login_field.strip(), password_field
    if not login or not password:
        return _login_page("Enter your login and password.", 400)
    if not is_valid_login(login):
        return _login_page(f"A login is up to {MAX_LOGIN} letters, digits, '.', '-' or '_'.", 400)
    if len(password) > MAX_PASSWORD:  # no one has such a password; spare the scrypt
        return _login_page("Wrong login or password.", 401)
    who = await authenticate(request.app[POOL], login, password)
    if who is None:
        log.info("web_login_failed", login=login)
        return _login_page("Wrong login or password.", 401)
    sessions = request.app[SESSIONS]
    await sessions.delete(request.cookies.get(COOKIE, ""))  # no stale session left behind
    token = await sessions.create(who)
    log.info("web_login", login=who.login, role=who.role)
    response = web.HTTPFound("/")
    response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/",
                        secure=request.secure, max_age=SESSION_TTL_SECONDS)
    raise response


async def logout(request: web.Request) -> web.Response:
    await request.app[SESSIONS].delete(request.cookies.get(COOKIE, ""))
    response = web.HTTPFound("/login")
    response.del_cookie(COOKIE, path="/", samesite="Strict")
    raise response


async def home(request: web.Request) -> web.Response:
    who = principal(request)
    if who.role in WATCHERS:
        raise web.HTTPFound("/wallboard")
    return html_response(message_page("1551", _NOTHING_YET_TEXT, who))


ROUTES = [
    Route("GET", "/login", login_page, None),
    Route("POST", "/login", login_submit, None),
    Route("POST", "/logout", logout, EVERYONE),
    Route("GET", "/", home, EVERYONE),
]
